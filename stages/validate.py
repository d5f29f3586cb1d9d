"""validate: the first stage. It checks the whole params.yaml (and what the host must offer) before any
other stage runs.

DVC deletes a stage's outputs before it runs the stage, so a stage that failed on its own params had
already lost them. This stage depends on every param (``params: - params.yaml:``), so a changed, added
or misspelled key reruns it, and every other stage depends on its out. It fails in well under a second
(no torch import) and DVC stops here, leaving every later output as it was. Its out never changes when
validation passes, so a passing validation reruns nothing by itself.

Out: data/checks/validated (constant text).
"""
from pathlib import Path

from norsparse.atomic import write_text
from norsparse.params import Params
from norsparse.preflight import host_problems
from norsparse.stage import StageError, run_stage

OUT = Path("data/checks/validated")
TEXT = "params.yaml matches the schema in norsparse/params.py (written by stages/validate.py)\n"


def main(params: Params) -> None:
    problems = host_problems(params)
    if problems:
        raise StageError("\n".join(f"params.yaml: {p}" for p in problems))
    if not OUT.exists() or OUT.read_text(encoding="utf-8") != TEXT:
        write_text(OUT, TEXT)


if __name__ == "__main__":
    run_stage("validate", main)
