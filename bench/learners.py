"""Learner candidates for issue 11, replayed in memory on the shared datasets' real embeddings.

The replay is ``labelbot simulate``'s loop without the database: 10 cold-start labels, then the
strategy's picks in batches of 10 up to 100, 50 up to 500 and 100 beyond, the classifier refit after
each batch and scored on the test set; seed s shuffles the pool. It ranks with the project's own
strategies (``core.strategies``) and fits the project's own classifier (``core.learner``), so the
candidates differ only in the learner. Fast enough (seconds per curve) to try many; the defaults'
figures in docs/benchmarks.md come from ``bench/simulate_datasets.py`` through the real service.

Candidates (``--learners``):

* ``lr``: logistic regression, C=30, on the L2-normalised embeddings (the default before issue 11);
* ``names``: the same with the label-name prior (each label's name is one training example);
* ``names-w3``: the prior with weight 3;
* ``names-c3`` / ``names-c10``: the prior with C fixed at 3 / 10;
* ``names-choose-c`` (the new default): the prior, C chosen by ``core.learner.choose_c`` on the labels
  of the previous step (the retrain tail chooses it for the next retrain);
* ``self-training``: LR refit on its labels plus label-spreading pseudo-labels over the pool's
  10-nearest-neighbour graph (confidence >= 0.6, weight 0.3 x confidence): semi-supervised use of
  the unlabeled pool.

    .venv/bin/python bench/learners.py                                    # all, 3 seeds, ~15 min
    .venv/bin/python bench/learners.py --dataset hwu64 --learners lr,names --strategies margin-kmeans
    .venv/bin/python bench/learners.py --learners names-choose-c --factors 10,20,40,80
    .venv/bin/python bench/learners.py --cost                             # CPU s per retrain, 10k/100k

Writes bench/results/learners.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import Settings
from core.embeddings import label_text, make_embedder
from core.learner import DEFAULT_C, EmbeddingClassifier, choose_c, cross_validated_metrics, single_threaded
from core.simulate import CachingEmbedder, label_schedule, stratified_split
from core.strategies import ColdStart, get_strategy

BENCH = Path(__file__).resolve().parent
DATA = Path(os.environ.get("LABELBOT_DATASETS", BENCH.parents[1] / "shared" / "datasets"))
LEARNERS = ("lr", "names", "names-w3", "names-c3", "names-c10", "names-choose-c", "self-training")
DATASETS = ("banking77", "hwu64", "xed_en", "sms_spam")


def _rows(path: Path, delimiter: str = ",") -> list[dict[str, str]]:
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter=delimiter, quoting=quoting))


def load(name: str, embedder: CachingEmbedder) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train vectors and labels, test vectors and labels (SMS: simulate's stratified 20%, seed 0)."""
    if name == "sms_spam":
        rows = _rows(DATA / "sms_spam" / "SMSSpamCollection", "\t")
        texts, labels = [r["SMS"] for r in rows], [r["Label"] for r in rows]
        train, test = stratified_split(labels, seed=0)
        X, y = embedder.encode(texts), np.array(labels, dtype=object)
        return X[train], y[train], X[test], y[test]
    column = "category" if name == "banking77" else "label"
    train, test = _rows(DATA / name / "train.csv"), _rows(DATA / name / "test.csv")
    return (
        embedder.encode([r["text"] for r in train]),
        np.array([r[column] for r in train], dtype=object),
        embedder.encode([r["text"] for r in test]),
        np.array([r[column] for r in test], dtype=object),
    )


class SelfTraining(EmbeddingClassifier):
    """LR on the labels plus label-spreading pseudo-labels over the pool's kNN graph."""

    def __init__(
        self,
        pool: np.ndarray,
        neighbours: tuple[np.ndarray, np.ndarray],
        weight: float = 0.3,
        threshold: float = 0.6,
    ) -> None:
        super().__init__()
        self.pool, self.neighbours, self.weight, self.threshold = pool, neighbours, weight, threshold

    def fit_rows(self, rows: np.ndarray, y: np.ndarray) -> EmbeddingClassifier:
        classes = np.unique(y)
        if len(classes) < 2:
            return EmbeddingClassifier().fit(self.pool[rows], y)
        idx, sim = self.neighbours
        seed = np.zeros((len(self.pool), len(classes)), dtype=np.float32)
        seed[rows, np.searchsorted(classes, y)] = 1.0
        w = np.maximum(sim, 0) ** 3
        w /= w.sum(axis=1, keepdims=True) + 1e-9
        spread = seed.copy()
        for _ in range(20):  # F = a S F + (1 - a) Y, a = 0.9
            spread = 0.9 * np.einsum("nk,nkc->nc", w, spread[idx]) + 0.1 * seed
        total = spread.sum(axis=1)
        confidence = spread.max(axis=1) / np.maximum(total, 1e-12)
        pseudo = (total > 1e-6) & (confidence >= self.threshold)
        pseudo[rows] = False
        extra = np.flatnonzero(pseudo)
        X = np.vstack([self.pool[rows], self.pool[extra]])
        labels = np.concatenate([y, classes[spread[extra].argmax(axis=1)]])
        weights = np.concatenate([np.ones(len(rows)), self.weight * confidence[extra]])
        from sklearn.linear_model import LogisticRegression

        model = EmbeddingClassifier()
        model.n_features_in_, model.classes_, model._logits32 = X.shape[1], np.unique(labels), None
        with warnings.catch_warnings(), single_threaded("blas"):
            warnings.simplefilter("ignore")
            norms = np.linalg.norm(X, axis=1, keepdims=True)
            model.model_ = LogisticRegression(C=DEFAULT_C, max_iter=1000).fit(
                X / norms, labels, sample_weight=weights
            )
        return model


def knn_graph(X: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    idx = np.empty((len(X), k), dtype=np.int64)
    sim = np.empty((len(X), k), dtype=np.float32)
    for start in range(0, len(X), 2048):
        block = Xn[start : start + 2048] @ Xn.T
        block[np.arange(len(block)), np.arange(start, start + len(block))] = -np.inf
        top = np.argpartition(-block, k, axis=1)[:, :k]
        idx[start : start + len(block)], sim[start : start + len(block)] = (
            top,
            np.take_along_axis(block, top, 1),
        )
    return idx, sim


def make_fit(learner: str, X: np.ndarray, names: dict[str, np.ndarray]) -> Callable[..., EmbeddingClassifier]:
    """fit(rows, y, state) -> fitted classifier; ``state`` carries choose_c's choice between steps."""
    fixed = {
        "lr": {},
        "names": {"label_vectors": names},
        "names-w3": {"label_vectors": names, "label_weight": 3.0},
        "names-c3": {"label_vectors": names, "C": 3.0},
        "names-c10": {"label_vectors": names, "C": 10.0},
    }
    if learner in fixed:
        return lambda rows, y, state: EmbeddingClassifier(**fixed[learner]).fit(X[rows], y)
    if learner == "names-choose-c":

        def fit(rows: np.ndarray, y: np.ndarray, state: dict[str, Any]) -> EmbeddingClassifier:
            c = state.get("c", DEFAULT_C)
            model = EmbeddingClassifier(C=c, label_vectors=names).fit(X[rows], y)
            metrics = cross_validated_metrics(
                X[rows], y, estimator_factory=lambda: EmbeddingClassifier(C=c, label_vectors=names)
            )
            state["c"] = choose_c(
                X[rows],
                y,
                current=c,
                current_metrics=metrics,
                estimator_factory=lambda C: EmbeddingClassifier(C=C, label_vectors=names),
            )
            return model

        return fit
    if learner == "self-training":
        graph = knn_graph(X)
        return lambda rows, y, state: SelfTraining(X, graph).fit_rows(rows, y)
    raise SystemExit(f"Unknown learner {learner!r}; choose from {', '.join(LEARNERS)}.")


def replay(
    X: np.ndarray,
    y: np.ndarray,
    Xt: np.ndarray,
    yt: np.ndarray,
    fit: Callable[..., Any],
    strategy: str,
    seed: int,
    budget: int,
) -> tuple[list[tuple[int, float]], float]:
    """(labels, test accuracy) per step, and the CPU seconds spent fitting."""
    order = np.random.default_rng(seed).permutation(len(y))
    X, y = X[order], y[order]
    rng = np.random.default_rng(seed + 1000)
    labeled = np.zeros(0, dtype=np.int64)
    model, state, curve, cpu = None, {}, [], 0.0
    for step in label_schedule(min(budget, len(y))):
        candidates = np.setdiff1d(np.arange(len(y)), labeled)
        n = step - len(labeled)
        if model is None or len(model.classes_) < 2:
            picks = ColdStart().query(
                proba=None, embeddings=X, candidates=candidates, classes=(), n=n, rng=rng, labeled=labeled
            )
        else:
            name, _, factor = strategy.partition("@")  # "margin-kmeans@40": that band factor
            picks = get_strategy(name, **({"factor": int(factor)} if factor else {})).query(
                proba=None,
                scores=model.score_pool(X),
                embeddings=X,
                candidates=candidates,
                classes=tuple(model.classes_),
                n=n,
                rng=rng,
                labeled=labeled,
                batch_size=n,
            )
        labeled = np.concatenate([labeled, np.array([p.index for p in picks], dtype=np.int64)])
        started = time.process_time()
        # The fit sees pool row numbers (self-training needs the pool); undo the shuffle for it.
        model = fit(order[labeled], y[labeled], state)
        cpu += time.process_time() - started
        curve.append((len(labeled), float(np.mean(model.predict(Xt) == yt))))
    return curve, cpu


def labels_to(curve: list[tuple[int, float]], target: float) -> int | None:
    return next((n for n, accuracy in curve if accuracy >= target), None)


def cost(embedder: CachingEmbedder, names_of: Callable[[list[str]], dict[str, np.ndarray]]) -> dict[str, Any]:
    """CPU seconds of one retrain's model work (fit, pool scores, margin-k-means ranking, the tail's
    cross-validation) at 1,000 labels of Banking77, for pools of 10k and 100k rows."""
    X, y, _, _ = load("banking77", embedder)
    names = names_of(sorted(set(y)))
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    for size in (10_000, 100_000):
        pool = X[rng.integers(len(X), size=size)] + rng.normal(scale=0.01, size=(size, X.shape[1])).astype(
            np.float32
        )
        rows = rng.choice(len(X), 1000, replace=False)
        labeled, ly = np.arange(1000), y[rows]
        pool[:1000] = X[rows]
        for learner in ("lr", "names-choose-c", "self-training"):
            started = time.process_time()
            if learner == "self-training":
                fit_cv = SelfTraining(pool, knn_graph(pool)).fit_rows
                model = fit_cv(labeled, ly)
                tail = 0.0
            else:
                kwargs = {} if learner == "lr" else {"label_vectors": names}
                model = EmbeddingClassifier(**kwargs).fit(pool[labeled], ly)
            scores = model.score_pool(pool)
            get_strategy("margin-kmeans").query(
                proba=None,
                scores=scores,
                embeddings=pool,
                candidates=np.arange(1000, size),
                classes=tuple(model.classes_),
                n=500,
                rng=rng,
                batch_size=10,
            )
            critical = time.process_time() - started
            started = time.process_time()
            if learner != "self-training":
                metrics = cross_validated_metrics(
                    pool[labeled], ly, estimator_factory=lambda kw=kwargs: EmbeddingClassifier(**kw)
                )
                if learner == "names-choose-c":
                    choose_c(
                        pool[labeled],
                        ly,
                        current=DEFAULT_C,
                        current_metrics=metrics,
                        estimator_factory=lambda C, kw=kwargs: EmbeddingClassifier(C=C, **kw),
                    )
                tail = time.process_time() - started
            out[f"{learner} @ {size:,}"] = {
                "critical_path_cpu_s": round(critical, 2),
                "tail_cpu_s": round(tail, 2),
            }
            print(
                f"{learner} at {size:,} rows: critical path {critical:.2f} CPU s, tail {tail:.2f} CPU s",
                flush=True,
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=[*DATASETS, "all"], default="all")
    parser.add_argument("--learners", default=",".join(LEARNERS))
    parser.add_argument("--strategies", default="margin-kmeans,random")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--factors", default="", help="margin-kmeans band factors to compare, e.g. 10,40")
    parser.add_argument("--cost", action="store_true", help="only time a retrain at 10k and 100k rows")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "learners.json")
    args = parser.parse_args()

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    embedder = CachingEmbedder(
        make_embedder(settings.embedding_model), cache_dir=BENCH / ".cache" / "simulate"
    )

    def names_of(labels: list[str]) -> dict[str, np.ndarray]:
        return dict(zip(labels, embedder.encode([label_text(label) for label in labels]), strict=True))

    payload: dict[str, Any] = {"load_average": os.getloadavg(), "machine": platform.platform()}
    if args.cost:
        payload["cost"] = cost(embedder, names_of)
        args.out = args.out.with_name("learners_cost.json")
    else:
        results: dict[str, Any] = {}
        for name in DATASETS if args.dataset == "all" else [args.dataset]:
            X, y, Xt, yt = load(name, embedder)
            names = names_of(sorted(set(y) | set(yt)))
            full = float(np.mean(EmbeddingClassifier(label_vectors=names).fit(X, y).predict(Xt) == yt))
            results[name] = {"full_pool_accuracy": full}
            for learner in args.learners.split(","):
                fit = make_fit(learner, X, names)
                strategies = args.strategies.split(",")
                if args.factors:
                    strategies = [f"margin-kmeans@{f}" for f in args.factors.split(",")] + [
                        s for s in strategies if s != "margin-kmeans"
                    ]
                for strategy in strategies:
                    runs = [
                        replay(X, y, Xt, yt, fit, strategy, seed, args.budget) for seed in range(args.seeds)
                    ]
                    curve = [
                        (n, float(np.mean([run[0][i][1] for run in runs])))
                        for i, (n, _) in enumerate(runs[0][0])
                    ]
                    entry = {
                        "mean_accuracy": float(np.mean([a for _, a in curve])),
                        "labels_to_95": labels_to(curve, 0.95 * full),
                        "fit_cpu_s_per_curve": float(np.mean([run[1] for run in runs])),
                        "curve": curve,
                    }
                    results[name][f"{learner} / {strategy}"] = entry
                    print(
                        f"{name:10s} {learner:15s} {strategy:14s} mean {entry['mean_accuracy']:.4f}  "
                        f"to 95% {entry['labels_to_95']}  fits {entry['fit_cpu_s_per_curve']:.0f} CPU s",
                        flush=True,
                    )
        payload["results"] = results
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
