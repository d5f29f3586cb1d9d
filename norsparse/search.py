"""Search a corpus with a model and show why each passage matched.

``SparseIndex`` encodes a corpus once (with a progress bar) into a sparse
document-by-dimension matrix; a query is then one encoding and one sparse
matrix-vector product. ``explain`` breaks a query-passage score into the
dimensions both vectors share: the query weight, the document weight and their
product (the contribution; the contributions sum to the score). A token that is
active in a vector but does not occur in the tokenized text is an *expansion*:
the model added it. For CSR models the dimensions are latent features, not
tokens, and are shown as ``dim:<id>``.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .beir import DataError, document_text, is_beir_folder, read_jsonl


def load_corpus(path: str | Path) -> dict[str, str]:
    """Passages to search (id -> text): a BEIR folder (its ``corpus.jsonl``) or a JSONL file of passages.

    Each JSONL row needs ``text`` and may have ``title`` and an id (``_id`` or ``id``; else its line number)."""
    path = Path(path)
    if path.is_dir():
        if not is_beir_folder(path) and not (path / "corpus.jsonl").exists():
            raise DataError(f"{path}: a folder without corpus.jsonl is not a BEIR folder")
        path = path / "corpus.jsonl"
    if not path.is_file():
        raise DataError(f"{path}: no such corpus (give a BEIR folder or a JSONL file of passages)")
    corpus: dict[str, str] = {}
    for number, row in enumerate(read_jsonl(path, ("text",)), 1):
        key = str(row.get("_id", row.get("id", number)))
        if key in corpus:
            raise DataError(f"{path}: id {key!r} appears twice")
        corpus[key] = document_text(row.get("title"), row["text"])
    if not corpus:
        raise DataError(f"{path}: no passages")
    return corpus


def load_queries(folder: str | Path) -> dict[str, str]:
    """A BEIR folder's queries (id -> text), or nothing when it has none."""
    path = Path(folder) / "queries.jsonl"
    return {str(r["_id"]): r["text"] for r in read_jsonl(path, ("_id", "text"))} if path.is_file() else {}


def _to_csr(vectors: torch.Tensor) -> torch.Tensor:
    vectors = vectors.coalesce() if vectors.is_sparse else vectors.to_sparse().coalesce()
    with warnings.catch_warnings():  # torch calls sparse CSR "beta"; construction and products are exact
        warnings.simplefilter("ignore", UserWarning)
        return vectors.to_sparse_csr()


class Vocabulary:
    """Names of a model's dimensions, and which of them a text holds (tokenized without special tokens)."""

    def __init__(self, model):
        self.tokenizer = model.tokenizer
        self.is_tokens = self.tokenizer is not None and not _is_csr(model)

    def names(self, ids: list[int]) -> list[str]:
        if not self.is_tokens:
            return [f"dim:{i}" for i in ids]
        # a head wider than the tokenizer (padded vocabularies) has dimensions without a token
        return [name if name is not None else f"dim:{i}" for i, name in zip(ids, self.tokenizer.convert_ids_to_tokens(ids))]

    def text_ids(self, text: str) -> set[int]:
        if not self.is_tokens:
            return set()
        # the whole text, truncation aside: a token the text holds is not an expansion, even past the model's window
        return set(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def _fast_encoder(model):
    from .query_encoder import NotInferenceFree, StaticQueryEncoder

    try:
        return StaticQueryEncoder.from_model(model)
    except NotInferenceFree:
        return None


def _is_csr(model) -> bool:
    return any(type(module).__name__ == "SparseAutoEncoder" for module in model.modules())


@dataclass
class Match:
    token: str
    query_weight: float
    document_weight: float
    contribution: float
    query_expansion: bool  # active in the query vector, absent from the query text
    document_expansion: bool  # active in the document vector, absent from the passage text


@dataclass
class Hit:
    rank: int
    doc_id: str
    score: float
    text: str
    matches: list[Match] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"rank": self.rank, "id": self.doc_id, "score": self.score, "text": self.text,
                "matches": [m.__dict__ for m in self.matches]}


class SparseIndex:
    """A corpus encoded once by a model; answers queries by exact dot product."""

    def __init__(self, model, corpus: dict[str, str], batch_size: int = 32, show_progress_bar: bool = True):
        self.model = model
        self.ids = list(corpus)
        self.texts = list(corpus.values())
        vectors = model.encode_document(self.texts, batch_size=batch_size, convert_to_tensor=True,
                                        convert_to_sparse_tensor=True, show_progress_bar=show_progress_bar)
        self.documents = _to_csr(vectors.cpu().float())  # documents x dimensions
        self.vocabulary = Vocabulary(model)
        self.fast = _fast_encoder(model)  # inference-free models: queries without torch (a tokenizer call and a lookup)

    def encode_queries(self, queries: list[str]) -> torch.Tensor:
        if self.fast is not None:
            rows = [self.fast.encode(q) for q in queries]
            indices = [[r for r, row in enumerate(rows) for _ in row], [i for row in rows for i in row]]
            values = [w for row in rows for w in row.values()]
            return torch.sparse_coo_tensor(indices, values, (len(queries), self.documents.shape[1]), dtype=torch.float32,
                                           check_invariants=True).coalesce()
        vectors = self.model.encode_query(queries, convert_to_tensor=True, convert_to_sparse_tensor=True)
        return vectors.cpu().float().coalesce()

    def scores(self, query_vectors: torch.Tensor) -> torch.Tensor:
        """Dot products, queries x documents (dense)."""
        return (self.documents @ query_vectors.to_dense().t()).t()

    def search(self, query: str, top_k: int = 10, explain_tokens: int | None = 10) -> list[Hit]:
        vector = self.encode_queries([query])
        scores = self.scores(vector)[0]
        top = torch.topk(scores, k=min(top_k, scores.numel()))
        dense_query = vector.to_dense()[0]
        hits = []
        for rank, (score, position) in enumerate(zip(top.values.tolist(), top.indices.tolist()), 1):
            if score <= 0:  # shares no dimension with the query: not a match
                break
            hit = Hit(rank, self.ids[position], score, self.texts[position])
            if explain_tokens != 0:
                hit.matches = self.explain(query, dense_query, position)[:explain_tokens]
            hits.append(hit)
        return hits

    def document_vector(self, position: int) -> dict[int, float]:
        start, end = self.documents.crow_indices()[position:position + 2].tolist()
        return dict(zip(self.documents.col_indices()[start:end].tolist(), self.documents.values()[start:end].tolist()))

    def explain(self, query: str, query_vector: torch.Tensor, position: int) -> list[Match]:
        """The dimensions a query and a document share, strongest contribution first."""
        document = self.document_vector(position)
        query_active = {int(i): float(query_vector[i]) for i in query_vector.nonzero().flatten().tolist()}
        shared = sorted(set(query_active) & set(document), key=lambda i: -query_active[i] * document[i])
        names = self.vocabulary.names(shared)
        in_query, in_document = self.vocabulary.text_ids(query), self.vocabulary.text_ids(self.texts[position])
        tokens = self.vocabulary.is_tokens
        return [Match(name, query_active[i], document[i], query_active[i] * document[i],
                      tokens and i not in in_query, tokens and i not in in_document)
                for i, name in zip(shared, names)]


def format_hits(query: str, hits: list[Hit], width: int = 160) -> str:
    """Human-readable results: score, id and passage, then the matched tokens (``+``: an expansion)."""
    lines = [f"query: {query}"]
    if not hits:
        return "\n".join(lines + ["  no passage shares a dimension with this query"])
    for hit in hits:
        text = hit.text if len(hit.text) <= width else hit.text[: width - 1] + "…"
        lines.append(f"{hit.rank:>3}. {hit.score:8.4f}  [{hit.doc_id}] {text}")
        if hit.matches:
            shown = "  ".join(
                f"{m.token}{'+q' if m.query_expansion else ''}{'+d' if m.document_expansion else ''} "
                f"{m.query_weight:.2f}×{m.document_weight:.2f}={m.contribution:.2f}" for m in hit.matches)
            lines.append(f"       matched: {shown}")
    lines.append("  (token q×d=contribution; +q: expansion in the query, +d: expansion in the passage, "
                 "i.e. not in its text)")
    return "\n".join(lines)


def hits_json(query: str, hits: list[Hit]) -> str:
    return json.dumps({"query": query, "hits": [h.as_dict() for h in hits]}, ensure_ascii=False)
