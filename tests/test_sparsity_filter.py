"""SparsityFilter masks special tokens and applies the threshold, and travels with the model."""
import json
import subprocess
import sys

import pytest
import torch

import fixtures
from norsparse.architectures import build_model
from norsparse.base_model.patching import patch_base_model
from norsparse.model_io import FILTER_TYPE, filter_module, load_model, save_model
from norsparse.params import parse_params
from norsparse.sparsity_filter import SparsityFilter


def test_masks_special_dims_and_values_below_threshold():
    module = SparsityFilter(threshold=0.5, masked_token_ids=[1, 3])
    features = {"sentence_embedding": torch.tensor([[0.2, 2.0, 0.7, 9.0, -0.6, 0.49]])}
    out = module(features)["sentence_embedding"]
    assert out[0].tolist() == pytest.approx([0.0, 0.0, 0.7, 0.0, -0.6, 0.0])


def test_threshold_zero_only_masks():
    out = SparsityFilter(0.0, [0])({"sentence_embedding": torch.tensor([[5.0, 0.01, 0.0]])})["sentence_embedding"]
    assert out[0].tolist() == pytest.approx([0.0, 0.01, 0.0])


def test_negative_threshold_is_refused():
    with pytest.raises(ValueError):
        SparsityFilter(-0.1)


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    import yaml

    from conftest import ROOT

    tmp = tmp_path_factory.mktemp("model")
    source = fixtures.gptbert_folder(tmp / "norbert4")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["model"].update(base_model=str(source), trust_remote_code=True)
    params = parse_params(raw)
    base = tmp / "base"
    base.mkdir()
    patch_base_model(params, [], base)
    model = build_model(params, base, ["Oslo er hovedstaden."])
    vector = model.encode_document([TEXT], convert_to_tensor=True, convert_to_sparse_tensor=False)[0]
    values = vector[vector != 0].abs()
    threshold = float(values.median())  # about half of the active dimensions survive
    filter_module(model).threshold = threshold
    save_model(model, tmp / "saved")
    return tmp / "saved", threshold, int(values.numel())


TEXT = "Oslo er hovedstaden i Norge."


def test_saved_model_names_the_filter_portably(small_model):
    small_model, threshold, _ = small_model
    modules = json.loads((small_model / "modules.json").read_text())
    assert modules[-1]["type"] == FILTER_TYPE
    assert (small_model / "sparsity_filter.py").exists()
    assert filter_module(load_model(small_model)).threshold == threshold


def test_loads_without_norsparse_and_emits_thresholded_vectors(small_model, tmp_path):
    """The release contract: plain sentence-transformers, no norsparse importable, thresholded vectors out."""
    small_model, threshold, unthresholded = small_model
    script = f"""
import json, sys
sys.modules["norsparse"] = None  # this project cannot be imported here
sys.modules["stages"] = None
from sentence_transformers import SparseEncoder
model = SparseEncoder({str(small_model)!r}, trust_remote_code=True)
vector = model.encode_document([{TEXT!r}], convert_to_tensor=True, convert_to_sparse_tensor=False)[0]
nonzero = vector[vector != 0]
print(json.dumps({{"active": int((vector != 0).sum()), "dims": int(vector.numel()),
                   "min_abs": float(nonzero.abs().min()) if nonzero.numel() else None,
                   "special": [float(vector[i]) for i in range(5)]}}))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert 0 < out["active"] < unthresholded < out["dims"]  # exact zeros, fewer than without the threshold
    assert out["min_abs"] >= threshold  # nothing below the threshold survives
    assert out["special"] == [0.0] * 5  # BOS/EOS/PAD/MASK/UNK never active


def test_queries_can_have_their_own_threshold():
    module = SparsityFilter(threshold=0.5, masked_token_ids=[0], query_threshold=0.1)
    row = torch.tensor([[3.0, 0.3, 0.6, 0.05]])
    assert module({"sentence_embedding": row.clone()}, task="query")["sentence_embedding"][0].tolist() == pytest.approx([0, 0.3, 0.6, 0])
    assert module({"sentence_embedding": row.clone()}, task="document")["sentence_embedding"][0].tolist() == pytest.approx([0, 0, 0.6, 0])
    assert module({"sentence_embedding": row.clone()})["sentence_embedding"][0].tolist() == pytest.approx([0, 0, 0.6, 0])
    assert SparsityFilter(0.5).threshold_for("query") == 0.5  # no query threshold: the same for both


def test_encode_query_applies_the_query_threshold_after_a_reload(tiny_splade, tmp_path):
    model = load_model(tiny_splade)
    vector = model.encode_document([TEXT], convert_to_tensor=True, convert_to_sparse_tensor=False)[0]
    values = vector[vector != 0].abs().sort().values
    filter_module(model).threshold = float(values[-2])  # documents keep their two strongest dimensions
    filter_module(model).query_threshold = float(values[len(values) // 2])
    save_model(model, tmp_path / "saved")
    reloaded = load_model(tmp_path / "saved")
    assert filter_module(reloaded).query_threshold == pytest.approx(float(values[len(values) // 2]))
    document = reloaded.encode_document([TEXT], convert_to_tensor=True, convert_to_sparse_tensor=False)[0]
    query = reloaded.encode_query([TEXT], convert_to_tensor=True, convert_to_sparse_tensor=False)[0]
    assert int((document != 0).sum()) == 2 < int((query != 0).sum())
