"""How far a sparse model's own-token weights are from lexical ones, and which tokens lose the most.

    python benchmarks/lexical_gap.py                                 # models/base on data/prepared/dev
    python benchmarks/lexical_gap.py models/calibrated data/heldout  # any SparseEncoder folder, any BEIR folder

For the model's own tokenizer it prints, on one BEIR folder (the whole corpus ranked with a dot product and
scored with ranx):

* NDCG@10 of the model, of ``sqrt(BM25)`` weights over the model's tokens with IDF from the training texts
  (``data/prepared/train.parquet``; what the builtin build regresses onto), and of BM25 over the same tokens
  with the corpus's own IDF;
* for the query tokens, by how many training texts hold them: how well the model's weights correlate with
  the ``sqrt(BM25)`` ones, and their means;
* NDCG@10 when the tokens held by at most N training texts take their ``sqrt(BM25)`` weights (an oracle: it
  shows how much of the gap those tokens carry).

A folder written by ``patch`` (``models/base``) is scored as the untrained SPLADE model. Choose nothing on
the test split with it.
"""
from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BUCKETS = [(51, None), (11, 50), (3, 10), (1, 2), (0, 0)]
ORACLE_CUTS = [0, 2, 10, 50]


def token_counts(tokenizer, texts: list[str]) -> list[Counter]:
    special = set(tokenizer.all_special_ids)
    return [Counter(i for i in ids if i not in special)
            for ids in tokenizer(texts, truncation=True, max_length=256)["input_ids"]]


def bm25_matrix(counts: list[Counter], df: Counter, n: int, average: float, vocab: int, sqrt: bool,
                k1: float = 1.2, b: float = 0.75) -> np.ndarray:
    """Texts x vocabulary: each token's BM25 term weight (or its square root, as the builtin's targets)."""
    out = np.zeros((len(counts), vocab), dtype=np.float32)
    for row, count in enumerate(counts):
        norm = k1 * (1 - b + b * sum(count.values()) / average)
        for token, tf in count.items():
            weight = math.log1p((n - df.get(token, 0) + 0.5) / (df.get(token, 0) + 0.5)) * tf * (k1 + 1) / (tf + norm)
            out[row, token] = math.sqrt(weight) if sqrt else weight
    return out


def ndcg(queries: np.ndarray, documents: np.ndarray, qids: list[str], dids: list[str], qrels) -> float:
    from ranx import Run, evaluate

    scores = queries @ documents.T
    run = {}
    for i, qid in enumerate(qids):
        top = np.argsort(-scores[i], kind="stable")[:100]
        run[qid] = {dids[j]: float(scores[i, j]) + 1e-9 * (100 - rank) for rank, j in enumerate(top)}
    return float(evaluate(qrels, Run(run), "ndcg@10", make_comparable=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default="models/base")
    parser.add_argument("folder", nargs="?", default="data/prepared/dev")
    parser.add_argument("--train", default="data/prepared/train.parquet")
    args = parser.parse_args()

    import pandas as pd
    from ranx import Qrels

    from norsparse.architectures import splade_encoder
    from norsparse.beir import load_beir
    from norsparse.model_io import load_model

    model_dir = Path(args.model)
    model = splade_encoder(model_dir, 256) if (model_dir / "norsparse_base.json").exists() else load_model(model_dir)
    tokenizer = model.tokenizer
    vocab = len(tokenizer)
    train = pd.read_parquet(args.train)
    train_counts = token_counts(tokenizer, sorted({t for c in ("anchor", "positive", "negative") for t in train[c].dropna()}))
    train_df = Counter(t for count in train_counts for t in count)
    train_average = sum(sum(c.values()) for c in train_counts) / len(train_counts)

    data = load_beir(Path(args.folder))
    qids, documents = list(data.queries), data.documents()
    dids = list(documents)
    queries, passages = [data.queries[q] for q in qids], [documents[d] for d in dids]
    qrels = Qrels({q: {d: int(s) for d, s in docs.items() if s > 0} for q, docs in data.qrels.items()
                   if any(s > 0 for s in docs.values())})
    model_q = model.encode_query(queries, convert_to_sparse_tensor=True).to_dense().numpy()
    model_d = model.encode_document(passages, convert_to_sparse_tensor=True).to_dense().numpy()
    q_counts, d_counts = token_counts(tokenizer, queries), token_counts(tokenizer, passages)
    target_q = bm25_matrix(q_counts, train_df, len(train_counts), train_average, vocab, sqrt=True)
    target_d = bm25_matrix(d_counts, train_df, len(train_counts), train_average, vocab, sqrt=True)
    corpus_df = Counter(t for count in d_counts for t in count)
    corpus_average = sum(sum(c.values()) for c in d_counts) / len(d_counts)
    bm25_d = bm25_matrix(d_counts, corpus_df, len(d_counts), corpus_average, vocab, sqrt=False)
    query_tokens = (target_q > 0).astype(np.float32)

    print(f"{args.model} on {args.folder}: {len(qids)} queries, {len(dids)} passages")
    print(f"  NDCG@10  model {ndcg(model_q, model_d, qids, dids, qrels):.4f}   "
          f"sqrt(BM25) own tokens {ndcg(target_q, target_d, qids, dids, qrels):.4f}   "
          f"BM25 over the same tokens {ndcg(query_tokens, bm25_d, qids, dids, qrels):.4f}")
    own = target_q > 0
    print(f"  own query tokens active {((model_q > 0) & own).sum() / own.sum():.3f}, "
          f"vector mass on own tokens {(model_q * own).sum() / max(model_q.sum(), 1e-9):.3f}")
    df = np.array([train_df.get(t, 0) for t in range(vocab)])[None, :].repeat(len(qids), axis=0)
    print("  query tokens held by N training texts: entries, correlation with sqrt(BM25), model / target mean")
    for low, high in BUCKETS:
        chosen = own & (df >= low) & (df <= (high if high is not None else np.inf))
        if chosen.sum() < 2:
            continue
        w, t = model_q[chosen], target_q[chosen]
        corr = np.corrcoef(w, t)[0, 1] if w.std() > 0 and t.std() > 0 else float("nan")
        label = f"{low}+" if high is None else f"{low}-{high}"
        print(f"    {label:>6}: {int(chosen.sum()):5d}  {corr:6.3f}  {w.mean():.2f} / {t.mean():.2f}")
    doc_df = np.array([train_df.get(t, 0) for t in range(vocab)])
    for cut in ORACLE_CUTS:
        rare = doc_df <= cut
        q, d = model_q.copy(), model_d.copy()
        q[:, rare], d[:, rare] = target_q[:, rare], target_d[:, rare]
        print(f"  oracle: tokens held by <= {cut} training texts at sqrt(BM25): NDCG@10 {ndcg(q, d, qids, dids, qrels):.4f}")


if __name__ == "__main__":
    main()
