"""patch: resolve model.base_model, remove NorBERT4's soft cap in a copy and verify it numerically.

Outs: models/base/ (the patched base model), metrics/patch.json (the patch report).
"""
import logging

import pandas as pd

from norsparse.atomic import atomic_dir, write_json
from norsparse.base_model.patching import patch_base_model
from norsparse.params import Params
from norsparse.stage import run_stage

log = logging.getLogger("norsparse.patch")


def main(params: Params) -> None:
    train = pd.read_parquet("data/prepared/train.parquet")
    texts = [t for column in ("anchor", "positive", "negative") for t in train[column].dropna().tolist()]
    with atomic_dir("models/base") as out:
        report = patch_base_model(params, texts, out)
    write_json("metrics/patch.json", report)
    log.info("base model %s: soft cap %s; special-token dims %s are masked", report["base_model"], report["soft_cap"],
             report["after"]["special_token_ids"])


if __name__ == "__main__":
    run_stage("patch", main)
