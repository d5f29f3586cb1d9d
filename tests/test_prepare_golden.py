"""prepare's outputs on the shipped sample and on every hub-schema fixture are pinned byte for byte.

The hashes in tests/golden/prepare.json were recorded from the row-wise pandas implementation before
prepare became columnar (issue 11); see tests/golden_cases.py for the cases.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import golden_cases
from norsparse.atomic import write_json
from norsparse.params import DataParams
from norsparse.splits import prepare_sources


def write_outputs(data: DataParams, out: Path) -> dict:
    """What ``stages.prepare`` writes, without its empty-split check (some fixtures have no dev split)."""
    with prepare_sources(data) as prepared:
        summary = prepared.summary()
        out.mkdir(parents=True)
        prepared.write(out)
    write_json(out / "prepare.json", summary)
    return summary


def run_case(tmp: Path, name: str) -> tuple[dict, dict]:
    block = golden_cases.cases(tmp / "fixtures")[name]
    summary = write_outputs(DataParams(**block), tmp / "out")
    return summary, golden_cases.digests(tmp / "out")


CASE_NAMES = sorted(golden_cases.load_golden()) if golden_cases.GOLDEN.exists() else []


@pytest.mark.parametrize("name", CASE_NAMES)
def test_prepared_files_are_unchanged(tmp_path, name):
    golden = golden_cases.load_golden()[name]
    summary, files = run_case(tmp_path, name)
    assert summary == golden["summary"]
    assert files == golden["files"]


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    import tempfile

    sys.path.insert(0, str(golden_cases.ROOT))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in golden_cases.cases(Path(tmp) / "names"):
            summary, files = run_case(Path(tmp) / case, case)
            results[case] = {"summary": summary, "files": files}
            print(case, summary["train_rows"], summary["dev_queries"], summary["test_queries"])
    golden_cases.GOLDEN.parent.mkdir(exist_ok=True)
    golden_cases.GOLDEN.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
