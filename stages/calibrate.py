"""calibrate: sweep inference thresholds on the dev split and keep the largest within calibrate.max_ndcg_drop.

Outs: models/calibrated/ (the trained model with the chosen threshold in its SparsityFilter),
metrics/calibration.json (the choice), metrics/calibration_curve.json (NDCG@10 and active dims per threshold).
"""
import logging
from pathlib import Path

from norsparse.atomic import atomic_dir, write_json
from norsparse.beir import load_beir
from norsparse.calibration import choose, sweep, value_quantiles
from norsparse.model_io import filter_module, load_model, save_model
from norsparse.params import Params
from norsparse.stage import run_stage
from norsparse.training import ir_evaluator, select_device

log = logging.getLogger("norsparse.calibrate")
DEV = Path("data/prepared/dev")


def main(params: Params) -> None:
    p = params.calibrate
    model = load_model(Path("models/trained"), device=select_device(params.train.device))
    filter_module(model).threshold = 0.0
    thresholds = [0.0, *p.thresholds]
    if p.add_quantile_thresholds:
        thresholds += value_quantiles(model, list(load_beir(DEV).documents().values()), p.batch_size)
    curve = sweep(model, ir_evaluator(DEV, p.batch_size), thresholds)
    choice = choose(curve, p.max_ndcg_drop)
    log.info("chose threshold %.4g: NDCG@10 %.4f (unthresholded %.4f); document active dims %.1f -> %.1f",
             choice["threshold"], choice["ndcg@10"], choice["ndcg@10_unthresholded"],
             choice["document_active_dims_unthresholded"], choice["document_active_dims"])

    filter_module(model).threshold = choice["threshold"]
    with atomic_dir("models/calibrated") as out:
        save_model(model, out)
    write_json("metrics/calibration_curve.json", curve)
    write_json("metrics/calibration.json", choice)


if __name__ == "__main__":
    run_stage("calibrate", main)
