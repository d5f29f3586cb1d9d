"""Rows too many to hold as Python objects: their texts in an Arrow file on disk, their keys in NumPy.

``prepare`` reads every source in batches. Each cleaned batch is appended to an Arrow IPC file in a
temporary folder. What splitting needs of a row stays in memory as fixed-width columns: its source, its
named split, and the SHA-1 digests of its normalised query, passage and negative (20 bytes each; the
same digests give rows without ids their stable ids). Texts are read back only to be written out, a
window of rows at a time, through a memory map that is open for that window only, so resident memory
follows the window and the keys, not the size of the data.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TEXT_COLUMNS = ("query", "query_id", "positive_id", "positive_title", "positive_text",
                "negative_id", "negative_title", "negative_text")
SCHEMA = pa.schema([(name, pa.string()) for name in TEXT_COLUMNS])
DIGEST = "S20"  # a SHA-1 digest; numpy orders these bytewise, i.e. as their hex digests


# Text that normalize() leaves as it is but for the case: printable ASCII, Latin-1 letters but ß and a few
# punctuation marks, no whitespace but single inner spaces. Its key is utf8_lower in Arrow; the rest goes
# through normalize() in Python. tests/test_rowstore.py checks every character of the class.
PLAIN_RANGES = ((0x20, 0x7E), (0xC0, 0xD6), (0xD8, 0xDE), (0xE0, 0xF6), (0xF8, 0xFF), (0xA7, 0xA7), (0xAB, 0xAB),
                (0xB0, 0xB0), (0xBB, 0xBB), (0x2013, 0x2014), (0x2018, 0x2019), (0x201C, 0x201D), (0x20AC, 0x20AC))
NOT_PLAIN = "[^" + "".join(f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in PLAIN_RANGES) + "]|  |^ | $"  # an RE2 pattern


def normalized_digests(texts, normalize, prefixes: tuple[bytes, ...] = (b"",)) -> list[np.ndarray]:
    """``sha1(prefix + normalize(text))`` per text and prefix; zeros (``b""``) for nulls."""
    texts = pa.array(texts, type=pa.large_string(), from_pandas=True)
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    out = [np.zeros(len(texts), dtype=DIGEST) for _ in prefixes]
    valid = texts.is_valid().to_numpy(zero_copy_only=False)
    plain = ~pc.match_substring_regex(texts, NOT_PLAIN).fill_null(True).to_numpy(zero_copy_only=False)
    simple, other = np.flatnonzero(valid & plain), np.flatnonzero(valid & ~plain)
    if len(simple):
        lower = pc.utf8_lower(texts.take(pa.array(simple)))
        bounds = np.frombuffer(lower.buffers()[1], dtype=np.int64)[lower.offset:lower.offset + len(lower) + 1].tolist()
        data = memoryview(lower.buffers()[2] or b"")
        for digests, prefix in zip(out, prefixes):
            start = hashlib.sha1(prefix)
            found = []
            for a, b in zip(bounds[:-1], bounds[1:]):
                h = start.copy()
                h.update(data[a:b])
                found.append(h.digest())
            digests[simple] = found
    if len(other):
        keys = [normalize(t).encode() for t in texts.take(pa.array(other)).to_pylist()]
        for digests, prefix in zip(out, prefixes):
            digests[other] = [hashlib.sha1(prefix + key).digest() for key in keys]
    return out


def hex12(digests: np.ndarray) -> list[str]:
    """The first 12 hex digits of each digest, as ``hashlib.sha1(...).hexdigest()[:12]``."""
    raw = np.ascontiguousarray(digests).view(np.uint8).reshape(-1, 20)[:, :6].tobytes().hex()
    return [raw[i:i + 12] for i in range(0, len(raw), 12)]


def _array(values) -> pa.Array:
    array = pa.array(values, type=pa.large_string(), from_pandas=True)
    return (array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array).cast(pa.string())


class RowStore:
    """Append-only: ``append`` batches, ``finish``, then ``read`` any rows by position."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / "rows.arrow"
        self._sink = pa.OSFile(str(self.path), "wb")
        self._writer = pa.ipc.new_file(self._sink, SCHEMA)
        self._meta: dict[str, list[np.ndarray]] = {k: [] for k in ("source", "split", "query", "positive", "negative", "anchor")}
        self._starts = [0]

    def __len__(self) -> int:
        return self._starts[-1]

    def append(self, texts: dict[str, list], source: int, split: np.ndarray, digests: dict[str, np.ndarray]) -> None:
        """One batch: ``texts`` per TEXT_COLUMNS (str or None), a split code per row and the key digests."""
        n = len(split)
        if n == 0:
            return
        self._writer.write_batch(pa.record_batch([_array(texts[c]) for c in TEXT_COLUMNS], schema=SCHEMA))
        self._starts.append(self._starts[-1] + n)
        self._meta["source"].append(np.full(n, source, dtype=np.int32))
        self._meta["split"].append(np.asarray(split, dtype=np.int8))
        for key in ("query", "positive", "negative", "anchor"):
            self._meta[key].append(digests[key])

    def finish(self) -> dict[str, np.ndarray]:
        """Close the file; return the per-row columns (``source``, ``split`` and the digests)."""
        self._writer.close()
        self._sink.close()
        self.starts = np.array(self._starts, dtype=np.int64)
        empty = {"source": np.int32, "split": np.int8}
        meta = {k: np.concatenate(v) if v else np.array([], dtype=empty.get(k, DIGEST)) for k, v in self._meta.items()}
        self._meta = {}
        return meta

    def read(self, rows: np.ndarray, columns: tuple[str, ...]) -> dict[str, list]:
        """The ``columns`` of ``rows`` (positions in append order, any order), as Python lists."""
        return {c: array.to_pylist() for c, array in self.read_arrow(rows, columns).items()}

    def read_arrow(self, rows: np.ndarray, columns: tuple[str, ...]) -> dict[str, pa.Array]:
        """The ``columns`` of ``rows`` (positions in append order, any order), as Arrow arrays."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return {c: pa.array([], type=pa.string()) for c in columns}
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        batch_of = np.searchsorted(self.starts, ordered, side="right") - 1
        cuts = np.concatenate([[0], np.flatnonzero(np.diff(batch_of)) + 1, [len(rows)]])
        pieces: dict[str, list[pa.Array]] = {c: [] for c in columns}
        for a, b in zip(cuts[:-1], cuts[1:]):
            # one memory map per record batch: the pages it touched (the kernel maps them in 64 KiB runs, so
            # scattered reads touch most of a batch) leave the resident set when it closes
            with pa.memory_map(str(self.path)) as mapped:
                batch = pa.ipc.open_file(mapped).get_batch(int(batch_of[a]))
                taken = batch.select(list(columns)).take(pa.array(ordered[a:b] - self.starts[batch_of[a]]))
                for c in columns:
                    pieces[c].append(taken.column(c))
                del batch, taken
        back = np.empty(len(rows), dtype=np.int64)
        back[order] = np.arange(len(rows))
        return {c: pa.concat_arrays(p).take(pa.array(back)) for c, p in pieces.items()}
