"""The columnar pieces of prepare: text keys, their digests, the on-disk row store, no cache left behind."""
import hashlib
import random
import re
import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import fixtures
from norsparse.params import SourceSpec
from norsparse.rowstore import NOT_PLAIN, PLAIN_RANGES, RowStore, TEXT_COLUMNS, hex12, normalized_digests
from norsparse.sources import load_source
from norsparse.splits import normalize

_SPACE = re.compile(r"\s+")
WHITESPACE = [chr(c) for c in range(0x110000) if chr(c).isspace()]
TRICKY = WHITESPACE + list("ßẞµﬁ½²ＡＢａ…İıΣσς\u0301\u0308\u200b\u00ad\x00\x1c«»–—’“”€§°æøåÆØÅéÉ") + ["e\u0301", "A\u030a"]


def reference(text: str) -> str:
    """normalize() as it was defined before it became fast: the definition it must keep."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()


def random_texts(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    alphabet = list("abc ABC æøå ÆØÅ .,?!-") + TRICKY
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(count)]
    plain = [" ".join(rng.choice(["Oslo", "fjord", "ÆØÅ", "«sitat»", "2–3", "€5"]) for _ in range(rng.randint(1, 6)))
             for _ in range(count)]
    return texts + plain + ["", " ", "  Oslo  ", "Oslo\u00a0by", "STRASSE", "Straße", "x\u2028y"]


def test_normalize_keeps_its_definition():
    for text in random_texts(3000) + WHITESPACE:
        assert normalize(text) == reference(text), repr(text)


def test_plain_characters_need_only_lowercasing():
    """Every character of the Arrow fast path: NFKC-stable, no combining class, not whitespace but the space,
    printable, and Arrow's utf8_lower is its casefold."""
    chars = [chr(c) for a, b in PLAIN_RANGES for c in range(a, b + 1)]
    lowered = pc.utf8_lower(pa.array(chars)).to_pylist()
    for char, low in zip(chars, lowered):
        assert unicodedata.normalize("NFKC", char) == char and unicodedata.combining(char) == 0, repr(char)
        assert char.isprintable() and (char == " " or not char.isspace()), repr(char)
        assert low == char.casefold(), repr(char)
    flagged = pc.match_substring_regex(pa.array(["Oslo by", "Oslo  by", " Oslo", "Oslo ", "Straße", "a\tb", "ab\u00a0"]),
                                       NOT_PLAIN).to_pylist()
    assert flagged == [False, True, True, True, True, True, True]


def test_digests_are_sha1_of_the_normalised_text():
    texts = random_texts(1000, seed=1) + [None, None]
    plain, prefixed = normalized_digests(texts, normalize, (b"", b"13\x00"))
    for text, a, b in zip(texts, plain.tolist(), prefixed.tolist()):
        if text is None:
            assert a == b == b""
        else:
            assert a == hashlib.sha1(reference(text).encode()).digest().rstrip(b"\x00")
            assert b == hashlib.sha1(f"13\x00{reference(text)}".encode()).digest().rstrip(b"\x00")
    assert hex12(plain[:3]) == [hashlib.sha1(reference(t).encode()).hexdigest()[:12] for t in texts[:3]]


def test_row_store_reads_any_rows_in_any_order(tmp_path):
    store = RowStore(tmp_path)
    rows = [[f"{column} {i}" if i % 7 else None for column in TEXT_COLUMNS] for i in range(2500)]
    for start in range(0, len(rows), 600):  # several batches
        batch = rows[start:start + 600]
        zeros = np.zeros(len(batch), dtype="S20")
        store.append({c: [r[k] for r in batch] for k, c in enumerate(TEXT_COLUMNS)}, 0, np.zeros(len(batch)),
                     {"query": zeros, "positive": zeros, "negative": zeros, "anchor": zeros})
    store.finish()
    picks = np.random.default_rng(0).integers(0, len(rows), 700)
    got = store.read(picks, ("positive_text", "query"))
    assert got["positive_text"] == [rows[i][TEXT_COLUMNS.index("positive_text")] for i in picks]
    assert got["query"] == [rows[i][0] for i in picks]
    assert store.read(np.array([], dtype=np.int64), ("query",)) == {"query": []}


@pytest.mark.parametrize("kind", ["parquet", "jsonl", "folder"])
def test_local_sources_leave_no_copy_in_the_datasets_cache(tmp_path, monkeypatch, kind):
    import datasets

    cache = tmp_path / "cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    folder = fixtures.nordic_embedding(tmp_path / "nordic")
    path = {"parquet": folder / "data" / "train-00000-of-00001.parquet", "folder": folder}.get(kind)
    if kind == "jsonl":
        path = fixtures.write_sample_beir(tmp_path / "beir", n=4) / "nli.jsonl"
    assert len(load_source(SourceSpec(name="x", path=str(path)))) > 0
    left = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) if cache.exists() else 0
    assert left < 4096, sorted(cache.rglob("*"))


def test_progress_names_rows_read_and_kept(tmp_path, caplog):
    import logging

    from norsparse.splits import build_splits

    folder = fixtures.noropenbookqa(tmp_path / "obqa")
    spec = SourceSpec(name="obqa", path=str(folder), subset="nb", splits={"train": "train", "test": "test"},
                      columns={"query": "question_stem", "positive": "fact"})
    with caplog.at_level(logging.INFO, logger="norsparse.splits"):
        build_splits({"obqa": load_source(spec)}, {"obqa": {"min_chars": 3, "max_chars": 8000}}, 0.1, 0.2, 13)
    assert "source obqa: read 16 rows, 14 kept after the empty and length checks" in caplog.text


def test_json_lines_are_those_of_json_dumps(tmp_path):
    import io
    import json

    from norsparse.splits import _write_json_lines

    texts = random_texts(500, seed=2) + ['"sitat"', "back\\slash", "tab\there", "nul\x00", "\x1f", "æøå \u2028 \U0001F600"]
    rows = [{"_id": f"id-{i}", "title": texts[-i - 1], "text": t} for i, t in enumerate(texts)]
    out = io.BytesIO()
    _write_json_lines(out, {k: pa.array([r[k] for r in rows], type=pa.string()) for k in ("_id", "title", "text")})
    assert out.getvalue().decode() == "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
