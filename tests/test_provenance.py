"""Nothing stale, nothing environment-dependent, no debris: what DVC sees, what artefacts hold, what a kill leaves."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import fixtures
from conftest import ROOT
from test_bad_inputs import GOOD, beir, commit_outputs, env, fake_pipeline_repo, model_folder
from test_dvc_deps import project_closure, stages

from norsparse import inputs, sources
from norsparse.atomic import atomic_dir, clean_stale, scratch_dir, write_text
from norsparse.model_io import MARKER, write_marker, written_by_norsparse
from norsparse.params import parse_params
from norsparse.publishing import released_params


def test_inputs_picks_columns_like_sources():
    assert inputs.DEFAULT_COLUMNS == sources.DEFAULT_COLUMNS
    assert set(inputs.LOCAL_SUFFIXES) == set(sources.LOCAL_BUILDERS)


# ------------------------------------------------------------------------------------------ DVC sees every input

@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """A fake pipeline whose params name an external source, an external eval folder and a local base model."""
    base = tmp_path_factory.mktemp("tracked")
    repo = fake_pipeline_repo(base / "repo")
    external = base / "external"
    external.mkdir()
    (external / "own.jsonl").write_text(GOOD)
    beir(external / "extra")
    model_folder(external / "my-base")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"]["sources"].append({"name": "own", "path": str(external / "own.jsonl")})
    params["evaluate"]["tasks"].append(str(external / "extra"))
    params["model"]["base_model"] = str(external / "my-base")
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(repo, "dvc", "repro", "validate", "inputs")
    commit_outputs(repo)
    assert status(repo) == {"inputs": ["always changed"]}
    return repo, external


def run(repo, *command):
    result = subprocess.run(command, cwd=repo, env=env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def status(repo) -> dict:
    return json.loads(run(repo, "dvc", "status", "--json"))


def changed_stages(repo) -> set[str]:
    return {name for name, changes in status(repo).items() if name != "inputs"}


@pytest.mark.parametrize(("edit", "reader"), [
    (lambda e: (e / "own.jsonl").write_text(GOOD + '{"query": "Og mer?", "positive": "Ja, mer."}\n'), "prepare"),
    (lambda e: (e / "extra" / "queries.jsonl").write_text('{"_id": "q1", "text": "Hva er byen?"}\n'), "evaluate"),
    (lambda e: (e / "my-base" / "config.json").write_text('{"model_type": "bert", "hidden_size": 64}'), "patch"),
])
def test_editing_an_external_input_makes_its_stages_changed(tracked, edit, reader):
    repo, external = tracked
    edit(external)
    try:
        # nothing run: DVC sees the edit through the stage's links (data/checks/links/<stage>)
        assert changed_stages(repo) == {reader}
        assert status(repo)[reader] == [{"changed deps": {f"data/checks/links/{reader}": "modified"}}]
        run(repo, "dvc", "repro", "inputs")  # about a second: re-fingerprints; publish (which records them) is stale too
        assert changed_stages(repo) == {reader, "publish"}
    finally:
        commit_outputs(repo)  # the edit becomes the new current state for the next case


def test_editing_any_imported_module_makes_exactly_its_stages_changed(tracked):
    repo, _ = tracked
    modules = sorted({p.relative_to(ROOT).as_posix() for name in stages() for p in project_closure(ROOT / "stages" / f"{name}.py")})
    for module in modules:
        with (repo / module).open("a") as handle:
            handle.write("\n# edited\n")
    try:
        report = status(repo)
        for name in stages():
            expected = {p.relative_to(ROOT).as_posix() for p in project_closure(ROOT / "stages" / f"{name}.py")}
            changed = {Path(path) for entry in report.get(name, []) if isinstance(entry, dict)
                       for path, what in entry.get("changed deps", {}).items() if what == "modified"}
            seen = {f for f in expected if any(Path(f) == c or c in Path(f).parents for c in changed)}
            assert seen == expected, f"{name}: DVC does not see edits of {sorted(expected - seen)}"
            code = {c for c in changed if c.suffix == ".py" or c.is_relative_to("norsparse")}
            assert all(any(Path(f) == c or c in Path(f).parents for f in expected) for c in code), name
    finally:
        subprocess.run(["git", "checkout", "-q", "--", "."], cwd=repo, check=True)


# ------------------------------------------------------------------------------------------ artefacts: inputs only

SAVE = """
import sys
from sentence_transformers import SparseEncoder
from sentence_transformers.sparse_encoder.modules import SpladePooling, Transformer
from norsparse.model_io import save_model
from norsparse.evaluation import model_fingerprint
model = SparseEncoder(modules=[Transformer(sys.argv[1], transformer_task="fill-mask"), SpladePooling()])
save_model(model, sys.argv[2])
print(model_fingerprint(sys.argv[2]))
"""


def test_hf_hub_offline_does_not_change_a_saved_model(tmp_path):
    base = fixtures.bert_folder(tmp_path / "bert")
    hashes = []
    for offline in ("0", "1"):
        out = tmp_path / f"saved-{offline}"
        result = subprocess.run([sys.executable, "-c", SAVE, str(base), str(out)], capture_output=True, text=True,
                                env={**os.environ, "HF_HUB_OFFLINE": offline}, cwd=ROOT, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        hashes.append(result.stdout.split()[-1])
        for config in out.rglob("tokenizer_config.json"):
            assert not {"local_files_only", "is_local", "cache_dir"} & set(json.loads(config.read_text())), config
        assert written_by_norsparse(out) == (True, "written by norsparse")
    assert hashes[0] == hashes[1]


def test_released_params_hold_no_local_paths(tmp_path, project_params, monkeypatch):
    monkeypatch.chdir(ROOT)
    (tmp_path / "own.jsonl").write_text(GOOD)
    beir(tmp_path / "extra")
    model_folder(tmp_path / "my-base")
    raw = dict(project_params)
    raw["data"] = {**raw["data"], "sources": raw["data"]["sources"] + [{"name": "own", "path": str(tmp_path / "own.jsonl")}]}
    raw["evaluate"] = {**raw["evaluate"], "tasks": ["data/heldout", str(tmp_path / "extra")]}
    raw["model"] = {**raw["model"], "base_model": str(tmp_path / "my-base")}
    text = yaml.safe_dump(released_params(parse_params(raw)))
    assert str(tmp_path) not in text and "/tmp" not in text
    used = yaml.safe_load(text)
    assert [s["path"] for s in used["data"]["sources"]] == ["data/sample", "data/sample/nli.jsonl", "local:own.jsonl"]
    assert used["evaluate"]["tasks"] == ["data/heldout", "local:extra"] and used["model"]["base_model"] == "local:my-base"


def test_marker_trusts_only_untouched_norsparse_folders(tmp_path):
    (tmp_path / "sparsity_filter.py").write_text("x = 1\n")
    assert written_by_norsparse(tmp_path)[0] is False
    write_marker(tmp_path)
    assert written_by_norsparse(tmp_path)[0] is True
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "modeling_x.py").write_text("import os\n")  # code added after norsparse wrote the folder
    assert written_by_norsparse(tmp_path)[0] is False
    assert "sha256" not in (tmp_path / MARKER).read_text() or str(tmp_path) not in (tmp_path / MARKER).read_text()


# ------------------------------------------------------------------------------------------ faults leave nothing

HOLD = """
import sys, time
from norsparse.atomic import atomic_dir, scratch_dir, write_text
with scratch_dir(sys.argv[1] + "/base") as work, atomic_dir(sys.argv[1] + "/base") as out:
    (work / "download.bin").write_bytes(b"x" * 1000)
    (out / "model.safetensors").write_bytes(b"y" * 1000)
    print("ready", flush=True)
    time.sleep(60)
"""


def test_a_rerun_after_kill_9_removes_the_debris(tmp_path):
    models = tmp_path / "models"
    (models / "base").mkdir(parents=True)
    (models / "base" / "config.json").write_text("{}")
    (models / ".base.tmp-abc123").mkdir()  # a name from before temp names carried a process id
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(models)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGKILL)
    process.wait()
    debris = sorted(p.name for p in models.iterdir() if p.name != "base")
    assert any(".base.tmp-" in d for d in debris) and any(".base.scratch-" in d for d in debris)
    assert (models / "base" / "config.json").read_text() == "{}"  # the current output was never touched
    # the debris is ignored by git meanwhile
    for name in debris:
        ignored = subprocess.run(["git", "check-ignore", "-q", f"models/{name}"], cwd=ROOT)
        assert ignored.returncode == 0, name
    with atomic_dir(models / "base") as out:
        (out / "config.json").write_text('{"new": 1}')
    assert sorted(p.name for p in models.iterdir()) == ["base"]


def test_live_writers_keep_their_temp_folders(tmp_path):
    mine = tmp_path / f".out.tmp-{os.getpid()}-x"
    mine.mkdir()
    assert clean_stale(tmp_path / "out") == []
    write_text(tmp_path / "out", "text")
    assert mine.exists()


def test_a_patch_failure_is_one_line_naming_the_model(monkeypatch, tmp_path, project_params):
    import pandas as pd

    import norsparse.base_model.patching as patching
    from norsparse.stage import StageError
    from stages import patch as stage

    def broken(*args, **kwargs):
        raise KeyError("GptBertConfig")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(patching, "patch_base_model", broken)
    monkeypatch.setattr(pd, "read_parquet", lambda path: pd.DataFrame({"anchor": ["a"], "positive": ["b"], "negative": [None]}))
    (tmp_path / "models" / "base").mkdir(parents=True)
    (tmp_path / "models" / "base" / "config.json").write_text("{}")
    project_params["data"]["sources"] = [{"name": "x", "path": str(ROOT / "data/sample")}]
    with pytest.raises(StageError, match=r"model.base_model 'builtin' could not be patched and verified: KeyError: 'GptBertConfig'"):
        stage.main(parse_params(project_params))
    assert (tmp_path / "models" / "base" / "config.json").read_text() == "{}"
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["base"]  # no temp or scratch folder left


@pytest.mark.parametrize("stage", ["validate", "inputs"])
def test_the_guard_stages_import_nothing_heavy(stage, tmp_path):
    import shutil

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(ROOT / "data", tmp_path / "data", ignore=shutil.ignore_patterns("prepared"))
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", f"stages.{stage}"], cwd=tmp_path, capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr[-2000:]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & {"torch", "transformers", "sentence_transformers", "pandas", "datasets", "mteb"}, imported
    assert seconds < 3.0
