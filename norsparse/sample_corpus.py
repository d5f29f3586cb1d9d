"""Facts about the shipped Norwegian sample corpus, and its data card.

``data/sample/README.md`` is generated from the data by ``norsparse data-card``
(never typed by hand): counts, topics, how much queries paraphrase their
passages, and the BM25 NDCG@10 on the test split that ``prepare`` makes with the
default params, beside the trained default model's score from
``metrics/eval.json``. The tests check that the card matches the data.
"""
from __future__ import annotations

import json
import re
import statistics
import tempfile
from collections import Counter
from pathlib import Path

from .beir import load_beir, read_jsonl
from .params import load_params
from .splits import prepare_sources

SAMPLE = Path("data/sample")
WORD = re.compile(r"\w+", re.UNICODE)
# Function words that mark Norwegian Bokmål text (and are rare in Danish/Swedish/English).
QUESTION_WORDS = {"hva", "hvor", "hvordan", "hvorfor", "hvem", "hvilke", "hvilken", "hvilket", "når", "kan", "er", "finnes",
                  "må", "bør", "skal", "gjelder", "trenger", "får", "blir", "har", "fungerer", "hvis"}


def is_question(query: str) -> bool:
    """A question rather than a keyword query: it ends in '?' or starts with a question word."""
    first = words(query)[:1]
    return query.strip().endswith("?") or bool(first and first[0] in QUESTION_WORDS)


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def stopwords() -> set[str]:
    from bm25s.stopwords import STOPWORDS_NORWEGIAN

    return set(STOPWORDS_NORWEGIAN)


def query_overlap(folder: Path = SAMPLE) -> dict[str, float]:
    """Median share of a query's words (all, and content words) found in its first relevant passage."""
    data = load_beir(folder)
    stop = stopwords()
    shares_all, shares_content = [], []
    for qid, docs in data.qrels.items():
        relevant = next(d for d, s in docs.items() if s > 0)
        passage = set(words(data.corpus[relevant]["title"] + " " + data.corpus[relevant]["text"]))
        query = words(data.queries[qid])
        content = [w for w in query if w not in stop]
        shares_all.append(sum(w in passage for w in query) / max(1, len(query)))
        if content:
            shares_content.append(sum(w in passage for w in content) / len(content))
    return {"all_words": statistics.median(shares_all), "content_words": statistics.median(shares_content)}


def corpus_facts(folder: Path = SAMPLE) -> dict:
    data = load_beir(folder)
    corpus_rows = read_jsonl(folder / "corpus.jsonl")
    nli = read_jsonl(folder / "nli.jsonl", ("anchor", "positive", "negative"))
    hard = [line.split("\t") for line in (folder / "hard_negatives.tsv").read_text(encoding="utf-8").splitlines()[1:] if line]
    lengths = [len(words(doc["text"])) for doc in data.corpus.values()]
    topics = Counter(row.get("topic", "?") for row in corpus_rows)
    questions = sum(is_question(q) for q in data.queries.values())
    return {
        "passages": len(data.corpus),
        "queries": len(data.queries),
        "qrels": sum(len(d) for d in data.qrels.values()),
        "queries_with_hard_negatives": len({q for q, _ in hard}),
        "hard_negative_pairs": len(hard),
        "nli_triplets": len(nli),
        "topics": dict(sorted(topics.items())),
        "passage_words": {"min": min(lengths), "median": statistics.median(lengths), "max": max(lengths)},
        "question_share": round(questions / len(data.queries), 3),
        "overlap": query_overlap(folder),
    }


def bm25_test_ndcg(params_path: Path = Path("params.yaml")) -> dict:
    """BM25 (mteb's bm25s baseline) on the test split that prepare makes from the shipped sample with these params."""
    from .evaluation import beir_task, bm25_scores

    params = load_params(params_path)
    shipped = [s for s in params.data.sources if Path(s.path).resolve().is_relative_to(SAMPLE.resolve())]
    with prepare_sources(params.data, shipped) as prepared, tempfile.TemporaryDirectory() as tmp:
        prepared.write_evaluation("test", Path(tmp) / "test")
        summary = prepared.summary()
        scores, _ = bm25_scores([beir_task(Path(tmp) / "test", "NorsparseSampleTest")])
    return {"ndcg@10": round(scores["NorsparseSampleTest"]["ndcg@10"], 4),
            "test_queries": summary["test_queries"], "test_passages": summary["test_corpus"]}


def data_card(facts: dict, bm25: dict, model_score: dict | None) -> str:
    topic_rows = "\n".join(f"| {topic} | {count} |" for topic, count in facts["topics"].items())
    model_line = (
        f"| trained default model ({model_score['run_name']}) | {model_score['ndcg@10']:.4f} |"
        if model_score else "| trained default model | run `dvc repro`, then `norsparse data-card` |"
    )
    return f"""# Norwegian sample retrieval corpus

Original Norwegian Bokmål text written for this project: passages, search queries and NLI triplets on
{len(facts['topics'])} everyday and encyclopedic topics. Nothing was copied or translated from an existing
corpus, encyclopedia or website. It is the default data of the norsparse pipeline, small enough to train
and evaluate on a laptop CPU in minutes.

This card is generated by `norsparse data-card` from the files beside it; do not edit it by hand.

- **Licence:** Apache-2.0, like the rest of the project.
- **How it was written:** topic by topic, passages were written in clusters of neighbouring subjects (several
  fjords, related laws, vitamins) so that passages share vocabulary without answering the same questions. Queries
  were written the way people search — {100 * facts['question_share']:.0f}% questions, the rest keyword queries — and
  paraphrase their passage (synonyms, other inflections, compounds split or joined). Each query names the
  passages that answer it (`qrels.tsv`) and, for many, same-topic passages that share its words but do not answer
  it (`hard_negatives.tsv`). Every topic was checked for counts, overlap and BM25 difficulty while it was written.

## Files

| file | content |
|---|---|
| `corpus.jsonl` | {facts['passages']} passages: `_id`, `title`, `text`, `topic` ({facts['passage_words']['min']}–{facts['passage_words']['max']} words, median {facts['passage_words']['median']:.0f}) |
| `queries.jsonl` | {facts['queries']} queries: `_id`, `text` |
| `qrels.tsv` | {facts['qrels']} relevance judgements: `query-id`, `corpus-id`, `score` |
| `hard_negatives.tsv` | {facts['hard_negative_pairs']} hard negatives for {facts['queries_with_hard_negatives']} queries: `query-id`, `corpus-id` |
| `nli.jsonl` | {facts['nli_triplets']} NLI triplets: `anchor`, `positive` (entailed), `negative` (contradicts) |

## Topics

| topic | passages |
|---|---|
{topic_rows}

## How hard it is

- Median share of a query's words that occur in its relevant passage: {facts['overlap']['all_words']:.2f}
  (content words only: {facts['overlap']['content_words']:.2f}).
- The `prepare` stage splits it by passage groups (default params: {bm25['test_queries']} test queries over
  {bm25['test_passages']} passages). NDCG@10 on that test split:

| system | NDCG@10 |
|---|---|
| BM25 (bm25s, Norwegian stemmer and stopwords, via mteb) | {bm25['ndcg@10']:.4f} |
{model_line}
"""


def model_score(metrics: Path = Path("metrics/eval.json")) -> dict | None:
    if not metrics.exists():
        return None
    report = json.loads(metrics.read_text(encoding="utf-8"))
    return {"ndcg@10": report["test"]["model"]["ndcg@10"], "run_name": report.get("run_name", "")}


def write_data_card(folder: Path = SAMPLE, params_path: Path = Path("params.yaml")) -> Path:
    card = data_card(corpus_facts(folder), bm25_test_ndcg(params_path), model_score())
    path = folder / "README.md"
    path.write_text(card, encoding="utf-8")
    return path
