"""Host checks that need no heavy imports: run by the validate stage before DVC touches any output.

``torch`` takes seconds to import, so these probes look at the operating system instead:
no NVIDIA/ROCm driver means no CUDA device, and MPS exists only on Apple silicon. The
probes can only say "certainly not here"; the stages still ask torch (``select_device``).
"""
from __future__ import annotations

import glob
import os
import platform
import sys
from pathlib import Path

from .params import Params


def cuda_possible() -> bool:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    return (Path("/proc/driver/nvidia/version").exists() or bool(glob.glob("/dev/nvidia[0-9]*"))
            or Path("/dev/kfd").exists() or Path("/dev/dxg").exists() or sys.platform == "win32")


def mps_possible() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


def device_problem(device: str) -> str | None:
    if device == "cuda" and not cuda_possible():
        return ("train.device is 'cuda' but this host has no CUDA device (no NVIDIA or ROCm driver found); "
                "allowed values: auto, cuda, mps, cpu; use auto or cpu here")
    if device == "mps" and not mps_possible():
        return ("train.device is 'mps' but MPS exists only on Apple silicon; allowed values: auto, cuda, mps, cpu; "
                "use auto or cpu here")
    return None


def token_present() -> bool:
    """Whether a Hugging Face token is available (HF_TOKEN or a stored login); the token itself is never read out."""
    if os.environ.get("HF_TOKEN", "").strip():
        return True
    home = Path(os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface")
    path = Path(os.environ.get("HF_TOKEN_PATH") or home / "token")
    try:
        return bool(path.read_text(encoding="utf-8").strip())
    except OSError:
        return False


NO_TOKEN = "publish.push is true but no Hugging Face token was found: set HF_TOKEN or run `hf auth login`"


def host_problems(params: Params) -> list[str]:
    problems = []
    device = device_problem(params.train.device)
    if device:
        problems.append(device)
    if params.publish.push and not token_present():
        problems.append(NO_TOKEN)
    return problems
