"""Multi-label active learning (issue 13), replayed in memory on XED English multi-label.

The evidence the multi-label product will be built on: which learner, which query strategy and which
decision rule. ``shared/datasets/xed_en_multilabel`` (8 emotions, ``|``-joined, the given 80/20 split)
is embedded with the default model (cached like bench/learners.py), then the product's loop is replayed
without the database: a first batch of 10, then batches of 10 (the product retrains every 10 answers)
up to the budget, a one-vs-rest logistic regression refit after each batch and scored on the test split
at ``labelbot simulate``'s evaluation points (10, 20, ..., 100, 150, ..., 500, 600, ..., budget).

Learners (``--learners``), one binary LR per label on the L2-normalised embeddings:

* ``ovr-c30``: C=30 (the single-label default before C is chosen);
* ``ovr-c3``: C=3 (what choose_c picks for single-label XED);
* ``ovr-c3-balanced``: C=3, class_weight="balanced" per label;
* ``ovr-names-c3``: C=3 with the label-name prior (each label's name a positive example of its label
  and a negative of the others, weight 1, as core.learner does for single-label projects);
* ``ovr-names-c3-balanced``: both.

Query strategies (``--strategies``), all behind one signature (:data:`STRATEGIES`); every model-based one
takes the band of the ``factor`` x 10 most uncertain candidates by its score and clusters it with
k-means into 10, one pick per cluster (the product's margin-k-means diversity step, ``core.strategies``):

* ``random``;
* ``mean-unc``: mean over labels of min(p, 1 - p);
* ``max-unc``: max over labels of min(p, 1 - p);
* ``expected-f1``: 1 - the expected F1 of the predicted set (labels with p >= 0.5, or the most probable
  one), with E[F1] ~ 2 sum_{l in S} p_l / (|S| + sum_l p_l) under independent labels: uncertainty that
  knows how many labels a record is likely to carry.

The first batch (``--cold-starts``) is either ``kmeans`` (core.strategies.ColdStart: the record nearest
each of 10 k-means centres) or ``random``. Metrics on the test split: micro-F1, macro-F1 and subset
accuracy (exact set), with each label at threshold 0.5 (``t05``) and with "at least one label" (``any``:
the most probable label when none passes 0.5).

    .venv/bin/python bench/multilabel.py                                   # the full grid, 3 seeds, ~12 min
    .venv/bin/python bench/multilabel.py --learners ovr-c3 --strategies mean-unc,random --seeds 1
    .venv/bin/python bench/multilabel.py --cost                            # CPU s per retrain at 10k

Writes bench/results/multilabel.json (or multilabel_cost.json); the findings and the product's defaults
they argue for are in docs/benchmarks.md, "Multi-label (issue 13)".
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import Settings
from core.embeddings import label_text, make_embedder
from core.learner import EmbeddingClassifier, single_threaded
from core.simulate import CachingEmbedder, label_schedule

# The product's diversity step, reused rather than restated (private helpers of one strategy module).
from core.strategies import (
    ColdStart,
    _kmeans_labels,
    _nearest_per_cluster,
    _rank,
    get_strategy,
    uncertain_pool_factor,
)

BENCH = Path(__file__).resolve().parent
DATA = Path(os.environ.get("LABELBOT_DATASETS", BENCH.parents[1] / "shared" / "datasets"))
DATASET = DATA / "xed_en_multilabel"
SEPARATOR = "|"
BATCH = 10
LEARNERS = ("ovr-c30", "ovr-c3", "ovr-c3-balanced", "ovr-names-c3", "ovr-names-c3-balanced")
RULES = ("t05", "any")
METRICS = ("micro_f1", "macro_f1", "subset_accuracy")


def load(embedder: CachingEmbedder) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Train vectors and label matrix, test vectors and label matrix, the label names (sorted)."""
    def rows(name: str) -> list[dict[str, str]]:
        with open(DATASET / name, encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle))

    train, test = rows("train.csv"), rows("test.csv")
    labels = sorted({label for r in train + test for label in r["labels"].split(SEPARATOR)})

    def matrix(part: list[dict[str, str]]) -> np.ndarray:
        Y = np.zeros((len(part), len(labels)), dtype=np.int8)
        for i, r in enumerate(part):
            Y[i, [labels.index(label) for label in r["labels"].split(SEPARATOR)]] = 1
        return Y

    X = embedder.encode([r["text"] for r in train])
    Xt = embedder.encode([r["text"] for r in test])
    return X, matrix(train), Xt, matrix(test), labels


class OneVsRest:
    """One binary logistic regression per label on L2-normalised embeddings.

    A per-label loop rather than sklearn's OneVsRestClassifier: the label-name prior needs sample
    weights, which that wrapper passes on only with metadata routing switched on globally. A label
    that is all-absent (or all-present) among the labeled rows gets that constant probability.
    """

    def __init__(self, C: float, class_weight: str | None = None,
                 label_vectors: np.ndarray | None = None) -> None:
        self.C, self.class_weight, self.label_vectors = C, class_weight, label_vectors

    def fit(self, X: np.ndarray, Y: np.ndarray) -> OneVsRest:
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
        weights = np.ones(len(X))
        if self.label_vectors is not None:
            names = self.label_vectors / np.linalg.norm(self.label_vectors, axis=1, keepdims=True)
            X = np.vstack([X, names])
            Y = np.vstack([Y, np.eye(len(names), dtype=Y.dtype)])
            weights = np.concatenate([weights, np.ones(len(names))])
        self.coef_ = np.zeros((Y.shape[1], X.shape[1]), dtype=np.float32)
        self.intercept_ = np.zeros(Y.shape[1], dtype=np.float32)
        with warnings.catch_warnings(), single_threaded("blas"):
            warnings.simplefilter("ignore")
            for j in range(Y.shape[1]):
                y = Y[:, j]
                if y.min() == y.max():  # constant: a large logit of the right sign
                    self.intercept_[j] = 10.0 if y[0] else -10.0
                    continue
                model = LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=1000)
                model.fit(X, y, sample_weight=weights)
                self.coef_[j], self.intercept_[j] = model.coef_[0], model.intercept_[0]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(rows, labels) independent per-label probabilities."""
        X = np.asarray(X, dtype=np.float32)
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
        with single_threaded("blas"):
            return 1.0 / (1.0 + np.exp(-(X @ self.coef_.T + self.intercept_)))


def make_learner(name: str, label_vectors: np.ndarray) -> Callable[[], OneVsRest]:
    options: dict[str, dict[str, Any]] = {
        "ovr-c30": {"C": 30.0},
        "ovr-c3": {"C": 3.0},
        "ovr-c3-balanced": {"C": 3.0, "class_weight": "balanced"},
        "ovr-names-c3": {"C": 3.0, "label_vectors": label_vectors},
        "ovr-names-c3-balanced": {"C": 3.0, "class_weight": "balanced", "label_vectors": label_vectors},
    }
    if name not in options:
        raise SystemExit(f"Unknown learner {name!r}; choose from {', '.join(LEARNERS)}.")
    return lambda: OneVsRest(**options[name])


def decide(P: np.ndarray, rule: str) -> np.ndarray:
    """Predicted label sets as a 0/1 matrix: p >= 0.5 per label; ``any`` adds the argmax to empty rows."""
    Y = (P >= 0.5).astype(np.int8)
    if rule == "any":
        empty = Y.sum(axis=1) == 0
        Y[np.flatnonzero(empty), P[empty].argmax(axis=1)] = 1
    return Y


def metrics(Yt: np.ndarray, P: np.ndarray) -> dict[str, dict[str, float]]:
    out = {}
    for rule in RULES:
        Yp = decide(P, rule)
        out[rule] = {
            "micro_f1": float(f1_score(Yt, Yp, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(Yt, Yp, average="macro", zero_division=0)),
            "subset_accuracy": float(np.mean(np.all(Yt == Yp, axis=1))),
        }
    return out


# ------------------------------------------------------------------------------- query strategies
# One signature: (probabilities (pool rows, labels) or None, the pool's embeddings, candidate rows
# (sorted), labeled rows, n, rng) -> n picked rows, most informative first.


def _uncertainty(P: np.ndarray) -> np.ndarray:
    return np.minimum(P, 1.0 - P)


def mean_uncertainty(P: np.ndarray) -> np.ndarray:
    return _uncertainty(P).mean(axis=1)


def max_uncertainty(P: np.ndarray) -> np.ndarray:
    return _uncertainty(P).max(axis=1)


def expected_f1_loss(P: np.ndarray) -> np.ndarray:
    S = decide(P, "any").astype(bool)
    return 1.0 - 2.0 * np.where(S, P, 0.0).sum(axis=1) / (S.sum(axis=1) + P.sum(axis=1))


def banded_kmeans(score: Callable[[np.ndarray], np.ndarray], factor: int) -> Callable[..., np.ndarray]:
    """The ``factor`` x batch highest-scoring candidates, clustered into batch groups, the member nearest
    each centre picked (core.strategies.MarginKMeans with another uncertainty score)."""

    def query(P: np.ndarray, X: np.ndarray, candidates: np.ndarray, labeled: np.ndarray, n: int,
              rng: np.random.Generator) -> np.ndarray:
        priority = score(P[candidates])
        band = _rank(priority, rng, top=factor * n)
        if len(band) <= n:
            return candidates[band]
        members = np.asarray(X[candidates[band]], dtype=np.float32)
        clusters, centres = _kmeans_labels(members, n, rng)
        taken = set(_nearest_per_cluster(members, clusters, centres).values())
        taken |= set([p for p in range(len(band)) if p not in taken][: n - len(taken)])
        return candidates[band[sorted(taken)]]

    return query


def random_query(P: np.ndarray | None, X: np.ndarray, candidates: np.ndarray, labeled: np.ndarray, n: int,
                 rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(candidates)[:n]


def cold_start_query(P: np.ndarray | None, X: np.ndarray, candidates: np.ndarray, labeled: np.ndarray,
                     n: int, rng: np.random.Generator) -> np.ndarray:
    picks = ColdStart().query(proba=None, embeddings=X, candidates=candidates, classes=(), n=n, rng=rng,
                              labeled=labeled)
    return np.array([p.index for p in picks], dtype=np.int64)


FACTOR = uncertain_pool_factor(8)  # the product's band for 8 labels: 10 x batch
STRATEGIES: dict[str, Callable[..., np.ndarray]] = {
    "random": random_query,
    "mean-unc": banded_kmeans(mean_uncertainty, FACTOR),
    "max-unc": banded_kmeans(max_uncertainty, FACTOR),
    "expected-f1": banded_kmeans(expected_f1_loss, FACTOR),
}
COLD_STARTS = {"kmeans": cold_start_query, "random": random_query}


def replay(X: np.ndarray, Y: np.ndarray, Xt: np.ndarray, Yt: np.ndarray, learner: Callable[[], OneVsRest],
           strategy: str, cold_start: str, seed: int, budget: int) -> dict[str, Any]:
    """Metrics at each evaluation point, and the CPU seconds of fits and queries."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(Y))  # seed s shuffles the pool, as in bench/learners.py
    X, Y = X[order], Y[order]
    checkpoints = set(label_schedule(budget))
    labeled = np.zeros(0, dtype=np.int64)
    model: OneVsRest | None = None
    points, fit_cpu, query_cpu = [], 0.0, 0.0
    while len(labeled) < budget:
        candidates = np.setdiff1d(np.arange(len(Y)), labeled)
        n = min(BATCH, budget - len(labeled))
        started = time.process_time()
        if model is None:
            picks = COLD_STARTS[cold_start](None, X, candidates, labeled, n, rng)
        else:
            P = model.predict_proba(X) if strategy != "random" else None
            picks = STRATEGIES[strategy](P, X, candidates, labeled, n, rng)
        query_cpu += time.process_time() - started
        labeled = np.concatenate([labeled, picks.astype(np.int64)])
        started = time.process_time()
        model = learner().fit(X[labeled], Y[labeled])
        fit_cpu += time.process_time() - started
        if len(labeled) in checkpoints:
            points.append({"labels": len(labeled), **metrics(Yt, model.predict_proba(Xt))})
    return {"points": points, "fit_cpu_s": fit_cpu, "query_cpu_s": query_cpu}


def average(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The seeds' mean at each evaluation point."""
    curve = []
    for i, point in enumerate(runs[0]["points"]):
        entry: dict[str, Any] = {"labels": point["labels"]}
        for rule in RULES:
            entry[rule] = {m: float(np.mean([r["points"][i][rule][m] for r in runs])) for m in METRICS}
        curve.append(entry)
    return curve


def labels_to(curve: list[dict[str, Any]], rule: str, target: float) -> int | None:
    return next((p["labels"] for p in curve if p[rule]["micro_f1"] >= target), None)


def cost(X: np.ndarray, Y: np.ndarray, labels: list[str], label_vectors: np.ndarray,
         repeats: int = 5) -> dict[str, Any]:
    """CPU seconds of one retrain's model work at 1,000 labels in a 10k pool: fit, pool scores and a
    500-record queue (max-unc banded k-means, chunks of 10), for the OvR learner and the single-label LR on
    each record's first label (core.learner with the label-name prior, as the product retrains)."""
    rng = np.random.default_rng(0)
    pool = np.asarray(X[:10_000], dtype=np.float32)
    labeled = rng.choice(len(pool), 1000, replace=False)
    candidates = np.setdiff1d(np.arange(len(pool)), labeled)
    first = np.array(labels, dtype=object)[Y[labeled].argmax(axis=1)]
    names = dict(zip(labels, label_vectors, strict=True))
    out: dict[str, Any] = {}

    def queue_ovr(model: OneVsRest) -> None:
        P = model.predict_proba(pool)
        chosen: list[int] = []
        rest = candidates
        while len(chosen) < 500:
            picks = STRATEGIES["max-unc"](P, pool, rest, labeled, BATCH, rng)
            chosen += picks.tolist()
            rest = np.setdiff1d(rest, picks)

    for learner in ("single-label LR (names, C=30)", "OvR LR (C=3)", "OvR LR (names, C=3, balanced)"):
        fits, totals = [], []
        for _ in range(repeats):
            started = time.process_time()
            if learner.startswith("single"):
                model = EmbeddingClassifier(label_vectors=names).fit(pool[labeled], first)
                fitted = time.process_time()
                get_strategy("margin-kmeans").query(
                    proba=None, scores=model.score_pool(pool), embeddings=pool, candidates=candidates,
                    classes=tuple(model.classes_), n=500, rng=rng, batch_size=BATCH,
                )
            else:
                vectors = label_vectors if "names" in learner else None
                weights = "balanced" if "balanced" in learner else None
                ovr = OneVsRest(C=3.0, class_weight=weights, label_vectors=vectors)
                ovr.fit(pool[labeled], Y[labeled])
                fitted = time.process_time()
                queue_ovr(ovr)
            fits.append(fitted - started)
            totals.append(time.process_time() - started)
        out[learner] = {"fit_cpu_s": round(statistics.median(fits), 3),
                        "fit_score_queue_cpu_s": round(statistics.median(totals), 3)}
        print(f"{learner:32s} fit {out[learner]['fit_cpu_s']:.3f} CPU s, fit + pool scores + 500-record "
              f"queue {out[learner]['fit_score_queue_cpu_s']:.3f} CPU s (median of {repeats})", flush=True)
    return out


def rounded(value: Any, digits: int = 4) -> Any:
    """Floats to ``digits`` places, through dicts and lists: keeps the result file small."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v, digits) for v in value]
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--learners", default=",".join(LEARNERS))
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--cold-starts", default="kmeans,random")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--cost", action="store_true", help="only time a retrain at 10k records")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "multilabel.json")
    args = parser.parse_args()

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    embedder = CachingEmbedder(
        make_embedder(settings.embedding_model), cache_dir=BENCH / ".cache" / "simulate"
    )
    X, Y, Xt, Yt, labels = load(embedder)
    label_vectors = embedder.encode([label_text(label) for label in labels])
    payload: dict[str, Any] = {"load_average_start": os.getloadavg(), "machine": platform.platform(),
                               "labels": labels, "train": len(Y), "test": len(Yt)}
    if args.cost:
        payload["cost"] = cost(X, Y, labels, label_vectors)
        args.out = args.out.with_name("multilabel_cost.json")
    else:
        full = {}
        for learner in args.learners.split(","):
            full[learner] = metrics(Yt, make_learner(learner, label_vectors)().fit(X, Y).predict_proba(Xt))
            shown = "  ".join(f"{rule}: " + " ".join(f"{m} {v:.3f}" for m, v in full[learner][rule].items())
                              for rule in RULES)
            print(f"full pool {learner:16s} {shown}", flush=True)
        payload["full_pool"] = full
        results: dict[str, Any] = {}
        for learner in args.learners.split(","):
            for strategy in args.strategies.split(","):
                for cold in args.cold_starts.split(","):
                    runs = [replay(X, Y, Xt, Yt, make_learner(learner, label_vectors), strategy, cold, seed,
                                   args.budget) for seed in range(args.seeds)]
                    curve = average(runs)
                    entry: dict[str, Any] = {}
                    for rule in RULES:
                        target = 0.95 * full[learner][rule]["micro_f1"]
                        entry[rule] = {f"mean_{m}": float(np.mean([p[rule][m] for p in curve]))
                                       for m in METRICS}
                        entry[rule]["labels_to_95_micro"] = labels_to(curve, rule, target)
                    entry["fit_cpu_s_per_curve"] = float(np.mean([r["fit_cpu_s"] for r in runs]))
                    entry["query_cpu_s_per_curve"] = float(np.mean([r["query_cpu_s"] for r in runs]))
                    entry["curve"] = curve
                    results[f"{learner} / {strategy} / {cold}"] = entry
                    shown = "  ".join(
                        f"{rule}: micro {e['mean_micro_f1']:.4f} macro {e['mean_macro_f1']:.4f} subset "
                        f"{e['mean_subset_accuracy']:.4f} to95 {e['labels_to_95_micro']}"
                        for rule, e in ((rule, entry[rule]) for rule in RULES)
                    )
                    cpu = (f"fits {entry['fit_cpu_s_per_curve']:.0f} s "
                           f"queries {entry['query_cpu_s_per_curve']:.0f} s")
                    print(f"{learner:16s} {strategy:12s} {cold:7s} {shown}  {cpu}", flush=True)
        payload["results"] = results
    payload["load_average_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rounded(payload), separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
