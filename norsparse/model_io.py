"""Saving and loading norsparse models as plain sentence-transformers folders.

Every saved model carries ``sparsity_filter.py`` at its root and names it in
``modules.json`` as ``sparsity_filter.SparsityFilter``, so it loads with
``SparseEncoder(path, trust_remote_code=True)`` where norsparse is not installed.
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
    strip_load_time_keys(folder)
    write_marker(folder)


def load_model(folder: Path, device: str | None = None, trust_remote_code: bool = True):
    """Load a model folder; the stages load only what the pipeline itself wrote (trust_remote_code=True)."""
    from sentence_transformers import SparseEncoder

    return SparseEncoder(str(folder), trust_remote_code=trust_remote_code, device=device)


def filter_module(model):
    """The SparsityFilter of a loaded model (the last module)."""
    module = model[len(model) - 1]
    if type(module).__name__ != "SparsityFilter":
        raise ValueError(f"the last module is {type(module).__name__}, not SparsityFilter: not a norsparse model")
    return module
