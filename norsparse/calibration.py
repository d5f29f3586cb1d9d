"""Calibration: the inference threshold that buys sparsity at a bounded cost in NDCG@10.

The dev split is encoded once, unthresholded. Because ``SparsityFilter`` is the
model's last module and zeroes every value whose magnitude is below its threshold,
applying a threshold to those vectors gives exactly what the model emits at that
threshold; each candidate is scored that way (NDCG@10, mean active dimensions of
queries and documents, and the share of zeros among the non-special dimensions).

Candidates span the model's whole value range, whatever its scale: the
``calibrate.thresholds`` grid, quantiles of the non-zero document values on a grid
that gets finer towards the top (0.1 … 0.9, 0.91 … 0.99, 0.991 … 0.999) and the
largest value itself. A model whose values all sit high (NorBERT4 with its soft cap
kept: every weight is ``log1p(30 * sigmoid(x / 7.5))``, so a fixed grid below 1 never
zeroes anything) therefore reaches 99% and 99.9% zeros as candidates. After the
grid, a bisection (``calibrate.refine_steps``) narrows the gap between the largest
admissible candidate and the next larger one.

The chosen threshold is the largest whose NDCG@10 stays within
``calibrate.max_ndcg_drop`` of the unthresholded model and that leaves at most
``calibrate.max_empty_fraction`` more queries or documents without any active
dimension (an empty document can never be retrieved, whatever NDCG says).

Queries get their own threshold where one threshold would empty them: a query's
weights are max-pooled over a few tokens, and on a model whose weights all sit high
(the soft cap kept) the threshold that makes documents 99% sparse zeroes whole
queries. ``query_threshold_cap`` is the largest query threshold that keeps the
empty queries within ``calibrate.max_empty_fraction``; each candidate ``t`` then
thresholds documents at ``t`` and queries at ``min(t, cap)``. Where ``t`` empties
no queries (the usual case), both thresholds are the same.
"""
from __future__ import annotations

import logging
import math
import warnings

import torch

from .beir import BeirData

log = logging.getLogger(__name__)
# quantiles of the non-zero document values tried as thresholds: finer towards the top, where 99% zeros lie
QUANTILES = (tuple(round(0.1 * i, 3) for i in range(1, 10)) + tuple(round(0.9 + 0.01 * i, 3) for i in range(1, 10))
             + tuple(round(0.99 + 0.001 * i, 4) for i in range(1, 10)))


class Encoded:
    """A split's query and document vectors (sparse, unthresholded) and its relevance judgements."""

    def __init__(self, model, data: BeirData, batch_size: int):
        self.query_ids = list(data.queries)
        documents = data.documents()
        self.doc_ids = list(documents)
        self.queries = model.encode_query([data.queries[q] for q in self.query_ids], batch_size=batch_size,
                                          convert_to_tensor=True, convert_to_sparse_tensor=True).coalesce().cpu()
        self.documents = model.encode_document(list(documents.values()), batch_size=batch_size,
                                               convert_to_tensor=True, convert_to_sparse_tensor=True).coalesce().cpu()
        last = model[len(model) - 1]
        # special-token dimensions are never active: they count neither as active nor as zeros
        self.masked = len([i for i in getattr(last, "masked_token_ids", []) if i < self.documents.shape[1]])
        position = {d: i for i, d in enumerate(self.doc_ids)}
        self.gains = [{position[d]: s for d, s in data.qrels.get(q, {}).items() if s > 0 and d in position} for q in self.query_ids]


def thresholded(vectors: torch.Tensor, threshold: float) -> torch.Tensor:
    """What SparsityFilter emits: every value whose magnitude is below ``threshold`` set to zero."""
    keep = (vectors.values().abs() >= threshold) & (vectors.values() != 0)
    return torch.sparse_coo_tensor(vectors.indices()[:, keep], vectors.values()[keep], vectors.shape,
                                   check_invariants=False).coalesce()


def mean_active_dims(vectors: torch.Tensor) -> float:
    return vectors.values().numel() / max(1, vectors.shape[0])


def zero_fraction(vectors: torch.Tensor, masked: int = 0) -> float:
    """Share of zeros among a vector's dimensions, special-token dimensions (``masked``) left out."""
    return 1 - mean_active_dims(vectors) / max(1, vectors.shape[1] - masked)


def empty_fraction(vectors: torch.Tensor) -> float:
    """Share of vectors with no active dimension: such a document can never be retrieved."""
    rows = vectors.indices()[0].unique().numel() if vectors.values().numel() else 0
    return 1 - rows / max(1, vectors.shape[0])


def ndcg_at_10(scores: torch.Tensor, gains: list[dict[int, int]]) -> float:
    top = torch.topk(scores, k=min(10, scores.shape[1]), dim=1).indices.tolist()
    values = []
    for ranked, relevant in zip(top, gains):
        if not relevant:
            continue
        dcg = sum(relevant.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked))
        ideal = sum(g / math.log2(rank + 2) for rank, g in enumerate(sorted(relevant.values(), reverse=True)[:10]))
        values.append(dcg / ideal)
    return sum(values) / max(1, len(values))


def value_quantiles(encoded: Encoded) -> list[float]:
    values = encoded.documents.values().abs().float()
    values = values[values > 0]
    if values.numel() == 0:
        return []
    if values.numel() > 1_000_000:
        values = values[torch.randperm(values.numel(), generator=torch.Generator().manual_seed(0))[:1_000_000]]
    quantiles = torch.quantile(values, torch.tensor(QUANTILES, dtype=values.dtype)).tolist()
    return [round(float(v), 6) for v in quantiles] + [float(values.max())]  # the top: only the largest values survive


def _scores(queries: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
    """Query-document dot products; dense when the vectors are (a capped model's are), sparse otherwise."""
    cells = documents.shape[0] * documents.shape[1]
    if documents.values().numel() > 0.05 * cells and cells <= 200_000_000:
        return queries.to_dense() @ documents.to_dense().t()
    with warnings.catch_warnings():  # torch calls its sparse-CSR path "beta"; the product is exact
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse.mm(queries, documents.t()).to_dense()


def query_threshold_cap(encoded: Encoded, max_empty_fraction: float, extra: list[float] = ()) -> float:
    """The largest query threshold (quantiles of the non-zero query values, and ``extra``) that leaves at most
    ``max_empty_fraction`` more queries without an active dimension than no threshold does."""
    values = encoded.queries.values().abs().float()
    values = values[values > 0]
    if values.numel() == 0:
        return 0.0
    if values.numel() > 1_000_000:
        values = values[torch.randperm(values.numel(), generator=torch.Generator().manual_seed(0))[:1_000_000]]
    candidates = sorted(set(torch.quantile(values, torch.tensor(QUANTILES, dtype=values.dtype)).tolist()) | set(extra) | {0.0})
    reference = empty_fraction(encoded.queries)
    allowed = [t for t in candidates if empty_fraction(thresholded(encoded.queries, t)) <= reference + max_empty_fraction]
    return round(float(max(allowed)), 6)


def measure(encoded: Encoded, threshold: float, query_cap: float | None = None) -> dict:
    """NDCG@10, active dimensions, zeros and empty vectors at one threshold.

    With ``query_cap``, queries are thresholded at ``min(threshold, query_cap)``: their own, lower threshold."""
    query_threshold = threshold if query_cap is None else min(threshold, query_cap)
    queries, documents = thresholded(encoded.queries, query_threshold), thresholded(encoded.documents, threshold)
    masked = getattr(encoded, "masked", 0)
    point = {
        "threshold": threshold,
        "query_threshold": query_threshold,
        "ndcg@10": round(ndcg_at_10(_scores(queries, documents), encoded.gains), 6),
        "query_active_dims": round(mean_active_dims(queries), 3),
        "document_active_dims": round(mean_active_dims(documents), 3),
        "query_zero_fraction": round(zero_fraction(queries, masked), 6),
        "document_zero_fraction": round(zero_fraction(documents, masked), 6),
        "empty_queries": round(empty_fraction(queries), 4),
        "empty_documents": round(empty_fraction(documents), 4),
    }
    log.info("threshold %-9.5g NDCG@10 %.4f  active dims %7.1f (query) %7.1f (document), %.2f%% document zeros",
             threshold, point["ndcg@10"], point["query_active_dims"], point["document_active_dims"],
             100 * point["document_zero_fraction"])
    return point


def sweep(encoded: Encoded, thresholds: list[float], query_cap: float | None = None) -> list[dict]:
    """NDCG@10 and mean active dimensions at each threshold (and at 0, the reference)."""
    return [measure(encoded, threshold, query_cap) for threshold in sorted(set(float(t) for t in thresholds) | {0.0})]


def admissible(point: dict, reference: dict, max_ndcg_drop: float, max_empty_fraction: float = 1.0) -> bool:
    return (point["ndcg@10"] >= reference["ndcg@10"] - max_ndcg_drop
            and point.get("empty_documents", 0) <= reference.get("empty_documents", 0) + max_empty_fraction
            and point.get("empty_queries", 0) <= reference.get("empty_queries", 0) + max_empty_fraction)


def refine(encoded: Encoded, curve: list[dict], max_ndcg_drop: float, max_empty_fraction: float = 1.0,
           steps: int = 8, query_cap: float | None = None) -> list[dict]:
    """Bisect between the largest admissible threshold and the next larger one tried, ``steps`` times.

    The curve (sorted by threshold) is returned with the new points; NDCG@10 need not fall monotonically,
    so this finds the edge of the budget next to the best candidate, not necessarily the global one."""
    curve = sorted(curve, key=lambda p: p["threshold"])
    reference = next(p for p in curve if p["threshold"] == 0.0)
    for _ in range(steps):
        best = max((p for p in curve if admissible(p, reference, max_ndcg_drop, max_empty_fraction)),
                   key=lambda p: p["threshold"])["threshold"]
        above = [p["threshold"] for p in curve if p["threshold"] > best]
        if not above:
            break
        middle = (best + min(above)) / 2
        if middle <= best or middle >= min(above):  # float resolution reached
            break
        curve = sorted(curve + [measure(encoded, middle, query_cap)], key=lambda p: p["threshold"])
    return curve


def choose(curve: list[dict], max_ndcg_drop: float, max_empty_fraction: float = 1.0) -> dict:
    """The largest threshold whose NDCG@10 is within ``max_ndcg_drop`` of the unthresholded model's,
    and that empties at most ``max_empty_fraction`` more of the queries and documents than threshold 0."""
    reference = next(p for p in curve if p["threshold"] == 0.0)
    allowed = [p for p in curve if admissible(p, reference, max_ndcg_drop, max_empty_fraction)]
    chosen = max(allowed, key=lambda p: p["threshold"])
    return {
        "threshold": chosen["threshold"],
        "query_threshold": chosen.get("query_threshold", chosen["threshold"]),
        "max_ndcg_drop": max_ndcg_drop,
        "ndcg@10": chosen["ndcg@10"],
        "ndcg@10_unthresholded": reference["ndcg@10"],
        "query_active_dims": chosen["query_active_dims"],
        "document_active_dims": chosen["document_active_dims"],
        "query_active_dims_unthresholded": reference["query_active_dims"],
        "document_active_dims_unthresholded": reference["document_active_dims"],
        **{key: chosen[key] for key in ("query_zero_fraction", "document_zero_fraction") if key in chosen},
        **{f"{key}_unthresholded": reference[key] for key in ("query_zero_fraction", "document_zero_fraction") if key in reference},
        "thresholds_tried": len(curve),
    }
