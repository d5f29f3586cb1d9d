"""Saving and loading norsparse models as plain sentence-transformers folders.

Every saved model carries ``sparsity_filter.py`` at its root and names it in
``modules.json`` as ``sparsity_filter.SparsityFilter``, so it loads with
``SparseEncoder(path, trust_remote_code=True)`` where norsparse is not installed.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from . import sparsity_filter

FILTER_FILE = Path(sparsity_filter.__file__)
FILTER_TYPE = "sparsity_filter.SparsityFilter"


def save_model(model, folder: Path) -> None:
    folder = Path(folder)
    model.save(str(folder), create_model_card=False)
    shutil.copy(FILTER_FILE, folder / FILTER_FILE.name)
    # transformers resolves remote code (configuration_*.py, modeling_*.py) against the model's root even for a
    # transformer saved in a Router's subfolder (inference-free SPLADE), so the root carries a copy too
    for code in folder.glob("*/**/*.py"):
        if code.name.startswith(("configuration_", "modeling_")) and not (folder / code.name).exists():
            shutil.copy(code, folder / code.name)
    modules_path = folder / "modules.json"
    modules = json.loads(modules_path.read_text(encoding="utf-8"))
    for module in modules:
        if module["type"].endswith("sparsity_filter.SparsityFilter"):
            module["type"] = FILTER_TYPE
    modules_path.write_text(json.dumps(modules, indent=2) + "\n", encoding="utf-8")


def load_model(folder: Path, device: str | None = None):
    from sentence_transformers import SparseEncoder

    return SparseEncoder(str(folder), trust_remote_code=True, device=device)


def filter_module(model):
    """The SparsityFilter of a loaded model (the last module)."""
    module = model[len(model) - 1]
    if type(module).__name__ != "SparsityFilter":
        raise ValueError(f"the last module is {type(module).__name__}, not SparsityFilter: not a norsparse model")
    return module
