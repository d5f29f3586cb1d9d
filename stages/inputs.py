"""inputs: check and fingerprint the local inputs that DVC cannot list as deps (always runs, in about a second).

``data.sources[*].path``, ``evaluate.tasks`` and a local ``model.base_model`` folder are params, and DVC
cannot template a list into ``deps``. This stage is ``always_changed``: it checks each of them (encoding,
JSON, columns and their types, empty files, BEIR layout, a model's config and remote code) and writes the
content hash of what each stage reads. A stage depends on its file, so it reruns exactly when an input's
content changes; a bad input stops ``dvc repro`` here, before DVC deletes the outputs of the stage that
would read it. The files hold hashes keyed by source and task name, never local paths.

It also links every file of those inputs into data/checks/links/<stage>/ (a dep of the stage that reads
them): DVC hashes a linked file by its content, so ``dvc status`` names a stage whose external input was
edited without any stage running first.

Outs: data/checks/inputs/{prepare,patch,evaluate}.json, data/checks/links/{prepare,patch,evaluate}/.
"""
import json
from pathlib import Path

from norsparse.atomic import atomic_dir, write_json
from norsparse.inputs import mirror_links, stage_fingerprints, stage_inputs
from norsparse.params import Params
from norsparse.stage import run_stage

OUT, LINKS = Path("data/checks/inputs"), Path("data/checks/links")


def main(params: Params) -> None:
    local = stage_inputs(params)
    for stage, fingerprints in stage_fingerprints(params, local).items():
        path = OUT / f"{stage}.json"
        if not path.exists() or json.loads(path.read_text(encoding="utf-8")) != fingerprints:
            write_json(path, fingerprints)
    for stage, named in local.items():
        with atomic_dir(LINKS / stage) as folder:
            mirror_links(folder, named)


if __name__ == "__main__":
    run_stage("inputs", main)
