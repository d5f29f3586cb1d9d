"""The prepare cases whose outputs are pinned in ``tests/golden/prepare.json``.

Every case is a ``data`` block (sources, split, length bounds, distractors) over the shipped sample or
over the hub-schema fixtures. ``tests/test_prepare_golden.py`` runs prepare on each and compares the
SHA-256 of every file it writes (``train.parquet``, the dev and test BEIR folders, the metrics) with the
hashes recorded from the row-wise pandas implementation that the columnar one replaced (issue 11).

Regenerate (only when a change of output is intended, and say why in the commit):
``python tests/test_prepare_golden.py --write``.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import fixtures
from norsparse.beir import write_jsonl

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden" / "prepare.json"


def edge_rows() -> list[dict]:
    """Rows that exercise cleaning: blanks, lengths, duplicates after NFKC/space/case folding, titles, negatives
    that are other rows' passages (groups through negatives)."""
    rows = []
    for i in range(48):
        rows.append({"query": f"Hva står i avsnitt {i}?", "title": [f"Tittel {i}", "", None][i % 3],
                     "positive": fixtures.passage(i, "kanter"),
                     "negative": fixtures.passage(i + 1, "kanter") if i % 4 == 0 else ["", None, f"Feil svar {i}."][i % 3]})
    rows += [
        {"query": "Hva er  Oslo?", "title": "Oslo", "positive": "Oslo er hovedstaden i Norge.", "negative": "Bergen er en by."},
        {"query": "hva er oslo?", "title": None, "positive": "OSLO ER\u00a0hovedstaden i  Norge.  ", "negative": None},
        {"query": "Gate i Oslo", "title": None, "positive": "Straße i Oslo sentrum.", "negative": "   "},
        {"query": "GATE I OSLO", "title": None, "positive": "STRASSE i oslo sentrum.", "negative": None},
        {"query": "\uff28va er Oslo?", "title": None, "positive": "Oslo har mange innbyggere.", "negative": None},
        {"query": "  ", "title": None, "positive": "Et avsnitt uten spørsmål.", "negative": None},
        {"query": "Et spørsmål uten avsnitt?", "title": None, "positive": "", "negative": None},
        {"query": "ab", "title": None, "positive": "For kort spørsmål.", "negative": None},
        {"query": "Et langt avsnitt?", "title": None, "positive": "langt " * 60, "negative": None},
        {"query": "\tMellomrom rundt\n", "title": "  ", "positive": "\n  Tekst med mellomrom rundt.  ", "negative": " Negativ med mellomrom. "},
    ]
    return rows


def list_rows() -> list[dict]:
    """Lists of positives (one row each) and lists of negatives (the first is used)."""
    return [{"query": f"Listespørsmål {i}?", "positive": [f"Første svar på {i}.", f"Andre svar på {i}."],
             "negative": [f"Første feil på {i}.", f"Andre feil på {i}."] if i % 2 else []} for i in range(10)]


def _sample(name="sample-qa"):
    return [{"name": name, "path": str(ROOT / "data/sample")},
            {"name": "sample-nli", "path": str(ROOT / "data/sample/nli.jsonl"), "splits": {"train": "train"},
             "columns": {"query": "anchor", "positive": "positive", "negative": "negative"}}]


def _hub(tmp: Path) -> dict[str, dict]:
    """One source spec per hub-schema fixture, as the README's recipe profiles map them."""
    return {
        "norquad": {"path": str(fixtures.norquad(tmp / "norquad", per_split={"train": 60, "validation": 12, "test": 12},
                                                 shared_contexts=7)),
                    "splits": {"train": "train", "dev": "validation", "test": "test"},
                    "columns": {"query": "question", "positive": "context", "title": "title"}},
        "noropenbookqa": {"path": str(fixtures.noropenbookqa(tmp / "obqa")), "subset": "nb",
                          "splits": {"train": "train", "test": "test"}, "columns": {"query": "question_stem", "positive": "fact"}},
        "scandi-qa": {"path": str(fixtures.scandi_qa(tmp / "scandi")), "subset": "no",
                      "splits": {"train": "train", "dev": "val", "test": "test"}, "columns": {"query": "question", "positive": "context"}},
        "all-nli": {"path": str(fixtures.all_nli_norwegian(tmp / "nli")),
                    "columns": {"query": "anchor", "positive": "positive", "negative": "negative"}},
        "all-nli-named": {"path": str(tmp / "nli"), "splits": {"train": "train", "dev": "dev", "test": "test"}},
        "nordic-embedding": {"path": str(fixtures.nordic_embedding(tmp / "nordic")), "filter": {"language": ["norwegian"]}},
        "supervised-da": {"path": str(fixtures.supervised_da(tmp / "da")), "splits": {"train": "train", "test": "test"},
                          "columns": {"query": "query", "positive": "pos"}},
    }


def cases(tmp: Path) -> dict[str, dict]:
    """Case name -> the ``data`` block of params.yaml (fixtures are written under ``tmp``)."""
    hub = _hub(tmp)
    beir = fixtures.write_sample_beir(tmp / "beir", n=60)
    write_jsonl(tmp / "edge.jsonl", edge_rows())
    write_jsonl(tmp / "lists.jsonl", list_rows())
    split = {"dev": 0.12, "test": 0.25, "seed": 13}
    out = {
        "sample": {"sources": _sample()},
        "sample-distractors-0": {"sources": _sample(), "distractors": 0},
        "sample-distractors-25-max-samples": {
            "sources": [{**_sample()[0], "max_samples": 900}, {**_sample()[1], "max_samples": 100}], "distractors": 25},
        "beir-fixture": {"sources": [{"name": "qa", "path": str(beir)},
                                     {"name": "nli", "path": str(beir / "nli.jsonl"), "splits": {"train": "train"},
                                      "columns": {"query": "anchor", "positive": "positive", "negative": "negative"}}],
                         "split": {"dev": 0.2, "test": 0.2, "seed": 7}},
        "edge": {"sources": [{"name": "edge", "path": str(tmp / "edge.jsonl")},
                             {"name": "lists", "path": str(tmp / "lists.jsonl"), "splits": {"train": "train"}}],
                 "max_chars": 200},
    }
    for name, spec in hub.items():
        out[name] = {"sources": [{"name": name, **spec}], "split": {"dev": 0.2, "test": 0.2, "seed": 13}}
    mixture = [{"name": name, **spec} for name, spec in hub.items() if name != "all-nli-named"]
    mixture.append({"name": "qa", "path": str(beir)})
    out["mixture"] = {"sources": mixture, "min_chars": 5, "max_chars": 100, "distractors": 3}
    out["mixture-distractors-0"] = {"sources": mixture, "distractors": 0, "split": {"dev": 0.1, "test": 0.3, "seed": 99}}
    for block in out.values():
        block.setdefault("split", split)
    return out


def digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder``, by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def load_golden() -> dict:
    return json.loads(GOLDEN.read_text(encoding="utf-8"))
