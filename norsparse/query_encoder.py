"""The fast query encoder of an inference-free model: one tokenizer call and a weight lookup.

An inference-free model's query route is a ``SparseStaticEmbedding``: a query's
vector is the learned weight of each vocabulary token the query holds (presence,
not counts; tokenized without special tokens, truncated to the tokenizer's
maximum length), followed by the model's ``SparsityFilter`` (special tokens
zeroed, weights below the calibrated threshold zeroed). ``StaticQueryEncoder``
computes exactly that with the Rust ``tokenizers`` backend and a precomputed
table, without torch or sentence-transformers at query time.

It loads from a model, or from the package that ``norsparse export`` writes for
OpenSearch's doc-only neural sparse mode: ``tokenizer.json`` plus ``idf.json``
(token -> weight, already filtered), the same two files the engine loads.
"""
from __future__ import annotations

import json
from pathlib import Path

QUERY_ENCODER_CONFIG = "query_encoder.json"


class NotInferenceFree(ValueError):
    """The model's query side runs a transformer: there is no static table to export or look up."""


def static_query_module(model):
    """The ``SparseStaticEmbedding`` of an inference-free model's query route."""
    first = model[0]
    routes = getattr(first, "sub_modules", None)
    query = routes["query"] if routes is not None and "query" in routes else None
    if query is None or len(query) != 1 or type(query[0]).__name__ != "SparseStaticEmbedding":
        raise NotInferenceFree("the model's query route is not a single SparseStaticEmbedding: not an inference-free model")
    return query[0]


def effective_weights(model) -> dict[int, float]:
    """Token id -> query weight after the model's SparsityFilter (special tokens and sub-threshold weights dropped)."""
    module = static_query_module(model)
    last = model[len(model) - 1]
    threshold = float(getattr(last, "threshold", 0.0))
    masked = set(getattr(last, "masked_token_ids", []))
    weights = module.weight.detach().float().cpu().tolist()
    return {i: w for i, w in enumerate(weights) if w != 0 and abs(w) >= threshold and i not in masked}


class StaticQueryEncoder:
    """Query text -> {token id: weight}, equal to the model's ``encode_query`` for inference-free models."""

    def __init__(self, tokenizer, weights: dict[int, float], max_length: int | None = None):
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self.tokenizer = tokenizer
        self.max_length = max_length
        size = max([tokenizer.get_vocab_size(with_added_tokens=True)] + [i + 1 for i in weights])
        self.table = [0.0] * size  # a list lookup per token: the cheapest there is in Python
        for token_id, weight in weights.items():
            self.table[token_id] = weight

    @classmethod
    def from_model(cls, model) -> "StaticQueryEncoder":
        module = static_query_module(model)
        hf_tokenizer = module.tokenizer
        if not getattr(hf_tokenizer, "is_fast", False):
            raise NotInferenceFree("the query tokenizer has no fast (Rust) backend")
        from tokenizers import Tokenizer

        backend = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())  # a copy: padding/truncation reset below
        return cls(backend, effective_weights(model), _max_length(hf_tokenizer))

    @classmethod
    def from_folder(cls, folder: str | Path) -> "StaticQueryEncoder":
        """Load the exported package: ``tokenizer.json``, ``idf.json`` (token -> weight), ``query_encoder.json``."""
        from tokenizers import Tokenizer

        folder = Path(folder)
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        idf = json.loads((folder / "idf.json").read_text(encoding="utf-8"))
        config = json.loads((folder / QUERY_ENCODER_CONFIG).read_text(encoding="utf-8")) if (folder / QUERY_ENCODER_CONFIG).exists() else {}
        weights = {}
        for token, weight in idf.items():
            token_id = tokenizer.token_to_id(token)
            if token_id is None:
                raise ValueError(f"{folder / 'idf.json'}: token {token!r} is not in tokenizer.json")
            weights[token_id] = float(weight)
        return cls(tokenizer, weights, config.get("max_length"))

    def token_ids(self, text: str) -> list[int]:
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        return ids[: self.max_length] if self.max_length else ids

    def encode(self, text: str) -> dict[int, float]:
        """{token id: weight} of the query's active dimensions."""
        table = self.table
        return {i: table[i] for i in set(self.token_ids(text)) if table[i]}

    def encode_tokens(self, text: str) -> dict[str, float]:
        """{token: weight}: the body of an engine's query (OpenSearch ``query_tokens``, ES ``query_vector``)."""
        return {self.tokenizer.id_to_token(i): w for i, w in self.encode(text).items()}


def _max_length(hf_tokenizer) -> int | None:
    length = getattr(hf_tokenizer, "model_max_length", None)
    return int(length) if length and length < 1_000_000 else None
