"""Query strategies: which unlabeled records to ask people about next (small-text style).

Every strategy sees the whole pool (the model's ``scores`` — or a full ``proba`` matrix, summarised
the same way — and ``embeddings`` for all N rows) plus the row indices that may be picked
(``candidates``) and returns ``Pick``s ordered by priority, each with a short reason the Slack card
shows. Model-based strategies fall back to ``ColdStart`` while there is no model (neither given) or
it knows a single class. ``embeddings`` may be float16 and a memmap: strategies read only the rows
they cluster or compare, converted to float32.

Over 400 lines because the seven strategies share one contract and its helpers (ranking with random
ties, k-means seeding, reasons); apart, they would each restate them.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

from core.errors import LabelbotError
from core.learner import PoolScores, single_threaded

# k-means runs on the retrain path (100k pool, < 3 s in total on 2 cores). Measured on
# 5000 x 384 MiniLM vectors, k=500: sklearn's greedy k-means++ init alone took 1.6-1.8 s, plain
# D^2 sampling (below) 0.3 s, ending within 5% of its inertia after Lloyd, which converged in
# ~13 iterations, so 20 is a safe cap.
_KMEANS_MAX_ITER = 20
# Cold start clusters a random subsample: ~20 rows per cluster find the pool's structure,
# capped so that k-means stays around a second even for a 500-record batch.
COLD_START_SUBSAMPLE = 10_000
_COLD_START_ROWS_PER_CLUSTER = 20
# Margin-k-means clusters the f x batch most uncertain candidates, f = (labels / 2) clipped to [10, 40]:
# the team's recipe is 10; many labels have many uncertain regions, and a batch covers more of them
# from a wider band. Evidence (bench/learners.py, learner with the label-name prior and chosen C, mean
# test accuracy over 10-1000 labels, 3 seeds; docs/benchmarks.md): more labels gain from a wider band
# up to f=40 (at 80 the late picks are too certain), two labels lose a little.
MIN_UNCERTAIN_POOL_FACTOR, MAX_UNCERTAIN_POOL_FACTOR = 10, 40
# From LATE_BAND_LABELED labeled records on, f is at most LATE_UNCERTAIN_POOL_FACTOR: by then the model
# is good and the records it is torn about are fewer, so a wide band reaches records it is already sure
# of. Evidence (labelbot simulate, 3 seeds, docs/benchmarks.md "Tried after the issue closed"): test
# accuracy at 800 / 900 labels Banking77 0.886 / 0.889 -> 0.891 / 0.893, HWU64 0.861 / 0.867 -> 0.864 / 0.871;
# 80 x was worse at every count.
LATE_BAND_LABELED, LATE_UNCERTAIN_POOL_FACTOR = 400, 20
# Margin-k-means weighs each candidate's margin by how many labeled records share its guessed label:
# margin x (labeled guessed as that label + 1) / (labeled per label on average + 1), so a torn record
# whose guess is a label with few examples comes before an equally torn one of a well-covered label.
# Only from MIN_LABELS_TO_BALANCE labels (classes) on: with a few labels each is soon well covered.
# Evidence (docs/benchmarks.md "Tried after the issue closed"; mean test accuracy over 10-1000 labels,
# 3 seeds): with the late band, through labelbot simulate, Banking77 0.754 -> 0.763 and HWU64 0.708 ->
# 0.715; in the replay (bench/learners.py) the count to the power 1.5 or 2 was no better, and XED English
# (8 labels) lost 0.6 points (0.326 -> 0.320).
MIN_LABELS_TO_BALANCE = 20


def uncertain_pool_factor(n_labels: int, n_labeled: int = 0) -> int:
    """How many times the batch the band of most uncertain candidates that margin-k-means clusters, for
    ``n_labels`` labels (classes) and ``n_labeled`` labeled records."""
    factor = min(MAX_UNCERTAIN_POOL_FACTOR, max(MIN_UNCERTAIN_POOL_FACTOR, n_labels // 2))
    if n_labeled >= LATE_BAND_LABELED:
        factor = min(factor, LATE_UNCERTAIN_POOL_FACTOR)
    return int(factor)


@dataclass(frozen=True)
class Pick:
    """One record to ask about."""

    index: int  # row index into the pool arrays
    score: float  # strategy-specific priority (higher = more informative)
    reason: str  # short human text shown on the Slack card


def label_balance(scores: PoolScores, labeled: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """For ``rows``: (labeled records whose guess is the row's guess + 1) / (mean of that count + 1).

    The guesses stand in for the labeled records' labels (the model fits its own labels almost
    perfectly) so that strategies need no labels; unseen labels count as 0.
    """
    counts = np.bincount(scores.best[np.asarray(labeled, dtype=np.int64)], minlength=scores.n_classes)
    return ((counts + 1.0) / (counts.mean() + 1.0))[scores.best[rows]]


def _rank(priority: np.ndarray, rng: np.random.Generator, top: int | None = None) -> np.ndarray:
    """Positions sorted by priority descending, ties in random order (never by index).

    With ``top``, only the first ``top`` of that order: the same positions in the same order (the
    random tie-breaks are drawn for every row either way), without sorting a 1M-row pool.
    """
    tiebreak = rng.random(len(priority))
    if top is None or top >= len(priority):
        return np.lexsort((tiebreak, -priority))
    if top <= 0:
        return np.zeros(0, dtype=np.int64)
    # Everything at least as high as the top-th highest, ties at that boundary included.
    boundary = np.partition(priority, len(priority) - top)[len(priority) - top]
    head = np.flatnonzero(priority >= boundary)
    return head[np.lexsort((tiebreak[head], -priority[head]))][:top]


def _kmeans_plusplus(X: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (D^2 sampling, one trial per centre): spread-out initial centres."""
    sq = np.einsum("ij,ij->i", X, X)
    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = rng.integers(len(X))
    d2 = np.maximum(sq + sq[chosen[0]] - 2.0 * (X @ X[chosen[0]]), 0.0)
    for i in range(1, k):
        total = float(d2.sum())
        # All remaining rows coincide with a centre (duplicates): any row will do.
        if total <= 0:
            c = int(rng.integers(len(X)))
        else:
            c = int(np.searchsorted(np.cumsum(d2), rng.random() * total))
        chosen[i] = c = min(c, len(X) - 1)
        np.minimum(d2, np.maximum(sq + sq[c] - 2.0 * (X @ X[c]), 0.0), out=d2)
    return X[chosen]


def _kmeans_labels(X: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Cluster labels and centres; k is clipped to the number of rows."""
    k = min(k, len(X))
    # Single-threaded BLAS and OpenMP: on the loaded 2-core target, threads made this step
    # vary from 0.4 s to 3.8 s (5000 x 384, k=500); one thread takes a steady 0.4-0.5 s.
    with single_threaded(), warnings.catch_warnings():
        # Duplicate embeddings give fewer distinct clusters than asked; callers top up.
        warnings.simplefilter("ignore", ConvergenceWarning)
        km = KMeans(n_clusters=k, init=_kmeans_plusplus(X, k, rng), n_init=1, max_iter=_KMEANS_MAX_ITER)
        labels = km.fit_predict(X)
    return labels, km.cluster_centers_


def _nearest_per_cluster(X: np.ndarray, labels: np.ndarray, centers: np.ndarray) -> dict[int, int]:
    """For each non-empty cluster, the position of the row closest to its centre."""
    dist = np.einsum("ij,ij->i", X - centers[labels], X - centers[labels])
    order = np.lexsort((dist, labels))  # by cluster, then distance
    first = np.r_[True, labels[order][1:] != labels[order][:-1]]
    return {int(labels[p]): int(p) for p in order[first]}


class QueryStrategy(ABC):
    """Picks up to ``n`` unique candidates, most informative first."""

    name: ClassVar[str]
    #: Whether it can rank a multi-label model's scores (sets have no second-best class to compare).
    multi_label: ClassVar[bool] = True

    @abstractmethod
    def query(
        self,
        *,
        proba: np.ndarray | None,
        embeddings: np.ndarray,
        candidates: np.ndarray,
        classes: Sequence[str],
        n: int,
        rng: np.random.Generator,
        labeled: np.ndarray | None = None,
        batch_size: int | None = None,
        scores: PoolScores | None = None,
    ) -> list[Pick]:
        """Return at most ``n`` picks, unique, all in ``candidates``, ordered by priority.

        ``scores`` (``EmbeddingClassifier.score_pool``) replaces ``proba`` for a large pool: the same
        picks without the (rows, classes) matrix. ``batch_size`` is how many picks labelers will
        answer before the next retrain; a diversity-aware strategy makes every such prefix of the
        queue a diverse batch.
        """


def _check(proba: np.ndarray | None, embeddings: np.ndarray, candidates: np.ndarray,
           classes: Sequence[str], scores: PoolScores | None = None) -> np.ndarray:
    """Validate shapes; return the candidates as a unique int array."""
    cand = np.asarray(candidates, dtype=np.int64)
    if len(cand) > 1 and not bool(np.all(cand[1:] > cand[:-1])):  # a retrain's are sorted already
        cand = np.unique(cand)
    n_rows = embeddings.shape[0]
    if len(cand) and (cand[0] < 0 or cand[-1] >= n_rows):
        raise ValueError(f"candidate indices must lie in [0, {n_rows}).")
    if proba is not None:
        if proba.shape[0] != n_rows:
            raise ValueError(f"proba has {proba.shape[0]} rows but embeddings have {n_rows}.")
        if proba.shape[1] != len(classes):
            raise ValueError(f"proba has {proba.shape[1]} columns but there are {len(classes)} classes.")
    if scores is not None:
        if len(scores) != n_rows:
            raise ValueError(f"scores have {len(scores)} rows but embeddings have {n_rows}.")
        if scores.n_classes != len(classes):
            raise ValueError(f"scores are over {scores.n_classes} classes but there are {len(classes)}.")
    return cand


def _model_scores(proba: np.ndarray | None, scores: PoolScores | None) -> PoolScores | None:
    """What a model-based strategy ranks by; None without a model, or one that knows a single class."""
    if scores is None and proba is not None and proba.ndim == 2:
        scores = PoolScores.from_proba(proba)
    return scores if scores is not None and scores.n_classes >= 2 else None


def _guess(scores: PoolScores, row: int, classes: Sequence[str]) -> str:
    return f"model guesses {classes[scores.top_classes[row, 0]]} ({scores.top_proba[row, 0]:.2f})"


def _margin_reason(scores: PoolScores, row: int, classes: Sequence[str]) -> str:
    (a, b), (pa, pb) = scores.top_classes[row, :2], scores.top_proba[row, :2]
    return f"uncertain between {classes[a]} and {classes[b]} (margin {pa - pb:.2f})"


class RandomSampling(QueryStrategy):
    """Uniform random picks: the baseline every other strategy must beat."""

    name = "random"

    def query(
        self, *, proba, embeddings, candidates, classes, n, rng, labeled=None, batch_size=None, scores=None
    ) -> list[Pick]:
        cand = _check(proba, embeddings, candidates, classes, scores)
        chosen = rng.permutation(cand)[: max(n, 0)]
        model = _model_scores(proba, scores)
        picks = []
        for i in chosen:
            reason = "random sample"
            if model is not None:
                reason += f"; {_guess(model, i, classes)}"
            picks.append(Pick(int(i), 0.0, reason))
        return picks


class ColdStart(QueryStrategy):
    """Representative, diverse picks without a model.

    k-means (n clusters) over the candidates (a random subsample of ~20 per cluster, at most
    ``COLD_START_SUBSAMPLE``), then the candidate nearest each centre. Picks are ordered
    greedily by cluster size times cosine distance to the nearest labeled row or earlier pick,
    so big regions nobody has labeled yet come first and every prefix is diverse.
    """

    name = "cold-start"

    def query(
        self, *, proba, embeddings, candidates, classes, n, rng, labeled=None, batch_size=None, scores=None
    ) -> list[Pick]:
        cand = _check(proba, embeddings, candidates, classes, scores)
        n = min(max(n, 0), len(cand))
        if n == 0:
            return []
        size = min(COLD_START_SUBSAMPLE, max(2000, _COLD_START_ROWS_PER_CLUSTER * n))
        sample = cand if len(cand) <= size else rng.choice(cand, size, replace=False)
        X = np.asarray(embeddings[sample], dtype=np.float32)
        labels, centers = _kmeans_labels(X, n, rng)
        sizes = np.bincount(labels, minlength=len(centers)) / len(sample)
        nearest = _nearest_per_cluster(X, labels, centers)
        rows = np.array([sample[p] for p in nearest.values()], dtype=np.int64)
        weight = sizes[list(nearest)]
        novelty = self._distance_to_labeled(embeddings, rows, labeled)
        # Greedy order: each pick counts as labeled for the ones after it, so any prefix of
        # the queue (what people answer before the next retrain) is spread out too.
        remaining = novelty.copy()
        reps = np.asarray(embeddings[rows], dtype=np.float32)
        picks = []
        for _ in range(len(rows)):
            o = int(_rank(weight * remaining, rng)[0])
            picks.append(Pick(int(rows[o]), float(weight[o] * remaining[o]),
                              self._reason(weight[o] * len(cand), novelty[o], labeled)))
            np.minimum(remaining, np.clip(1.0 - reps @ reps[o], 0.0, 2.0), out=remaining)
            remaining[o] = -1.0  # never again
        if len(picks) < n:  # duplicate embeddings collapsed clusters: top up at random
            taken = {p.index for p in picks}
            rest = rng.permutation(np.setdiff1d(cand, list(taken)))[: n - len(picks)]
            picks += [Pick(int(i), 0.0, "random sample (the pool has many near-identical records)")
                      for i in rest]
        return picks

    @staticmethod
    def _distance_to_labeled(embeddings: np.ndarray, rows: np.ndarray,
                             labeled: np.ndarray | None) -> np.ndarray:
        """Cosine distance from each row to its nearest labeled row (1 when nothing is labeled)."""
        if labeled is None or len(labeled) == 0:
            return np.ones(len(rows))
        # float32: a float16 product would not use BLAS.
        picked = np.asarray(embeddings[rows], dtype=np.float32)
        sims = picked @ np.asarray(embeddings[np.asarray(labeled, dtype=np.int64)], dtype=np.float32).T
        return np.clip(1.0 - sims.max(axis=1), 0.0, 2.0)

    @staticmethod
    def _reason(cluster_size: float, novelty: float, labeled: np.ndarray | None) -> str:
        size = f"~{max(1, round(cluster_size))} similar records"
        # Cosine similarity above 0.8 to a labeled record: that region is not unexplored.
        if labeled is not None and len(labeled) and novelty < 0.2:
            return f"representative of a cluster near labeled records ({size})"
        return f"representative of an unexplored cluster ({size})"


class _UncertaintyStrategy(QueryStrategy):
    """Rank candidates by an uncertainty score of ``proba``; ties are broken at random."""

    def query(
        self, *, proba, embeddings, candidates, classes, n, rng, labeled=None, batch_size=None, scores=None
    ) -> list[Pick]:
        model = _model_scores(proba, scores)
        if model is None:
            return ColdStart().query(proba=None, embeddings=embeddings, candidates=candidates,
                                     classes=classes, n=n, rng=rng, labeled=labeled)
        cand = _check(proba, embeddings, candidates, classes, scores)
        priority = self.score(model)[cand]
        chosen = _rank(priority, rng, top=max(n, 0))
        return [Pick(int(cand[j]), float(priority[j]), self.reason(model, int(cand[j]), classes))
                for j in chosen]

    @abstractmethod
    def score(self, scores: PoolScores) -> np.ndarray:
        """Per row; higher = more informative."""

    @abstractmethod
    def reason(self, scores: PoolScores, row: int, classes: Sequence[str]) -> str: ...


class LeastConfidence(_UncertaintyStrategy):
    """Lowest top probability first."""

    name = "least-confidence"

    def score(self, scores: PoolScores) -> np.ndarray:
        return 1.0 - scores.best_proba

    def reason(self, scores: PoolScores, row: int, classes: Sequence[str]) -> str:
        return (f"low confidence: best guess {classes[scores.top_classes[row, 0]]} at only "
                f"{scores.top_proba[row, 0]:.2f}")


class MarginSampling(_UncertaintyStrategy):
    """Smallest top-1 minus top-2 margin first (score = -margin)."""

    name = "margin"
    multi_label = False

    def score(self, scores: PoolScores) -> np.ndarray:
        return -scores.margin()

    def reason(self, scores: PoolScores, row: int, classes: Sequence[str]) -> str:
        return _margin_reason(scores, row, classes)


class EntropySampling(_UncertaintyStrategy):
    """Highest predictive entropy first."""

    name = "entropy"

    def score(self, scores: PoolScores) -> np.ndarray:
        return scores.entropy

    def reason(self, scores: PoolScores, row: int, classes: Sequence[str]) -> str:
        top = zip(scores.top_classes[row], scores.top_proba[row], strict=True)
        spread = ", ".join(f"{classes[j]} {p:.2f}" for j, p in top)
        return f"prediction spread over several labels: {spread}"


class MarginKMeans(QueryStrategy):
    """Uncertain *and* diverse: margin sampling spread out with k-means.

    Takes the f x k candidates with the smallest margin (f from :func:`uncertain_pool_factor`), clusters
    their embeddings into k groups and picks one record per group, so a batch does not spend
    many questions on near-duplicates of one confusing message.

    Long queues are built in chunks of ``chunk`` picks: chunk 1 clusters the 10 x chunk most
    uncertain candidates, chunk 2 the next 10 x chunk, and so on, so every prefix a labeler
    works through before the next retrain is itself an uncertain, diverse batch. Picks are
    ordered by margin, smallest first. ``chunk`` should be the number of answers between
    retrains (default 10 = ``Settings.retrain_every``).

    ``pick="central"`` (default) takes the member nearest each centre, ``"uncertain"`` the
    one with the smallest margin. Simulated on Banking77 (pool = train set, 100 cold-start
    labels, C=30; mean test accuracy over the learning curve; differences of ~0.01 are within
    seed noise):
      batches of 100 to 1000 labels, 2 seeds: central 0.812, uncertain 0.800, margin 0.793,
        random 0.751;
      batches of 50 to 800, 3 seeds: central 0.797 (0.795 on a rerun), uncertain 0.789,
        margin 0.784; top 50 of a 500-pick queue in chunks of 10: 0.782, of 50: 0.788;
      10 answers per retrain to 500 labels, 2 seeds: batch of 10 (= chunk 10) 0.754, margin
        0.745, top 10 of a 500-pick queue in chunks of 50: 0.737, unchunked: 0.734, random 0.693.
    """

    name = "margin-kmeans"
    multi_label = False
    balance_labels: ClassVar[bool] = True  # margins weighed by label_balance (see its constant's note)
    late_band: ClassVar[bool] = True  # the band narrows from LATE_BAND_LABELED labeled records on

    def __init__(self, pick: str = "central", chunk: int = 10, factor: int | None = None,
                 balance: bool | None = None) -> None:
        if pick not in ("uncertain", "central"):
            raise ValueError("pick must be 'uncertain' (smallest margin per cluster) or 'central'.")
        if chunk < 1:
            raise ValueError("chunk must be at least 1.")
        self.pick = pick
        self.chunk = chunk
        self.factor = factor  # None: uncertain_pool_factor(number of labels, of labeled records)
        self.balance = self.balance_labels if balance is None else balance

    def query(
        self, *, proba, embeddings, candidates, classes, n, rng, labeled=None, batch_size=None, scores=None
    ) -> list[Pick]:
        model = _model_scores(proba, scores)
        if model is None:
            return ColdStart().query(proba=None, embeddings=embeddings, candidates=candidates,
                                     classes=classes, n=n, rng=rng, labeled=labeled)
        cand = _check(proba, embeddings, candidates, classes, scores)
        n = min(max(n, 0), len(cand))
        m = self.doubt(model)[cand]
        if self.balance and len(classes) >= MIN_LABELS_TO_BALANCE and labeled is not None and len(labeled):
            m = m * label_balance(model, labeled, cand)
        # Smallest margin first, random ties. The chunks below use at most factor x n
        # positions (each takes factor x k and picks k), so only those are ranked: on a 1M pool sorting
        # every candidate took longer than the clustering.
        n_labeled = len(labeled) if self.late_band and labeled is not None else 0
        n_classes = getattr(model, "n_labels", 0) or len(classes)
        factor = self.factor or uncertain_pool_factor(n_classes, n_labeled)
        ranked = _rank(-m, rng, top=factor * n)
        chosen: list[int] = []
        start = 0
        while len(chosen) < n and start < len(ranked):
            k = min(batch_size or self.chunk, n - len(chosen))
            pool = ranked[start : start + factor * k]
            start += len(pool)
            chosen += self._one_per_cluster(pool, k, embeddings[cand[pool]], rng)
        if len(chosen) < n:
            # Fewer than factor x n candidates: the bands ran out; fill with the most uncertain left.
            taken = set(chosen)
            chosen += [int(j) for j in ranked if j not in taken][: n - len(chosen)]
            position = np.empty(len(cand), dtype=np.int64)
            position[ranked] = np.arange(len(ranked))
            chosen.sort(key=lambda j: position[j])
        # Chunks cover successive margin bands, each in pool order: margin ascending overall.
        return [Pick(int(cand[j]), float(-m[j]), self.reason(model, int(cand[j]), classes))
                for j in chosen]

    def doubt(self, scores: PoolScores) -> np.ndarray:
        """Per row; smaller = more uncertain (here the top-2 margin)."""
        return scores.margin()

    def reason(self, scores: PoolScores, row: int, classes: Sequence[str]) -> str:
        return _margin_reason(scores, row, classes)

    def _one_per_cluster(self, pool: np.ndarray, k: int, X: np.ndarray,
                         rng: np.random.Generator) -> list[int]:
        """k picks from ``pool`` (positions sorted by margin), in pool order."""
        if len(pool) <= k:
            return list(pool)
        X = np.asarray(X, dtype=np.float32)
        labels, centers = _kmeans_labels(X, k, rng)
        if self.pick == "central":
            taken = set(_nearest_per_cluster(X, labels, centers).values())
        else:
            _, first = np.unique(labels, return_index=True)  # pool order: the most uncertain member
            taken = set(first.tolist())
        # Duplicate embeddings can collapse clusters: top up with the next most uncertain.
        taken |= set([p for p in range(len(pool)) if p not in taken][: k - len(taken)])
        return [int(pool[p]) for p in sorted(taken)]


class MaxUncertaintyKMeans(MarginKMeans):
    """Multi-label projects' default: the most uncertain label of a record (p nearest 0.5) ranks it,
    with margin-k-means's diversity step over the band (factor by the number of labels).

    Evidence (bench/multilabel.py, XED 8 emotions, docs/benchmarks.md "Multi-label"): with the one-vs-rest
    learner (prior, balanced) it tied random on mean micro-F1 over 10-1,000 labels and reached 95% of the
    full pool's micro-F1 at 2,100 labels against random's 2,400; the mean over labels was below random.
    On a single-label model it ranks by the top-2 margin, as margin-kmeans.
    """

    name = "max-uncertainty-kmeans"
    multi_label = True
    balance_labels = False  # a multi-label guess is a label set: not weighed
    late_band = False  # measured on single-label projects only

    def doubt(self, scores: PoolScores) -> np.ndarray:
        uncertainty = getattr(scores, "uncertainty", None)
        return scores.margin() if uncertainty is None else -uncertainty

    def reason(self, scores: PoolScores, row: int, classes: Sequence[str]) -> str:
        uncertainty = getattr(scores, "uncertainty", None)
        if uncertainty is None:
            return _margin_reason(scores, row, classes)
        label = classes.labels[int(scores.doubt[row])]  # type: ignore[attr-defined]
        return f"unsure whether it is {label} ({float(scores.doubt_proba[row]):.2f})"


STRATEGIES: dict[str, type[QueryStrategy]] = {
    cls.name: cls
    for cls in (
        RandomSampling, LeastConfidence, MarginSampling, EntropySampling, MarginKMeans, MaxUncertaintyKMeans,
        ColdStart,
    )
}


def get_strategy(name: str, **params: Any) -> QueryStrategy:
    """A strategy instance by name (``params`` go to its constructor, e.g. ``chunk=`` for
    margin-kmeans); ``LabelbotError`` names the valid ones otherwise."""
    try:
        cls = STRATEGIES[name]
    except KeyError:
        valid = ", ".join(sorted(STRATEGIES))
        raise LabelbotError(f"Unknown query strategy {name!r}. Choose one of: {valid}.") from None
    return cls(**params)
