"""patch: resolve model.base_model, remove NorBERT4's soft cap in a copy and verify it numerically.

Outs: models/base/ (the patched base model), metrics/patch.json (the patch report).
"""
import logging

from norsparse.atomic import atomic_dir, scratch_dir, write_json
from norsparse.beir import DataError
from norsparse.inputs import check_base_model
from norsparse.params import Params
from norsparse.stage import StageError, run_stage

log = logging.getLogger("norsparse.patch")


def main(params: Params) -> None:
    check_base_model(params.model)  # a local folder's config and remote code, before torch is imported
    import pandas as pd

    from norsparse.base_model.patching import patch_base_model

    train = pd.read_parquet("data/prepared/train.parquet")
    texts = [t for column in ("anchor", "positive", "negative") for t in train[column].dropna().tolist()]
    with scratch_dir("models/base") as work, atomic_dir("models/base") as out:
        try:
            report = patch_base_model(params, texts, out, work)
        except (StageError, DataError):
            raise
        except Exception as error:  # noqa: BLE001 - the model's own code or files failed: say which model, in one line
            first = (str(error).strip().splitlines() or [""])[0][:300]
            raise StageError(f"model.base_model {params.model.base_model!r} could not be patched and verified: "
                             f"{type(error).__name__}: {first}\n(run `python -m stages.patch -v` for the traceback)") from error
    write_json("metrics/patch.json", report)
    log.info("base model %s: soft cap %s; special-token dims %s are masked", report["base_model"], report["soft_cap"],
             report["after"]["special_token_ids"])


if __name__ == "__main__":
    run_stage("patch", main)
