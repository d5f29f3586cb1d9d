"""Resumable training: checkpoints keyed to the run they belong to, and a dvclive log that resumes with them.

``models/checkpoints/<run key>/checkpoint-<step>/`` holds the trainer's checkpoints. The run key is a digest of
everything the training trajectory depends on (the ``train`` params, the architecture, the sampling, and the
content of the base model, the training table and the dev split), so a checkpoint of one experiment is never
resumed by another. A checkpoint counts as complete only once the trainer has finished writing it: the
:class:`CompleteMarker` callback drops ``norsparse_complete`` into it from ``on_save``, which the trainer calls
after the model, optimizer, scheduler, RNG and trainer state are on disk. A kill in the middle of a save leaves
a folder without the marker, which the next run deletes.

The run's dvclive log lives beside its checkpoints (``<run key>/live``) and resumes with them; it becomes
``metrics/train`` only when the run has finished. DVC keeps ``models/checkpoints`` between runs
(``persist: true``), so a rerun after a crash finds both.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

from transformers import TrainerCallback

from .model_io import hoist_remote_code
from .params import Params

log = logging.getLogger(__name__)

MARKER = "norsparse_complete"
# train params that do not change what is trained: they never split one run into two
NOT_IN_KEY = {"keep_checkpoints", "dataloader_num_workers"}


def content_digest(path: Path) -> str:
    """A digest of a file's or a folder's content (names and bytes), read in blocks."""
    digest = hashlib.sha256()
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(file.relative_to(path).as_posix().encode() if file != path else b"")
        with file.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def run_key(params: Params, inputs: list[Path]) -> tuple[str, dict]:
    """The key of a training run, and what it was computed from (written next to its checkpoints)."""
    train = {k: v for k, v in params.train.model_dump(by_alias=True).items() if k not in NOT_IN_KEY}
    described = {
        "architecture": params.model.architecture,
        "sampling": params.data.sampling,
        "train": train,
        "inputs": {str(p): content_digest(p) for p in inputs},
    }
    key = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]
    return key, described


def _step(folder: Path) -> int:
    return int(folder.name.rsplit("-", 1)[1])


def checkpoints(run_dir: Path, complete: bool = True) -> list[Path]:
    """The run's checkpoint folders, oldest first; only the complete ones unless ``complete`` is false."""
    found = [p for p in Path(run_dir).glob("checkpoint-*") if p.is_dir() and p.name.rsplit("-", 1)[1].isdigit()]
    return sorted((p for p in found if not complete or (p / MARKER).exists()), key=_step)


def prepare_run_dir(root: Path, key: str, described: dict) -> tuple[Path, Path | None]:
    """The run's checkpoint folder, with the debris of a killed save removed; and the checkpoint to resume from."""
    run_dir = Path(root) / key
    complete = checkpoints(run_dir)
    if os.environ.get("RANK", "0") == "0":  # under torchrun the first process tidies up; all resume alike
        run_dir.mkdir(parents=True, exist_ok=True)
        for partial in set(checkpoints(run_dir, complete=False)) - set(complete):
            log.warning("removing %s: a save that did not finish", partial)
            shutil.rmtree(partial, ignore_errors=True)
        (run_dir / "run.json").write_text(json.dumps(described, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return run_dir, complete[-1] if complete else None


def finish_run(root: Path, key: str, keep: int) -> None:
    """After a finished run: keep its last ``keep`` checkpoints, and drop the checkpoints of other runs."""
    run_dir = Path(root) / key
    done = checkpoints(run_dir, complete=False)
    shutil.rmtree(run_dir / "live", ignore_errors=True)  # copied to metrics/train
    shutil.rmtree(run_dir / "eval", ignore_errors=True)  # the evaluator's scratch folder (it writes no CSV here)
    for old in done[: max(0, len(done) - keep)]:
        shutil.rmtree(old)
    for other in Path(root).iterdir():
        if other.is_dir() and other.name != key:
            log.info("removing the checkpoints of another run: %s", other)
            shutil.rmtree(other)


class CompleteMarker(TrainerCallback):
    """Marks a checkpoint complete once the trainer has written all of it (with the remote code at its root, so
    that the best checkpoint of an inference-free model loads at the end)."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                hoist_remote_code(folder)
                (folder / MARKER).write_text(f"{state.global_step}\n", encoding="utf-8")


def trim_live(folder: Path, step: int) -> None:
    """Drop what dvclive logged after ``step`` (the steps a resumed run repeats), so its curves stay one line.

    A kill can land while dvclive rewrites ``metrics.json`` or ``params.yaml``, leaving it empty; dvclive's
    resume would then fail to parse it. Such a file is replaced by ``{"step": step}`` or dropped (the run
    logs its params again), and the summary is rewritten at the next evaluation.
    """
    import yaml

    for name, load, fallback in (("metrics.json", json.loads, json.dumps({"step": step})),
                                 ("params.yaml", yaml.safe_load, None)):
        path = Path(folder) / name
        if not path.exists():
            continue
        try:
            if load(path.read_text(encoding="utf-8")) is None:
                raise ValueError("empty")
        except (ValueError, yaml.YAMLError):
            log.warning("dvclive's %s was left half-written by the kill: %s", name, "rebuilt" if fallback else "dropped")
            if fallback is None:
                path.unlink()
            else:
                path.write_text(fallback, encoding="utf-8")
    for tsv in Path(folder).glob("plots/metrics/**/*.tsv"):
        with tsv.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        if not rows or "step" not in rows[0]:
            continue
        kept = [r for r in rows if int(r["step"]) <= step]
        with tsv.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter="\t")
            writer.writeheader()
            writer.writerows(kept)
