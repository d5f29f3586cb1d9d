"""The three sparse architectures, each built from the patched base model.

* ``splade``: the masked-LM head over every token, max-pooled through
  ``log1p(relu(x))`` (``Transformer(fill-mask)`` + ``SpladePooling``), trained with
  ``SpladeLoss`` (in-batch negatives plus FLOPS regularisers on queries and documents).
* ``inference-free-splade``: a ``Router`` whose query route is a
  ``SparseStaticEmbedding`` (one learned weight per vocabulary token, no
  transformer at query time, initialised with IDF) and whose document route is the
  SPLADE path; the static weights learn at a higher rate.
* ``csr``: mean-pooled hidden states through a ``SparseAutoEncoder`` (top-k), with
  ``CSRLoss`` (contrastive loss plus reconstruction).

All three end in ``SparsityFilter``, which masks special-token dimensions and
later carries the calibrated threshold.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import torch

from .params import Params
from .sparsity_filter import SparsityFilter


def base_info(base: Path) -> dict:
    path = Path(base) / "norsparse_base.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run the patch stage first (dvc repro patch)")
    return json.loads(path.read_text(encoding="utf-8"))


def _remote_kwargs(trust: bool) -> dict:
    return {
        "model_kwargs": {"trust_remote_code": trust},
        "config_kwargs": {"trust_remote_code": trust},
        "processor_kwargs": {"trust_remote_code": trust},
    }


def splade_modules(base: Path, max_seq_length: int, pooling: str = "max") -> list:
    from sentence_transformers.sparse_encoder.modules import SpladePooling, Transformer

    info = base_info(base)
    mlm = Transformer(str(base), transformer_task="fill-mask", max_seq_length=max_seq_length, **_remote_kwargs(info["trust_remote_code"]))
    return [mlm, SpladePooling(pooling_strategy=pooling)]


def splade_encoder(base: Path, max_seq_length: int, pooling: str = "max"):
    """A SPLADE SparseEncoder on ``base``: fill-mask Transformer, SpladePooling, special-token mask."""
    from sentence_transformers import SparseEncoder

    info = base_info(base)
    return SparseEncoder(modules=splade_modules(base, max_seq_length, pooling) + [SparsityFilter(0.0, info["special_token_ids"])],
                         similarity_fn_name="dot", trust_remote_code=info["trust_remote_code"])


def idf_weights(tokenizer, documents: list[str]) -> torch.Tensor:
    """BM25-style IDF per vocabulary token over the training documents (unseen tokens get the highest)."""
    df: Counter = Counter()
    for ids in tokenizer(documents, add_special_tokens=False)["input_ids"]:
        df.update(set(ids))
    n = len(documents)
    weights = torch.full((len(tokenizer),), math.log(1 + (n + 0.5) / 0.5))
    for token, count in df.items():
        weights[token] = math.log(1 + (n - count + 0.5) / (count + 0.5))
    return weights


def build_model(params: Params, base: Path, documents: list[str]):
    """A fresh SparseEncoder of the architecture that ``model.architecture`` names."""
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sentence_transformer.modules import Pooling
    from sentence_transformers.sparse_encoder.modules import Router, SparseAutoEncoder, SparseStaticEmbedding, Transformer

    info = base_info(base)
    special = info["special_token_ids"]
    architecture = params.model.architecture
    max_len = params.train.max_seq_length
    if architecture == "splade":
        return splade_encoder(base, max_len, params.train.splade.pooling_strategy)
    if architecture == "inference-free-splade":
        document = splade_modules(base, max_len)
        tokenizer = document[0].tokenizer
        query = SparseStaticEmbedding(tokenizer=tokenizer, weight=idf_weights(tokenizer, documents), frozen=False)
        modules = [Router.for_query_document(query_modules=[query], document_modules=document), SparsityFilter(0.0, special)]
    elif architecture == "csr":
        encoder = Transformer(str(base), transformer_task="feature-extraction", max_seq_length=max_len,
                              **_remote_kwargs(info["trust_remote_code"]))
        dim = encoder.get_embedding_dimension()
        csr = params.train.csr
        modules = [
            encoder,
            Pooling(dim, pooling_mode="mean"),
            SparseAutoEncoder(input_dim=dim, hidden_dim=dim * csr.hidden_multiplier, k=csr.k, k_aux=csr.k_aux),
            SparsityFilter(0.0, []),  # latent dimensions are not tokens: nothing to mask
        ]
    else:  # the schema makes this unreachable
        raise ValueError(f"unknown architecture {architecture!r}")
    return SparseEncoder(modules=modules, similarity_fn_name="dot", trust_remote_code=info["trust_remote_code"])


def build_loss(params: Params, model):
    from sentence_transformers.sparse_encoder.losses import CSRLoss, SparseMultipleNegativesRankingLoss, SpladeLoss

    arch = params.architecture_params()
    ranking = SparseMultipleNegativesRankingLoss(model, gather_across_devices=params.train.gather_across_devices)
    if params.model.architecture == "csr":
        return CSRLoss(model, loss=ranking, beta=arch.beta, gamma=arch.gamma)
    return SpladeLoss(
        model, loss=ranking,
        query_regularizer_weight=arch.query_regularizer_weight,
        document_regularizer_weight=arch.document_regularizer_weight,
    )


def trainer_options(params: Params) -> dict:
    """Architecture-specific training arguments: Router column mapping, per-module learning rates."""
    if params.model.architecture != "inference-free-splade":
        return {}
    return {
        "router_mapping": {"anchor": "query", "positive": "document", "negative": "document"},
        # the query route's SparseStaticEmbedding: one weight per vocabulary token, learning faster
        "learning_rate_mapping": {r"sub_modules\.query\.0\.weight$": params.train.inference_free_splade.static_learning_rate},
    }
