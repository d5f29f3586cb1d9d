"""Training: device and precision, datasets, the dev evaluator, trainer arguments and dvclive.

The story is the one from sentence-transformers' examples (model, data, loss,
evaluator, arguments, trainer, save); this module holds the pieces that depend on
the host and on params so that ``stages/train.py`` can tell it top to bottom.
"""
from __future__ import annotations

import contextlib
import csv
import logging
import os
import sys
from pathlib import Path

import pandas as pd
import torch
from transformers import TrainerCallback

from .beir import load_beir
from .params import Params
from .stage import StageError

log = logging.getLogger(__name__)

# What dvclive tracks while training: trainer log key -> metric name (plots under metrics/train/plots).
TRACKED = {
    "loss": "train/loss",
    "learning_rate": "train/learning_rate",
    "eval_dev_dot_ndcg@10": "dev/ndcg@10",
    "eval_dev_dot_mrr@10": "dev/mrr@10",
    "eval_dev_query_active_dims": "dev/query_active_dims",
    "eval_dev_corpus_active_dims": "dev/document_active_dims",
    "eval_dev_avg_flops": "dev/avg_flops",
}


BEST_METRIC = "eval_dev_dot_ndcg@10"


def select_device(preference: str = "auto") -> str:
    """CUDA > MPS > CPU, or the device asked for (which must exist)."""
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
        "cpu": True,
    }
    if preference == "auto":
        return next(name for name in ("cuda", "mps", "cpu") if available[name])
    if not available[preference]:
        raise StageError(f"train.device is {preference!r} but no {preference} device is available on this host; "
                         "allowed values: auto, cuda, mps, cpu")
    return preference


def distributed() -> bool:
    """Whether this process is one of several that torchrun (or accelerate) started."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def gathered(params: Params) -> bool:
    """Whether this run gathers in-batch negatives from several processes."""
    return params.train.gather_across_devices and distributed()


def launch_under_torchrun(nproc: int) -> None:
    """Run this stage again as ``nproc`` processes under torchrun (DDP), with the same arguments; exit with its status.

    ``--standalone`` picks a free rendezvous port on this host, so the one-line cmd in dvc.yaml stays as it is.
    """
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "stages.train", *sys.argv[1:]]
    log.info("train.nproc_per_node is %d: relaunching under torchrun: %s", nproc, " ".join(command[1:]))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)


def quiet_other_processes() -> None:
    """Under torchrun, only the first process logs below WARNING: one process tells the story."""
    if int(os.environ.get("RANK", "0")) != 0:
        logging.getLogger().setLevel(logging.WARNING)


class _NoLive:
    """What the processes other than the first get instead of dvclive: they log nothing."""

    step = 0
    summary: dict = {}

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


@contextlib.contextmanager
def rank_zero_live(folder: Path, resume: bool):
    """dvclive on the first process only (resumed when the run resumes); a no-op on the others."""
    if int(os.environ.get("RANK", "0")) != 0:
        yield _NoLive()
        return
    from dvclive import Live

    with Live(str(folder), dvcyaml=False, save_dvc_exp=False, resume=resume) as live:
        yield live


def _mps_bf16() -> bool:
    try:
        torch.ones(1, dtype=torch.bfloat16, device="mps") + 1
        return True
    except Exception:  # noqa: BLE001 - any failure means no bf16 here
        return False


def select_precision(device: str, preference: str = "auto") -> str:
    """bf16 where the device supports it, fp16 on older CUDA GPUs, fp32 on CPU."""
    if preference != "auto":
        if preference == "fp16" and device != "cuda":
            raise StageError(f"train.precision fp16 needs a CUDA device, not {device}")
        return preference
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device == "mps":
        return "bf16" if _mps_bf16() else "fp32"
    return "fp32"


def training_datasets(train: pd.DataFrame, same_columns: bool = False):
    """One dataset per source, so that batches never mix sources (and the sampler can balance them).

    A source whose rows only partly have a negative becomes two datasets:
    ``<source>`` (anchor, positive) and ``<source>+negatives`` (anchor, positive, negative).

    ``same_columns`` (in-batch negatives gathered across processes): every dataset gets the same columns, the
    negative only if every row has one. The processes of one step draw batches of different datasets and
    gather each column's embeddings from one another; with a column more on one process than on another, the
    gathers no longer pair up and training hangs.
    """
    from datasets import Dataset, DatasetDict

    if same_columns:
        columns = ["anchor", "positive", "negative"] if train["negative"].notna().all() else ["anchor", "positive"]
        if len(columns) == 2 and train["negative"].notna().any():
            log.warning("train.gather_across_devices: %d of %d training rows have a negative, not all; training on "
                        "(anchor, positive) only, with the negatives of the other processes' batches",
                        int(train["negative"].notna().sum()), len(train))
        return DatasetDict({source: Dataset.from_pandas(rows[columns], preserve_index=False)
                            for source, rows in train.groupby("source", sort=True)})
    parts = {}
    for source, rows in train.groupby("source", sort=True):
        with_negative = rows["negative"].notna()
        if with_negative.any():
            parts[f"{source}+negatives"] = Dataset.from_pandas(
                rows.loc[with_negative, ["anchor", "positive", "negative"]], preserve_index=False)
        if (~with_negative).any():
            parts[source] = Dataset.from_pandas(rows.loc[~with_negative, ["anchor", "positive"]], preserve_index=False)
    return DatasetDict(parts)


def ir_evaluator(folder: Path, batch_size: int, name: str = "dev"):
    from sentence_transformers.sparse_encoder.evaluation import SparseInformationRetrievalEvaluator

    data = load_beir(folder)
    return SparseInformationRetrievalEvaluator(
        queries=data.queries, corpus=data.documents(), relevant_docs=data.relevant(),
        name=name, batch_size=batch_size, show_progress_bar=False, write_csv=False,
        mrr_at_k=[10], ndcg_at_k=[10], accuracy_at_k=[1], precision_recall_at_k=[10, 100], map_at_k=[100],
    )


class DvcLiveLogger(TrainerCallback):
    """Logs the tracked metrics to dvclive at the trainer's global step, so loss and dev curves share an x axis."""

    def __init__(self, live):
        self.live = live

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        tracked = {TRACKED[k]: float(v) for k, v in logs.items() if k in TRACKED}
        if not tracked:
            return
        self.live.step = state.global_step
        for name, value in tracked.items():
            self.live.log_metric(name, value)
        self.live.make_summary()


def untrained_score(live_dir: Path) -> float | None:
    """Dev NDCG@10 of the untrained model: step 0 of the run's dev curve (dvclive's log, kept across a resume)."""
    curve = Path(live_dir) / "plots" / "metrics" / f"{TRACKED[BEST_METRIC]}.tsv"
    if not curve.exists():
        return None
    with curve.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    name = TRACKED[BEST_METRIC].rsplit("/", 1)[-1]
    return next((float(row[name]) for row in rows if row["step"] == "0"), None)


def training_arguments(params: Params, output_dir: Path, device: str, precision: str, extra: dict):
    from sentence_transformers.base.sampler import BatchSamplers, MultiDatasetBatchSamplers
    from sentence_transformers.sparse_encoder import SparseEncoderTrainingArguments

    t = params.train
    return SparseEncoderTrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=params.architecture_params().learning_rate,
        warmup_ratio=t.warmup_ratio,
        seed=t.seed,
        full_determinism=t.deterministic,  # deterministic torch kernels: same params, same model
        data_seed=t.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device == "cpu",
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        multi_dataset_batch_sampler=MultiDatasetBatchSamplers(params.data.sampling),
        eval_strategy="steps",
        eval_steps=t.eval_steps,
        logging_steps=max(1, t.eval_steps // 4),
        # the trained model is the checkpoint with the best dev NDCG@10, not simply the last one
        # checkpoints: what a crashed run resumes from, and where the best dev checkpoint comes from
        save_strategy="steps",
        save_steps=t.save_steps or t.eval_steps,
        save_total_limit=max(2, t.keep_checkpoints),
        load_best_model_at_end=t.select_best,
        metric_for_best_model=BEST_METRIC if t.select_best else None,
        greater_is_better=True if t.select_best else None,
        activation_checkpointing=t.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if t.gradient_checkpointing else None,
        dataloader_num_workers=t.dataloader_num_workers,
        # gathered in-batch negatives need batches of one size on every process (all_gather pairs equal shapes)
        dataloader_drop_last=gathered(params),
        dataloader_pin_memory=device == "cuda",
        ddp_backend=("gloo" if device == "cpu" else None) if distributed() else None,
        report_to="none",  # dvclive is attached explicitly (DvcLiveLogger), with our own metric names
        disable_tqdm=False,
        **extra,
    )
