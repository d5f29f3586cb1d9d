"""Atomic outputs: a stage writes into a temporary sibling and renames it into place.

An interrupted stage therefore never leaves a half-written model or metrics file
under the name DVC expects. Temporary names carry the writer's process id
(``.<name>.tmp-<pid>-<random>``, ``.<name>.old-<pid>``, ``.<name>.scratch-<pid>-<random>``); a later
run removes those whose process is gone, so a killed run leaves no debris behind for
long (and ``.gitignore`` keeps it out of git meanwhile).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TEMP_KINDS = ("tmp", "old", "scratch")
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old|scratch)-(?:(?P<pid>\d+)(?:-.*)?$|.*$)")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _public(path: Path, directory: bool) -> None:
    """mkstemp/mkdtemp create private files (0600/0700); give the result the usual permissions."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def clean_stale(target: str | Path) -> list[Path]:
    """Remove the temporary siblings of ``target`` left by earlier, dead runs; return what was removed."""
    target = Path(target)
    removed = []
    if not target.parent.is_dir():
        return removed
    for item in target.parent.iterdir():
        match = _TEMP.match(item.name)
        # no process id: a name from before ids were written, so from an earlier run
        if match and match["name"] == target.name and not (match["pid"] and _alive(int(match["pid"]))):
            _remove(item)
            removed.append(item)
    return removed


def _mkdtemp(target: Path, kind: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.{kind}-{os.getpid()}-", dir=target.parent))


def _replace(tmp: Path, target: Path) -> None:
    if target.is_dir() and not target.is_symlink():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        _remove(old)
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        if target.exists() or target.is_symlink():
            target.unlink()
        os.replace(tmp, target)


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder that becomes ``target`` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target)
    tmp = _mkdtemp(target, "tmp")
    try:
        yield tmp
        _public(tmp, directory=True)
        _replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def scratch_dir(target: str | Path) -> Iterator[Path]:
    """A working folder beside ``target`` (downloads, intermediate copies), removed afterwards, and by the next
    run if this one is killed: unlike the system temp folder it never outlives a kill for long."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target)
    tmp = _mkdtemp(target, "scratch")
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        _public(Path(tmp), directory=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n")
