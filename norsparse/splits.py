"""Cleaning rows and splitting them into train, dev and test without leaks.

Rows are grouped before they are split: rows that share a passage or a query
(and, where it keeps groups small, a hard negative) land in the same split, so
no passage text occurs in two splits. Sources that bring their own splits keep
them; afterwards every training row whose passage or query also occurs in dev or
test is dropped, across sources, because NorQuAD-style data repeats a context
over many questions and a row-wise split would leak it.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field

import pandas as pd

from .beir import BeirData, document_text
from .params import DataParams, SourceSpec
from .sources import check_source, load_source

_SPACE = re.compile(r"\s+")
SPLITS = ("train", "dev", "test")


def normalize(text: str) -> str:
    """The form in which two passages count as the same text."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()


def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value)) or (isinstance(value, str) and not value.strip())


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


def clean(rows: pd.DataFrame, stats: SourceStats, min_chars: int, max_chars: int,
          max_samples: int | None = None, seed: int = 13) -> pd.DataFrame:
    """Drop empty/None rows, rows outside the length bounds and duplicate (query, passage) pairs.

    Adds the normalised keys ``qkey``, ``pkey`` and ``nkey`` (query, passage, negative) used from here on.
    """
    stats.loaded = len(rows)
    empty = rows["query"].map(_blank) | rows["positive_text"].map(_blank)
    stats.dropped_empty = int(empty.sum())
    rows = rows[~empty].copy()
    rows["query"] = rows["query"].astype(str).str.strip()
    rows["positive_text"] = rows["positive_text"].astype(str).str.strip()
    rows.loc[rows["negative_text"].map(_blank), ["negative_text", "negative_title", "negative_id"]] = None
    q_len, p_len = rows["query"].str.len(), rows["positive_text"].str.len()
    bad_length = (q_len < min_chars) | (p_len < min_chars) | (p_len > max_chars) | (q_len > max_chars)
    stats.dropped_length = int(bad_length.sum())
    rows = rows[~bad_length]
    # the normalised forms in which texts are compared, computed once and kept beside the texts
    rows = rows.assign(
        qkey=rows["query"].map(normalize),
        pkey=rows["positive_text"].map(normalize),
        nkey=rows["negative_text"].map(lambda t: None if _blank(t) else normalize(t)),
    )
    duplicate = rows.duplicated(["qkey", "pkey"])
    stats.dropped_duplicate = int(duplicate.sum())
    rows = rows[~duplicate]
    if max_samples and len(rows) > max_samples:
        rows = rows.sample(n=max_samples, random_state=seed).sort_index()
    return rows.reset_index(drop=True)


class _Groups:
    """Union-find over row ids with component sizes."""

    def __init__(self, n: int):
        self.parent = list(range(n))
        self.size = [1] * n

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int, limit: int | None = None) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb or (limit is not None and self.size[ra] + self.size[rb] > limit):
            return
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]


def group_rows(rows: pd.DataFrame) -> list[int]:
    """Component id per row: rows sharing a passage or a query are one group.

    Hard negatives join groups too (a query's distractors then stay in its split,
    which keeps the test corpus hard), but only while a group stays small, so a
    mined negative cannot chain the whole source into one group.
    """
    groups = _Groups(len(rows))
    first_seen: dict[str, int] = {}
    for i, (passage, query) in enumerate(zip(rows["pkey"], rows["qkey"])):
        for key in ("p\x00" + passage, "q\x00" + query):
            if key in first_seen:
                groups.union(first_seen[key], i)
            else:
                first_seen[key] = i
    limit = max(50, len(rows) // 50)
    for i, negative in enumerate(rows["nkey"]):
        if isinstance(negative, str) and ("p\x00" + negative) in first_seen:
            groups.union(first_seen["p\x00" + negative], i, limit)
    return [groups.find(i) for i in range(len(rows))]


def assign_splits(rows: pd.DataFrame, dev: float, test: float, seed: int) -> pd.Series:
    """Split rows without a named split by group, in a stable hash order, to the given fractions."""
    split = rows["split"].copy()
    todo = rows.index[split.isna()]
    if len(todo) == 0:
        return split
    part = rows.loc[todo]
    components = pd.Series(group_rows(part), index=todo)
    anchors = part["pkey"].groupby(components).first()  # the passage of each group's first row
    sizes = components.value_counts()
    order = sorted(anchors.index, key=lambda c: hashlib.sha1(f"{seed}\x00{anchors[c]}".encode()).hexdigest())
    total, done, assignment = len(todo), 0, {}
    targets = [("test", test * total), ("dev", (test + dev) * total)]
    for component in order:
        assignment[component] = next((name for name, limit in targets if done < limit), "train")
        done += sizes[component]
    split.loc[todo] = components.map(assignment)
    return split


def _drop_overlap(rows: pd.DataFrame, split: str, against: list[str], stats: dict[str, SourceStats]) -> pd.DataFrame:
    """Drop rows of ``split`` whose passage or query also occurs in the ``against`` splits."""
    other = rows[rows["split"].isin(against)]
    leak = (rows["split"] == split) & (rows["pkey"].isin(set(other["pkey"])) | rows["qkey"].isin(set(other["qkey"])))
    for source, count in rows[leak].groupby("source").size().items():
        stats[source].dropped_leak += int(count)
    return rows[~leak]


def remove_leaks(rows: pd.DataFrame, stats: dict[str, SourceStats]) -> pd.DataFrame:
    """No passage or query in two splits: test wins over dev, dev and test over train; leaking negatives are blanked."""
    rows = _drop_overlap(rows, "dev", ["test"], stats)
    rows = _drop_overlap(rows, "train", ["dev", "test"], stats).copy()
    eval_passages = set(rows.loc[rows["split"] != "train", "pkey"])
    negative_leak = (rows["split"] == "train") & rows["nkey"].isin(eval_passages)
    for source, count in rows[negative_leak].groupby("source").size().items():
        stats[source].negatives_dropped_leak += int(count)
    rows.loc[negative_leak, ["negative_text", "negative_title", "negative_id", "nkey"]] = None
    return rows.reset_index(drop=True)


def training_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The ``train.parquet`` table: anchor, positive, negative (nullable), source."""
    train = rows[rows["split"] == "train"]

    def documents(prefix: str) -> list[str | None]:
        return [None if _blank(text) else document_text(title if isinstance(title, str) else None, str(text))
                for title, text in zip(train[f"{prefix}_title"], train[f"{prefix}_text"])]

    return pd.DataFrame({
        "anchor": train["query"].values,
        "positive": documents("positive"),
        "negative": documents("negative"),
        "source": train["source"].values,
    })


def _stable_id(prefix: str, text: str) -> str:
    return f"{prefix}-{hashlib.sha1(normalize(text).encode()).hexdigest()[:12]}"


def evaluation_split(rows: pd.DataFrame, split: str, exclude: set[str] = frozenset(),
                     distractors: int | None = None) -> BeirData:
    """A BEIR split from the rows of one split.

    Its corpus holds every passage of the split, hard negatives too. With ``distractors``
    (``None``: all), it also holds the other passages of the same sources, from every
    split, as MS MARCO and BEIR evaluate against the whole collection: a query must then
    find its passage among all of them, not among the few of its own split. Without
    distractors (0), passages in ``exclude`` (normalised training passages) stay out, so
    no text is in two splits. Relevance judgements are the same either way.
    """
    data = BeirData()
    part = rows[rows["split"] == split]
    doc_ids: dict[str, str] = {}
    query_ids: dict[tuple[str, str], str] = {}

    def add_doc(source: str, doc_id, title, text, key: str) -> str:
        if key not in doc_ids:
            new_id = f"{source}-{doc_id}" if isinstance(doc_id, str) and doc_id else _stable_id(source, text)
            doc_ids[key] = new_id
            data.corpus[new_id] = {"title": title if isinstance(title, str) else "", "text": text}
        return doc_ids[key]

    for row in part.itertuples(index=False):
        positive = add_doc(row.source, row.positive_id, row.positive_title, row.positive_text, row.pkey)
        if isinstance(row.nkey, str) and (distractors != 0 or row.nkey not in exclude):
            add_doc(row.source, row.negative_id, row.negative_title, row.negative_text, row.nkey)
        qkey = (row.source, row.qkey)
        if qkey not in query_ids:
            qid = row.query_id
            query_ids[qkey] = f"{row.source}-{qid}" if isinstance(qid, str) and qid else _stable_id(row.source + "-q", row.query)
            data.queries[query_ids[qkey]] = row.query
        data.qrels.setdefault(query_ids[qkey], {})[positive] = 1
    if distractors != 0:
        _add_distractors(rows, set(part["source"]), add_doc, doc_ids, distractors)
    return data


def _add_distractors(rows: pd.DataFrame, sources: set[str], add_doc, doc_ids: dict[str, str], limit: int | None) -> None:
    """The other passages (positives and negatives) of ``sources``, all of them or ``limit`` in a stable hash order."""
    other = rows[rows["source"].isin(sources)]
    candidates: dict[str, tuple] = {}
    for row in other.itertuples(index=False):
        for key, doc in ((row.pkey, (row.positive_id, row.positive_title, row.positive_text)),
                         (row.nkey, (row.negative_id, row.negative_title, row.negative_text))):
            if isinstance(key, str) and key not in doc_ids and key not in candidates:
                candidates[key] = (row.source, *doc)
    keys = sorted(candidates, key=lambda k: hashlib.sha1(k.encode()).hexdigest())
    for key in keys if limit is None else keys[:limit]:
        source, doc_id, title, text = candidates[key]
        add_doc(source, doc_id, title, text, key)


@dataclass
class PreparedData:
    train: pd.DataFrame
    dev: BeirData
    test: BeirData
    stats: dict[str, SourceStats]

    def summary(self) -> dict:
        per_source = {name: s.as_dict() for name, s in self.stats.items()}
        return {
            "train_rows": len(self.train),
            "train_rows_with_negative": int(self.train["negative"].notna().sum()),
            **{f"{name}_{what}": len(getattr(getattr(self, name), what)) for name in ("dev", "test") for what in ("queries", "corpus")},
            "sources": per_source,
        }


def build_splits(raw: dict[str, pd.DataFrame], cleaning: dict[str, dict], dev: float, test: float, seed: int,
                 distractors: int | None = None) -> PreparedData:
    """Clean every source, split what has no named splits, remove leaks, build train and BEIR dev/test."""
    stats = {name: SourceStats() for name in raw}
    cleaned = [clean(rows, stats[name], seed=seed, **cleaning[name]) for name, rows in raw.items()]
    rows = pd.concat(cleaned, ignore_index=True)
    rows["split"] = assign_splits(rows, dev, test, seed)
    rows = remove_leaks(rows, stats)
    for (source, split), count in rows.groupby(["source", "split"]).size().items():
        stats[source].kept[split] = int(count)
    train_passages = set(rows.loc[rows["split"] == "train", "pkey"])
    return PreparedData(
        train=training_table(rows),
        dev=evaluation_split(rows, "dev", train_passages, distractors),
        test=evaluation_split(rows, "test", train_passages, distractors),
        stats=stats,
    )


def prepare_sources(data: DataParams, sources: list[SourceSpec] | None = None) -> PreparedData:
    """Load, clean and split ``sources`` (default: all of ``data.sources``) as ``data`` says."""
    sources = data.sources if sources is None else sources
    for spec in sources:  # cheap checks first: a bad source fails before anything is loaded
        check_source(spec)
    raw = {spec.name: load_source(spec) for spec in sources}
    cleaning = {spec.name: {"min_chars": data.min_chars, "max_chars": data.max_chars, "max_samples": spec.max_samples}
                for spec in sources}
    distractors = None if data.distractors == "all" else data.distractors
    return build_splits(raw, cleaning, data.split.dev, data.split.test, data.split.seed, distractors)
