"""Reading the sources named in ``data.sources`` into one table of training rows.

A source is a hub dataset id (pinned to a revision), a local file (jsonl, json,
parquet, csv), a local folder of such files (split names from the file names,
as on the hub) or a local BEIR folder. Every source becomes rows with the same
columns: ``query``, ``positive_title``, ``positive_text``, ``negative_title``,
``negative_text``, ids where the source has them, ``split`` when the source
names its own splits, and ``source``.

Problems are reported with the source's name: a missing column, an unknown
split, a hub id without a revision, an unreachable hub.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from .beir import DataError, is_beir_folder, load_beir, qrels_path, read_qrels
from .hub import unreachable
from .params import COMMIT_SHA, HUB_ID, SourceSpec

log = logging.getLogger(__name__)

ROW_COLUMNS = [
    "source", "split", "query_id", "query", "positive_id", "positive_title", "positive_text",
    "negative_id", "negative_title", "negative_text",
]
# Column names tried, in order, when a source gives no `columns` mapping.
DEFAULT_COLUMNS = {
    "query": ("query", "anchor", "question", "question_stem"),
    "positive": ("positive", "pos", "context", "passage", "document", "fact1"),
    "negative": ("negative", "neg", "hard_negative"),
    "title": ("title",),
}
LOCAL_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def source_kind(spec: SourceSpec) -> str:
    path = Path(spec.path)
    if path.exists():
        if is_beir_folder(path):
            return "beir"
        if path.is_dir():
            return "folder"
        if path.suffix.lower() in LOCAL_BUILDERS:
            return "file"
        raise DataError(
            f"source {spec.name!r}: {spec.path} has an unsupported extension; use one of {', '.join(LOCAL_BUILDERS)}"
        )
    if HUB_ID.match(spec.path) and not spec.path.startswith((".", "/")):
        return "hub"
    raise DataError(f"source {spec.name!r}: {spec.path} is neither an existing local file or folder nor a hub dataset id")


def check_source(spec: SourceSpec) -> str:
    """Checks that need no data: fail before anything is downloaded or read."""
    kind = source_kind(spec)
    if kind == "hub" and not spec.revision:
        raise DataError(
            f"source {spec.name!r}: hub dataset {spec.path!r} needs a pinned `revision` (a commit sha) "
            "so that the prepared data can be reproduced"
        )
    if kind == "hub" and not COMMIT_SHA.match(spec.revision or ""):
        log.warning("source %r: revision %r is not a commit sha; the data may change under you", spec.name, spec.revision)
    if kind == "beir" and (spec.columns or spec.filter):
        raise DataError(f"source {spec.name!r}: a BEIR folder has fixed columns; remove `columns` and `filter`")
    return kind


def _hub_reachable(spec: SourceSpec) -> None:
    problem = unreachable(spec.path, spec.revision, "dataset")
    if problem:
        raise DataError(
            f"source {spec.name!r}: cannot fetch hub dataset {spec.path!r} at revision {spec.revision!r} ({problem}). "
            "If it is in your local cache, set HF_HUB_OFFLINE=1; otherwise use a local copy or the embedded default "
            "source (data/sample)."
        )


def _load_splits(spec: SourceSpec, kind: str) -> dict[str, Any]:
    import datasets

    datasets.disable_progress_bars()
    try:
        if kind == "file":
            builder = LOCAL_BUILDERS[Path(spec.path).suffix.lower()]
            loaded = datasets.load_dataset(builder, data_files={"train": spec.path})
        elif kind == "folder":
            loaded = datasets.load_dataset(spec.path, spec.subset)
        else:
            _hub_reachable(spec)
            loaded = datasets.load_dataset(spec.path, spec.subset, revision=spec.revision)
    except DataError:
        raise
    except Exception as error:  # noqa: BLE001 - name the source whatever the library raised
        raise DataError(f"source {spec.name!r}: could not load {spec.path!r}: {type(error).__name__}: {error}") from None
    return dict(loaded)


def _pick_column(spec: SourceSpec, role: str, columns: list[str], split: str) -> str | None:
    if spec.columns is not None:
        name = spec.columns.get(role)  # type: ignore[call-overload]
        if name is not None and name not in columns:
            raise DataError(
                f"source {spec.name!r}: column {name!r} (for {role}) not found in split {split!r}; "
                f"available columns: {', '.join(columns)}"
            )
        return name
    found = next((c for c in DEFAULT_COLUMNS[role] if c in columns), None)
    if found is None and role in ("query", "positive"):
        raise DataError(
            f"source {spec.name!r}: no {role} column found in split {split!r} (looked for "
            f"{', '.join(DEFAULT_COLUMNS[role])}); map one with `columns: {{{role}: ...}}`. "
            f"Available columns: {', '.join(columns)}"
        )
    return found


def _first_text(value: Any) -> Any:
    """Hub datasets sometimes hold a list of negatives; use the first."""
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        items = list(value)
        return items[0] if items else None
    return value


def _text_columns(spec: SourceSpec, frame: pd.DataFrame, picked: dict, split: str) -> None:
    """A numeric or boolean column is not text: stop rather than train on its str() (hub data; local files are
    checked earlier by norsparse.inputs)."""
    for role, column in picked.items():
        if column is not None and (pd.api.types.is_numeric_dtype(frame[column]) or pd.api.types.is_bool_dtype(frame[column])):
            raise DataError(f"source {spec.name!r}: column {column!r} (the {role}) of split {split!r} has type "
                            f"{frame[column].dtype}, expected text")


def _table_rows(spec: SourceSpec, frame: pd.DataFrame, split_name: str | None, raw_split: str) -> pd.DataFrame:
    columns = list(frame.columns)
    if spec.filter:
        for column, allowed in spec.filter.items():
            if column not in columns:
                raise DataError(
                    f"source {spec.name!r}: filter column {column!r} not found in split {raw_split!r}; "
                    f"available columns: {', '.join(columns)}"
                )
            frame = frame[frame[column].isin(allowed)]
    q = _pick_column(spec, "query", columns, raw_split)
    p = _pick_column(spec, "positive", columns, raw_split)
    n = _pick_column(spec, "negative", columns, raw_split)
    t = _pick_column(spec, "title", columns, raw_split)
    _text_columns(spec, frame, {"query": q, "positive": p, "negative": n, "title": t}, raw_split)
    rows = pd.DataFrame({
        "query": frame[q].values,
        "positive_text": frame[p].values,
        "positive_title": frame[t].values if t else None,
        "negative_text": frame[n].map(_first_text).values if n else None,
    })
    # A list of positives (e.g. several relevant passages) becomes one row each.
    if rows["positive_text"].map(lambda v: isinstance(v, (list, tuple)) or hasattr(v, "tolist")).any():
        rows["positive_text"] = rows["positive_text"].map(lambda v: list(v) if hasattr(v, "__iter__") and not isinstance(v, str) else [v])
        rows = rows.explode("positive_text", ignore_index=True)
    rows["split"] = split_name
    return rows


def _beir_rows(spec: SourceSpec) -> pd.DataFrame:
    folder = Path(spec.path)
    data = load_beir(folder)
    negatives = _read_hard_negatives(folder, data)
    if spec.splits:
        qrels_by_split = {}
        for ours, theirs in spec.splits.items():
            path = folder / "qrels" / f"{theirs}.tsv"
            if not path.exists():
                available = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
                raise DataError(
                    f"source {spec.name!r}: split {theirs!r} not found (no {path}); available splits: "
                    f"{', '.join(available) or 'none'}"
                )
            qrels_by_split[ours] = read_qrels(path)
    else:
        qrels_by_split = {None: read_qrels(qrels_path(folder))}
    records = []
    for split_name, qrels in qrels_by_split.items():
        for query_id, docs in qrels.items():
            relevant = [did for did, score in docs.items() if score > 0]
            hard = negatives.get(query_id, [])
            for i, corpus_id in enumerate(relevant):
                negative_id = hard[i % len(hard)] if hard else None
                positive = data.corpus[corpus_id]
                negative = data.corpus[negative_id] if negative_id else {"title": None, "text": None}
                records.append({
                    "split": split_name, "query_id": query_id, "query": data.queries[query_id],
                    "positive_id": corpus_id, "positive_title": positive["title"], "positive_text": positive["text"],
                    "negative_id": negative_id, "negative_title": negative["title"], "negative_text": negative["text"],
                })
    return pd.DataFrame.from_records(records)


def _read_hard_negatives(folder: Path, data) -> dict[str, list[str]]:
    """Optional ``hard_negatives.tsv`` (query-id, corpus-id): same-topic passages that do not answer."""
    path = folder / "hard_negatives.tsv"
    if not path.exists():
        return {}
    negatives: dict[str, list[str]] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].split("\t") != ["query-id", "corpus-id"]:
        raise DataError(f"{path}:1: expected the header query-id<TAB>corpus-id")
    for number, line in enumerate(lines[1:], 2):
        parts = line.split("\t")
        if len(parts) != 2 or parts[0] not in data.queries or parts[1] not in data.corpus:
            raise DataError(f"{path}:{number}: expected a known query-id and corpus-id, got {line!r}")
        negatives.setdefault(parts[0], []).append(parts[1])
    return negatives


def load_source(spec: SourceSpec) -> pd.DataFrame:
    """All rows of one source, before cleaning, in the shared row layout."""
    kind = check_source(spec)
    if kind == "beir":
        rows = _beir_rows(spec)
    else:
        loaded = _load_splits(spec, kind)
        wanted = spec.splits or {None: name for name in loaded}  # no mapping: every split, split by ratio later
        parts = []
        for ours, theirs in wanted.items():
            if theirs not in loaded:
                raise DataError(
                    f"source {spec.name!r}: split {theirs!r} not found; available splits: {', '.join(loaded)}"
                )
            parts.append(_table_rows(spec, loaded[theirs].to_pandas(), ours, theirs))
        rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    for column in ROW_COLUMNS:
        if column not in rows:
            rows[column] = None
    rows["source"] = spec.name
    return rows[ROW_COLUMNS].reset_index(drop=True)
