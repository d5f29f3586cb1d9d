"""calibrate: sweep inference thresholds on the dev split and keep the largest within calibrate.max_ndcg_drop.

Outs: models/calibrated/ (the trained model with the chosen threshold in its SparsityFilter),
metrics/calibration.json (the choice), metrics/calibration_curve.json (NDCG@10 and active dims per threshold).
"""
import logging
from pathlib import Path

from norsparse.atomic import atomic_dir, write_json
from norsparse.beir import load_beir
from norsparse.calibration import Encoded, choose, mean_active_dims, query_threshold_cap, refine, sweep, value_quantiles
from norsparse.model_io import filter_module, load_model, refresh_filter, save_model
from norsparse.params import Params
from norsparse.stage import StageError, run_stage
from norsparse.training import select_device

log = logging.getLogger("norsparse.calibrate")
DEV = Path("data/prepared/dev")


def main(params: Params) -> None:
    p = params.calibrate
    dev = load_beir(DEV)
    model = refresh_filter(load_model(Path("models/trained"), device=select_device(params.train.device)))
    filter_module(model).threshold = 0.0
    encoded = Encoded(model, dev, p.batch_size)  # encoded once; each threshold is applied to these vectors

    candidates = list(p.thresholds) + (value_quantiles(encoded) if p.add_quantile_thresholds else [])
    # queries get a lower threshold only where the documents' would empty more of them than the budget allows
    query_cap = query_threshold_cap(encoded, p.max_empty_fraction, candidates)
    curve = refine(encoded, sweep(encoded, candidates, query_cap), p.max_ndcg_drop, p.max_empty_fraction,
                   p.refine_steps, query_cap)
    choice = choose(curve, p.max_ndcg_drop, p.max_empty_fraction)
    log.info("chose threshold %.4g (queries %.4g): dev NDCG@10 %.4f (unthresholded %.4f); active dims %.1f -> %.1f (document, "
             "%.2f%% zeros), %.1f -> %.1f (query)", choice["threshold"], choice["query_threshold"], choice["ndcg@10"], choice["ndcg@10_unthresholded"],
             choice["document_active_dims_unthresholded"], choice["document_active_dims"],
             100 * choice["document_zero_fraction"], choice["query_active_dims_unthresholded"], choice["query_active_dims"])

    filter_module(model).threshold = choice["threshold"]
    filter_module(model).query_threshold = choice["query_threshold"] if choice["query_threshold"] != choice["threshold"] else None
    emitted = Encoded(model, dev, p.batch_size)
    for side, vectors in (("document", emitted.documents), ("query", emitted.queries)):
        dims = mean_active_dims(vectors)
        if abs(dims - choice[f"{side}_active_dims"]) > 1e-3:  # the model itself must emit what was measured
            raise StageError(f"the thresholded model emits {dims:.3f} active {side} dims, the sweep measured "
                             f"{choice[f'{side}_active_dims']:.3f}")
    with atomic_dir("models/calibrated") as out:
        save_model(model, out)
    write_json("metrics/calibration_curve.json", curve)
    write_json("metrics/calibration.json", choice)


if __name__ == "__main__":
    run_stage("calibrate", main)
