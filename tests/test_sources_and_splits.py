"""Sources in the layouts users point at, and splits that never leak a passage."""
import json

import pandas as pd
import pytest

import fixtures
from norsparse.beir import DataError
from norsparse.params import SourceSpec
from norsparse.sources import check_source, load_source
from norsparse.splits import build_splits, normalize


def prepare(specs, dev=0.2, test=0.2, seed=13, min_chars=3, max_chars=8000, distractors=None):
    raw = {s.name: load_source(s) for s in specs}
    cleaning = {s.name: {"min_chars": min_chars, "max_chars": max_chars, "max_samples": s.max_samples} for s in specs}
    return build_splits(raw, cleaning, dev, test, seed, distractors)


def passages_of(prepared, split):
    """The relevant passages of a split's queries (its corpus also holds the other passages, as distractors)."""
    data = getattr(prepared, split)
    relevant = {doc for docs in data.qrels.values() for doc, score in docs.items() if score > 0}
    return {normalize(data.corpus[d]["text"]) for d in relevant}


def training_passages(prepared):
    texts = set()
    for column in ("positive", "negative"):
        texts |= {normalize(t) for t in prepared.train[column].dropna()}
    return texts


def contains_any(texts, passages):
    return any(p in t for t in texts for p in passages)


def test_sample_layout_splits_by_passage_with_no_leak(tmp_path):
    folder = fixtures.write_sample_beir(tmp_path / "sample", n=60)
    prepared = prepare([SourceSpec(name="qa", path=str(folder)),
                        SourceSpec(name="nli", path=str(folder / "nli.jsonl"), splits={"train": "train"},
                                   columns={"query": "anchor", "positive": "positive", "negative": "negative"})])
    dev, test = passages_of(prepared, "dev"), passages_of(prepared, "test")
    assert dev and test and not dev & test
    assert not contains_any(training_passages(prepared), dev | test)
    assert set(prepared.train["source"]) == {"qa", "nli"}
    assert list(prepared.train.columns) == ["anchor", "positive", "negative", "source"]
    # hard negatives travel with their queries into training
    assert prepared.train.loc[prepared.train.source == "qa", "negative"].notna().any()
    summary = prepared.summary()
    assert summary["sources"]["nli"]["dev_rows"] == 0 and summary["sources"]["nli"]["train_rows"] == 12


def test_split_is_deterministic_and_seeded(tmp_path):
    folder = fixtures.write_sample_beir(tmp_path / "sample", n=60, nli=0)
    spec = [SourceSpec(name="qa", path=str(folder))]
    a, b, c = prepare(spec), prepare(spec), prepare(spec, seed=99)
    assert a.test.corpus == b.test.corpus and a.test.qrels == b.test.qrels
    assert a.test.qrels != c.test.qrels


def test_norquad_layout_repeated_contexts_never_leak(tmp_path, in_tmp, project_params):
    """The must-show of issue 4: `dvc repro prepare` on a folder in NorQuAD's schema leaks no dev/test passage."""
    import subprocess
    import sys

    import yaml
    from conftest import ROOT

    folder = fixtures.norquad(tmp_path / "norquad", per_split={"train": 60, "validation": 12, "test": 12}, shared_contexts=7)
    # Contexts repeat across the split boundary in NorQuAD's own splits, as they do in the real data.
    spec = SourceSpec(name="norquad", path=str(folder), splits={"train": "train", "dev": "validation", "test": "test"},
                      columns={"query": "question", "positive": "context", "title": "title"})
    prepared = prepare([spec])
    evaluation = passages_of(prepared, "dev") | passages_of(prepared, "test")
    assert evaluation and not passages_of(prepared, "dev") & passages_of(prepared, "test")
    assert not contains_any(training_passages(prepared), evaluation)
    assert prepared.stats["norquad"].dropped_leak > 0  # the shared contexts were found and dropped

    # and through the real stage, as `dvc repro prepare` runs it
    params = project_params
    params["data"]["sources"] = [spec.model_dump(exclude_none=True)]
    (in_tmp / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run([sys.executable, "-m", "stages.prepare"], cwd=in_tmp, capture_output=True, text=True,
                            env={**__import__("os").environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert result.returncode == 0, result.stderr
    train = pd.read_parquet(in_tmp / "data/prepared/train.parquet")
    test_corpus = [l for l in (in_tmp / "data/prepared/test/corpus.jsonl").read_text().splitlines()]
    import json
    relevant = {line.split("\t")[1] for line in (in_tmp / "data/prepared/test/qrels/test.tsv").read_text().splitlines()[1:]}
    test_texts = {normalize(row["text"]) for row in map(json.loads, test_corpus) if row["_id"] in relevant}
    assert test_texts
    assert not any(normalize(p).endswith(t) or t in normalize(p) for p in train["positive"] for t in test_texts)


@pytest.mark.parametrize(("builder", "spec", "expect_train"), [
    (fixtures.noropenbookqa, dict(subset="nb", splits={"train": "train", "test": "test"},
                                  columns={"query": "question_stem", "positive": "fact"}), True),
    (fixtures.scandi_qa, dict(subset="no", splits={"train": "train", "dev": "val", "test": "test"},
                              columns={"query": "question", "positive": "context"}), True),
    (fixtures.all_nli_norwegian, dict(splits={"train": "train"}), True),
    (fixtures.nordic_embedding, dict(filter={"language": ["norwegian"]}), True),
    (fixtures.supervised_da, dict(splits={"train": "train", "test": "test"}, columns={"query": "query", "positive": "pos"}), True),
])
def test_recipe_sources_load_in_their_hub_schema(tmp_path, builder, spec, expect_train):
    folder = builder(tmp_path / builder.__name__)
    source = SourceSpec(name=builder.__name__.replace("_", "-"), path=str(folder), **spec)
    rows = load_source(source)
    assert len(rows) > 0
    assert rows["query"].map(lambda q: isinstance(q, str) and q).all()
    if builder is fixtures.nordic_embedding:
        assert (rows["query"].str.contains("norwegian")).all()  # the language filter applied
    if builder is fixtures.all_nli_norwegian:
        assert rows["negative_text"].notna().all()  # triplets keep their negatives


def test_empty_rows_are_dropped_and_counted(tmp_path):
    folder = fixtures.noropenbookqa(tmp_path / "obqa")
    source = SourceSpec(name="obqa", path=str(folder), subset="nb", splits={"train": "train", "test": "test"},
                        columns={"query": "question_stem", "positive": "fact"})
    prepared = build_splits({"obqa": load_source(source)}, {"obqa": {"min_chars": 3, "max_chars": 8000}}, 0.1, 0.2, 13)
    assert prepared.stats["obqa"].dropped_empty == 2  # the empty `fact` in train and in test


def test_missing_column_names_the_source_and_the_columns(tmp_path):
    folder = fixtures.norquad(tmp_path / "norquad")
    spec = SourceSpec(name="norquad", path=str(folder), columns={"query": "questions", "positive": "context"})
    with pytest.raises(DataError, match=r"source 'norquad': column 'questions' \(for query\) not found.*available columns: id, title, context, question, answers"):
        load_source(spec)


def test_unknown_split_names_the_source_and_the_splits(tmp_path):
    folder = fixtures.scandi_qa(tmp_path / "scandi")
    spec = SourceSpec(name="scandi", path=str(folder), subset="no", splits={"train": "train", "dev": "validation"},
                      columns={"query": "question", "positive": "context"})
    with pytest.raises(DataError, match="source 'scandi': split 'validation' not found; available splits: train, val, test"):
        load_source(spec)


def test_hub_id_without_revision_stops_before_loading():
    with pytest.raises(DataError, match="source 'norquad': hub dataset 'ltg/norquad' needs a pinned `revision`"):
        check_source(SourceSpec(name="norquad", path="ltg/norquad"))


def test_unreachable_hub_fails_fast_naming_the_source(monkeypatch):
    import time

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: refused at once
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    started = time.perf_counter()
    with pytest.raises(DataError, match="source 'norquad': cannot fetch hub dataset 'ltg/norquad'.*embedded default"):
        load_source(SourceSpec(name="norquad", path="ltg/norquad", revision="0" * 40))
    assert time.perf_counter() - started < 5


def test_nonexistent_local_path_is_named():
    with pytest.raises(DataError, match="source 'x': ./nowhere.jsonl is neither an existing local file"):
        check_source(SourceSpec(name="x", path="./nowhere.jsonl"))


def test_dev_and_test_are_searched_against_the_whole_collection(tmp_path):
    """data.distractors: every passage of the source is in the dev/test corpora; judgements are unchanged."""
    folder = fixtures.write_sample_beir(tmp_path / "sample", n=60, nli=0)
    spec = [SourceSpec(name="qa", path=str(folder))]
    full, own = prepare(spec), prepare(spec, distractors=0)
    every_passage = {normalize(r["text"]) for r in map(json.loads, (folder / "corpus.jsonl").read_text().splitlines())}
    assert {normalize(d["text"]) for d in full.test.corpus.values()} == every_passage
    assert len(own.test.corpus) < len(full.test.corpus)
    assert full.test.qrels == own.test.qrels and full.dev.qrels == own.dev.qrels
    assert not passages_of(full, "test") & training_passages(full)  # relevant passages still never trained on
    limited = prepare(spec, distractors=5)
    assert len(own.test.corpus) < len(limited.test.corpus) < len(full.test.corpus)


@pytest.mark.parametrize(("builder", "spec"), [
    (fixtures.noropenbookqa, dict(subset="nb", splits={"train": "train", "test": "test"}, columns={"query": "question_stem", "positive": "fact"})),
    (fixtures.scandi_qa, dict(subset="no", splits={"train": "train", "dev": "val", "test": "test"}, columns={"query": "question", "positive": "context"})),
    (fixtures.all_nli_norwegian, dict(splits={"train": "train"})),
    (fixtures.nordic_embedding, dict(filter={"language": ["norwegian"]})),
    (fixtures.supervised_da, dict(splits={"train": "train", "test": "test"}, columns={"query": "query", "positive": "pos"})),
    (fixtures.norquad, dict(splits={"train": "train", "dev": "validation", "test": "test"}, columns={"query": "question", "positive": "context"})),
])
def test_the_light_input_checks_accept_every_recipe_layout(tmp_path, builder, spec):
    from norsparse.inputs import check_source as light_check

    folder = builder(tmp_path / builder.__name__)
    assert light_check(SourceSpec(name="x", path=str(folder), **spec)) == folder
