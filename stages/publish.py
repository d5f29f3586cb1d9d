"""publish: assemble models/release (calibrated model, model card, params) and push it when publish.push is true.

Outs: models/release/.
"""
import json
import logging
from pathlib import Path

import yaml

from norsparse.atomic import atomic_dir
from norsparse.params import Params
from norsparse.publishing import assemble_release, hub_token, model_card, push, released_params
from norsparse.stage import run_stage

log = logging.getLogger("norsparse.publish")


def read(path: str) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def main(params: Params) -> None:
    p = params.publish
    if p.push:
        hub_token()  # no token: stop before models/release is rewritten
    card = model_card(
        params,
        prepare=read("metrics/prepare.json"), patch=read("metrics/patch.json"),
        calibration=read("metrics/calibration.json"), evaluation=read("metrics/eval.json"),
        repo_id=p.repo_id,
    )
    with atomic_dir("models/release") as out:
        used = yaml.safe_dump(released_params(params), sort_keys=False, allow_unicode=True)
        inputs = {stage: read(f"data/checks/inputs/{stage}.json") for stage in ("prepare", "patch", "evaluate")
                  if Path(f"data/checks/inputs/{stage}.json").exists()}
        assemble_release(Path("models/calibrated"), out, card, used, inputs)
    log.info("assembled models/release (model card: models/release/README.md)")
    if p.push:
        push(Path("models/release"), p.repo_id, p.private)
    else:
        log.info("publish.push is false: not uploading (set it to true, with publish.repo_id, to push to the Hub)")


if __name__ == "__main__":
    run_stage("publish", main)
