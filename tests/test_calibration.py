"""Threshold sweep and choice."""
import math

import pytest
import torch

from norsparse.calibration import choose, mean_active_dims, ndcg_at_10, sweep, thresholded
from norsparse.sparsity_filter import SparsityFilter


def test_thresholding_vectors_equals_what_the_filter_emits():
    torch.manual_seed(0)
    dense = torch.relu(torch.randn(6, 50))
    for threshold in (0.0, 0.1, 0.5, 1.2):
        emitted = SparsityFilter(threshold, [])({"sentence_embedding": dense.clone()})["sentence_embedding"]
        swept = thresholded(dense.to_sparse().coalesce(), threshold).to_dense()
        assert torch.equal(emitted, swept)
        assert mean_active_dims(thresholded(dense.to_sparse().coalesce(), threshold)) == (emitted != 0).sum().item() / 6


def test_ndcg_at_10_by_hand():
    scores = torch.tensor([[0.9, 0.8, 0.1], [0.1, 0.2, 0.3]])
    gains = [{1: 1}, {2: 1, 0: 1}]
    # query 0: relevant doc at rank 2 -> 1/log2(3); query 1: ranks 1 and 3 -> (1 + 1/2) / (1 + 1/log2(3))
    expected = (1 / math.log2(3) + (1 + 0.5) / (1 + 1 / math.log2(3))) / 2
    assert ndcg_at_10(scores, gains) == pytest.approx(expected)


CURVE = [
    {"threshold": 0.0, "ndcg@10": 0.60, "query_active_dims": 50, "document_active_dims": 400},
    {"threshold": 0.1, "ndcg@10": 0.605, "query_active_dims": 30, "document_active_dims": 200},
    {"threshold": 0.3, "ndcg@10": 0.592, "query_active_dims": 20, "document_active_dims": 100},
    {"threshold": 0.5, "ndcg@10": 0.55, "query_active_dims": 10, "document_active_dims": 40},
    {"threshold": 0.7, "ndcg@10": 0.595, "query_active_dims": 5, "document_active_dims": 20},
]


def test_choose_takes_the_largest_threshold_within_the_drop():
    assert choose(CURVE, 0.01)["threshold"] == 0.7
    assert choose(CURVE[:4], 0.01)["threshold"] == 0.3
    assert choose(CURVE[:4], 0.0)["threshold"] == 0.1
    choice = choose(CURVE[:4], 0.01)
    assert choice["ndcg@10_unthresholded"] == 0.60 and choice["document_active_dims"] == 100


def test_a_threshold_that_empties_documents_is_not_chosen():
    curve = [dict(p, empty_documents=0.0, empty_queries=0.0) for p in CURVE]
    curve[-1]["empty_documents"] = 0.4  # threshold 0.7: NDCG fine, but 40% of documents can never be found
    assert choose(curve, 0.01, max_empty_fraction=0.01)["threshold"] == 0.3
    assert choose(curve, 0.01, max_empty_fraction=0.5)["threshold"] == 0.7


def test_sweep_reports_fewer_dims_for_larger_thresholds():
    class Encoded:
        torch.manual_seed(1)
        queries = torch.relu(torch.randn(8, 40)).to_sparse().coalesce()
        documents = torch.relu(torch.randn(12, 40)).to_sparse().coalesce()
        gains = [{i: 1} for i in range(8)]

    curve = sweep(Encoded, [0.5, 0.1, 1.0])
    assert [p["threshold"] for p in curve] == [0.0, 0.1, 0.5, 1.0]
    dims = [p["document_active_dims"] for p in curve]
    assert dims == sorted(dims, reverse=True) and dims[0] > dims[-1]


class Capped:
    """Vectors like a capped NorBERT4 head's: every dimension active, all values high (log1p of 30 * sigmoid),
    with each query's and document's own tokens a little higher than the rest."""

    def __init__(self, n=30, dims=400, masked=5):
        generator = torch.Generator().manual_seed(0)
        floor = torch.log1p(30 * torch.sigmoid(torch.randn(n, dims, generator=generator) / 7.5 - 1.5))
        own = torch.zeros(n, dims)
        for i in range(n):  # three tokens per pair, shared by query i and document i
            own[i, 5 + 3 * i: 8 + 3 * i] = 1.0
        documents, queries = floor + own, floor.flip(0) * 0.98 + own
        documents[:, :masked] = 0  # special-token dimensions: zeroed by SparsityFilter
        queries[:, :masked] = 0
        self.documents, self.queries = documents.to_sparse().coalesce(), queries.to_sparse().coalesce()
        self.gains = [{i: 1} for i in range(n)]
        self.masked, self.own = masked, own


def test_a_capped_model_reaches_99_percent_zeros_within_the_budget():
    from norsparse.calibration import refine, value_quantiles

    encoded = Capped()
    fixed = [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0]  # all below the capped values: nothing is zeroed
    assert choose(sweep(encoded, fixed), 0.01)["document_zero_fraction"] == 0.0
    candidates = fixed + value_quantiles(encoded)
    curve = refine(encoded, sweep(encoded, candidates), 0.01, 0.01)
    choice = choose(curve, 0.01, 0.01)
    assert choice["ndcg@10"] >= choice["ndcg@10_unthresholded"] - 0.01
    assert choice["document_zero_fraction"] >= 0.99, choice
    assert choice["document_zero_fraction"] == pytest.approx(1 - choice["document_active_dims"] / (400 - 5), abs=1e-5)
    assert max(p["threshold"] for p in curve) >= float(encoded.documents.values().max())  # the whole range is spanned


def test_refine_bisects_towards_the_edge_of_the_budget():
    from norsparse.calibration import refine

    encoded = Capped()
    coarse = sweep(encoded, [1.0, 4.0])  # 1.0 keeps everything, 4.0 (above every value) empties every vector
    refined = refine(encoded, coarse, 0.01, 0.01, steps=10)
    assert len(refined) == len(coarse) + 10
    assert choose(refined, 0.01, 0.01)["threshold"] > 2.0  # well into the capped range


def test_queries_get_a_lower_threshold_where_the_documents_would_empty_them():
    from norsparse.calibration import query_threshold_cap, refine, value_quantiles

    encoded = Capped()
    # queries max-pool over few tokens: their own tokens stand out less than a document's
    floor = encoded.documents.to_dense().flip(0) - encoded.own
    encoded.queries = (floor * 0.98 + encoded.own * 0.4).to_sparse().coalesce()
    cap = query_threshold_cap(encoded, 0.01)
    assert 0 < cap < max(value_quantiles(encoded))
    curve = refine(encoded, sweep(encoded, value_quantiles(encoded), cap), 0.01, 0.01, query_cap=cap)
    choice = choose(curve, 0.01, 0.01)
    assert choice["query_threshold"] == min(choice["threshold"], cap) < choice["threshold"]
    assert choice["document_zero_fraction"] >= 0.99
    assert all(p["empty_queries"] <= 0.01 for p in curve if p["threshold"] == choice["threshold"])
