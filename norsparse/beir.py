"""Reading and writing retrieval data in the BEIR folder layout.

A BEIR folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
(``_id``, ``text``) and qrels as TSV with the header ``query-id	corpus-id	score``,
either in ``qrels/test.tsv`` (the usual layout) or ``qrels.tsv`` at the root.
Every problem is reported with the file and line it was found on.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

QRELS_HEADER = ["query-id", "corpus-id", "score"]


class DataError(ValueError):
    """Input data is malformed; the message names the file, line or row."""


def document_text(title: str | None, text: str) -> str:
    """The text a model reads for a document: title and text joined, as mteb does."""
    return f"{title} {text}".strip() if title else text.strip()


def read_lines(path: Path) -> list[str]:
    """A text file's lines; a byte that is not UTF-8 is reported with its line and column, an empty file as empty."""
    data = Path(path).read_bytes()
    if not data.strip():
        raise DataError(f"{path}: the file is empty")
    lines = []
    for number, raw in enumerate(data.splitlines(keepends=True), 1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise DataError(f"{path}:{number}:{error.start + 1}: byte 0x{raw[error.start]:02x} is not valid UTF-8 "
                            "(save the file as UTF-8)") from None
    if lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]
    return lines


def json_records(path: Path, lines: list[str]) -> list[tuple[int, dict]]:
    """``(line number, object)`` for every non-blank line; a bad line is reported with its line and column."""
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{number}:{error.colno}: not valid JSON ({error.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        records.append((number, row))
    return records


def read_jsonl(path: Path, required: tuple[str, ...] = ()) -> list[dict]:
    rows = []
    for number, row in json_records(path, read_lines(path)):
        missing = [key for key in required if key not in row]
        if missing:
            raise DataError(f"{path}:{number}: missing field(s) {', '.join(missing)}")
        for key in required:
            if key != "_id" and not isinstance(row[key], str):
                raise DataError(f"{path}:{number}: field {key!r} holds {type(row[key]).__name__} "
                                f"({str(row[key])[:40]!r}), expected text")
        rows.append(row)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def qrels_path(folder: Path) -> Path:
    for candidate in (folder / "qrels" / "test.tsv", folder / "qrels.tsv"):
        if candidate.exists():
            return candidate
    raise DataError(f"{folder}: no qrels found (expected qrels/test.tsv or qrels.tsv)")


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    reader = csv.reader(read_lines(path), delimiter="\t")
    header = next(reader, None)
    if header != QRELS_HEADER:
        raise DataError(f"{path}:1: expected the header {' / '.join(QRELS_HEADER)} (tab-separated), got {header}")
    for number, row in enumerate(reader, 2):
        if not row:
            continue
        if len(row) != 3:
            raise DataError(f"{path}:{number}: expected 3 tab-separated columns, got {len(row)}")
        query_id, corpus_id, score = row
        try:
            value = int(score)
        except ValueError:
            raise DataError(f"{path}:{number}: score {score!r} is not an integer") from None
        qrels.setdefault(query_id, {})[corpus_id] = value
    return qrels


def write_qrels(path: Path, qrels: dict[str, dict[str, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(QRELS_HEADER)
        for query_id, docs in qrels.items():
            for corpus_id, score in docs.items():
                writer.writerow([query_id, corpus_id, score])


@dataclass
class BeirData:
    """Corpus (id -> {title, text}), queries (id -> text) and qrels (query id -> {corpus id: score})."""

    corpus: dict[str, dict[str, str]] = field(default_factory=dict)
    queries: dict[str, str] = field(default_factory=dict)
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)

    def relevant(self, min_score: int = 1) -> dict[str, set[str]]:
        return {
            qid: {did for did, score in docs.items() if score >= min_score}
            for qid, docs in self.qrels.items()
            if any(score >= min_score for score in docs.values())
        }

    def documents(self) -> dict[str, str]:
        return {did: document_text(doc.get("title"), doc["text"]) for did, doc in self.corpus.items()}


def is_beir_folder(path: Path) -> bool:
    return path.is_dir() and (path / "corpus.jsonl").exists() and (path / "queries.jsonl").exists()


def _unique(rows: list[dict], path: Path, key: str = "_id") -> None:
    seen: dict[str, int] = {}
    for number, row in enumerate(rows, 1):
        value = str(row[key])
        if value in seen:
            raise DataError(f"{path}: id {value!r} appears twice (rows {seen[value]} and {number})")
        seen[value] = number


def load_beir(folder: str | Path) -> BeirData:
    folder = Path(folder)
    if not is_beir_folder(folder):
        raise DataError(f"{folder}: not a BEIR folder (needs corpus.jsonl, queries.jsonl and qrels)")
    corpus_rows = read_jsonl(folder / "corpus.jsonl", ("_id", "text"))
    query_rows = read_jsonl(folder / "queries.jsonl", ("_id", "text"))
    for rows, name in ((corpus_rows, "corpus.jsonl"), (query_rows, "queries.jsonl")):
        if not rows:
            raise DataError(f"{folder / name}: no rows")
    _unique(corpus_rows, folder / "corpus.jsonl")
    _unique(query_rows, folder / "queries.jsonl")
    data = BeirData(
        corpus={str(r["_id"]): {"title": r.get("title") or "", "text": r["text"]} for r in corpus_rows},
        queries={str(r["_id"]): r["text"] for r in query_rows},
    )
    path = qrels_path(folder)
    data.qrels = read_qrels(path)
    if not data.qrels:
        raise DataError(f"{path}: a header but no relevance judgements")
    for query_id, docs in data.qrels.items():
        if query_id not in data.queries:
            raise DataError(f"{path}: query-id {query_id!r} is not in queries.jsonl")
        for corpus_id in docs:
            if corpus_id not in data.corpus:
                raise DataError(f"{path}: corpus-id {corpus_id!r} (query {query_id!r}) is not in corpus.jsonl")
    return data


def write_beir(folder: Path, data: BeirData) -> None:
    write_jsonl(folder / "corpus.jsonl", [{"_id": k, "title": v.get("title", ""), "text": v["text"]} for k, v in data.corpus.items()])
    write_jsonl(folder / "queries.jsonl", [{"_id": k, "text": v} for k, v in data.queries.items()])
    write_qrels(folder / "qrels" / "test.tsv", data.qrels)
