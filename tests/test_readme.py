"""The README's results table is the committed default run's metrics/eval.json, not numbers typed by hand."""
import json
import re

from conftest import ROOT

ROWS = {"trained SPLADE (this run)": "model", "BM25 (bm25s, Norwegian stemmer)": "bm25",
        "BM25 + SPLADE hybrid (ranx wsum, weights tuned on dev)": "hybrid", "untrained base model (as SPLADE)": "base_model"}


def test_results_table_matches_the_committed_metrics():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Results of the default run"):]
    metrics = json.loads((ROOT / "metrics/eval.json").read_text(encoding="utf-8"))
    for label, system in ROWS.items():
        row = re.search(r"^\| " + re.escape(label) + r" \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", section, re.M)
        assert row, f"README results row {label!r} is missing"
        expected = [metrics[task][system]["ndcg@10"] for task in ("test", "dev", "heldout")]
        expected.append(metrics["test"][system]["recall@100"])
        assert [float(x) for x in row.groups()] == [round(v, 3) for v in expected], label
