"""SparsityFilter: the last module of every norsparse model.

It zeroes the dimensions of special tokens (BOS, EOS, PAD, CLS, SEP, MASK, UNK),
which are not words and must never count as active (NorBERT4's head prepends a
fixed BOS row that would otherwise be active in every vector), and every value
whose magnitude is below ``threshold``: the inference threshold that the
``calibrate`` stage chooses. Queries may have their own, lower ``query_threshold``
(``None``: the same as documents): a query's max-pooled weights come from few
tokens, so where all weights sit high (NorBERT4's soft cap kept), the threshold
that makes documents 99% sparse would leave queries empty. sentence-transformers
passes ``task="query"`` or ``task="document"`` from ``encode_query`` and
``encode_document`` (this module declares ``task`` in ``forward_kwargs``);
without a task the document threshold applies. sentence-transformers prunes only by top-k
(``max_active_dims``); this module is how a value threshold travels with a model.

This file is self-contained (it imports only torch and sentence-transformers):
norsparse copies it into every saved model folder, so that

    SparseEncoder("path/to/model", trust_remote_code=True)

emits the thresholded vectors without norsparse installed.
"""
from __future__ import annotations

import torch
from sentence_transformers.base.modules.module import Module


class SparsityFilter(Module):
    config_keys: list[str] = ["threshold", "masked_token_ids", "query_threshold"]
    forward_kwargs: set[str] = {"task"}

    def __init__(self, threshold: float = 0.0, masked_token_ids: list[int] | None = None,
                 query_threshold: float | None = None) -> None:
        super().__init__()
        if threshold < 0 or (query_threshold is not None and query_threshold < 0):
            raise ValueError(f"thresholds must be >= 0, got {threshold} and {query_threshold}")
        self.threshold = float(threshold)
        self.query_threshold = None if query_threshold is None else float(query_threshold)
        self.masked_token_ids = sorted({int(i) for i in (masked_token_ids or [])})

    def threshold_for(self, task: str | None) -> float:
        return self.query_threshold if task == "query" and self.query_threshold is not None else self.threshold

    def forward(self, features: dict[str, torch.Tensor], task: str | None = None, **kwargs) -> dict[str, torch.Tensor]:
        embedding = features["sentence_embedding"]
        keep = torch.ones(embedding.shape[-1], dtype=torch.bool, device=embedding.device)
        masked = [i for i in self.masked_token_ids if i < embedding.shape[-1]]
        if masked:
            keep[masked] = False
        embedding = embedding * keep.to(embedding.dtype)
        threshold = self.threshold_for(task or features.get("task"))
        if threshold > 0:
            embedding = embedding * (embedding.abs() >= threshold).to(embedding.dtype)
        features["sentence_embedding"] = embedding
        return features

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        self.save_config(output_path)

    def __repr__(self) -> str:
        query = "" if self.query_threshold is None else f", query_threshold={self.query_threshold}"
        return f"SparsityFilter(threshold={self.threshold}{query}, masked_token_ids={self.masked_token_ids})"
