"""Cosine nearest neighbours over normalized vectors: exact below a size, a usearch HNSW index above it.

The approximate index is a file in a directory the caller chooses, memory-mapped (``view``) so its
pages are shared by every process that opens it and it stays off the heap. Rows imported since it
was last written are searched exactly beside it until :meth:`VectorIndex.update` adds them; the
update adds to the saved graph (no rebuild) and replaces the file atomically. usearch won on
memory: at 1M its float16 file is mapped, not loaded (54 MB of heap beside 874 MB of shared page
cache), at recall@10 0.998 and ~1 ms a query (faiss HNSW-SQfp16 was faster but loads onto the
heap): bench/vector_index.py, docs/benchmarks.md "Vector index (issue 10)".
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
from usearch.index import Index, MetricKind
from usearch.index import search as usearch_search

#: Below this many vectors search is exact: at 5k × 384 usearch's float16 brute force takes 0.55 ms
#: CPU against 0.2 ms for its HNSW query, with perfect recall and no index to build or keep; the gap
#: grows with size (20k: 2.2 against 0.5 ms) (bench/vector_index.py --crossover, docs/benchmarks.md
#: "Vector index (issue 10)").
EXACT_BELOW = 5_000
#: Rows outside the saved index that make an update due: exact search over 50k float16 rows costs
#: ~5 ms CPU a query, and each update rewrites the whole file (~1 GB at 1M).
UPDATE_AFTER = 50_000
#: HNSW links per node and candidate lists while building / searching. At 1M synthetic vectors shaped
#: like MiniLM's, search expansion 128 gave recall@10 0.988-0.990 and 256 gave 0.996-0.998 at ~1 ms a
#: query (bench/vector_index.py, docs/benchmarks.md); M 32 recalled little more and built slower.
CONNECTIVITY = 16
EXPANSION_ADD = 128
EXPANSION_SEARCH = 256
INDEX_FILE = "vectors.usearch"


class VectorIndex:
    """Rows of ``vectors`` are L2-normalized; ``ids`` names each row.

    ``vectors`` may be float32 or float16, in memory or a ``np.memmap``; it is never copied whole.
    With ``directory``, a saved approximate index there is opened (memory-mapped) when the pool has
    ``exact_below`` rows or more; nothing is built here: call :meth:`update` (in the background:
    ~minutes at 1M) when :attr:`needs_update`. Until then the rows it lacks are searched exactly.
    """

    def __init__(
        self,
        ids: np.ndarray,
        vectors: np.ndarray,
        *,
        directory: str | os.PathLike[str] | None = None,
        exact_below: int = EXACT_BELOW,
        update_after: int = UPDATE_AFTER,
    ) -> None:
        if len(ids) != len(vectors):
            raise ValueError("ids and vectors differ in length")
        self.ids = np.asarray(ids, dtype=np.int64)
        vectors = vectors if isinstance(vectors, np.ndarray) else np.asarray(vectors, dtype=np.float32)
        self.vectors = vectors if vectors.dtype in (np.float32, np.float16) else vectors.astype(np.float32)
        self.directory = None if directory is None else Path(directory)
        self.exact_below, self.update_after = exact_below, update_after
        # Row lookup by binary search over sorted ids (a dict of every id would cost ~100 bytes a
        # record and be walked by each full garbage collection); other orders get the sort they need.
        ascending = bool(np.all(self.ids[1:] > self.ids[:-1]))
        self._order = None if ascending else np.argsort(self.ids, kind="stable")
        self._keys = self.ids if self._order is None else self.ids[self._order]
        self._update_lock = threading.Lock()
        # (memory-mapped index or None, rows it lacks, how many of its keys are no longer rows here),
        # replaced in one assignment so a search never sees an index with another index's pending rows.
        self._state: tuple[Index | None, np.ndarray, int] = (None, np.arange(len(self.ids)), 0)
        self._opened: int | None = None  # mtime of the index file mapped now
        if self.directory is not None and len(self.ids) >= exact_below:
            self._open()

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def path(self) -> Path | None:
        return None if self.directory is None else self.directory / INDEX_FILE

    @property
    def pending(self) -> int:
        """Rows searched exactly because the approximate index lacks them (all rows when there is none)."""
        return len(self._state[1])

    @property
    def needs_update(self) -> bool:
        """True when :meth:`update` is due: a large pool without an index, or too many rows outside it.

        Rows outside are searched exactly on every query: up to ``update_after`` of them (or half the
        pool, when the rest is cheaper searched exactly too) before an update is due.
        """
        if self.directory is None or len(self.ids) < self.exact_below:
            return False
        ann, pending, stale = self._state
        return ann is None or len(pending) >= min(self.update_after, len(self.ids) // 2) or stale > 0

    def row_of(self, record_id: int) -> int | None:
        i = int(np.searchsorted(self._keys, int(record_id)))
        if i >= len(self._keys) or self._keys[i] != record_id:
            return None
        return i if self._order is None else int(self._order[i])

    def rows_of(self, record_ids: np.ndarray) -> np.ndarray:
        """Rows of many ids at once; -1 where an id is not here."""
        record_ids = np.asarray(record_ids, dtype=np.int64)
        at = np.minimum(np.searchsorted(self._keys, record_ids), max(len(self._keys) - 1, 0))
        if len(self._keys) == 0:
            return np.full(len(record_ids), -1, dtype=np.int64)
        rows = at if self._order is None else self._order[at]
        return np.where(self._keys[at] == record_ids, rows, -1).astype(np.int64)

    def search(self, query: np.ndarray, k: int, *, exclude: int | None = None) -> list[tuple[int, float]]:
        """Top-k ``(record_id, cosine)`` pairs, best first, leaving out the id ``exclude``."""
        if len(self.ids) == 0 or k <= 0:
            return []
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        want = k + (exclude is not None)
        ann, pending, stale = self._state
        if ann is None or 2 * len(pending) > len(self.ids):  # searching every row beats gathering most
            rows = self._exact(query, want, np.arange(len(self.ids)))
        else:
            # Over-fetch for keys no longer here; candidates are rescored from the pool's own vectors,
            # so scores are exact and comparable with the pending rows'.
            found = self.rows_of(ann.search(query, want + min(stale, k), threads=1).keys.astype(np.int64))
            rows = np.concatenate([found[found >= 0], self._exact(query, want, pending)])
        if exclude is not None and (row := self.row_of(exclude)) is not None:
            rows = rows[rows != row]
        scores = self._scores(query, rows)
        k = min(k, len(rows))
        if k <= 0:
            return []
        kth = scores[np.argpartition(-scores, k - 1)[k - 1]]
        # Every row tied with the k-th, ordered by id, so results are deterministic.
        top = np.flatnonzero(scores >= kth)
        top = top[np.lexsort((self.ids[rows[top]], -scores[top]))[:k]]
        return [(int(self.ids[rows[i]]), float(scores[i])) for i in top]

    def _exact(self, query: np.ndarray, want: int, rows: np.ndarray) -> np.ndarray:
        """Candidate rows among ``rows`` holding the exact top ``want`` (ties at the edge included).

        float32: a matrix product over the rows. float16: usearch's brute-force kernel on the float16
        rows as they are (numpy converting them to float32 first is ~15× slower: 170 against 11 ms at
        100k), asked for extra candidates so the float32 rescoring in :meth:`search` decides ties.
        """
        if len(rows) == 0:
            return rows
        contiguous = rows[-1] - rows[0] + 1 == len(rows)
        block = self.vectors[rows[0] : rows[-1] + 1] if contiguous else self.vectors[rows]
        if self.vectors.dtype == np.float32:
            scores = np.asarray(block) @ query
            if len(rows) <= want:
                return rows
            kth = scores[np.argpartition(-scores, want - 1)[want - 1]]
            return rows[scores >= kth]
        found = usearch_search(np.asarray(block), query.astype(np.float16), min(len(rows), 2 * want + 8),
                               MetricKind.IP, exact=True, threads=1)
        return rows[np.asarray(found.keys, dtype=np.int64)]

    def _scores(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """float32 cosines of a few ``rows`` with ``query``."""
        return np.asarray(self.vectors[rows], dtype=np.float32) @ query

    # -------------------------------------------------------------------------- the saved index

    def refresh(self) -> bool:
        """Map the saved index again if another process wrote a newer one (a stat when none did)."""
        path = self.path
        if path is None or len(self.ids) < self.exact_below:
            return False
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            return False
        if stamp == self._opened:
            return False
        self._open()
        return True

    def _open(self) -> None:
        """Memory-map the saved index, if any, and note which rows it lacks and which keys went away."""
        path = self.path
        if path is None or not path.exists():
            return
        self._opened = path.stat().st_mtime_ns
        ann = Index.restore(str(path), view=True)
        if ann is None or ann.ndim != self.vectors.shape[1]:
            return  # not an index of these vectors: update() writes a new one
        ann.expansion_search = EXPANSION_SEARCH
        inside = ann.contains(self.ids.astype(np.uint64))
        self._state = (ann, np.flatnonzero(~inside), len(ann) - int(inside.sum()))

    def update(self, *, threads: int = 2) -> None:
        """Add the pending rows to the saved index (building it when there is none) and re-open it.

        Adds to the existing graph rather than rebuilding; rebuilds only when a tenth of its keys are
        gone. Loads the saved index into memory while adding (its file size, briefly), writes a new
        file and renames it over the old one, so other processes keep searching their mapped copy.
        One update at a time per instance; searches go on meanwhile.
        """
        if self.directory is None:
            raise ValueError("an index without a directory has nothing to save")
        with self._update_lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.path
            assert path is not None
            ann, pending, stale = self._state
            if ann is not None and stale <= len(self.ids) // 10:
                ann = Index.restore(str(path), view=False)
            else:
                ann = None
            if ann is None or ann.ndim != self.vectors.shape[1]:
                ann = Index(ndim=self.vectors.shape[1], metric="ip", dtype="f16", connectivity=CONNECTIVITY,
                            expansion_add=EXPANSION_ADD)
                todo = np.arange(len(self.ids))
            else:
                todo = pending
                gone = np.setdiff1d(np.asarray(ann.keys, dtype=np.uint64), self.ids.astype(np.uint64))
                if len(gone):
                    ann.remove(gone)
            for start in range(0, len(todo), 50_000):
                rows = todo[start : start + 50_000]
                ann.add(self.ids[rows].astype(np.uint64), np.asarray(self.vectors[rows], dtype=np.float32),
                        threads=threads)
            scratch = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
            ann.save(str(scratch))
            del ann
            os.replace(scratch, path)
            self._open()
