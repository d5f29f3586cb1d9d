"""The params schema stops bad params at once, naming the key and what is allowed."""
import copy
import re

import pytest
import yaml

from norsparse.params import ParamsError, load_params, parse_params


def test_project_params_are_valid():
    params = load_params("params.yaml")
    assert params.model.architecture == "splade"
    assert params.model.base_model == "builtin"
    assert [s.name for s in params.data.sources] == ["sample-qa", "sample-nli"]


def test_every_key_of_the_schema_is_spelled_out_in_params_yaml(project_params):
    """Defaults in code are not invisible inputs: params.yaml lists every key DVC tracks."""
    dumped = parse_params(project_params).model_dump(mode="json", by_alias=True)

    def keys(tree, prefix=""):
        for key, value in tree.items():
            if isinstance(value, dict) and key not in ("columns", "splits", "filter"):
                yield from keys(value, f"{prefix}{key}.")
            elif key != "sources":
                yield f"{prefix}{key}"

    assert set(keys(dumped)) == set(keys(project_params))


def _with(project_params, path, value):
    raw = copy.deepcopy(project_params)
    node = raw
    *parents, last = path.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    return raw


def test_misspelled_architecture_names_the_key_and_the_allowed_values(project_params):
    with pytest.raises(ParamsError) as error:
        parse_params(_with(project_params, "model.architecture", "spalde"))
    message = str(error.value)
    assert "model.architecture" in message and "'spalde'" in message
    for allowed in ("splade", "inference-free-splade", "csr"):
        assert allowed in message


def test_unknown_key_is_named_with_a_suggestion_and_the_allowed_keys(project_params):
    raw = copy.deepcopy(project_params)
    raw["calibrate"]["max_ndgc_drop"] = 0.02
    with pytest.raises(ParamsError) as error:
        parse_params(raw)
    message = str(error.value)
    assert "unknown key 'calibrate.max_ndgc_drop'" in message
    assert "did you mean 'max_ndcg_drop'" in message
    assert "thresholds" in message  # the allowed keys are listed


def test_unknown_top_level_block(project_params):
    raw = copy.deepcopy(project_params)
    raw["trian"] = {}
    with pytest.raises(ParamsError, match="unknown key 'trian'.*did you mean 'train'"):
        parse_params(raw)


@pytest.mark.parametrize(("path", "value", "fragment"), [
    ("calibrate.max_ndcg_drop", -0.1, "calibrate.max_ndcg_drop"),
    ("train.batch_size", 0, "train.batch_size"),
    ("train.precision", "fp8", "train.precision"),
    ("data.split.test", 0.95, "data.split: dev + test"),
    ("train.inference-free-splade.static_learning_rate", 0, "train.inference-free-splade.static_learning_rate"),
])
def test_bad_values_name_their_key(project_params, path, value, fragment):
    with pytest.raises(ParamsError, match=re.escape(fragment)):
        parse_params(_with(project_params, path, value))


def test_hub_model_with_remote_code_needs_a_pinned_revision(project_params):
    raw = _with(project_params, "model.base_model", "ltg/norbert4-base")
    raw["model"]["trust_remote_code"] = True
    with pytest.raises(ParamsError, match="model.revision must pin"):
        parse_params(raw)
    raw["model"]["revision"] = "a" * 40
    assert parse_params(raw).model.revision == "a" * 40


def test_push_needs_a_repository(project_params):
    with pytest.raises(ParamsError, match="repo_id"):
        parse_params(_with(project_params, "publish.push", True))


def test_source_columns_need_query_and_positive(project_params):
    raw = copy.deepcopy(project_params)
    raw["data"]["sources"][1]["columns"] = {"positive": "positive"}
    with pytest.raises(ParamsError, match="data.sources.1.columns"):
        parse_params(raw)


def test_yaml_errors_and_missing_files_are_reported(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)


def test_a_stage_fails_in_the_first_second_on_bad_params(tmp_path, project_params):
    """A misspelled architecture stops `train` before it touches data or models."""
    import subprocess
    import sys
    import time

    from conftest import ROOT

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(_with(project_params, "model.architecture", "spalde")))
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "stages.train", "--params", str(params)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "model.architecture" in result.stderr and "inference-free-splade" in result.stderr
    assert "Traceback" not in result.stderr
    assert time.perf_counter() - started < 30  # python + imports; no data or model is loaded
