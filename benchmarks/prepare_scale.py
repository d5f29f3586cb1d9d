"""Wall time and peak memory of the real ``prepare`` stage on N synthetic rows in DDSC's layout.

DDSC's nordic embedding data (``DDSC/nordic-embedding-training-data``) has ``query``, ``positive`` and
``negative`` columns with passages of about 60-120 words. This script writes such a parquet file
(deterministic, Norwegian-looking words; a few rows share a passage or repeat a pair, as real data
does), then runs ``python -m stages.prepare`` on it in a fresh working folder with the project's
``params.yaml`` (only ``data.sources`` replaced), one N after the other, and prints a table:

    python benchmarks/prepare_scale.py                       # N = 100k, 300k, 1M
    python benchmarks/prepare_scale.py --rows 20000 --keep   # one small run, keep the folder

Peak RSS is the child's own ``ru_maxrss`` (``os.wait4``), so each N is measured alone. The datasets
cache of each run is a folder of its own, whose size after the run is printed: local sources must not
leave a copy there.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parents[1]
SYLLABLES = ["fjor", "by", "en", "et", "sko", "gen", "hav", "øy", "dal", "fjell", "elv", "ås", "vik", "nes", "lia",
             "kirke", "gård", "sted", "land", "bok", "tid", "år", "dag", "natt", "vær", "snø", "regn", "vind", "sol",
             "stein", "tre", "blad", "mål", "ord", "lov", "rett", "hus", "vei", "bro", "båt", "tog", "bil", "kar", "te"]
ENDINGS = ["", "", "en", "et", "ene", "er", "ers", "lig", "ing", "ane", "s"]


def vocabulary(size: int, rng: np.random.Generator) -> np.ndarray:
    words = {"".join(rng.choice(SYLLABLES, rng.integers(1, 4))) + rng.choice(ENDINGS) for _ in range(size * 2)}
    return np.array(sorted(words)[:size], dtype=object)


def texts(rng: np.random.Generator, words: np.ndarray, count: int, low: int, high: int, end: str) -> list[str]:
    lengths = rng.integers(low, high + 1, count)
    picks = rng.integers(0, len(words), (count, high))
    return [" ".join(words[row[:n]]).capitalize() + end for row, n in zip(picks, lengths)]


def write_source(path: Path, rows: int, seed: int = 0, chunk: int = 50_000) -> None:
    """``rows`` rows of query / positive / negative; 2% share an earlier row's passage, 1% repeat a pair."""
    rng = np.random.default_rng(seed)
    words = vocabulary(30_000, rng)
    schema = pa.schema([("query", pa.string()), ("positive", pa.string()), ("negative", pa.string()),
                        ("language", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            query = texts(rng, words, n, 4, 12, "?")
            positive = texts(rng, words, n, 60, 120, ".")
            negative = texts(rng, words, n, 60, 120, ".")
            for i in np.flatnonzero(rng.random(n) < 0.03)[1:]:
                j = int(rng.integers(0, i))
                positive[i] = positive[j]
                if rng.random() < 1 / 3:
                    query[i] = query[j]
            writer.write_table(pa.table({"query": query, "positive": positive, "negative": negative,
                                         "language": ["norwegian"] * n}, schema=schema))


def head(source: Path, target: Path, rows: int) -> None:
    with pq.ParquetWriter(target, pq.ParquetFile(source).schema_arrow) as writer:
        left = rows
        for batch in pq.ParquetFile(source).iter_batches(batch_size=50_000):
            writer.write_batch(batch.slice(0, left))
            left -= min(left, batch.num_rows)
            if not left:
                break


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run_prepare(work: Path, source: Path, distractors) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["data"]["sources"] = [{"name": "nordic-synthetic", "path": str(source)}]
    if distractors is not None:
        params["data"]["distractors"] = distractors
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    cache = work / "hf-datasets-cache"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_DATASETS_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    with open(work / "prepare.log", "w") as log:
        child = subprocess.Popen([sys.executable, "-m", "stages.prepare"], cwd=work, env=env, stdout=log, stderr=log)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"prepare failed; see {work / 'prepare.log'}:\n" + (work / "prepare.log").read_text()[-3000:])
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss * 1024, "outputs": folder_bytes(work / "data" / "prepared"),
            "cache": folder_bytes(cache) if cache.exists() else 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--distractors", default=None, help="override data.distractors (default: params.yaml's)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    args = parser.parse_args()
    distractors = None if args.distractors is None else (args.distractors if args.distractors == "all" else int(args.distractors))
    base = args.workdir or Path(tempfile.mkdtemp(prefix="prepare-scale-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        largest = base / f"ddsc-{max(args.rows)}.parquet"
        if not largest.exists():  # a kept --workdir reuses its source (the data are deterministic)
            started = time.perf_counter()
            write_source(largest, max(args.rows))
            print(f"generated {max(args.rows)} rows ({largest.stat().st_size / 2**20:.0f} MiB parquet) in "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
        results = []
        for rows in sorted(args.rows):
            source = largest if rows == max(args.rows) else base / f"ddsc-{rows}.parquet"
            if source != largest and not source.exists():
                head(largest, source, rows)
            work = base / f"run-{rows}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            load = os.getloadavg()[0]
            result = run_prepare(work, source, distractors)
            result["load"] = (load + os.getloadavg()[0]) / 2
            results.append((rows, source.stat().st_size, result))
            print(f"{rows} rows: {result['wall']:.1f} s wall, {result['cpu']:.1f} s CPU, peak RSS "
                  f"{result['rss'] / 2**30:.2f} GiB", flush=True)
            shutil.rmtree(work / "data", ignore_errors=True)
        print(f"\n{os.cpu_count()} CPUs; load average = other work on the machine while the run went on")
        print("| rows | input parquet | wall | CPU (user+sys) | peak RSS | outputs written | datasets cache left | load average |")
        print("|---|---|---|---|---|---|---|---|")
        for rows, size, r in results:
            print(f"| {rows:,} | {size / 2**20:.0f} MiB | {r['wall']:.1f} s | {r['cpu']:.1f} s | {r['rss'] / 2**30:.2f} GiB | "
                  f"{r['outputs'] / 2**20:.0f} MiB | {r['cache'] / 2**10:.0f} KiB | {r['load']:.1f} |")
        if len(results) > 1:
            (n0, s0, r0), (n1, s1, r1) = results[0], results[-1]
            print(f"\nfrom {n0:,} to {n1:,} rows ({n1 / n0:.1f}x data): wall x{r1['wall'] / r0['wall']:.1f}, "
                  f"CPU x{r1['cpu'] / r0['cpu']:.1f}, peak RSS x{r1['rss'] / r0['rss']:.2f}; marginal memory "
                  f"{(r1['rss'] - r0['rss']) / (n1 - n0):.0f} bytes per row against {(s1 - s0) / (n1 - n0):.0f} bytes "
                  "of compressed input per row")
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
