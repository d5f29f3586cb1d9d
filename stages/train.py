"""train: build the architecture that model.architecture names and train it with SparseEncoderTrainer.

Outs: models/trained/ (loads with SparseEncoder(path, trust_remote_code=True)),
metrics/train/ (dvclive: loss, dev NDCG@10 and active dimensions per evaluation step).
"""
import logging
from pathlib import Path

import pandas as pd
from dvclive import Live

from norsparse.architectures import build_loss, build_model, trainer_options
from norsparse.atomic import atomic_dir
from norsparse.model_io import save_model
from norsparse.params import Params
from norsparse.stage import run_stage
from norsparse.training import DvcLiveLogger, ir_evaluator, select_device, select_precision, training_arguments, training_datasets

log = logging.getLogger("norsparse.train")
BASE, DEV = Path("models/base"), Path("data/prepared/dev")


def main(params: Params) -> None:
    from sentence_transformers.sparse_encoder import SparseEncoderTrainer

    device = select_device(params.train.device)
    precision = select_precision(device, params.train.precision)
    log.info("training %s on %s in %s", params.model.architecture, device, precision)

    # 1. Data: one dataset per source; the dev split in BEIR layout for evaluation.
    train = pd.read_parquet("data/prepared/train.parquet")
    datasets = training_datasets(train)
    log.info("training data: %s", ", ".join(f"{name} {len(ds)}" for name, ds in datasets.items()))
    evaluator = ir_evaluator(DEV, params.train.batch_size)

    # 2. Model and loss for the chosen architecture.
    model = build_model(params, BASE, train["positive"].tolist())
    loss = build_loss(params, model)

    # 3. Arguments and trainer; dvclive follows loss, NDCG@10 and active dimensions.
    args = training_arguments(params, Path("models/checkpoints"), device, precision, trainer_options(params))
    # dvclive writes into a temporary sibling of metrics/train, renamed into place only after the model is
    # saved: a killed run leaves no half-written metrics under the name DVC and `dvc plots` read.
    with atomic_dir("metrics/train") as live_dir:
        with Live(str(live_dir), dvcyaml=False, save_dvc_exp=False) as live:
            live.log_params({"architecture": params.model.architecture, "base_model": params.model.base_model,
                             "device": device, "precision": precision})
            trainer = SparseEncoderTrainer(model=model, args=args, train_dataset=datasets, loss=loss,
                                           evaluator=evaluator, callbacks=[DvcLiveLogger(live)])
            trainer.evaluate()  # step 0: the untrained model, so every curve starts from the baseline
            trainer.train()

        # 4. Save, atomically: a half-written model never sits at models/trained.
        with atomic_dir("models/trained") as out:
            save_model(model, out)
    log.info("saved the trained %s model to models/trained", params.model.architecture)


if __name__ == "__main__":
    run_stage("train", main)
