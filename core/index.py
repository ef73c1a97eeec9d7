"""Exact cosine nearest neighbours over normalized vectors (a matrix product: fast enough at 100k)."""

from __future__ import annotations

import numpy as np


class VectorIndex:
    """Rows of ``vectors`` are L2-normalized; ``ids`` names each row."""

    def __init__(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) != len(vectors):
            raise ValueError("ids and vectors differ in length")
        self.ids = np.asarray(ids, dtype=np.int64)
        self.vectors = np.asarray(vectors, dtype=np.float32)
        # Row lookup by binary search over sorted ids (a dict of every id would cost ~100 bytes a
        # record and be walked by each full garbage collection); other orders get the sort they need.
        ascending = bool(np.all(self.ids[1:] > self.ids[:-1]))
        self._order = None if ascending else np.argsort(self.ids, kind="stable")
        self._keys = self.ids if self._order is None else self.ids[self._order]

    def __len__(self) -> int:
        return len(self.ids)

    def row_of(self, record_id: int) -> int | None:
        i = int(np.searchsorted(self._keys, int(record_id)))
        if i >= len(self._keys) or self._keys[i] != record_id:
            return None
        return i if self._order is None else int(self._order[i])

    def search(self, query: np.ndarray, k: int, *, exclude: int | None = None) -> list[tuple[int, float]]:
        """Top-k ``(record_id, cosine)`` pairs, best first, leaving out the id ``exclude``."""
        if len(self.ids) == 0 or k <= 0:
            return []
        scores = self.vectors @ np.asarray(query, dtype=np.float32).reshape(-1)
        if exclude is not None and (row := self.row_of(exclude)) is not None:
            scores[row] = -np.inf
        k = min(k, len(scores) - (1 if exclude is not None and self.row_of(exclude) is not None else 0))
        if k <= 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        # Ties ordered by id so results are deterministic.
        order = np.lexsort((self.ids[top], -scores[top]))
        return [(int(self.ids[top[i]]), float(scores[top[i]])) for i in order]
