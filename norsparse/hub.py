"""One quick question to the Hugging Face Hub before any download.

The hub client retries a refused or timed-out connection with back-off (about
half a minute); a stage that needs the Hub asks once, with a short timeout, and
fails at once with a message that names what it wanted.
"""
from __future__ import annotations

import os

TIMEOUT_S = 10


def offline() -> bool:
    return any(os.environ.get(name, "").lower() in ("1", "true", "yes") for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def unreachable(repo_id: str, revision: str | None, repo_type: str) -> str | None:
    """None if the repository answers at that revision; otherwise why not (one line)."""
    if offline():
        return None  # offline mode: the libraries use their local cache, or fail by themselves at once
    from huggingface_hub import HfApi

    try:
        HfApi().repo_info(repo_id, revision=revision, repo_type=repo_type, timeout=TIMEOUT_S)
    except Exception as error:  # noqa: BLE001 - any failure means the download cannot work
        first_line = (str(error).splitlines() or [""])[0][:200]
        return f"{type(error).__name__}: {first_line}"
    return None
