"""Saving and loading norsparse models as plain sentence-transformers folders.

Every saved model carries ``sparsity_filter.py`` at its root and names it in
``modules.json`` as ``sparsity_filter.SparsityFilter``, so it loads with
``SparseEncoder(path, trust_remote_code=True)`` where norsparse is not installed.

It also carries ``norsparse_model.json``: the SHA-256 of every Python file in the
folder when norsparse wrote it. The user-facing commands (``search``, ``export``,
``encode``) run a model's code only when that record matches the folder, or when
the user passes ``--trust-remote-code`` after reviewing the code themselves. The
record says "norsparse wrote this code and it is unchanged since"; it is a
provenance check against mistakes, not a signature against an attacker.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from . import sparsity_filter

FILTER_FILE = Path(sparsity_filter.__file__)
FILTER_TYPE = "sparsity_filter.SparsityFilter"
PROVENANCE = "norsparse_model.json"


class UntrustedCodeError(RuntimeError):
    """A model folder holds code that norsparse did not write (or that changed since) and no flag trusts it."""


def code_files(folder: Path) -> dict[str, str]:
    """Every Python file under ``folder`` (relative path -> SHA-256)."""
    folder = Path(folder)
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*.py")) if path.is_file()}


def written_by_norsparse(folder: Path) -> bool:
    """True when ``folder`` carries norsparse's provenance record and its code files are exactly those recorded."""
    record = Path(folder) / PROVENANCE
    if not record.is_file():
        return False
    try:
        recorded = json.loads(record.read_text(encoding="utf-8")).get("code_sha256", {})
    except (json.JSONDecodeError, AttributeError):
        return False
    return recorded == code_files(folder)


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
    (folder / PROVENANCE).write_text(json.dumps({"written_by": "norsparse", "code_sha256": code_files(folder)},
                                                indent=2) + "\n", encoding="utf-8")


def load_model(folder: Path, device: str | None = None):
    from sentence_transformers import SparseEncoder

    return SparseEncoder(str(folder), trust_remote_code=True, device=device)


def open_model(path: str | Path, trust_remote_code: bool = False, device: str | None = None):
    """Load a model for a user-facing command: its code runs only if norsparse wrote it, or if trusted explicitly.

    A folder without code files loads as plain sentence-transformers would load it. A hub id or a folder with
    foreign or changed code files needs ``trust_remote_code=True`` (the ``--trust-remote-code`` flag)."""
    from sentence_transformers import SparseEncoder

    folder = Path(path)
    trusted = trust_remote_code or (folder.is_dir() and written_by_norsparse(folder))
    if not trusted and folder.is_dir() and code_files(folder):
        raise UntrustedCodeError(
            f"{path} holds code that norsparse did not write or that changed since ({', '.join(code_files(folder))}); "
            "read it, then pass --trust-remote-code to run it")
    try:
        return SparseEncoder(str(path), trust_remote_code=trusted, device=device)
    except ValueError as error:
        if not trusted and "trust_remote_code" in str(error):
            raise UntrustedCodeError(f"{path} needs remote code: read it, then pass --trust-remote-code ({error})") from None
        raise


def filter_module(model):
    """The SparsityFilter of a loaded model (the last module)."""
    module = model[len(model) - 1]
    if type(module).__name__ != "SparsityFilter":
        raise ValueError(f"the last module is {type(module).__name__}, not SparsityFilter: not a norsparse model")
    return module


def refresh_filter(model):
    """Swap a SparsityFilter loaded from an older copy of ``sparsity_filter.py`` for this version's, settings kept.

    A model folder carries its own copy of the module, and the loaded class is that copy; one written before
    the query threshold existed would silently ignore it."""
    from .sparsity_filter import SparsityFilter

    old = filter_module(model)
    if not hasattr(old, "threshold_for"):
        model._modules[str(len(model) - 1)] = SparsityFilter(old.threshold, old.masked_token_ids, getattr(old, "query_threshold", None))
    return model
