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
        self._row_of = {int(record_id): row for row, record_id in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def row_of(self, record_id: int) -> int | None:
        return self._row_of.get(int(record_id))

    def search(self, query: np.ndarray, k: int, *, exclude: int | None = None) -> list[tuple[int, float]]:
        """Top-k ``(record_id, cosine)`` pairs, best first, leaving out the id ``exclude``."""
        if len(self.ids) == 0 or k <= 0:
            return []
        scores = self.vectors @ np.asarray(query, dtype=np.float32).reshape(-1)
        if exclude is not None and (row := self.row_of(exclude)) is not None:
            scores[row] = -np.inf
        k = min(k, len(scores) - (1 if exclude is not None and exclude in self._row_of else 0))
        if k <= 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        # Ties ordered by id so results are deterministic.
        order = np.lexsort((self.ids[top], -scores[top]))
        return [(int(self.ids[top[i]]), float(scores[top[i]])) for i in order]
