"""Cleaning rows and splitting them into train, dev and test without leaks.

Rows are grouped before they are split: rows that share a passage or a query
(and, where it keeps groups small, a hard negative) land in the same split, so
no passage text occurs in two splits. Sources that bring their own splits keep
them; afterwards every training row whose passage or query also occurs in dev or
test is dropped, across sources, because NorQuAD-style data repeats a context
over many questions and a row-wise split would leak it.

All of it is columnar, so that a million rows fit in bounded memory: sources are
read in batches, cleaned batch by batch and spilled to disk (``rowstore``). Texts
are compared by the SHA-1 digests of their normalised forms, which are numbered
once (``np.unique``), so deduplication, grouping and leak removal are integer
array operations. The outputs are written as they are read back, a window of
rows at a time.
"""
from __future__ import annotations

import contextlib
import csv
import json
import logging
import shutil
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from .beir import QRELS_HEADER, BeirData, document_text, load_beir
from .params import DataParams, SourceSpec
from .rowstore import RowStore, hex12, normalized_digests
from .sources import check_source, iter_source

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
TRAIN, DEV, TEST, UNSPLIT = 0, 1, 2, -1
SPLIT_CODES = {None: UNSPLIT, "train": TRAIN, "dev": DEV, "test": TEST}
WINDOW = 32_768  # rows read back and written at a time
_json = json.encoder.encode_basestring  # a str as json.dumps(..., ensure_ascii=False) writes it, without the dict overhead


def normalize(text: str) -> str:
    """The form in which two passages count as the same text: NFKC, runs of whitespace as one space, casefolded.

    ``str.split()`` splits on exactly the characters that the regex ``\\s`` matches, so this is
    ``re.sub(r"\\s+", " ", nfkc).strip().casefold()``, several times faster.
    """
    text = unicodedata.normalize("NFKC", text)
    # printable text holds no whitespace but " " (every other one is Cc, Zs, Zl or Zp): then only runs and ends matter
    if not (text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " "):
        text = " ".join(text.split())
    return text.casefold()


def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value)) or (isinstance(value, str) and not value.strip())


def _blank_mask(values: pd.Series) -> np.ndarray:
    return np.array([_blank(v) for v in values.tolist()], dtype=bool)


def _strings(values) -> list[str | None]:
    return [v if isinstance(v, str) else None for v in values]


@dataclass
class SourceStats:
    loaded: int = 0
    dropped_empty: int = 0
    dropped_length: int = 0
    dropped_duplicate: int = 0
    dropped_leak: int = 0
    negatives_dropped_leak: int = 0
    kept: dict[str, int] = field(default_factory=lambda: {s: 0 for s in SPLITS})

    def as_dict(self) -> dict:
        return {
            "loaded": self.loaded, "dropped_empty": self.dropped_empty, "dropped_length": self.dropped_length,
            "dropped_duplicate": self.dropped_duplicate, "dropped_leak": self.dropped_leak,
            "negatives_dropped_leak": self.negatives_dropped_leak, **{f"{s}_rows": n for s, n in self.kept.items()},
        }


def clean_batch(rows: pd.DataFrame, stats: SourceStats, min_chars: int, max_chars: int) -> pd.DataFrame:
    """The row-wise part of cleaning: drop empty/None rows and rows outside the length bounds, strip query
    and passage, blank empty negatives. Duplicates and ``max_samples`` need the whole source (``Prepared``)."""
    stats.loaded += len(rows)
    empty = _blank_mask(rows["query"]) | _blank_mask(rows["positive_text"])
    stats.dropped_empty += int(empty.sum())
    rows = rows[~empty].copy()
    rows["query"] = rows["query"].astype(str).str.strip()
    rows["positive_text"] = rows["positive_text"].astype(str).str.strip()
    rows.loc[_blank_mask(rows["negative_text"]), ["negative_text", "negative_title", "negative_id"]] = None
    q_len, p_len = rows["query"].str.len(), rows["positive_text"].str.len()
    bad_length = (q_len < min_chars) | (p_len < min_chars) | (p_len > max_chars) | (q_len > max_chars)
    stats.dropped_length += int(bad_length.sum())
    return rows[~bad_length]


def _store(store: RowStore, rows: pd.DataFrame, source: int, seed: int) -> None:
    """Spill a cleaned batch, with the digests of its normalised query, passage and negative."""
    negative = [None if _blank(v) else str(v) for v in rows["negative_text"]]
    split = np.array([SPLIT_CODES[s if isinstance(s, str) else None] for s in rows["split"]], dtype=np.int8)
    # the anchor digest orders the groups of rows without a named split (``_assign_splits``)
    unsplit = bool((split == UNSPLIT).any())
    positive, anchor = normalized_digests(rows["positive_text"], normalize, (b"", f"{seed}\x00".encode()) if unsplit else (b"",)) \
        + ([] if unsplit else [np.zeros(len(split), dtype="S20")])
    anchor[split != UNSPLIT] = b""
    digests = {"query": normalized_digests(rows["query"], normalize)[0], "positive": positive,
               "negative": normalized_digests(negative, normalize)[0], "anchor": anchor}
    texts = {"query": rows["query"], "positive_text": rows["positive_text"], "negative_text": negative}
    for column in ("query_id", "positive_id", "positive_title", "negative_id", "negative_title"):
        texts[column] = _strings(rows[column])
    store.append(texts, source, split, digests)


def _first_of_each(values: np.ndarray) -> np.ndarray:
    """Positions of the first occurrence of each distinct value, in order of position."""
    _, first = np.unique(values, return_index=True)
    return np.sort(first)


def _rank_of_first(values: np.ndarray) -> np.ndarray:
    """For every element, the rank of its value's first occurrence among all first occurrences."""
    _, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse]


def _assign_splits(split: np.ndarray, todo: np.ndarray, p: np.ndarray, q: np.ndarray, neg: np.ndarray,
                   anchor: np.ndarray, dev: float, test: float) -> None:
    """Split the rows ``todo`` (positions, in order) by group, in a stable hash order, to the given fractions.

    A group is the rows sharing a passage or a query (connected components); hard negatives join groups
    too (a query's distractors then stay in its split, which keeps the test corpus hard), in row order and
    only while the merged group has at most ``max(50, n // 50)`` rows, so a mined negative cannot chain the
    whole source into one group.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    m = len(todo)
    if m == 0:
        return
    pt, qt, nt = p[todo], q[todo], neg[todo]
    passages, first_p, inv_p = np.unique(pt, return_index=True, return_inverse=True)
    _, first_q, inv_q = np.unique(qt, return_index=True, return_inverse=True)
    rows = np.arange(m)
    graph = coo_matrix((np.ones(2 * m), (np.concatenate([rows, rows]), np.concatenate([first_p[inv_p], first_q[inv_q]]))),
                       shape=(m, m))
    _, component = connected_components(graph, directed=False)
    sizes = np.bincount(component).tolist()
    parent = list(range(len(sizes)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    at = np.minimum(np.searchsorted(passages, nt), len(passages) - 1)
    hits = np.flatnonzero((nt >= 0) & (passages[at] == nt))
    limit = max(50, m // 50)
    for a, b in zip(component[first_p[at[hits]]].tolist(), component[hits].tolist()):
        ra, rb = find(a), find(b)
        if ra == rb or sizes[ra] + sizes[rb] > limit:
            continue
        if sizes[ra] < sizes[rb]:
            ra, rb = rb, ra
        parent[rb] = ra
        sizes[ra] += sizes[rb]
    root = np.array(parent)
    while not np.array_equal(root, root[root]):
        root = root[root]
    groups, first_row, group_of, size = np.unique(root[component], return_index=True, return_inverse=True, return_counts=True)
    order = np.argsort(anchor[todo[first_row]], kind="stable")  # sha1(seed, passage of the group's first row)
    done = np.cumsum(size[order]) - size[order]
    named = np.where(done < test * m, TEST, np.where(done < (test + dev) * m, DEV, TRAIN)).astype(np.int8)
    assigned = np.empty(len(groups), dtype=np.int8)
    assigned[order] = named
    split[todo] = assigned[group_of]


@dataclass
class EvaluationPlan:
    """What a BEIR split holds, as row positions: documents (the split's own, then distractors), queries, qrels."""

    doc_rows: np.ndarray
    doc_negative: np.ndarray  # the document is the row's negative, not its passage
    doc_keys: np.ndarray
    own_docs: int  # documents before the distractors; every judged passage is among them
    query_rows: np.ndarray
    qrels: tuple[np.ndarray, np.ndarray]  # (query index, document index) per judgement, in output order


class Prepared:
    """Every source cleaned, split and free of leaks, ready to be written (``write``)."""

    def __init__(self, store: RowStore, meta: dict[str, np.ndarray], ranges: dict[str, tuple[int, int]],
                 stats: dict[str, SourceStats], max_samples: dict[str, int | None], dev: float, test: float, seed: int,
                 distractors: int | None):
        self.store, self.stats, self.names = store, stats, list(ranges)
        self.source, self.split = meta["source"], meta["split"].copy()
        n = len(self.split)
        has_negative = meta["negative"] != b""
        self.keys, inverse = np.unique(np.concatenate([meta["query"], meta["positive"], meta["negative"][has_negative]]),
                                       return_inverse=True)
        self.q, self.p = inverse[:n], inverse[n:2 * n]
        self.neg = np.full(n, -1, dtype=np.int64)
        self.neg[has_negative] = inverse[2 * n:]
        self.alive = np.zeros(n, dtype=bool)
        for name, (a, b) in ranges.items():
            self.alive[a:b] = self._deduplicate(a, b, stats[name], max_samples[name], seed)
        todo = np.flatnonzero(self.alive & (self.split == UNSPLIT))
        _assign_splits(self.split, todo, self.p, self.q, self.neg, meta["anchor"], dev, test)
        self._remove_leaks()
        for code, name in enumerate(SPLITS):
            counts = np.bincount(self.source[self.alive & (self.split == code)], minlength=len(self.names))
            for s, source in enumerate(self.names):
                stats[source].kept[name] = int(counts[s])
        self.train_rows = np.flatnonzero(self.alive & (self.split == TRAIN))
        self.evaluation = {name: self._evaluation(code, distractors) for name, code in (("dev", DEV), ("test", TEST))}

    def _deduplicate(self, a: int, b: int, stats: SourceStats, max_samples: int | None, seed: int) -> np.ndarray:
        """Keep the first of each (query, passage) pair of a source, then ``max_samples`` of them."""
        keep = np.zeros(b - a, dtype=bool)
        keep[_first_of_each(self.q[a:b] * len(self.keys) + self.p[a:b])] = True
        kept = np.flatnonzero(keep)
        stats.dropped_duplicate = (b - a) - len(kept)
        if max_samples and len(kept) > max_samples:  # the rows pandas' ``sample`` picks, as before
            chosen = pd.Series(np.arange(len(kept))).sample(n=max_samples, random_state=seed).to_numpy()
            keep[:] = False
            keep[kept[np.sort(chosen)]] = True
        return keep

    def _count(self, mask: np.ndarray, what: str) -> None:
        for s, count in enumerate(np.bincount(self.source[mask], minlength=len(self.names))):
            setattr(self.stats[self.names[s]], what, getattr(self.stats[self.names[s]], what) + int(count))

    def _drop_overlap(self, code: int, against: list[int]) -> None:
        """Drop rows of split ``code`` whose passage or query also occurs in the ``against`` splits."""
        other = self.alive & np.isin(self.split, against)
        leak = self.alive & (self.split == code) & (np.isin(self.p, self.p[other]) | np.isin(self.q, self.q[other]))
        self._count(leak, "dropped_leak")
        self.alive &= ~leak

    def _remove_leaks(self) -> None:
        """No passage or query in two splits: test wins over dev, dev and test over train; leaking negatives are blanked."""
        self._drop_overlap(DEV, [TEST])
        self._drop_overlap(TRAIN, [DEV, TEST])
        evaluation_passages = self.p[self.alive & (self.split != TRAIN)]
        leak = self.alive & (self.split == TRAIN) & (self.neg >= 0) & np.isin(self.neg, evaluation_passages)
        self._count(leak, "negatives_dropped_leak")
        self.neg[leak] = -1

    def _evaluation(self, code: int, distractors: int | None) -> EvaluationPlan:
        """A BEIR split from the rows of one split.

        Its corpus holds every passage of the split, hard negatives too. With ``distractors``
        (``None``: all), it also holds the other passages of the same sources, from every
        split, in the order of their digests, as MS MARCO and BEIR evaluate against the whole
        collection. Without distractors (0), negatives that are training passages stay out, so
        no text is in two splits. Relevance judgements are the same either way.
        """
        part = np.flatnonzero(self.alive & (self.split == code))
        negative = self.neg[part]
        if distractors == 0:
            negative = np.where(np.isin(negative, self.p[self.train_rows]), -1, negative)
        # each row's passage, then its negative; a text is a document once, where it first occurs
        keys = np.stack([self.p[part], negative], axis=1).ravel()
        rows, is_negative = np.repeat(part, 2), np.tile([False, True], len(part))
        valid = np.flatnonzero(keys >= 0)
        first = valid[_first_of_each(keys[valid])]
        doc_rows, doc_negative, doc_keys = rows[first], is_negative[first], keys[first]
        own = len(doc_rows)
        if distractors != 0 and len(part):
            other = np.flatnonzero(self.alive & np.isin(self.source, np.unique(self.source[part])))
            keys = np.stack([self.p[other], self.neg[other]], axis=1).ravel()
            rows, is_negative = np.repeat(other, 2), np.tile([False, True], len(other))
            valid = np.flatnonzero((keys >= 0) & ~np.isin(keys, doc_keys))
            _, first = np.unique(keys[valid], return_index=True)  # key ids are in digest order
            first = valid[first if distractors is None else first[:distractors]]
            doc_rows = np.concatenate([doc_rows, rows[first]])
            doc_negative = np.concatenate([doc_negative, is_negative[first]])
            doc_keys = np.concatenate([doc_keys, keys[first]])
        # queries by (source, normalised query); judgements (query, passage) where they first occur, by query
        query_of_row = _rank_of_first(self.source[part].astype(np.int64) * len(self.keys) + self.q[part])
        query_rows = part[_first_of_each(query_of_row)]
        own_keys, own_index = np.unique(doc_keys[:own], return_index=True)
        doc_of_row = own_index[np.searchsorted(own_keys, self.p[part])]
        judged = _first_of_each(query_of_row * max(own, 1) + doc_of_row)
        by_query = np.argsort(query_of_row[judged], kind="stable")
        return EvaluationPlan(doc_rows, doc_negative, doc_keys, own, query_rows,
                              (query_of_row[judged][by_query], doc_of_row[judged][by_query]))

    # ---------------------------------------------------------------- counts and outputs

    def summary(self) -> dict:
        return {
            "train_rows": len(self.train_rows),
            "train_rows_with_negative": int((self.neg[self.train_rows] >= 0).sum()),
            **{f"{name}_{what}": len(getattr(self.evaluation[name], attr))
               for name in ("dev", "test") for what, attr in (("queries", "query_rows"), ("corpus", "doc_rows"))},
            "sources": {name: s.as_dict() for name, s in self.stats.items()},
        }

    def _windows(self, rows: np.ndarray, columns: tuple[str, ...]) -> Iterator[tuple[slice, dict[str, list]]]:
        for start in range(0, len(rows), WINDOW):
            yield slice(start, start + WINDOW), self.store.read(rows[start:start + WINDOW], columns)

    def write(self, folder: Path) -> None:
        """``train.parquet`` and the ``dev`` and ``test`` BEIR folders."""
        self.write_train(folder / "train.parquet")
        for name in ("dev", "test"):
            self.write_evaluation(name, folder / name)

    def write_train(self, path: Path) -> None:
        """anchor, positive, negative (nullable), source; the schema pandas gives such a frame, as before."""
        rows = self.train_rows
        with_negative = self.neg[rows] >= 0
        template = pd.DataFrame({"anchor": ["x"], "positive": ["x"], "negative": ["x" if with_negative.any() else None],
                                 "source": ["x"]})
        schema = pa.Schema.from_pandas(template, preserve_index=False)
        columns = ("query", "positive_title", "positive_text", "negative_title", "negative_text")
        with pq.ParquetWriter(path, schema, compression="snappy") as writer:
            for window, texts in self._windows(rows, columns):
                negative = [document_text(title, text) if ok else None for title, text, ok in
                            zip(texts["negative_title"], texts["negative_text"], with_negative[window])]
                writer.write_table(pa.table({
                    "anchor": texts["query"],
                    "positive": [document_text(t, text) for t, text in zip(texts["positive_title"], texts["positive_text"])],
                    "negative": negative,
                    "source": [self.names[s] for s in self.source[rows[window]]],
                }, schema=schema))

    def write_evaluation(self, name: str, folder: Path) -> None:
        """The BEIR folder of ``dev`` or ``test``: corpus.jsonl, queries.jsonl, qrels/test.tsv."""
        plan = self.evaluation[name]
        folder.mkdir(parents=True, exist_ok=True)
        doc_ids: list[str] = []
        columns = ("positive_id", "positive_title", "positive_text", "negative_id", "negative_title", "negative_text")
        with (folder / "corpus.jsonl").open("wb") as out:
            for start in range(0, len(plan.doc_rows), WINDOW):
                window = slice(start, start + WINDOW)
                texts = self.store.read_arrow(plan.doc_rows[window], columns)
                negative = pa.array(plan.doc_negative[window])
                pick = {c: pc.if_else(negative, texts[f"negative_{c}"], texts[f"positive_{c}"]) for c in ("id", "title", "text")}
                ids = self._ids(plan.doc_rows[window], pick["id"].to_pylist(), plan.doc_keys[window], "")
                doc_ids += ids[:max(0, plan.own_docs - start)]
                _write_json_lines(out, {"_id": pa.array(ids, type=pa.string()), "title": pc.fill_null(pick["title"], ""),
                                        "text": pick["text"]})
        query_ids: list[str] = []
        with (folder / "queries.jsonl").open("wb") as out:
            for start in range(0, len(plan.query_rows), WINDOW):
                rows = plan.query_rows[start:start + WINDOW]
                texts = self.store.read_arrow(rows, ("query_id", "query"))
                query_ids += self._ids(rows, texts["query_id"].to_pylist(), self.q[rows], "q-")
                _write_json_lines(out, {"_id": pa.array(query_ids[start:], type=pa.string()), "text": texts["query"]})
        (folder / "qrels").mkdir(exist_ok=True)
        with (folder / "qrels" / "test.tsv").open("w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out, delimiter="\t", lineterminator="\n")
            writer.writerow(QRELS_HEADER)
            for query, doc in zip(*(a.tolist() for a in plan.qrels)):
                writer.writerow([query_ids[query], doc_ids[doc], 1])

    def _ids(self, rows: np.ndarray, own: list, keys: np.ndarray, stable_prefix: str) -> list[str]:
        """``source-id`` where the row has an id, else ``source-[q-]`` and 12 hex digits of the text's digest."""
        stable = hex12(self.keys[keys])
        return [f"{self.names[s]}-{i}" if i else f"{self.names[s]}-{stable_prefix}{h}"
                for s, i, h in zip(self.source[rows].tolist(), own, stable)]


_NEEDS_ESCAPE = r'[\x00-\x1f"\\]'  # what json.dumps escapes with ensure_ascii=False (RE2)


def _write_json_lines(out, fields: dict[str, pa.Array]) -> None:
    """One JSON object per row, byte for byte as ``json.dumps(row, ensure_ascii=False)``: strings that need no
    escaping are joined in Arrow, the others encoded by json's own encoder."""
    names = list(fields)
    escape = np.zeros(len(fields[names[0]]), dtype=bool)
    for array in fields.values():
        escape |= pc.match_substring_regex(array, _NEEDS_ESCAPE).to_numpy(zero_copy_only=False)
    parts = []
    for i, name in enumerate(names):
        parts += [("{" if i == 0 else ", ") + f'"{name}": "', fields[name], '"']
    lines = pc.binary_join_element_wise(*parts, "}\n", "")
    if escape.any():
        where = np.flatnonzero(escape)
        slow = [None] * len(escape)
        columns = [fields[n].take(pa.array(where)).to_pylist() for n in names]
        for k, values in zip(where.tolist(), zip(*columns)):
            slow[k] = "{" + ", ".join(f'"{n}": {_json(v)}' for n, v in zip(names, values)) + "}\n"
        lines = pc.if_else(pa.array(escape), pa.array(slow, type=pa.string()), lines)
    assert lines.null_count == 0
    if len(lines):
        offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64 if pa.types.is_large_string(lines.type) else np.int32)
        first, last = int(offsets[lines.offset]), int(offsets[lines.offset + len(lines)])
        out.write(memoryview(lines.buffers()[2])[first:last])


@contextlib.contextmanager
def split_rows(batches: dict[str, Iterable[pd.DataFrame]], cleaning: dict[str, dict], dev: float, test: float, seed: int,
               distractors: int | None = None) -> Iterator[Prepared]:
    """Clean every source batch by batch, split what has no named splits, remove leaks.

    ``batches``: source name -> its raw rows (``sources.ROW_COLUMNS``) in batches. The rows are kept in a
    temporary folder until the block ends.
    """
    tmp = Path(tempfile.mkdtemp(prefix="norsparse-prepare-"))
    try:
        store = RowStore(tmp)
        stats = {name: SourceStats() for name in batches}
        ranges = {}
        for code, (name, parts) in enumerate(batches.items()):
            start = len(store)
            with tqdm(desc=f"prepare {name}", unit=" rows", mininterval=5, delay=2) as bar:
                for rows in parts:
                    _store(store, clean_batch(rows, stats[name], cleaning[name]["min_chars"], cleaning[name]["max_chars"]),
                           code, seed)
                    bar.update(len(rows))
                    bar.set_postfix(kept=len(store) - start, refresh=False)
            ranges[name] = (start, len(store))
            log.info("source %s: read %d rows, %d kept after the empty and length checks", name, stats[name].loaded,
                     len(store) - start)
        meta = store.finish()
        max_samples = {name: cleaning[name].get("max_samples") for name in batches}
        yield Prepared(store, meta, ranges, stats, max_samples, dev, test, seed, distractors)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def prepare_sources(data: DataParams, sources: list[SourceSpec] | None = None):
    """Load, clean and split ``sources`` (default: all of ``data.sources``) as ``data`` says; a context manager."""
    sources = data.sources if sources is None else sources
    for spec in sources:  # cheap checks first: a bad source fails before anything is loaded
        check_source(spec)
    cleaning = {spec.name: {"min_chars": data.min_chars, "max_chars": data.max_chars, "max_samples": spec.max_samples}
                for spec in sources}
    distractors = None if data.distractors == "all" else data.distractors
    return split_rows({spec.name: iter_source(spec) for spec in sources}, cleaning, data.split.dev, data.split.test,
                      data.split.seed, distractors)


@dataclass
class PreparedData:
    """The prepared splits in memory (small data: tests, the sample's data card)."""

    train: pd.DataFrame
    dev: BeirData
    test: BeirData
    stats: dict[str, SourceStats]
    _summary: dict

    def summary(self) -> dict:
        return self._summary


def build_splits(raw: dict[str, pd.DataFrame], cleaning: dict[str, dict], dev: float, test: float, seed: int,
                 distractors: int | None = None) -> PreparedData:
    """``split_rows`` on frames in memory, its outputs read back."""
    with split_rows({name: [rows] for name, rows in raw.items()}, cleaning, dev, test, seed, distractors) as prepared, \
            tempfile.TemporaryDirectory() as tmp:
        prepared.write(Path(tmp))
        empty = {split for split in ("dev", "test") if not prepared.summary()[f"{split}_queries"]}  # legit here
        dev_data, test_data = (BeirData() if split in empty else load_beir(Path(tmp) / split) for split in ("dev", "test"))
        return PreparedData(pd.read_parquet(Path(tmp) / "train.parquet"), dev_data, test_data, prepared.stats,
                            prepared.summary())
