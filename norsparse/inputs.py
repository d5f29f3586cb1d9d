"""The local inputs a stage reads beyond its DVC deps: checked, then fingerprinted by content.

DVC cannot list ``data.sources[*].path``, ``evaluate.tasks`` or a local ``model.base_model``
folder in ``deps`` (a list cannot be templated there), so the ``inputs`` stage
(``always_changed``) hashes them into one small file per consuming stage; that file is a dep
of the stage, and an unchanged hash stops the rerun. While hashing, it checks every input
with the standard library only (pyarrow for parquet), so a bad file stops ``dvc repro``
within a second, naming file, line or row, column and problem, before DVC deletes any
output of the stage that would read it.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

from .beir import DataError, is_beir_folder, json_records, load_beir, read_lines
from .params import BUILTIN_BASE_MODEL, HUB_ID, ModelParams, Params, SourceSpec

# Kept equal to norsparse.sources (tests/test_inputs.py checks): that module imports pandas, this one must not.
DEFAULT_COLUMNS = {
    "query": ("query", "anchor", "question", "question_stem"),
    "positive": ("positive", "pos", "context", "passage", "document", "fact1"),
    "negative": ("negative", "neg", "hard_negative"),
    "title": ("title",),
}
LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
TEXT_ROLES = ("query", "positive", "negative", "title")
LIST_OK = ("positive", "negative")  # a list of passages becomes one row each / the first negative is used


# ---------------------------------------------------------------------------------------------- fingerprints

def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def input_files(path: Path) -> list[Path]:
    """The file itself, or a folder's visible files (hidden ones skipped) in sorted order."""
    return [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and _visible(p, path))


def fingerprint(path: str | Path) -> str:
    """sha256 over a file's bytes, or over a folder's file names and bytes (hidden files skipped)."""
    path = Path(path)
    digest = hashlib.sha256()
    for file in input_files(path):
        digest.update(file.relative_to(path).as_posix().encode() if file != path else b"")
        digest.update(b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_value(where: str, role: str, column: str, value: Any) -> None:
    if value is None or isinstance(value, str):
        return
    if isinstance(value, list) and role in LIST_OK and all(v is None or isinstance(v, str) for v in value):
        return
    if isinstance(value, bool) or isinstance(value, (int, float)):
        kind = "a number" if not isinstance(value, bool) else "a boolean"
    elif isinstance(value, list):
        kind = "a list of non-text values" if role in LIST_OK else "a list"
    else:
        kind = f"a {type(value).__name__}"
    raise DataError(f"{where}: column {column!r} (the {role}) holds {kind} ({_describe(value)}), expected text; "
                    "norsparse does not turn numbers into passages silently: fix the data or map another column")


# ---------------------------------------------------------------------------------------------- columns

def _roles(spec: SourceSpec, available: list[str], where: str) -> dict[str, str]:
    """role -> column, as norsparse.sources will pick them; a missing column is an error naming the available ones."""
    picked = {}
    for role in TEXT_ROLES:
        if spec.columns is not None:
            name = spec.columns.get(role)  # type: ignore[call-overload]
            if name is not None and name not in available:
                raise DataError(f"{where}: column {name!r} (for {role}) not found; available columns: {', '.join(available)}")
        else:
            name = next((c for c in DEFAULT_COLUMNS[role] if c in available), None)
            if name is None and role in ("query", "positive"):
                raise DataError(f"{where}: no {role} column found (looked for {', '.join(DEFAULT_COLUMNS[role])}); map one "
                                f"with `columns: {{{role}: ...}}` in the source {spec.name!r}. Available columns: {', '.join(available)}")
        if name is not None:
            picked[role] = name
    for column in (spec.filter or {}):
        if column not in available:
            raise DataError(f"{where}: filter column {column!r} not found; available columns: {', '.join(available)}")
    return picked


def _check_records(spec: SourceSpec, path: Path, records: list[tuple[int, dict]], unit: str) -> None:
    if not records:
        raise DataError(f"{path}: no rows")
    available = sorted({key for _, row in records for key in row})
    picked = _roles(spec, available, str(path))
    for number, row in records:
        for role, column in picked.items():
            _check_value(f"{path}: {unit}{number}" if unit else f"{path}:{number}", role, column, row.get(column))


def check_jsonl(spec: SourceSpec, path: Path) -> None:
    _check_records(spec, path, json_records(path, read_lines(path)), "")


def check_json(spec: SourceSpec, path: Path) -> None:
    lines = read_lines(path)
    text = "".join(lines)
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as error:
        if len([line for line in lines if line.strip()]) <= 1:
            raise DataError(f"{path}:{error.lineno}:{error.colno}: not valid JSON ({error.msg})") from None
        whole = None  # several lines that are not one document: JSON lines, as the datasets json builder reads them
    if isinstance(whole, list):
        for index, row in enumerate(whole):
            if not isinstance(row, dict):
                raise DataError(f"{path}: row {index}: expected a JSON object, got {type(row).__name__}")
        _check_records(spec, path, list(enumerate(whole)), "row ")
    elif isinstance(whole, dict) and whole and all(isinstance(v, list) for v in whole.values()):
        raise DataError(f"{path}: a JSON object of lists; write a list of row objects or JSON lines instead")
    elif isinstance(whole, dict):
        _check_records(spec, path, [(1, whole)], "")
    else:
        _check_records(spec, path, json_records(path, lines), "")


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_csv(spec: SourceSpec, path: Path) -> None:
    lines = read_lines(path)
    reader = csv.reader(io.StringIO("".join(lines)))
    try:
        header = next(reader)
        rows = [(reader.line_num, row) for row in reader]
    except csv.Error as error:
        raise DataError(f"{path}:{reader.line_num}: not valid CSV ({error})") from None
    if not rows:
        raise DataError(f"{path}: a header but no rows")
    picked = _roles(spec, header, str(path))
    for number, row in rows:
        if len(row) != len(header):
            raise DataError(f"{path}:{number}: {len(row)} fields, the header has {len(header)}")
    for role, column in picked.items():
        index = header.index(column)
        values = [row[index] for _, row in rows if row[index].strip()]
        if values and all(_numeric(v) for v in values):
            raise DataError(f"{path}: column {column!r} (the {role}) holds only numbers (row 2: {values[0]!r}), expected "
                            "text; norsparse does not turn numbers into passages silently: map another column")


def check_parquet(spec: SourceSpec, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.stat().st_size:
        raise DataError(f"{path}: the file is empty")
    try:
        metadata = pq.ParquetFile(path).metadata
    except Exception as error:  # noqa: BLE001 - pyarrow raises several types for a broken file
        raise DataError(f"{path}: not a readable parquet file ({type(error).__name__}: {str(error).splitlines()[0][:200]})") from None
    schema = metadata.schema.to_arrow_schema()
    if metadata.num_rows == 0:
        raise DataError(f"{path}: no rows")
    picked = _roles(spec, schema.names, str(path))

    def text(t) -> bool:
        return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)

    for role, column in picked.items():
        kind = schema.field(column).type
        ok = text(kind) or (role in LIST_OK and (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and text(kind.value_type))
        if not ok:
            raise DataError(f"{path}: column {column!r} (the {role}) has type {kind}, expected text"
                            + (" or a list of texts" if role in LIST_OK else ""))


CHECKERS = {".jsonl": check_jsonl, ".json": check_json, ".csv": check_csv, ".parquet": check_parquet}


def _check_beir_source(spec: SourceSpec, folder: Path) -> None:
    load_beir(folder)
    negatives = folder / "hard_negatives.tsv"
    if negatives.exists():
        lines = read_lines(negatives)
        if lines[0].rstrip("\r\n").split("\t") != ["query-id", "corpus-id"]:
            raise DataError(f"{negatives}:1: expected the header query-id<TAB>corpus-id")


def local_source_path(spec: SourceSpec) -> Path | None:
    """The local file or folder of a source; None for a hub dataset id (checked and pinned by params and prepare)."""
    path = Path(spec.path)
    if path.exists():
        return path
    if HUB_ID.match(spec.path) and not spec.path.startswith((".", "/")):
        return None
    raise DataError(f"source {spec.name!r}: {spec.path} is neither an existing local file or folder nor a hub dataset id")


def check_source(spec: SourceSpec) -> Path | None:
    """Check a local source's files before anything heavy is imported; return its path (None for a hub source)."""
    path = local_source_path(spec)
    if path is None:
        return None
    try:
        if is_beir_folder(path):
            _check_beir_source(spec, path)
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in CHECKERS and _visible(p, path))
            if not files:
                raise DataError(f"{path}: a folder without data files ({', '.join(LOCAL_SUFFIXES)}) and not a BEIR folder")
            for file in files:
                CHECKERS[file.suffix.lower()](spec, file)
        elif path.suffix.lower() in CHECKERS:
            CHECKERS[path.suffix.lower()](spec, path)
        else:
            raise DataError(f"{path} has an unsupported extension; use one of {', '.join(LOCAL_SUFFIXES)}")
    except DataError as error:
        raise DataError(f"source {spec.name!r}: {error}") from None
    return path


def check_sources(sources: list[SourceSpec]) -> dict[str, Path | None]:
    return {spec.name: check_source(spec) for spec in sources}


# ---------------------------------------------------------------------------------------------- base model and tasks

def local_base_model(model: ModelParams) -> Path | None:
    if model.base_model == BUILTIN_BASE_MODEL:
        return None
    path = Path(model.base_model)
    return path if path.exists() else None


def check_base_model(model: ModelParams) -> Path | None:
    """A local base model folder: config.json readable, remote code present and trusted."""
    path = local_base_model(model)
    if path is None:
        return None
    where = f"model.base_model {model.base_model!r}"
    config_path = path / "config.json"
    if not path.is_dir() or not config_path.exists():
        raise DataError(f"{where} is not a model folder: {config_path} is missing")
    lines = read_lines(config_path)
    try:
        config = json.loads("".join(lines))
    except json.JSONDecodeError as error:
        raise DataError(f"{config_path}:{error.lineno}:{error.colno}: not valid JSON ({error.msg})") from None
    if not isinstance(config, dict):
        raise DataError(f"{config_path}: expected a JSON object, got {type(config).__name__}")
    auto_map = config.get("auto_map") or {}
    if not isinstance(auto_map, dict):
        raise DataError(f"{config_path}: auto_map must be an object, got {type(auto_map).__name__}")
    code = sorted({str(ref).rpartition(".")[0] for ref in auto_map.values()})
    if code:
        if not model.trust_remote_code:
            raise DataError(f"{where} ships remote code ({', '.join(c + '.py' for c in code)}, named by auto_map in "
                            f"{config_path}); review it, then set model.trust_remote_code: true")
        for module in code:
            if "--" not in module and not (path / f"{module}.py").exists():
                raise DataError(f"{config_path}: auto_map names {module}.py, which is missing from {path}")
    return path


def check_tasks(tasks: list[str]) -> list[Path]:
    folders = []
    for task in tasks:
        folder = Path(task)
        if not is_beir_folder(folder):
            raise DataError(f"evaluate.tasks: {task} is not a BEIR folder (needs corpus.jsonl, queries.jsonl and qrels)")
        load_beir(folder)
        folders.append(folder)
    return folders


# ---------------------------------------------------------------------------------------------- per stage

def stage_inputs(params: Params) -> dict[str, dict[str, Path]]:
    """Check every local input named in params; return, per stage that reads them, each one's path by name."""
    sources = check_sources(params.data.sources)
    base = check_base_model(params.model)
    tasks = check_tasks(params.evaluate.tasks)
    return {
        "prepare": {name: path for name, path in sources.items() if path is not None},
        "patch": {"base_model": base} if base is not None else {},
        "evaluate": {folder.name: folder for folder in tasks},
    }


def stage_fingerprints(params: Params, local: dict[str, dict[str, Path]]) -> dict[str, dict]:
    """For each stage that reads local inputs outside its deps: name -> content hash (no paths: they are params).

    ``local`` is :func:`stage_inputs`; hub sources and hub base models are named ``hub``.
    """
    prepare = local["prepare"]
    base = local["patch"].get("base_model")
    return {
        "prepare": {"sources": {spec.name: fingerprint(prepare[spec.name]) if spec.name in prepare else "hub"
                                for spec in params.data.sources}},
        "patch": {"base_model": fingerprint(base) if base else params.model.base_model if params.model.base_model == BUILTIN_BASE_MODEL else "hub"},
        "evaluate": {"tasks": {name: fingerprint(folder) for name, folder in local["evaluate"].items()}},
    }


def mirror_links(folder: Path, named: dict[str, Path]) -> None:
    """Fill the empty ``folder`` with a symbolic link to every file of each named input: ``<name>`` for a file,
    ``<name>/<relative path>`` for each visible file of a folder, and ``index.json`` (name -> file or folder).

    A stage that lists ``folder`` in its deps is then one DVC hashes by the inputs' contents (DVC follows a
    link to a file, not to a folder): ``dvc status`` sees an edit of an input outside the project at once.
    """
    index = {}
    for name, path in sorted(named.items()):
        path = Path(path).resolve()
        if path.is_file():
            (folder / name).symlink_to(path)
            index[name] = "file"
            continue
        index[name] = "folder"
        for file in input_files(path):
            link = folder / name / file.relative_to(path)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(file)
    (folder / "index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
