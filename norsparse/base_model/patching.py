"""Resolve ``model.base_model``, patch a copy of it and verify the patch numerically.

``builtin`` builds the tiny NorBERT4-style model; a hub id is downloaded at its
pinned revision; a local folder is used as it is. The copy is then patched
(``gptbert_patch``) when it ships remote code, and checked with numbers:

* it loads under the installed transformers with finite logits, equal to a freshly
  constructed model with the same weights, and saves and reloads unchanged;
* with the soft cap removed, raw logits include negatives and the SPLADE vector of
  a probe text has exact zeros (before the patch it had none).

A model whose logits are all positive but whose cap the patcher cannot find stops
with an error that points to the calibrated threshold instead.
"""
from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
from pathlib import Path

from ..hub import TIMEOUT_S, unreachable
from ..params import BUILTIN_BASE_MODEL, Params
from ..stage import StageError
from . import gptbert_patch, verify
from .builtin import build_builtin_model

log = logging.getLogger(__name__)

HUB_FILES = ["*.json", "*.py", "*.safetensors", "*.txt", "*.model", "*.tiktoken"]


def download(repo_id: str, revision: str | None, into: Path) -> Path:
    from huggingface_hub import snapshot_download

    problem = unreachable(repo_id, revision, "model")
    if problem:
        raise StageError(
            f"model.base_model {repo_id!r} (revision {revision!r}) could not be fetched from the Hugging Face Hub: "
            f"{problem}\nIf it is in your local cache, set HF_HUB_OFFLINE=1. Without network, use the embedded default "
            "(model.base_model: builtin) or a local folder."
        )
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=HUB_FILES, local_dir=into, etag_timeout=TIMEOUT_S))
    except Exception as error:  # noqa: BLE001 - name the model whatever the hub client raised
        raise StageError(
            f"model.base_model {repo_id!r} (revision {revision!r}) could not be fetched from the Hugging Face Hub: "
            f"{type(error).__name__}: {str(error).splitlines()[0][:200]}\n"
            "If it is in your local cache, set HF_HUB_OFFLINE=1. Without network, use the embedded default "
            "(model.base_model: builtin) or a local folder."
        ) from None


def resolve(params: Params, train_texts: list[str], workdir: Path) -> tuple[Path, dict]:
    """A local folder with the unpatched base model, and facts about where it came from."""
    name = params.model.base_model
    if name == BUILTIN_BASE_MODEL:
        folder = workdir / "builtin"
        report = build_builtin_model(train_texts, params.builtin, folder)
        return folder, {"kind": "builtin", "builtin": report}
    path = Path(name)
    if path.exists():
        if not (path / "config.json").exists():
            raise StageError(f"model.base_model {name!r} is a folder without config.json")
        return path, {"kind": "local"}
    folder = download(name, params.model.revision, workdir / "hub")
    return folder, {"kind": "hub", "revision": params.model.revision}


def _copy_model(source: Path, out: Path) -> None:
    for item in source.iterdir():
        if item.name.startswith(".") or item.name in ("README.md",):
            continue
        if item.is_file():
            shutil.copy2(item, out / item.name)


def _assert_loads(check: dict, name: str) -> None:
    if not check["finite"]:
        raise StageError(f"{name}: the patched model gives non-finite logits")
    if check["max_abs_diff_vs_fresh"] > 1e-4:
        raise StageError(f"{name}: logits after loading differ from a freshly constructed model by {check['max_abs_diff_vs_fresh']:.3g}")
    if check["max_abs_diff_after_save_reload"] > 1e-5:
        raise StageError(f"{name}: logits change after save_pretrained and reload ({check['max_abs_diff_after_save_reload']:.3g})")


def _stats(folder: Path, trust: bool, probe: str, tag: str) -> dict:
    model, tokenizer = verify.load_masked_lm(folder, trust)
    logits, attention = verify.probe_logits(model, tokenizer, probe)
    special = verify.special_token_ids(tokenizer, model.config)
    result = verify.logit_stats(logits, attention, special)
    log.info("%s: logits in [%.3f, %.3f], %.1f%% negative; SPLADE probe vector: %d active dims, %.2f%% zeros",
             tag, result["min_logit"], result["max_logit"], 100 * result["negative_logit_fraction"],
             result["splade_active_dims"], 100 * result["splade_zero_fraction"])
    return result | {"special_token_ids": special}


def patch_base_model(params: Params, train_texts: list[str], out: Path, workdir: Path | None = None) -> dict:
    """Write the patched, verified base model to ``out`` (an empty folder); return the patch report.

    ``workdir`` (an empty folder, e.g. ``norsparse.atomic.scratch_dir``) holds the download and the unpatched
    copy; by default a system temporary folder, which a killed run would leave behind.
    """
    name = params.model.base_model
    probe = params.patch.probe_text
    work = contextlib.nullcontext(str(workdir)) if workdir is not None else tempfile.TemporaryDirectory(prefix="norsparse-base-")
    with work as tmp:
        source, report = resolve(params, train_texts, Path(tmp))
        report["base_model"] = name
        remote = gptbert_patch.remote_mlm_class(source)
        if remote is not None and report["kind"] != "builtin" and not params.model.trust_remote_code:
            raise StageError(
                f"{name} ships remote code ({remote[0].name}); review it, then set model.trust_remote_code: true "
                "(with model.revision pinned to a commit sha for hub models)"
            )
        report["remote_code"] = remote[0].name if remote else None
        if remote is None:
            _copy_model(source, out)
            report["soft_cap"] = "absent"
            report["before"] = report["after"] = _stats(out, False, probe, "base model (no remote code)")
        else:
            keys = verify.checkpoint_keys(source)
            # "Before": the model's own code made loadable under the installed transformers, cap in place.
            # It lives in a folder of another name, so its remote-code classes are not confused with the patched ones.
            unpatched = Path(tmp) / "unpatched"
            unpatched.mkdir()
            _copy_model(source, unpatched)
            gptbert_patch.patch_modeling_file(unpatched / remote[0].name, remote[1], keys, remove_cap=False)
            report["before"] = _stats(unpatched, True, probe, "before the patch")
            _copy_model(source, out)
            code = gptbert_patch.patch_modeling_file(out / remote[0].name, remote[1], keys, remove_cap=params.patch.remove_soft_cap)
            report["code"] = code.as_dict()
            report["soft_cap"] = code.soft_cap
            report["after"] = _stats(out, True, probe, "after the patch")
    trust = report["remote_code"] is not None
    capped = report["after"]["min_logit"] >= 0
    if capped and params.patch.remove_soft_cap:
        raise StageError(
            f"{name}: every masked-LM logit of the probe is >= 0 (a soft cap?), but the patcher found no cap of the form "
            "`x = A * torch.sigmoid(x / B)` in its masked-LM forward, so it cannot remove it. Set "
            "patch.remove_soft_cap: false to train with the cap and rely on the calibrated inference threshold "
            "(the calibrate stage) for sparsity."
        )
    report["round_trip"] = verify.check_round_trip(out, trust, probe)
    _assert_loads(report["round_trip"], name)
    if report["soft_cap"] == "removed" and report["after"]["splade_zero_fraction"] == 0:
        raise StageError(f"{name}: the soft cap was removed but the probe's SPLADE vector still has no exact zeros")
    report["verified"] = True
    (out / "norsparse_base.json").write_text(json.dumps(
        {"base_model": name, "revision": params.model.revision, "trust_remote_code": trust,
         "special_token_ids": report["after"]["special_token_ids"], "soft_cap": report["soft_cap"]}, indent=2) + "\n")
    return report
