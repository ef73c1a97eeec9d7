"""What storing the pool's vectors as float16 (the machine-local vector files) costs in quality.

Embeds the shared datasets' texts with the default model (cached under bench/.cache), then compares,
per dataset, float32 vectors with the same vectors rounded to float16:

* accuracy of the project's classifier (``EmbeddingClassifier``) trained on the train split and
  scored on the test split, and how many test predictions change;
* neighbour recall@10: for 1,000 records, the share of their 10 nearest neighbours (cosine, itself
  excluded) under float32 that float16 finds too.

    .venv/bin/python bench/float16_effect.py          # ~2 min the first time (embedding), then seconds
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.embeddings import SentenceTransformerEmbedder
from core.learner import EmbeddingClassifier

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
CACHE = Path(__file__).resolve().parent / ".cache"
RESULTS = Path(__file__).resolve().parent / "results"
DATASETS = {"banking77": ("text", "category"), "hwu64": ("text", "label"), "xed_en": ("text", "label")}


def read(name: str, split: str, limit: int) -> tuple[list[str], list[str]]:
    path = SHARED / name / f"{split}.csv"
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    text_col, label_col = DATASETS[name]
    if label_col not in rows[0]:
        label_col = next(c for c in rows[0] if c != text_col)
    rng = np.random.default_rng(0)
    picked = rng.permutation(len(rows))[:limit]
    return [rows[i][text_col] for i in picked], [rows[i][label_col] for i in picked]


def embed(name: str, split: str, texts: list[str], embedder: SentenceTransformerEmbedder) -> np.ndarray:
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"f16effect-{name}-{split}-{len(texts)}.npy"
    if path.exists():
        return np.load(path)
    vectors = embedder.encode(texts)
    np.save(path, vectors)
    return vectors


def neighbour_recall(exact: np.ndarray, approx: np.ndarray, queries: np.ndarray, k: int = 10) -> float:
    hits = 0
    for q in queries:
        truth = exact @ exact[q]
        truth[q] = -np.inf
        found = approx.astype(np.float32) @ approx[q].astype(np.float32)
        found[q] = -np.inf
        top_truth = set(np.argpartition(-truth, k)[:k].tolist())
        top_found = set(np.argpartition(-found, k)[:k].tolist())
        hits += len(top_truth & top_found)
    return hits / (k * len(queries))


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    embedder = SentenceTransformerEmbedder()
    out = {}
    for name in DATASETS:
        if not (SHARED / name / "train.csv").exists():
            continue
        train_texts, train_labels = read(name, "train", 6000)
        test_texts, test_labels = read(name, "test", 2000)
        started = time.perf_counter()
        train = embed(name, "train", train_texts, embedder)
        test = embed(name, "test", test_texts, embedder)
        embed_s = time.perf_counter() - started
        half_train, half_test = train.astype(np.float16), test.astype(np.float16)
        full = EmbeddingClassifier(random_state=0).fit(train, train_labels)
        half = EmbeddingClassifier(random_state=0).fit(half_train.astype(np.float32), train_labels)
        pred_full = full.predict(test)
        pred_half = half.predict(half_test.astype(np.float32))
        queries = np.random.default_rng(1).choice(len(train), size=min(1000, len(train)), replace=False)
        out[name] = {
            "train": len(train),
            "test": len(test),
            "accuracy_float32": float(np.mean(pred_full == np.asarray(test_labels))),
            "accuracy_float16": float(np.mean(pred_half == np.asarray(test_labels))),
            "predictions_changed": float(np.mean(pred_full != pred_half)),
            "neighbour_recall_at_10": neighbour_recall(train, half_train, queries),
            "max_abs_difference": float(np.abs(train - half_train.astype(np.float32)).max()),
            "embed_seconds": round(embed_s, 1),
        }
        print(name, json.dumps(out[name]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "float16_effect.json").write_text(json.dumps(out, indent=2))
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
