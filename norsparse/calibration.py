"""Calibration: the inference threshold that buys sparsity at a bounded cost in NDCG@10.

Each candidate threshold is set on the model's SparsityFilter and the dev split is
evaluated through the model itself, so the active dimensions reported for the
chosen threshold are exactly those the calibrated model emits. Candidates are the
``calibrate.thresholds`` grid plus quantiles of the non-zero document values, so
that the sweep covers any architecture's value scale.
"""
from __future__ import annotations

import logging

import torch

from .model_io import filter_module

log = logging.getLogger(__name__)
QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def value_quantiles(model, documents: list[str], batch_size: int) -> list[float]:
    """Quantiles of the non-zero values of the documents' vectors (at threshold 0)."""
    embeddings = model.encode_document(documents, batch_size=batch_size, convert_to_tensor=True, convert_to_sparse_tensor=False)
    values = embeddings[embeddings != 0].abs().float()
    if values.numel() == 0:
        return []
    if values.numel() > 1_000_000:
        values = values[torch.randperm(values.numel(), generator=torch.Generator().manual_seed(0))[:1_000_000]]
    return [round(float(v), 6) for v in torch.quantile(values, torch.tensor(QUANTILES))]


def sweep(model, evaluator, thresholds: list[float]) -> list[dict]:
    """NDCG@10 and active dimensions on the dev split at each threshold."""
    sparsity = filter_module(model)
    original = sparsity.threshold
    curve = []
    try:
        for threshold in sorted(set(thresholds)):
            sparsity.threshold = float(threshold)
            scores = evaluator(model)
            point = {
                "threshold": float(threshold),
                "ndcg@10": float(scores[f"{evaluator.name}_dot_ndcg@10"]),
                "query_active_dims": float(scores[f"{evaluator.name}_query_active_dims"]),
                "document_active_dims": float(scores[f"{evaluator.name}_corpus_active_dims"]),
            }
            log.info("threshold %.4g: NDCG@10 %.4f, active dims %.1f (query) / %.1f (document)",
                     threshold, point["ndcg@10"], point["query_active_dims"], point["document_active_dims"])
            curve.append(point)
    finally:
        sparsity.threshold = original
    return curve


def choose(curve: list[dict], max_ndcg_drop: float) -> dict:
    """The largest threshold whose NDCG@10 is within ``max_ndcg_drop`` of the unthresholded model's."""
    reference = next(p for p in curve if p["threshold"] == 0.0)
    allowed = [p for p in curve if p["ndcg@10"] >= reference["ndcg@10"] - max_ndcg_drop]
    chosen = max(allowed, key=lambda p: p["threshold"])
    return {
        "threshold": chosen["threshold"],
        "max_ndcg_drop": max_ndcg_drop,
        "ndcg@10": chosen["ndcg@10"],
        "ndcg@10_unthresholded": reference["ndcg@10"],
        "query_active_dims": chosen["query_active_dims"],
        "document_active_dims": chosen["document_active_dims"],
        "query_active_dims_unthresholded": reference["query_active_dims"],
        "document_active_dims_unthresholded": reference["document_active_dims"],
    }
