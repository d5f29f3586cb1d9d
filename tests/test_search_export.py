"""norsparse search (matched tokens), export to the engines' formats, the fast inference-free query encoder."""
import json
import math
import shutil
import zipfile
from pathlib import Path
from urllib.parse import unquote

import pytest
import torch

from conftest import ROOT
from norsparse import cli
from norsparse.beir import DataError, read_jsonl, write_jsonl
from norsparse.export import FIELD, export, index_into_qdrant, safe_token
from norsparse.model_io import UntrustedCodeError, open_model
from norsparse.query_encoder import NotInferenceFree, StaticQueryEncoder
from norsparse.search import SparseIndex, format_hits, load_corpus, load_queries


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """A slice of the shipped sample corpus as a BEIR folder: 150 passages and the queries about them."""
    folder = tmp_path_factory.mktemp("sample")
    corpus = read_jsonl(ROOT / "data/sample/corpus.jsonl")[:150]
    ids = {row["_id"] for row in corpus}
    qrels = [line.split("\t") for line in (ROOT / "data/sample/qrels.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    wanted = {q for q, d, _ in qrels if d in ids}
    queries = [row for row in read_jsonl(ROOT / "data/sample/queries.jsonl") if row["_id"] in wanted][:40]
    write_jsonl(folder / "corpus.jsonl", corpus)
    write_jsonl(folder / "queries.jsonl", queries)
    return folder


@pytest.fixture(scope="module")
def splade(tiny_splade):
    return open_model(tiny_splade)


@pytest.fixture(scope="module")
def inference_free(tiny_inference_free):
    return open_model(tiny_inference_free)


# ---------------------------------------------------------------- corpus and trust


def test_corpus_from_a_beir_folder_or_a_jsonl_file(tmp_path, sample):
    corpus = load_corpus(sample)
    assert len(corpus) == 150 and all(isinstance(text, str) and text for text in corpus.values())
    write_jsonl(tmp_path / "passages.jsonl", [{"text": "Oslo er hovedstaden."}, {"id": 7, "title": "Fjord", "text": "Lang."}])
    assert load_corpus(tmp_path / "passages.jsonl") == {"1": "Oslo er hovedstaden.", "7": "Fjord Lang."}
    with pytest.raises(DataError, match="no such corpus"):
        load_corpus(tmp_path / "missing.jsonl")
    assert len(load_queries(sample)) == 40 and load_queries(tmp_path) == {}


def test_code_that_norsparse_did_not_write_needs_the_flag(tiny_splade, tmp_path):
    changed = tmp_path / "changed"
    shutil.copytree(tiny_splade, changed)
    (changed / "sparsity_filter.py").write_text((changed / "sparsity_filter.py").read_text() + "\n# edited\n")
    with pytest.raises(UntrustedCodeError, match="--trust-remote-code"):
        open_model(changed)
    assert cli.main(["encode", str(changed), "Oslo"]) == 2
    assert open_model(changed, trust_remote_code=True) is not None
    assert cli.main(["encode", str(changed), "Oslo", "--trust-remote-code"]) == 0


# ---------------------------------------------------------------- search


def test_search_ranks_by_dot_product_and_explains_the_score(splade, sample):
    corpus = load_corpus(sample)
    index = SparseIndex(splade, corpus, show_progress_bar=False)
    query = next(iter(load_queries(sample).values()))
    hits = index.search(query, top_k=5, explain_tokens=None)
    expected = splade.similarity(splade.encode_query([query]), splade.encode_document([hits[0].text]))[0, 0]
    assert hits[0].score == pytest.approx(float(expected), rel=1e-4)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    for hit in hits:
        assert sum(m.contribution for m in hit.matches) == pytest.approx(hit.score, rel=1e-4, abs=1e-5)
        assert [m.contribution for m in hit.matches] == sorted((m.contribution for m in hit.matches), reverse=True)
        in_text = set(splade.tokenizer(hit.text, add_special_tokens=False)["input_ids"])
        for match in hit.matches:
            token_id = splade.tokenizer.convert_tokens_to_ids(match.token)
            assert match.document_expansion == (token_id not in in_text)
    text = format_hits(query, hits)
    assert "matched:" in text and hits[0].doc_id in text


def test_search_command_indexes_once_and_answers_each_query(tiny_splade, sample, capsys, monkeypatch):
    queries = list(load_queries(sample).values())[:2]
    assert cli.main(["search", str(tiny_splade), str(sample), *queries, "-k", "3", "--json", "-q"]) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert [a["query"] for a in answers] == queries
    assert all(len(a["hits"]) == 3 and a["hits"][0]["matches"] for a in answers)
    assert {"token", "query_weight", "document_weight", "contribution", "query_expansion", "document_expansion"} <= set(answers[0]["hits"][0]["matches"][0])
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(queries[0] + "\n\n"))  # no QUERY: one per line from stdin
    assert cli.main(["search", str(tiny_splade), str(sample), "-q"]) == 0
    assert "matched:" in capsys.readouterr().out


# ---------------------------------------------------------------- the fast inference-free query encoder


def test_fast_query_encoder_equals_encode_query(inference_free, sample):
    fast = StaticQueryEncoder.from_model(inference_free)
    queries = list(load_queries(sample).values()) + ["Hva er hovedstaden i Norge?", "", "x" * 3000]
    vectors = inference_free.encode_query(queries, convert_to_tensor=True, convert_to_sparse_tensor=False)
    for query, vector in zip(queries, vectors):
        expected = {int(i): float(vector[i]) for i in vector.nonzero().flatten()}
        got = fast.encode(query)
        assert got.keys() == expected.keys(), query
        assert all(got[i] == pytest.approx(expected[i], rel=1e-6) for i in got)
    special = set(inference_free[len(inference_free) - 1].masked_token_ids)
    assert special and not special & set().union(*(fast.encode(q) for q in queries))


def test_fast_path_is_what_search_uses_for_inference_free_models(inference_free, splade, sample):
    index = SparseIndex(inference_free, load_corpus(sample), show_progress_bar=False)
    assert index.fast is not None
    queries = list(load_queries(sample).values())[:5]
    slow = inference_free.encode_query(queries, convert_to_tensor=True, convert_to_sparse_tensor=False)
    assert torch.allclose(index.encode_queries(queries).to_dense(), slow.cpu(), atol=1e-6)
    with pytest.raises(NotInferenceFree):
        StaticQueryEncoder.from_model(splade)


# ---------------------------------------------------------------- export


def _assert_same_ranking(theirs: list[tuple[str, float]], mine: list[tuple[str, float]]) -> None:
    """The same documents in the same order with the same scores (float32 rounding aside); where the ids at a
    rank differ, the two documents must be tied in our own scores."""
    mine = sorted(mine, key=lambda x: -x[1])
    assert len(theirs) == len(mine)
    own = dict(mine)
    for (their_id, their_score), (my_id, my_score) in zip(theirs, mine):
        assert their_score == pytest.approx(my_score, rel=1e-5, abs=1e-6)
        if their_id != my_id:
            assert own[their_id] == pytest.approx(my_score, rel=1e-5, abs=1e-6), (their_id, my_id)


@pytest.mark.parametrize("which", ["splade", "inference_free"])
def test_qdrant_round_trip_gives_the_projects_own_ranking(which, request, sample, tmp_path):
    from qdrant_client import QdrantClient, models

    model = request.getfixturevalue(which)
    corpus, queries = load_corpus(sample), load_queries(sample)
    manifest = export(model, corpus, tmp_path, "qdrant", queries=queries, top_k=len(corpus), show_progress_bar=False)
    assert manifest["documents"] == len(corpus) and manifest["non_positive_weights_dropped"] == 0
    client = QdrantClient(":memory:")  # embedded local mode: the client API a Qdrant cluster serves
    assert index_into_qdrant(tmp_path, client, "test") == len(corpus)
    index = SparseIndex(model, corpus, show_progress_bar=False)
    own = index.scores(index.encode_queries(list(queries.values())))
    for row, line in enumerate(read_jsonl(tmp_path / "queries.jsonl")):
        body = line["body"]
        result = client.query_points("test", query=models.SparseVector(**body["query"]), using=body["using"],
                                     limit=body["limit"], with_payload=True).points
        theirs = [(p.payload["doc_id"], p.score) for p in result]
        mine = [(index.ids[i], s) for i, s in enumerate(own[row].tolist()) if s > 0]  # Qdrant returns matches only
        _assert_same_ranking(theirs, mine)


def _check_bulk(path: Path, index: str, field_type: str) -> list[dict]:
    """POST /_bulk NDJSON: an action line ({"index": {"_index", "_id"}}) then the document, each on one line."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines and len(lines) % 2 == 0
    sources = []
    for action, source in zip(lines[::2], lines[1::2]):
        action, source = json.loads(action), json.loads(source)
        assert set(action) == {"index"} and action["index"]["_index"] == index and isinstance(action["index"]["_id"], str)
        assert set(source) == {"text", FIELD} and isinstance(source["text"], str)
        _check_features(source[FIELD], field_type)
        sources.append(source)
    return sources


def _check_features(features: dict, field_type: str) -> None:
    # rank_features (OpenSearch, Elasticsearch) and sparse_vector (Elasticsearch): "a hash with string keys and
    # strictly positive numeric values"; single-valued; a dot in a feature name is read as an object path
    assert isinstance(features, dict) and features, field_type
    for name, weight in features.items():
        assert isinstance(name, str) and name and "." not in name, name
        assert isinstance(weight, float) and math.isfinite(weight) and weight > 0, (name, weight)


@pytest.mark.parametrize("fmt,field_type", [("opensearch", "rank_features"), ("elasticsearch", "sparse_vector")])
def test_opensearch_and_elasticsearch_exports_follow_the_documented_schema(fmt, field_type, splade, sample, tmp_path):
    corpus, queries = load_corpus(sample), load_queries(sample)
    manifest = export(splade, corpus, tmp_path, fmt, queries=queries, index="nor", show_progress_bar=False)
    mapping = json.loads((tmp_path / "mapping.json").read_text())
    assert mapping == {"mappings": {"properties": {"text": {"type": "text"}, FIELD: {"type": field_type}}}}
    sources = _check_bulk(tmp_path / "bulk.ndjson", "nor", field_type)
    assert len(sources) == len(corpus) == manifest["documents"]
    # the escaped names decode to the model's own tokens and weights
    vector = splade.encode_document([sources[0]["text"]], convert_to_tensor=True, convert_to_sparse_tensor=False)[0]
    decoded = {unquote(name): weight for name, weight in sources[0][FIELD].items()}
    assert decoded == pytest.approx(dict(splade.decode(vector)), rel=1e-6)
    for line in read_jsonl(tmp_path / "queries.jsonl"):
        body = line["body"]
        assert body["size"] == 10
        if fmt == "opensearch":  # neural_sparse: {"<rank_features_field>": {"query_tokens": {"<token>": <weight>}}}
            (field, clause), = body["query"]["neural_sparse"].items()
            assert field == FIELD and set(clause) == {"query_tokens"}
            tokens = clause["query_tokens"]
        else:  # sparse_vector: {"field": ..., "query_vector": {"<token>": <weight>}} (8.15+), unpruned
            clause = body["query"]["sparse_vector"]
            assert clause["field"] == FIELD and clause["prune"] is False
            tokens = clause["query_vector"]
        _check_features(tokens, field_type)
    assert json.loads((tmp_path / "query.json").read_text()) == read_jsonl(tmp_path / "queries.jsonl")[0]["body"]


def test_escaped_token_names_are_reversible_and_distinct(splade):
    vocabulary = list(splade.tokenizer.get_vocab()) + [".", "...", "%2E", "a.b%", "##."]
    escaped = [safe_token(token) for token in vocabulary]
    assert all("." not in name for name in escaped)
    assert [unquote(name) for name in escaped] == vocabulary
    assert len(set(escaped)) == len(set(vocabulary))


def test_jsonl_export_is_token_to_weight(splade, sample, tmp_path):
    export(splade, load_corpus(sample), tmp_path, "jsonl", show_progress_bar=False)
    rows = read_jsonl(tmp_path / "documents.jsonl")
    assert len(rows) == 150 and set(rows[0]) == {"_id", "vector"}
    assert all(isinstance(t, str) and w > 0 for row in rows for t, w in row["vector"].items())


def test_inference_free_export_carries_the_query_side_for_doc_only_mode(inference_free, sample, tmp_path):
    manifest = export(inference_free, load_corpus(sample), tmp_path, "opensearch", show_progress_bar=False)
    package = tmp_path / "query_encoder"
    idf = json.loads((package / "idf.json").read_text())
    assert idf and all(isinstance(w, float) and w > 0 for w in idf.values())
    special = set(inference_free.tokenizer.all_special_tokens)
    assert not special & set(idf)  # special tokens never weigh
    assert min(idf.values()) >= 0.5  # the calibrated threshold of the model is applied
    with zipfile.ZipFile(tmp_path / "query_encoder.zip") as zipped:
        assert sorted(zipped.namelist()) == ["idf.json", "tokenizer.json"]
    register = json.loads((tmp_path / "register_tokenizer.json").read_text())
    assert register["function_name"] == "SPARSE_TOKENIZE" and register["model_content_hash_value"] == manifest["query_encoder"]["zip_sha256"]
    # the package alone (no torch model) weights queries as the model does, apart from tokens the engine cannot match
    packaged, exact = StaticQueryEncoder.from_folder(package), StaticQueryEncoder.from_model(inference_free)
    unservable = {inference_free.tokenizer.convert_tokens_to_ids(t) for t in manifest["query_encoder"]["left_out_needing_escape"]}
    for query in load_queries(sample).values():
        want = {i: w for i, w in exact.encode(query).items() if i not in unservable and w > 0}
        assert packaged.encode(query) == pytest.approx(want, rel=1e-6)


def test_latency_benchmark_runs_both_paths_side_by_side(tiny_inference_free, sample, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("query_latency", ROOT / "benchmarks/query_latency.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    import os

    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    threads = torch.get_num_threads()
    try:
        assert benchmark.main([str(tiny_inference_free), "--queries", str(sample), "--rounds", "1"]) == 0
    finally:
        torch.set_num_threads(threads)  # the benchmark pins the process to one core and one torch thread
        if affinity:
            os.sched_setaffinity(0, affinity)
    out = capsys.readouterr().out
    assert "sentence-transformers encode_query" in out and "StaticQueryEncoder.encode (fast)" in out
    assert "outputs identical on 40/40 queries" in out
