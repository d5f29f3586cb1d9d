"""mteb on local BEIR folders, BM25 beside it, and no stale scores from a result cache."""
import pytest

from norsparse.beir import load_beir
import yaml

import fixtures
from norsparse.architectures import build_model
from norsparse.base_model.patching import patch_base_model
from norsparse.beir import DataError
from norsparse.evaluation import active_dims, beir_task, bm25_scores, memoize_encodings, mteb_scores, task_name
from norsparse.params import parse_params


@pytest.fixture(scope="module")
def beir_folder(tmp_path_factory):
    return fixtures.write_sample_beir(tmp_path_factory.mktemp("beir") / "split", n=30, nli=0)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two SPLADE models on differently initialised GPT-BERT bases, both saved under the same name."""
    from conftest import ROOT

    built = []
    for seed in (0, 1):
        tmp = tmp_path_factory.mktemp(f"m{seed}")
        source = fixtures.gptbert_folder(tmp / "norbert4", seed=seed)
        raw = yaml.safe_load((ROOT / "params.yaml").read_text())
        raw["model"].update(base_model=str(source), trust_remote_code=True)
        params = parse_params(raw)
        (tmp / "base").mkdir()
        patch_base_model(params, [], tmp / "base")
        built.append(build_model(params, tmp / "base", ["x"]))
    return built


def test_bm25_on_a_local_beir_folder(beir_folder):
    scores = bm25_scores([beir_task(beir_folder, "FixtureTask")])[0]["FixtureTask"]
    assert set(scores) == {"ndcg@10", "mrr@10", "recall@100"}
    assert scores["ndcg@10"] > 0.9  # each query shares rare words with its passage only


def test_sparse_model_is_scored_through_mteb_without_stale_results(beir_folder, models):
    task = lambda: beir_task(beir_folder, "FixtureTask")  # noqa: E731
    first = mteb_scores(models[0], [task()], "same-name", 16)[0]["FixtureTask"]
    second = mteb_scores(models[1], [task()], "same-name", 16)[0]["FixtureTask"]
    assert 0 <= first["ndcg@10"] <= 1
    assert first != second  # a cache keyed by model name would have returned the first model's scores


def test_active_dims_count_what_the_model_emits(beir_folder, models):
    data = load_beir(beir_folder)
    dims = active_dims(models[0], list(data.queries.values()), list(data.documents().values()), 16)
    assert 0 < dims["query_active_dims"] < models[0].get_embedding_dimension()
    assert 0 < dims["document_active_dims"] < models[0].get_embedding_dimension()


def test_memoized_encodings_are_the_models_own_and_each_text_is_encoded_once(beir_folder, models):
    import copy

    import torch

    data = load_beir(beir_folder)
    queries, documents = list(data.queries.values()), list(data.documents().values())
    plain = models[0]
    model = memoize_encodings(copy.deepcopy(plain))
    task = lambda: beir_task(beir_folder, "FixtureTask")  # noqa: E731
    assert mteb_scores(model, [task()], "cached", 16)[0] == mteb_scores(plain, [task()], "plain", 16)[0]
    encoded = []
    model.forward = lambda features, **kw: encoded.append(len(features["input_ids"])) or type(plain).forward(model, features, **kw)
    again = model.encode_document(documents[::-1] + documents[:2], batch_size=16)
    assert encoded == []  # every text came from the cache
    expected = plain.encode_document(documents[::-1] + documents[:2], batch_size=16)
    assert torch.equal(again.to_dense(), expected.to_dense())
    assert active_dims(model, queries, documents, 16) == active_dims(plain, queries, documents, 16)
    assert encoded == []
    model.encode_query(["et nytt spørsmål", queries[0]], batch_size=16)
    assert encoded == [1]  # only the unseen text


def test_task_names_are_stable_and_valid(tmp_path):
    assert task_name("data/prepared/test") == "NorsparseLocalDataPreparedTest"
    with pytest.raises(DataError, match="not a BEIR folder"):
        beir_task(tmp_path)


def test_hybrid_fusion_is_tuned_on_one_split_and_beats_a_weak_system(beir_folder):
    """ranx fusion: weights chosen on the given judgements; fusing BM25 with noise keeps BM25's ranking."""
    import random

    from norsparse.beir import load_beir
    from norsparse.evaluation import hybrid_scores, tune_fusion

    qrels = load_beir(beir_folder).qrels
    _, runs = bm25_scores([beir_task(beir_folder, "FixtureTask")])
    bm25 = runs["FixtureTask"]
    rng = random.Random(0)
    noise = {q: {d: rng.random() for d in docs} for q, docs in bm25.items()}
    fusion = tune_fusion(qrels, bm25, noise, "min-max", "wsum")
    assert fusion["weights"][0] > fusion["weights"][1]  # BM25 carries the signal, the noise does not
    fused = hybrid_scores(qrels, bm25, noise, "min-max", "wsum", fusion)
    alone = hybrid_scores(qrels, bm25, noise, "min-max", "wsum", {"weights": [1.0, 0.0]})
    assert fused["ndcg@10"] >= alone["ndcg@10"] - 1e-9
    assert fused["ndcg@10"] > hybrid_scores(qrels, bm25, noise, "min-max", "wsum", {"weights": [0.0, 1.0]})["ndcg@10"]
