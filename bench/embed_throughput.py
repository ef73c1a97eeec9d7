"""Embedding throughput: today's encoder against the length-sorted torch and ONNX Runtime routes.

Encodes the same real texts (a shuffled mix of banking77, xed_en and sms_spam from ../shared/datasets)
with every variant, interleaved round by round so a busy box slows all of them alike, and prints texts/s
(wall and per CPU-second), each variant's ratio to today's, the top-10 neighbour overlap with today's fp32
vectors, the largest difference of a vector component, and the load average before and after.

    .venv/bin/python bench/embed_throughput.py                  # 4,000 texts, 3 rounds; a few minutes idle
    .venv/bin/python bench/embed_throughput.py --texts 1000 --rounds 2 --int8   # quicker; int8 measured too

"today" is the encoder as it was before issue 10 (chunks of batch_size * 8 handed to
SentenceTransformer.encode, which sorts by length only inside a chunk), rebuilt here on the same model.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from core.embeddings import SentenceTransformerEmbedder

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
RESULTS = Path(__file__).resolve().parent / "results"


def load_texts(count: int, seed: int = 0) -> list[str]:
    """A third each of banking77 (short), xed_en (short to medium) and sms_spam (up to long), shuffled."""
    with open(DATASETS / "banking77" / "train.csv", newline="") as f:
        banking = [row["text"] for row in csv.DictReader(f)]
    with open(DATASETS / "xed_en" / "train.csv", newline="") as f:
        xed = [row["text"] for row in csv.DictReader(f)]
    with open(DATASETS / "sms_spam" / "SMSSpamCollection", encoding="utf-8") as f:
        sms = [line.rstrip("\n").split("\t", 1)[1] for line in f][1:]  # first line is the header
    rng = random.Random(seed)
    third = count // 3
    texts = rng.sample(banking, third) + rng.sample(xed, third) + rng.sample(sms, count - 2 * third)
    rng.shuffle(texts)
    return texts


class TodayEncoder:
    """The encode loop as it was before issue 10, on a given SentenceTransformer."""

    def __init__(self, model, batch_size: int = 64) -> None:  # type: ignore[no-untyped-def]
        self.model = model
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        chunk = self.batch_size * 8
        parts = []
        for start in range(0, len(texts), chunk):
            part = self.model.encode(
                list(texts[start : start + chunk]),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            parts.append(np.asarray(part, dtype=np.float32))
        return np.concatenate(parts)


def int8_encoder(onnx: SentenceTransformerEmbedder, cache: Path) -> Callable[[Sequence[str]], np.ndarray]:
    """The ONNX route with dynamically quantized int8 weights (measured only, for its quality loss)."""
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = next(cache.glob("*.onnx"))
    int8 = cache / "int8" / fp32.name
    int8.parent.mkdir(exist_ok=True)
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = onnx._onnx.get_session_options().intra_op_num_threads
    quantized = SentenceTransformerEmbedder(
        onnx.name, batch_size=onnx.batch_size, device="cpu", backend="torch"
    )
    quantized._load()
    quantized._onnx = onnxruntime.InferenceSession(str(int8), options, providers=["CPUExecutionProvider"])
    return quantized.encode


def top_k(vectors: np.ndarray, k: int = 10) -> np.ndarray:
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    return np.argpartition(-similarity, k, axis=1)[:, :k]


def neighbour_overlap(reference: np.ndarray, vectors: np.ndarray, k: int = 10) -> float:
    """Mean over texts of |top-k neighbours under reference ∩ top-k under vectors| / k."""
    a, b = top_k(reference, k), top_k(vectors, k)
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a, b, strict=True)]))


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64, help="today's batch size (its default)")
    parser.add_argument("--new-batch-size", type=int, default=None,
                        help="batch size of the new routes (default: the new default)")
    parser.add_argument("--int8", action="store_true", help="also measure int8 ONNX (quality-losing)")
    parser.add_argument("--out", type=Path, default=RESULTS / "embed_throughput.json")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    new_batch = args.new_batch_size  # None: each route's own default
    texts = load_texts(args.texts)
    chars = [len(t) for t in texts]
    print(f"{len(texts)} texts, {statistics.mean(chars):.0f} characters on average (max {max(chars)}); "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs", flush=True)
    cache = Path(tempfile.mkdtemp(prefix="labelbot-onnx-"))
    load_before = os.getloadavg()

    started = time.perf_counter()
    sorted_torch = SentenceTransformerEmbedder(batch_size=new_batch, device="cpu", backend="torch")
    sorted_torch._load()
    torch_load_s = time.perf_counter() - started
    started = time.perf_counter()
    onnx = SentenceTransformerEmbedder(batch_size=new_batch, device="cpu", onnx_cache_dir=cache)
    assert onnx.active_backend == "onnx", "the ONNX route did not load (see the log line above)"
    onnx_first_load_s = time.perf_counter() - started  # includes the one-off export
    started = time.perf_counter()
    SentenceTransformerEmbedder(batch_size=new_batch, device="cpu", onnx_cache_dir=cache)._load()
    onnx_cached_load_s = time.perf_counter() - started
    print(f"load: torch {torch_load_s:.1f} s, ONNX first (export) {onnx_first_load_s:.1f} s, "
          f"ONNX cached {onnx_cached_load_s:.1f} s", flush=True)

    variants: dict[str, Callable[[Sequence[str]], np.ndarray]] = {
        "today": TodayEncoder(sorted_torch._model, args.batch_size).encode,
        "sorted torch": sorted_torch.encode,
        "sorted ONNX (new default)": onnx.encode,
    }
    if args.int8:
        variants["sorted ONNX int8 (quality-losing)"] = int8_encoder(onnx, cache)
    for encode in variants.values():
        encode(texts[:64])  # warm-up: first-call allocations and thread pools

    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    vectors: dict[str, np.ndarray] = {}
    for round_ in range(args.rounds):
        order = list(variants) if round_ % 2 == 0 else list(reversed(variants))
        for name in order:
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            vectors[name] = variants[name](texts)
            wall[name].append(len(texts) / (time.perf_counter() - wall_start))
            cpu[name].append(len(texts) / (time.process_time() - cpu_start))
        print(f"round {round_ + 1}: " + ", ".join(f"{n} {wall[n][-1]:.0f}/s" for n in variants), flush=True)
    load_after = os.getloadavg()

    reference = vectors["today"]
    rows = {}
    for name in variants:
        ratios = [w / t for w, t in zip(wall[name], wall["today"], strict=True)]
        rows[name] = {
            "texts_per_s": statistics.median(wall[name]),
            "texts_per_cpu_s": statistics.median(cpu[name]),
            "ratio_to_today": statistics.median(ratios),
            "ratio_per_round": ratios,
            "cpu_ratio_to_today": statistics.median(cpu[name]) / statistics.median(cpu["today"]),
            "top10_overlap": neighbour_overlap(reference, vectors[name]),
            "max_abs_diff": float(np.abs(vectors[name] - reference).max()),
        }
    header = ("variant", "texts/s", "per cpu-s", "×today", "cpu ×", "top-10", "max |Δ|")
    print("\n{:34} {:>8} {:>9} {:>7} {:>6} {:>7} {:>9}".format(*header))
    for name, row in rows.items():
        print(f"{name:34} {row['texts_per_s']:8.0f} {row['texts_per_cpu_s']:9.0f} "
              f"{row['ratio_to_today']:7.2f} {row['cpu_ratio_to_today']:6.2f} "
              f"{row['top10_overlap']:7.4f} {row['max_abs_diff']:9.2g}")
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")

    result = {
        "texts": len(texts), "rounds": args.rounds, "batch_size": args.batch_size,
        "new_batch_size": {"torch": sorted_torch.batch_size, "onnx": onnx.batch_size},
        "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(), "machine": platform.machine(),
        "load_before": load_before, "load_after": load_after, "torch_load_s": torch_load_s,
        "onnx_first_load_s": onnx_first_load_s, "onnx_cached_load_s": onnx_cached_load_s, "variants": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
