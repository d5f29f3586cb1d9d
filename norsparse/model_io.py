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

# read as a file, not imported: importing it imports torch, and `norsparse encode` checks a folder before that
# (stages that save models list norsparse/sparsity_filter.py in their dvc.yaml deps)
FILTER_FILE = Path(__file__).with_name("sparsity_filter.py")
FILTER_TYPE = "sparsity_filter.SparsityFilter"
MARKER = "norsparse_model.json"
# Keys that transformers writes into tokenizer_config.json from how the tokenizer was *loaded* (HF_HUB_OFFLINE,
# the cache, credentials), not from what it is: a saved model must not change with the environment.
LOAD_TIME_KEYS = ("local_files_only", "is_local", "cache_dir", "token", "use_auth_token", "proxies",
                  "force_download", "resume_download", "_commit_hash")


def strip_load_time_keys(folder: Path) -> None:
    """Remove environment-derived keys from every tokenizer_config.json under ``folder``."""
    for path in sorted(Path(folder).rglob("tokenizer_config.json")):
        config = json.loads(path.read_text(encoding="utf-8"))
        cleaned = {k: v for k, v in config.items() if k not in LOAD_TIME_KEYS}
        if cleaned != config:
            path.write_text(json.dumps(cleaned, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def code_files(folder: Path) -> dict[str, str]:
    """Every Python file under ``folder`` (what trust_remote_code would run): relative path -> sha256."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.py")) if p.is_file()}


def write_marker(folder: Path) -> None:
    """Record that norsparse wrote this folder, with the hashes of the code it holds (no paths, no times)."""
    marker = {"written_by": "norsparse", "code_sha256": code_files(folder)}
    (Path(folder) / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def written_by_norsparse(folder: Path) -> tuple[bool, str]:
    """Whether ``folder`` carries norsparse's marker and its code is exactly the code recorded there."""
    folder = Path(folder)
    path = folder / MARKER
    if not folder.is_dir():
        return False, f"{folder} is not a local folder"
    if not path.exists():
        return False, f"{folder} has no {MARKER}: norsparse did not write it"
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False, f"{path} is not valid JSON"
    if not isinstance(marker, dict) or marker.get("written_by") != "norsparse":
        return False, f"{path} does not say norsparse wrote the folder"
    if marker.get("code_sha256") != code_files(folder):
        return False, f"the code files in {folder} differ from those recorded in {MARKER} when norsparse wrote it"
    for config in folder.rglob("config.json"):
        try:
            auto_map = json.loads(config.read_text(encoding="utf-8")).get("auto_map") or {}
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            return False, f"{config} is not a valid JSON object"
        if any("--" in str(ref) for ref in (auto_map.values() if isinstance(auto_map, dict) else [])):
            return False, f"{config} points to code in another repository"
    return True, "written by norsparse"


class UntrustedCodeError(RuntimeError):
    """A model folder holds code that norsparse did not write (or that changed since) and no flag trusts it."""


def hoist_remote_code(folder: Path) -> None:
    """Copy a submodule's remote code (``configuration_*.py``, ``modeling_*.py``) to the model's root.

    transformers resolves remote code against the root of the folder it loads, even for a transformer saved in a
    Router's subfolder (inference-free SPLADE): without the copy neither the saved model nor a trainer checkpoint
    of it loads.
    """
    for code in Path(folder).glob("*/**/*.py"):
        if code.name.startswith(("configuration_", "modeling_")) and not (Path(folder) / code.name).exists():
            shutil.copy(code, Path(folder) / code.name)


def save_model(model, folder: Path) -> None:
    folder = Path(folder)
    model.save(str(folder), create_model_card=False)
    shutil.copy(FILTER_FILE, folder / FILTER_FILE.name)
    hoist_remote_code(folder)
    modules_path = folder / "modules.json"
    modules = json.loads(modules_path.read_text(encoding="utf-8"))
    for module in modules:
        if module["type"].endswith("sparsity_filter.SparsityFilter"):
            module["type"] = FILTER_TYPE
    modules_path.write_text(json.dumps(modules, indent=2) + "\n", encoding="utf-8")
    strip_load_time_keys(folder)
    write_marker(folder)


def load_model(folder: Path, device: str | None = None, trust_remote_code: bool = True):
    """Load a model folder; the stages load only what the pipeline itself wrote (trust_remote_code=True)."""
    from sentence_transformers import SparseEncoder

    return SparseEncoder(str(folder), trust_remote_code=trust_remote_code, device=device)


def open_model(path: str | Path, trust_remote_code: bool = False, device: str | None = None):
    """Load a model for a user-facing command: its code runs only if norsparse wrote it, or if trusted explicitly.

    A folder without code files loads as plain sentence-transformers would load it. A hub id or a folder with
    foreign or changed code files needs ``trust_remote_code=True`` (the ``--trust-remote-code`` flag)."""
    from sentence_transformers import SparseEncoder

    folder = Path(path)
    trusted = trust_remote_code or (folder.is_dir() and written_by_norsparse(folder)[0])
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
