"""Document vectors in the formats of the engines people serve from, with each engine's mapping and query body.

``norsparse export MODEL CORPUS --format F --out DIR`` writes to ``DIR``:

=================  ======================================  =====================  ==============================
format             documents                               index definition       query body (``query.json``)
=================  ======================================  =====================  ==============================
``qdrant``         ``points.jsonl``: ``SparseVector``       ``collection.json``    ``POST .../points/query``:
                   ``indices``/``values`` per point                               ``query`` + ``using``
``opensearch``     ``bulk.ndjson``: a ``rank_features``     ``mapping.json``       ``neural_sparse`` with
                   field of token -> weight                                       ``query_tokens``
``elasticsearch``  ``bulk.ndjson``: a ``sparse_vector``     ``mapping.json``       ``sparse_vector`` with
                   field of token -> weight                                       ``query_vector``
``jsonl``          ``documents.jsonl``: token -> weight     –                      –
=================  ======================================  =====================  ==============================

plus ``export.json`` (what was written, from which model, and what had to be dropped) and, when CORPUS is a
BEIR folder with queries, ``queries.jsonl``: each query with its query body for that engine.

Engines take strictly positive weights only; a non-positive weight (possible for CSR) is dropped and counted.
Elasticsearch and OpenSearch read a dot in a feature name as a path into an object and reject it, so token names
are escaped for both: ``%`` becomes ``%25`` and ``.`` becomes ``%2E`` (``urllib.parse.unquote`` reverses it).
Qdrant takes the token ids themselves. Latent dimensions (CSR) are named by their id.

For inference-free models, ``query_encoder/`` holds the query side for OpenSearch's doc-only neural sparse mode:
``tokenizer.json`` and ``idf.json`` (token -> weight, the calibrated threshold and the special-token mask applied),
zipped as ``query_encoder.zip`` with the body that registers it (``register_tokenizer.json``). The engine then
weights queries itself, with no model at query time; ``StaticQueryEncoder.from_folder`` does the same in Python.
"""
from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from pathlib import Path

import torch

from .search import Vocabulary, _to_csr, load_queries

log = logging.getLogger(__name__)

FORMATS = ("qdrant", "opensearch", "elasticsearch", "jsonl")
FIELD = "sparse"  # the vector field (OpenSearch, Elasticsearch) or named sparse vector (Qdrant)
DEFAULT_INDEX = "norsparse"


def safe_token(token: str) -> str:
    """A token name that Elasticsearch and OpenSearch accept as a feature name (no dots); reversible, injective."""
    return token.replace("%", "%25").replace(".", "%2E")


def needs_escaping(token: str) -> bool:
    return "." in token or "%" in token


class Encoded:
    """A corpus' document vectors (CSR, documents x dimensions) and the names of the dimensions."""

    def __init__(self, model, corpus: dict[str, str], batch_size: int = 32, show_progress_bar: bool = True):
        self.ids, self.texts = list(corpus), list(corpus.values())
        vectors = model.encode_document(self.texts, batch_size=batch_size, convert_to_tensor=True,
                                        convert_to_sparse_tensor=True, show_progress_bar=show_progress_bar)
        self.documents = _to_csr(vectors.cpu().float())
        vocabulary = Vocabulary(model)
        dims = self.documents.shape[1]
        self.names = vocabulary.names(list(range(dims))) if vocabulary.is_tokens else [str(i) for i in range(dims)]
        self.non_positive = 0

    def row(self, position: int) -> tuple[list[int], list[float]]:
        """A document's active dimensions and weights, strictly positive ones only (the rest counted)."""
        start, end = self.documents.crow_indices()[position:position + 2].tolist()
        indices = self.documents.col_indices()[start:end].tolist()
        values = self.documents.values()[start:end].tolist()
        kept = [(i, v) for i, v in zip(indices, values) if v > 0]
        self.non_positive += len(indices) - len(kept)
        return [i for i, _ in kept], [v for _, v in kept]


def positive(vector: torch.Tensor) -> tuple[list[int], list[float]]:
    """A single (dense or sparse) vector's strictly positive dimensions."""
    dense = vector.to_dense() if vector.is_sparse else vector
    indices = (dense > 0).nonzero().flatten().tolist()
    return indices, [float(dense[i]) for i in indices]


# ---------------------------------------------------------------- per engine


def query_body(fmt: str, indices: list[int], values: list[float], names: list[str], top_k: int = 10) -> dict:
    """The search request body for one query vector, as each engine documents it."""
    if fmt == "qdrant":  # POST /collections/{collection}/points/query
        return {"query": {"indices": indices, "values": values}, "using": FIELD, "limit": top_k, "with_payload": True}
    tokens = {safe_token(names[i]): v for i, v in zip(indices, values)}
    if fmt == "opensearch":  # GET /{index}/_search (neural-search plugin, 2.14+: raw query_tokens)
        return {"size": top_k, "query": {"neural_sparse": {FIELD: {"query_tokens": tokens}}}}
    if fmt == "elasticsearch":  # GET /{index}/_search (8.15+); prune false: the exact dot product
        return {"size": top_k, "query": {"sparse_vector": {"field": FIELD, "query_vector": tokens, "prune": False}}}
    return {"vector": {names[i]: v for i, v in zip(indices, values)}}


def index_definition(fmt: str) -> tuple[str, dict] | None:
    if fmt == "qdrant":  # PUT /collections/{collection}
        return "collection.json", {"sparse_vectors": {FIELD: {}}}
    if fmt == "opensearch":  # PUT /{index}
        return "mapping.json", {"mappings": {"properties": {"text": {"type": "text"}, FIELD: {"type": "rank_features"}}}}
    if fmt == "elasticsearch":  # PUT /{index}
        return "mapping.json", {"mappings": {"properties": {"text": {"type": "text"}, FIELD: {"type": "sparse_vector"}}}}
    return None


def _document_lines(fmt: str, encoded: Encoded, position: int, index: str) -> list[dict]:
    doc_id, text = encoded.ids[position], encoded.texts[position]
    indices, values = encoded.row(position)
    if fmt == "qdrant":  # one point of PUT /collections/{collection}/points {"points": [...]}
        return [{"id": position, "vector": {FIELD: {"indices": indices, "values": values}},
                 "payload": {"doc_id": doc_id, "text": text}}]
    if fmt in ("opensearch", "elasticsearch"):  # an action line and a source line of POST /_bulk
        return [{"index": {"_index": index, "_id": doc_id}},
                {"text": text, FIELD: {safe_token(encoded.names[i]): v for i, v in zip(indices, values)}}]
    return [{"_id": doc_id, "vector": {encoded.names[i]: v for i, v in zip(indices, values)}}]


DOCUMENT_FILES = {"qdrant": "points.jsonl", "opensearch": "bulk.ndjson", "elasticsearch": "bulk.ndjson", "jsonl": "documents.jsonl"}


def _write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def export(model, corpus: dict[str, str], out: Path, fmt: str, *, queries: dict[str, str] | None = None,
           index: str = DEFAULT_INDEX, batch_size: int = 32, top_k: int = 10, show_progress_bar: bool = True,
           model_name: str | None = None) -> dict:
    """Write the export of ``corpus`` in format ``fmt`` to ``out``; return the manifest (also ``export.json``)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    encoded = Encoded(model, corpus, batch_size, show_progress_bar)
    files = []
    with (out / DOCUMENT_FILES[fmt]).open("w", encoding="utf-8") as handle:
        for position in range(len(encoded.ids)):
            for line in _document_lines(fmt, encoded, position, index):
                handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    files.append(DOCUMENT_FILES[fmt])
    definition = index_definition(fmt)
    if definition:
        _write_json(out / definition[0], definition[1])
        files.append(definition[0])
    example = None
    if queries:
        ids = list(queries)
        vectors = model.encode_query([queries[q] for q in ids], batch_size=batch_size, convert_to_tensor=True,
                                     convert_to_sparse_tensor=True).cpu().float().coalesce()
        with (out / "queries.jsonl").open("w", encoding="utf-8") as handle:
            for row, query_id in enumerate(ids):
                body = query_body(fmt, *positive(vectors[row]), encoded.names, top_k)
                example = example or body
                handle.write(json.dumps({"_id": query_id, "text": queries[query_id], "body": body}, ensure_ascii=False) + "\n")
        files.append("queries.jsonl")
    if fmt != "jsonl":
        if example is None:
            example = query_body(fmt, *positive(model.encode_query(["Hva er hovedstaden i Norge?"], convert_to_tensor=True)[0].cpu()),
                                 encoded.names, top_k)
        _write_json(out / "query.json", example)
        files.append("query.json")
    manifest = {
        "format": fmt, "model": model_name, "documents": len(encoded.ids), "dimensions": encoded.documents.shape[1],
        "field": FIELD, "index": index if fmt != "jsonl" else None,
        "mean_active_dims": round(encoded.documents.values().numel() / max(1, len(encoded.ids)), 3),
        "non_positive_weights_dropped": encoded.non_positive,
        "token_names": ("escaped: % -> %25, . -> %2E (urllib.parse.unquote reverses it)" if fmt in ("opensearch", "elasticsearch")
                        else "token ids" if fmt == "qdrant" else "as the tokenizer writes them"),
        "threshold": _threshold(model),
    }
    try:
        manifest["query_encoder"] = write_query_encoder(model, out / "query_encoder")
        files += ["query_encoder/", "query_encoder.zip", "register_tokenizer.json"]
    except Exception as error:  # noqa: BLE001 - only inference-free models have a static query side
        from .query_encoder import NotInferenceFree

        if not isinstance(error, NotInferenceFree):
            raise
    manifest["files"] = files
    _write_json(out / "export.json", manifest)
    if encoded.non_positive:
        log.warning("dropped %d non-positive weights: the engines take strictly positive weights only", encoded.non_positive)
    return manifest


def _threshold(model) -> float | None:
    last = model[len(model) - 1]
    return float(last.threshold) if hasattr(last, "threshold") else None


def write_query_encoder(model, folder: Path) -> dict:
    """The inference-free query side as OpenSearch's doc-only mode loads it: tokenizer.json + idf.json.

    Raises ``NotInferenceFree`` for models whose queries need the transformer."""
    from .query_encoder import QUERY_ENCODER_CONFIG, _max_length, effective_weights, static_query_module

    module = static_query_module(model)
    weights = effective_weights(model)
    tokenizer = module.tokenizer
    names = tokenizer.convert_ids_to_tokens(list(weights))
    # the engine looks each query token up by its raw name in the documents' feature map, whose names are escaped:
    # a token that needs escaping can never match there, so it is left out (and counted)
    idf = {name: w for name, w in zip(names, weights.values()) if w > 0 and not needs_escaping(name)}
    unservable = sorted(name for name, w in zip(names, weights.values()) if w > 0 and needs_escaping(name))
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.backend_tokenizer.save(str(folder / "tokenizer.json"))
    _write_json(folder / "idf.json", idf)
    _write_json(folder / QUERY_ENCODER_CONFIG, {"max_length": _max_length(tokenizer), "threshold": _threshold(model),
                                                "masked_token_ids": getattr(model[len(model) - 1], "masked_token_ids", [])})
    archive = folder.parent / "query_encoder.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for name in ("tokenizer.json", "idf.json"):
            zipped.write(folder / name, name)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    _write_json(folder.parent / "register_tokenizer.json", {  # POST /_plugins/_ml/models/_register
        "name": "norsparse-query-tokenizer", "version": "1.0.0", "model_format": "TORCH_SCRIPT",
        "function_name": "SPARSE_TOKENIZE", "model_content_hash_value": digest,
        "url": "<where you serve query_encoder.zip>",
    })
    return {"tokens": len(idf), "left_out_needing_escape": unservable, "zip_sha256": digest}


def index_into_qdrant(folder: Path, client, collection: str = DEFAULT_INDEX, batch: int = 256) -> int:
    """Create ``collection`` from ``collection.json`` and upload ``points.jsonl`` (a local or remote client)."""
    from qdrant_client import models

    folder = Path(folder)
    config = json.loads((folder / "collection.json").read_text(encoding="utf-8"))
    client.create_collection(collection, vectors_config={},
                             sparse_vectors_config={name: models.SparseVectorParams(**spec) for name, spec in config["sparse_vectors"].items()})
    points, count = [], 0
    with (folder / "points.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            vector = {name: models.SparseVector(**v) for name, v in row["vector"].items()}
            points.append(models.PointStruct(id=row["id"], vector=vector, payload=row["payload"]))
            if len(points) == batch:
                client.upsert(collection, points)
                count, points = count + len(points), []
    if points:
        client.upsert(collection, points)
        count += len(points)
    return count


__all__ = ["FORMATS", "FIELD", "export", "index_into_qdrant", "load_queries", "query_body", "safe_token", "write_query_encoder"]
