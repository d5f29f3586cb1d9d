"""Resume after a crash: a real `dvc repro` killed with SIGKILL during train, then run again."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_e2e import make_repo, run

pytestmark = pytest.mark.e2e

# 30 steps, a checkpoint every 5: room to kill twice at different points
RESUMABLE = {"train": {"epochs": 1, "max_steps": 30, "eval_steps": 5, "save_steps": 5, "keep_checkpoints": 0}}


def env():
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def complete(repo: Path) -> list[int]:
    return sorted(int(p.parent.name.rsplit("-", 1)[1]) for p in repo.glob("models/checkpoints/*/checkpoint-*/norsparse_complete"))


def repro_killed_after(repo: Path, step: int, log: Path) -> list[int]:
    """Start `dvc repro train`; SIGKILL its whole process group as soon as checkpoint ``step`` is complete."""
    with log.open("w") as out:
        process = subprocess.Popen(["dvc", "repro", "train"], cwd=repo, stdout=out, stderr=subprocess.STDOUT,
                                   env=env(), start_new_session=True)
        deadline = time.monotonic() + 600
        while step not in complete(repo):
            assert process.poll() is None, f"dvc repro ended before checkpoint {step}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        kill_tree(process.pid)
        process.wait()
    return complete(repo)


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant (DVC's stage runs in a shell below it), children first seen first."""
    import psutil

    parent = psutil.Process(pid)
    for process in [parent, *parent.children(recursive=True)]:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass


def resumed_from(output: str) -> list[int]:
    return [int(s) for s in re.findall(r"resuming from \S+ \(step (\d+)\)", output)]


def dev_ndcg(repo: Path) -> float:
    from sentence_transformers import SparseEncoder

    from norsparse.training import ir_evaluator

    model = SparseEncoder(str(repo / "models/trained"), trust_remote_code=True)
    return ir_evaluator(repo / "data/prepared/dev", 16)(model)["dev_dot_ndcg@10"]


def leftovers(repo: Path) -> list[str]:
    found = [p for p in repo.rglob(".*tmp*") if ".git" not in p.parts and ".dvc" not in p.parts]
    found += [p for p in repo.glob("models/checkpoints/*/checkpoint-*") if not (p / "norsparse_complete").exists()]
    return [str(p.relative_to(repo)) for p in found]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("resume") / "straight", RESUMABLE)
    run(["dvc", "repro", "train"], repo)
    return repo


def test_killed_twice_resumes_from_the_last_complete_checkpoint(tmp_path, uninterrupted):
    repo = make_repo(tmp_path / "killed", RESUMABLE)
    first = repro_killed_after(repo, 5, tmp_path / "first.log")
    second = repro_killed_after(repo, 20, tmp_path / "second.log")
    second_log = (tmp_path / "second.log").read_text()
    assert resumed_from(second_log) == [first[-1]], second_log[-3000:]

    final = run(["dvc", "repro", "train"], repo)
    assert resumed_from(final.stdout + final.stderr) == [second[-1]]
    assert dev_ndcg(repo) == pytest.approx(dev_ndcg(uninterrupted), abs=0.01)
    assert leftovers(repo) == []
    # one curve: every logged step once, in order, up to the last step
    loss = (repo / "metrics/train/plots/metrics/train/loss.tsv").read_text().splitlines()[1:]
    steps = [int(line.split("\t")[0]) for line in loss]
    assert steps == sorted(set(steps)) and steps[-1] == 30
    # a finished run keeps no checkpoints (keep_checkpoints: 0), only what it was keyed on
    assert [p.name for p in repo.glob("models/checkpoints/*/*")] == ["run.json"]
    assert "train:" not in run(["dvc", "status", "train"], repo).stdout  # DVC recorded the resumed run as done


def test_another_experiment_never_resumes_a_foreign_checkpoint(tmp_path):
    repo = make_repo(tmp_path / "two", RESUMABLE)
    repro_killed_after(repo, 5, tmp_path / "a.log")
    (foreign,) = [p.name for p in (repo / "models/checkpoints").iterdir()]
    other = run(["dvc", "exp", "run", "train", "-S", "train.seed=7"], repo)
    output = other.stdout + other.stderr
    assert resumed_from(output) == [] and "Resuming from step" not in output
    assert foreign not in [p.name for p in (repo / "models/checkpoints").iterdir()]  # dropped once B finished


def test_two_processes_train_one_model_with_one_curve_and_resume(tmp_path):
    # It hung until 2026-12-03: the two processes drew batches of different datasets, one with a negative column
    # and one without, so their all_gathers of gathered in-batch negatives no longer paired up.
    # train.nproc_per_node=2: the stage relaunches itself under torchrun; on CPU the processes talk over gloo
    repo = make_repo(tmp_path / "ddp", {"train": {"epochs": 1, "max_steps": 12, "eval_steps": 3, "save_steps": 3,
                                                 "nproc_per_node": 2, "gather_across_devices": True}})
    killed = repro_killed_after(repo, 3, tmp_path / "ddp.log")
    assert "relaunching under torchrun" in (tmp_path / "ddp.log").read_text()
    final = run(["dvc", "repro", "train"], repo)
    output = final.stdout + final.stderr
    assert resumed_from(output) == [killed[-1]]
    assert output.count("saved the trained splade model") == 1  # rank 0 alone saves
    assert (repo / "models/trained/modules.json").exists() and leftovers(repo) == []
    loss = (repo / "metrics/train/plots/metrics/train/loss.tsv").read_text().splitlines()[1:]
    steps = [int(line.split("\t")[0]) for line in loss]
    assert steps == sorted(set(steps)) and steps[-1] == 12  # one curve, no step logged twice
