"""The shipped Norwegian sample corpus keeps the properties that make it worth training on."""
import re

import pytest

from conftest import ROOT
from norsparse.beir import load_beir, read_jsonl
from norsparse.sample_corpus import bm25_test_ndcg, corpus_facts, data_card, model_score, query_overlap, stopwords, words

SAMPLE = ROOT / "data" / "sample"


@pytest.fixture(scope="module")
def data():
    return load_beir(SAMPLE)


@pytest.fixture(scope="module")
def facts():
    return corpus_facts(SAMPLE)


def test_counts(facts):
    assert facts["passages"] >= 600
    assert facts["queries"] >= 1200
    assert len(facts["topics"]) >= 15
    assert min(facts["topics"].values()) >= 20
    assert facts["nli_triplets"] >= 500
    assert 40 <= facts["passage_words"]["min"] and facts["passage_words"]["max"] <= 150


def test_ids_unique_and_every_qrel_resolves(data):
    # load_beir already refuses duplicate ids and dangling qrels; check coverage too
    assert set(data.qrels) == set(data.queries)  # every query has a relevant passage
    relevant = {d for docs in data.qrels.values() for d, s in docs.items() if s > 0}
    assert relevant == set(data.corpus)  # and every passage answers some query


def test_no_identical_passages_or_queries(data):
    texts = [re.sub(r"\s+", " ", d["text"].lower()).strip() for d in data.corpus.values()]
    assert len(set(texts)) == len(texts)
    queries = [q.lower().strip() for q in data.queries.values()]
    assert len(set(queries)) == len(queries)


def test_titles_present(data):
    assert all(d["title"].strip() for d in data.corpus.values())


def test_text_is_norwegian(data):
    text = " ".join(d["text"] for d in data.corpus.values()).lower()
    counts = {c: text.count(c) for c in "æøå"}
    assert all(n > 500 for n in counts.values()), counts
    tokens = words(text)
    share = sum(t in {"og", "er", "som", "på", "ikke", "til", "av", "det"} for t in tokens) / len(tokens)
    assert share > 0.1  # Norwegian function words are everywhere
    # Danish/Swedish spellings of the commonest words are absent
    assert tokens.count("ikke") > 100 and tokens.count("inte") == 0 and tokens.count("hvad") == 0


def test_queries_paraphrase_rather_than_copy():
    overlap = query_overlap(SAMPLE)
    assert overlap["all_words"] <= 0.5 and overlap["content_words"] <= 0.5


def test_queries_are_questions_and_keyword_queries(facts):
    assert 0.4 <= facts["question_share"] <= 0.7


def test_hard_negatives_share_words_but_do_not_answer(data):
    rows = [line.split("\t") for line in (SAMPLE / "hard_negatives.tsv").read_text().splitlines()[1:]]
    assert len({q for q, _ in rows}) >= 0.4 * len(data.queries)  # many queries have one
    stop = stopwords()
    corpus_rows = {r["_id"]: r for r in read_jsonl(SAMPLE / "corpus.jsonl")}
    shared = 0
    for query_id, corpus_id in rows:
        assert data.qrels[query_id].get(corpus_id, 0) == 0  # not relevant
        relevant = next(iter(data.qrels[query_id]))
        assert corpus_rows[corpus_id]["topic"] == corpus_rows[relevant]["topic"]  # same topic
        query_words = {w for w in words(data.queries[query_id]) if w not in stop}
        shared += bool(query_words & set(words(data.corpus[corpus_id]["title"] + " " + data.corpus[corpus_id]["text"])))
    assert shared / len(rows) > 0.95


def test_nli_triplets_are_complete_and_distinct():
    rows = read_jsonl(SAMPLE / "nli.jsonl", ("anchor", "positive", "negative"))
    for row in rows:
        assert row["anchor"].strip() and row["positive"].strip() and row["negative"].strip()
        assert len({row["anchor"], row["positive"], row["negative"]}) == 3


@pytest.fixture(scope="module")
def bm25():
    return bm25_test_ndcg(ROOT / "params.yaml")


def test_bm25_is_a_fair_but_beatable_baseline(bm25):
    assert 0.4 <= bm25["ndcg@10"] <= 0.9
    assert bm25["test_queries"] >= 250


def test_data_card_is_generated_from_the_data(facts, bm25):
    """data/sample/README.md must be what `norsparse data-card` writes now (with the committed eval metrics)."""
    expected = data_card(facts, bm25, model_score(ROOT / "metrics" / "eval.json"))
    assert (SAMPLE / "README.md").read_text(encoding="utf-8") == expected, "run `norsparse data-card` and commit"
