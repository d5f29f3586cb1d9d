"""train: build the architecture that model.architecture names and train it with SparseEncoderTrainer.

Outs: models/trained/ (loads with SparseEncoder(path, trust_remote_code=True)),
metrics/train/ (dvclive: loss, dev NDCG@10 and active dimensions per evaluation step),
models/checkpoints/ (kept between runs: a rerun after a crash resumes from the last complete checkpoint).
With train.nproc_per_node above 1 the stage relaunches itself under torchrun, one process per device.
"""
import logging
import shutil
from pathlib import Path

import pandas as pd

from norsparse.architectures import build_loss, build_model, trainer_options
from norsparse.atomic import atomic_dir
from norsparse.checkpoints import CompleteMarker, finish_run, prepare_run_dir, run_key, trim_live
from norsparse.model_io import save_model
from norsparse.params import Params
from norsparse.stage import run_stage
from norsparse.training import (DvcLiveLogger, distributed, gathered, ir_evaluator, launch_under_torchrun,
                                quiet_other_processes, rank_zero_live, select_device, select_precision,
                                training_arguments, training_datasets, untrained_score)

log = logging.getLogger("norsparse.train")
BASE, TRAIN, DEV = Path("models/base"), Path("data/prepared/train.parquet"), Path("data/prepared/dev")
CHECKPOINTS, LIVE = Path("models/checkpoints"), Path("metrics/train")


def main(params: Params) -> None:
    if params.train.nproc_per_node > 1 and not distributed():
        launch_under_torchrun(params.train.nproc_per_node)  # does not return
    quiet_other_processes()
    from sentence_transformers.sparse_encoder import SparseEncoderTrainer

    device = select_device(params.train.device)
    precision = select_precision(device, params.train.precision)
    log.info("training %s on %s in %s", params.model.architecture, device, precision)

    # 1. Data: one dataset per source; the dev split in BEIR layout for evaluation.
    train = pd.read_parquet(TRAIN)
    datasets = training_datasets(train, same_columns=gathered(params))
    log.info("training data: %s", ", ".join(f"{name} {len(ds)}" for name, ds in datasets.items()))
    evaluator = ir_evaluator(DEV, params.train.batch_size)

    # 2. Model and loss for the chosen architecture.
    model = build_model(params, BASE, train["positive"].tolist())
    loss = build_loss(params, model)

    # 3. Checkpoints of this run only (keyed to its params and inputs); resume from the last complete one.
    key, described = run_key(params, [BASE, TRAIN, DEV])
    run_dir, resume = prepare_run_dir(CHECKPOINTS, key, described)
    live_dir = run_dir / "live"  # the run's dvclive log: it resumes with the checkpoints
    if resume:
        log.info("resuming from %s (step %s) of run %s", resume, resume.name.rsplit("-", 1)[1], key)
        trim_live(live_dir, int(resume.name.rsplit("-", 1)[1]))

    # 4. Arguments and trainer; dvclive (on the first process) follows loss, NDCG@10 and active dimensions.
    args = training_arguments(params, run_dir, device, precision, trainer_options(params))
    with rank_zero_live(live_dir, resume=resume is not None) as live:
        live.log_params({"architecture": params.model.architecture, "base_model": params.model.base_model,
                         "device": device, "precision": precision})
        trainer = SparseEncoderTrainer(model=model, args=args, train_dataset=datasets, loss=loss,
                                       evaluator=evaluator, callbacks=[DvcLiveLogger(live), CompleteMarker()])
        if not resume:
            trainer.evaluate()  # step 0: the untrained model, so every curve starts from the baseline
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)

        # 5. The model is the best dev checkpoint (train.select_best); the untrained model is a candidate too.
        selected = trainer.state.best_global_step if params.train.select_best else trainer.state.global_step
        untrained = untrained_score(live_dir)
        if (params.train.select_best and params.model.architecture != "csr" and untrained is not None
                and trainer.state.best_metric is not None and untrained > trainer.state.best_metric):
            log.warning("no checkpoint beat the untrained model on dev (NDCG@10 %.4f > %.4f): keeping the untrained "
                        "weights", untrained, trainer.state.best_metric)
            model, selected = build_model(params, BASE, train["positive"].tolist()), 0
        live.summary["selected_step"] = selected
        live.make_summary()

    # 6. Save, atomically, from the first process: a half-written model never sits at models/trained, and
    # metrics/train appears (a copy of the run's log) only once the model is saved.
    if trainer.is_world_process_zero():
        with atomic_dir("models/trained") as out:
            save_model(model, out)
        with atomic_dir(LIVE) as out:
            shutil.copytree(live_dir, out, dirs_exist_ok=True)
        finish_run(CHECKPOINTS, key, params.train.keep_checkpoints)
        log.info("saved the trained %s model to models/trained", params.model.architecture)


if __name__ == "__main__":
    run_stage("train", main)
