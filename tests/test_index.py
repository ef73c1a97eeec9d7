"""core.index: exact search, and the usearch path forced at small sizes with a low ``exact_below``."""

from __future__ import annotations

import numpy as np
import pytest
from usearch.index import Index

from core.index import INDEX_FILE, VectorIndex


def clustered(n: int, dim: int = 32, *, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, dim))
    x = centres[rng.integers(0, 20, n)] + 0.5 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute_force(ids: np.ndarray, vectors: np.ndarray, query: np.ndarray, k: int, exclude=None) -> list[int]:
    scores = vectors.astype(np.float32) @ query
    order = np.lexsort((ids, -scores))
    return [int(ids[i]) for i in order if ids[i] != exclude][:k]


def test_exact_search_is_brute_force_best_first_without_the_excluded_id():
    vectors = clustered(500)
    ids = np.arange(1000, 1500)
    index = VectorIndex(ids, vectors)
    for q in range(0, 500, 50):
        hits = index.search(vectors[q], 7, exclude=int(ids[q]))
        assert [rid for rid, _ in hits] == brute_force(ids, vectors, vectors[q], 7, exclude=ids[q])
        scores = [s for _, s in hits]
        assert scores == sorted(scores, reverse=True)
        assert scores[0] == pytest.approx(float(vectors[index.row_of(hits[0][0])] @ vectors[q]), abs=1e-6)


def test_row_of_and_rows_of_with_unsorted_ids():
    ids = np.array([30, 10, 20, 50])
    index = VectorIndex(ids, clustered(4, 8))
    assert [index.row_of(i) for i in (10, 20, 30, 50, 40, 0, 99)] == [1, 2, 0, 3, None, None, None]
    assert index.rows_of(np.array([50, 40, 10, 99])).tolist() == [3, -1, 1, -1]
    empty = VectorIndex(np.zeros(0, dtype=np.int64), np.zeros((0, 8), np.float32))
    assert empty.rows_of(np.array([1])).tolist() == [-1]


def test_small_and_empty_indexes():
    assert VectorIndex(np.zeros(0, dtype=np.int64), np.zeros((0, 8), np.float32)).search(np.ones(8), 3) == []
    one = VectorIndex(np.array([7]), clustered(1, 8))
    assert one.search(clustered(1, 8)[0], 5, exclude=7) == []
    assert [rid for rid, _ in one.search(clustered(1, 8)[0], 5)] == [7]
    assert one.search(clustered(1, 8)[0], 0) == []


def test_ties_are_ordered_by_id():
    vectors = np.repeat(clustered(1, 8), 5, axis=0)
    index = VectorIndex(np.array([9, 3, 7, 1, 5]), vectors)
    assert [rid for rid, _ in index.search(vectors[0], 3)] == [1, 3, 5]


def test_float16_memmap_is_searched_exactly_without_a_float32_copy(tmp_path):
    vectors = clustered(1000).astype(np.float16)
    np.save(tmp_path / "v.npy", vectors)
    mapped = np.load(tmp_path / "v.npy", mmap_mode="r")
    ids = np.arange(1000)
    index = VectorIndex(ids, mapped)
    assert isinstance(index.vectors, np.memmap) and index.vectors.dtype == np.float16
    for q in (0, 333, 999):
        got = [rid for rid, _ in index.search(vectors[q].astype(np.float32), 10, exclude=q)]
        assert got == brute_force(ids, vectors, vectors[q].astype(np.float32), 10, exclude=q)


def test_below_exact_below_a_saved_index_is_neither_needed_nor_opened(tmp_path):
    vectors = clustered(300)
    index = VectorIndex(np.arange(300), vectors, directory=tmp_path, exact_below=1000)
    assert not index.needs_update
    index.update(threads=1)  # writes one anyway when asked
    assert (tmp_path / INDEX_FILE).exists()
    assert VectorIndex(np.arange(300), vectors, directory=tmp_path, exact_below=1000).pending == 300


def recall_at_10(index: VectorIndex, ids: np.ndarray, vectors: np.ndarray, queries: range) -> float:
    hits = 0
    for q in queries:
        want = brute_force(ids, vectors, vectors[q], 10, exclude=ids[q])
        got = [rid for rid, _ in index.search(vectors[q], 10, exclude=int(ids[q]))]
        assert int(ids[q]) not in got and len(got) == 10
        hits += len(set(got) & set(want))
    return hits / (10 * len(queries))


def test_ann_path_recall_against_exact_and_persistence(tmp_path):
    vectors = clustered(3000)
    ids = np.arange(5, 6005, 2)  # record ids are not row numbers
    index = VectorIndex(ids, vectors, directory=tmp_path, exact_below=100)
    assert index.needs_update and index.pending == 3000  # nothing built yet: searched exactly
    index.update(threads=1)
    assert not index.needs_update and index.pending == 0
    assert recall_at_10(index, ids, vectors, range(0, 3000, 30)) >= 0.95
    # Scores are the pool's own cosines, not the index's float16 approximation.
    rid, score = index.search(vectors[10], 1, exclude=int(ids[10]))[0]
    assert score == pytest.approx(float(vectors[index.row_of(rid)] @ vectors[10]), abs=1e-6)

    reopened = VectorIndex(ids, vectors, directory=tmp_path, exact_below=100)
    assert reopened.pending == 0 and not reopened.needs_update
    for q in range(0, 3000, 97):
        assert reopened.search(vectors[q], 10, exclude=int(ids[q])) == index.search(vectors[q], 10,
                                                                                    exclude=int(ids[q]))


def test_import_adds_to_the_saved_index_without_rebuilding(tmp_path, monkeypatch):
    np.save(tmp_path / "v.npy", clustered(3000, seed=1).astype(np.float16))
    vectors = np.load(tmp_path / "v.npy", mmap_mode="r")  # as the pool hands them over
    ids = np.arange(3000)
    VectorIndex(ids[:2500], vectors[:2500], directory=tmp_path, exact_below=100).update(threads=1)

    assert not VectorIndex(ids, vectors, directory=tmp_path, exact_below=100, update_after=501).needs_update
    index = VectorIndex(ids, vectors, directory=tmp_path, exact_below=100, update_after=500)
    assert index.pending == 500 and index.needs_update
    # Rows the saved index lacks are found (exactly) before the update.
    assert index.search(vectors[2700], 1)[0][0] == 2700

    added: list[int] = []
    add = Index.add

    def counting_add(self, keys, vectors, **kwargs):
        added.append(len(keys))
        return add(self, keys, vectors, **kwargs)

    monkeypatch.setattr(Index, "add", counting_add)
    index.update(threads=1)
    assert sum(added) == 500  # only the new rows went into the graph
    assert index.pending == 0 and not index.needs_update
    assert len(Index.restore(str(tmp_path / INDEX_FILE), view=True)) == 3000
    assert index.search(vectors[2700], 1)[0][0] == 2700
    assert recall_at_10(index, ids, vectors, range(0, 3000, 30)) >= 0.95


def test_records_gone_from_the_pool_are_never_returned_and_removed_on_update(tmp_path, monkeypatch):
    vectors = clustered(2000, seed=2)
    ids = np.arange(2000)
    VectorIndex(ids, vectors, directory=tmp_path, exact_below=100).update(threads=1)
    kept = ids % 20 != 0  # a twentieth of the records deleted since the index was saved
    index = VectorIndex(ids[kept], vectors[kept], directory=tmp_path, exact_below=100)
    assert index.needs_update and index.pending == 0
    for q in range(1, 2000, 40):
        got = [rid for rid, _ in index.search(vectors[q], 10)]
        assert len(got) == 10 and all(rid % 20 != 0 for rid in got)

    added: list[int] = []
    add = Index.add
    monkeypatch.setattr(Index, "add", lambda self, k, v, **kw: added.append(len(k)) or add(self, k, v, **kw))
    index.update(threads=1)
    assert added == [] and not index.needs_update
    assert len(Index.restore(str(tmp_path / INDEX_FILE), view=True)) == int(kept.sum())


def test_an_index_of_other_vectors_is_replaced(tmp_path):
    VectorIndex(np.arange(500), clustered(500, 16), directory=tmp_path, exact_below=100).update(threads=1)
    vectors = clustered(500, 32)
    index = VectorIndex(np.arange(500), vectors, directory=tmp_path, exact_below=100)
    assert index.pending == 500 and index.needs_update  # 16-d index, 32-d pool: not used
    want = brute_force(np.arange(500), vectors, vectors[3], 3)
    assert [rid for rid, _ in index.search(vectors[3], 3)] == want
    index.update(threads=1)
    assert index.pending == 0 and len(Index.restore(str(tmp_path / INDEX_FILE), view=True)) == 500


def test_rows_outside_the_index_scattered_among_its_rows_are_searched_exactly(tmp_path):
    np.save(tmp_path / "v.npy", clustered(2000, seed=3).astype(np.float16))
    vectors = np.load(tmp_path / "v.npy", mmap_mode="r")
    ids = np.arange(2000)
    VectorIndex(ids[::2], vectors[::2], directory=tmp_path, exact_below=100).update(threads=1)
    index = VectorIndex(ids, vectors, directory=tmp_path, exact_below=100)
    assert index.pending == 1000
    for q in range(1, 2000, 100):  # rows the index lacks: found by the exact part
        assert index.search(vectors[q], 1)[0][0] == q
    assert recall_at_10(index, ids, vectors, range(0, 2000, 40)) >= 0.95
