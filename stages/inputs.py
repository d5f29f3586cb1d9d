"""inputs: check and fingerprint the local inputs that DVC cannot list as deps (always runs, in about a second).

``data.sources[*].path``, ``evaluate.tasks`` and a local ``model.base_model`` folder are params, and DVC
cannot template a list into ``deps``. This stage is ``always_changed``: it checks each of them (encoding,
JSON, columns and their types, empty files, BEIR layout, a model's config and remote code) and writes the
content hash of what each stage reads. A stage depends on its file, so it reruns exactly when an input's
content changes; a bad input stops ``dvc repro`` here, before DVC deletes the outputs of the stage that
would read it. The files hold hashes keyed by source and task name, never local paths.

Outs: data/checks/inputs/{prepare,patch,evaluate}.json.
"""
import json
from pathlib import Path

from norsparse.atomic import write_json
from norsparse.inputs import stage_fingerprints
from norsparse.params import Params
from norsparse.stage import run_stage

OUT = Path("data/checks/inputs")


def main(params: Params) -> None:
    for stage, fingerprints in stage_fingerprints(params).items():
        path = OUT / f"{stage}.json"
        if not path.exists() or json.loads(path.read_text(encoding="utf-8")) != fingerprints:
            write_json(path, fingerprints)


if __name__ == "__main__":
    run_stage("inputs", main)
