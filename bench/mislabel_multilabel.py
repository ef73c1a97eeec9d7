"""Likely mislabels in a multi-label project: per label (core.reports.label_issues_per_label) vs whole sets
as classes (core.reports.label_issues, what multi-label projects got before), on XED multi-label.

N records of shared/datasets/xed_en_multilabel's train split (embedded with the default model, cached as
bench/multilabel.py does) take their sets as the final sets; in RATE of them one label, drawn at random,
is flipped (added or removed). Both checks run on the same records; reported per seed and as the mean:
record-level precision and recall of the injected records, for per-label also whether the flagged label
is the flipped one, and the seconds each check took. XED's own sets are noisy too, so a flag on a record
nobody touched is not necessarily wrong: precision is a lower bound.

    .venv/bin/python bench/mislabel_multilabel.py --n 2000 --rate 0.05 --seeds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from multilabel import load  # noqa: E402

from core import reports  # noqa: E402
from core.aggregate import AggregateLabel  # noqa: E402
from core.config import Settings  # noqa: E402
from core.embeddings import make_embedder  # noqa: E402
from core.simulate import CachingEmbedder  # noqa: E402


def run_seed(X: np.ndarray, Y: np.ndarray, labels: list[str], n: int, rate: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(Y), size=n, replace=False)
    vectors, given = X[rows], Y[rows].copy()
    noisy = rng.choice(n, size=round(rate * n), replace=False)
    flipped = {int(i): int(rng.integers(len(labels))) for i in noisy}
    for i, j in flipped.items():
        given[i, j] = 1 - given[i, j]
    ids = np.arange(n, dtype=np.int64)
    finals = {
        i: AggregateLabel(label="|".join(labels[j] for j in np.flatnonzero(given[i])), confidence=1.0,
                          n_answers=1, tie=False, agreement=1.0)
        for i in range(n)
    }
    complete = set(range(n))
    info = SimpleNamespace(label_names=tuple(labels))
    out = {}
    start = time.perf_counter()
    per_label = reports.label_issues_per_label(info, finals, complete, ids, vectors)  # type: ignore[arg-type]
    seconds = time.perf_counter() - start
    found = {rid for rid, *_ in per_label}
    right_label = sum(
        1 for rid, suggested, _, _ in per_label
        if rid in flipped and (labels[flipped[rid]] in suggested.split("|")) != bool(given[rid, flipped[rid]])
    )
    def at_k(ranked: list[int]) -> dict[str, float]:
        return {f"precision_at_{k}": len(set(ranked[:k]) & set(flipped)) / k for k in (20, 50, 100)}

    ranked = [rid for rid, _, sure, _ in sorted(per_label, key=lambda r: -r[2])]
    floor = [rid for rid, _, sure, _ in per_label if sure >= 0.8]
    out["per_label_floor_0.8"] = {"flagged": len(floor),
                                  "precision": len(set(floor) & set(flipped)) / max(1, len(floor)),
                                  "recall": len(set(floor) & set(flipped)) / len(flipped)}
    out["per_label"] = {**at_k(ranked), "flagged": len(found),
                        "precision": len(found & set(flipped)) / max(1, len(found)),
                        "recall": len(found & set(flipped)) / len(flipped),
                        "flipped_label_named": right_label / max(1, len(found & set(flipped))),
                        "seconds": seconds}
    start = time.perf_counter()
    whole_rows = reports.label_issues(finals, complete, ids, vectors)
    seconds = time.perf_counter() - start
    whole = {rid for rid, _, _ in whole_rows}
    out["whole_sets"] = {**at_k([rid for rid, _, p in sorted(whole_rows, key=lambda r: -r[2])]),
                         "flagged": len(whole), "precision": len(whole & set(flipped)) / max(1, len(whole)),
                         "recall": len(whole & set(flipped)) / len(flipped), "seconds": seconds}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=0.05)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "mislabel_multilabel.json")
    args = parser.parse_args()
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    embedder = CachingEmbedder(
        make_embedder(settings.embedding_model), cache_dir=BENCH / ".cache" / "simulate"
    )
    X, Y, _, _, labels = load(embedder)
    payload: dict = {"load_average_start": os.getloadavg(), "n": args.n, "rate": args.rate, "labels": labels}
    seeds = [run_seed(X, Y, labels, args.n, args.rate, seed) for seed in range(args.seeds)]
    payload["seeds"] = seeds
    payload["mean"] = {
        check: {key: statistics.mean(s[check][key] for s in seeds) for key in seeds[0][check]}
        for check in seeds[0]
    }
    payload["load_average_end"] = os.getloadavg()
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2))
    print(json.dumps(payload["mean"], indent=2))
    print("load average", payload["load_average_start"], payload["load_average_end"])


if __name__ == "__main__":
    main()
