import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))          # `stages` is run from the project root, like dvc does
sys.path.insert(0, str(ROOT / "tests"))  # `fixtures`

# Nothing in the tests may reach the Hub: an unroutable endpoint makes any attempt fail at once.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture
def project_params():
    """The project's own params.yaml, as a dict to change and write elsewhere."""
    import yaml

    return yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def tiny_splade(tmp_path_factory):
    """A small untrained SPLADE model written by norsparse (see fixtures.tiny_model)."""
    import fixtures

    return fixtures.tiny_model(tmp_path_factory.mktemp("splade"), "splade")


@pytest.fixture(scope="session")
def tiny_inference_free(tmp_path_factory):
    """A small untrained inference-free SPLADE model, with a threshold that drops some query tokens."""
    import fixtures

    return fixtures.tiny_model(tmp_path_factory.mktemp("inference-free"), "inference-free-splade", threshold=0.5)
