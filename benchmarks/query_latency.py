"""Inference-free query latency on one CPU core: sentence-transformers' encode_query beside the fast path.

    python benchmarks/query_latency.py MODEL [--queries data/prepared/test] [--rounds 20]
    python benchmarks/query_latency.py --untrained-from models/base   # no trained model needed: same cost

MODEL is an inference-free model folder (``model.architecture: inference-free-splade``). Each query is encoded
alone, as a search service does: ST's ``model.encode_query([q])`` (tokenizer, SparseStaticEmbedding, Router,
SparsityFilter, in torch) and ``StaticQueryEncoder.encode(q)`` (the Rust tokenizer and a table lookup). Both
paths run in the same process, pinned to one core with one torch thread, interleaved round by round, so that
they see the same machine. The fast path's output is checked against ST's for every query first.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_MS = 0.1


def pin_to_one_core(core: int | None) -> int | None:
    if not hasattr(os, "sched_setaffinity"):
        return None
    available = sorted(os.sched_getaffinity(0))
    chosen = core if core is not None else available[-1]
    os.sched_setaffinity(0, {chosen})
    return chosen


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def load_query_texts(path: str | None) -> list[str]:
    from norsparse.beir import read_jsonl

    candidates = [Path(path)] if path else [Path("data/prepared/test"), Path("data/sample")]
    for candidate in candidates:
        file = candidate / "queries.jsonl" if candidate.is_dir() else candidate
        if file.is_file():
            return [row["text"] for row in read_jsonl(file, ("text",))]
    raise SystemExit(f"no queries found in {', '.join(map(str, candidates))}; pass --queries")


def untrained_inference_free(base: Path):
    """The inference-free architecture on a patched base model, untrained (its query cost is the trained one's)."""
    from norsparse.architectures import build_model
    from norsparse.beir import read_jsonl
    from norsparse.params import load_params, parse_params

    raw = load_params("params.yaml").model_dump(mode="json", by_alias=True)
    raw["model"]["architecture"] = "inference-free-splade"
    documents = [row["text"] for row in read_jsonl(Path("data/sample/corpus.jsonl"), ("text",))]
    return build_model(parse_params(raw), base, documents)


def time_calls(function, queries: list[str]) -> list[float]:
    samples = []
    clock = time.perf_counter_ns
    for query in queries:
        start = clock()
        function(query)
        samples.append((clock() - start) / 1e6)  # ms
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", help="an inference-free model folder")
    parser.add_argument("--untrained-from", metavar="BASE", help="build an untrained inference-free model on this patched base")
    parser.add_argument("--queries", help="a BEIR folder or a JSONL file with a text field (default: data/prepared/test)")
    parser.add_argument("--rounds", type=int, default=20, help="passes over the queries per path (default 20)")
    parser.add_argument("--core", type=int, help="the CPU core to pin to (default: the last available)")
    parser.add_argument("--trust-remote-code", action="store_true")
    args = parser.parse_args(argv)
    if not args.model and not args.untrained_from:
        parser.error("give MODEL or --untrained-from BASE")

    core = pin_to_one_core(args.core)
    import torch

    torch.set_num_threads(1)
    from norsparse.model_io import open_model
    from norsparse.query_encoder import StaticQueryEncoder

    model = (open_model(args.model, trust_remote_code=args.trust_remote_code, device="cpu") if args.model
             else untrained_inference_free(Path(args.untrained_from)).to("cpu"))
    model.eval()
    fast = StaticQueryEncoder.from_model(model)
    queries = load_query_texts(args.queries)

    def st_path(query: str):
        return model.encode_query([query], convert_to_tensor=True, convert_to_sparse_tensor=True)

    # the two paths agree on every query before anything is timed
    mismatches = 0
    for query in queries:
        vector = model.encode_query([query], convert_to_tensor=True, convert_to_sparse_tensor=False)[0]
        expected = {int(i): float(vector[i]) for i in vector.nonzero().flatten()}
        got = fast.encode(query)
        if got.keys() != expected.keys() or any(abs(got[i] - expected[i]) > 1e-5 * max(1.0, abs(expected[i])) for i in got):
            mismatches += 1
    with torch.inference_mode():
        time_calls(st_path, queries[:50])  # warm-up
        time_calls(fast.encode, queries[:50])
        slow_samples, fast_samples = [], []
        for _ in range(args.rounds):
            slow_samples += time_calls(st_path, queries)
            fast_samples += time_calls(fast.encode, queries)

    print(f"inference-free query encoding, one query per call, {len(queries)} queries x {args.rounds} rounds, "
          f"core {core}, torch threads {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"{'path':<34} {'p50 ms':>9} {'p99 ms':>9} {'mean ms':>9}")
    for name, samples in (("sentence-transformers encode_query", slow_samples), ("StaticQueryEncoder.encode (fast)", fast_samples)):
        print(f"{name:<34} {percentile(samples, 0.5):9.4f} {percentile(samples, 0.99):9.4f} {statistics.fmean(samples):9.4f}")
    p50 = percentile(fast_samples, 0.5)
    print(f"speed-up at p50: {percentile(slow_samples, 0.5) / p50:.1f}x; fast path p50 <= {TARGET_MS} ms: "
          f"{'yes' if p50 <= TARGET_MS else 'NO'}; outputs identical on {len(queries) - mismatches}/{len(queries)} queries")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
