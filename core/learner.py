"""The classifier behind active learning: logistic regression on sentence embeddings.

Plus one cheap cross-validation pass (out-of-fold probabilities) that yields both the
metrics shown after each retrain and the input a confident-learning check needs, and the
blocked pass that scores a whole pool into ``PoolScores``.

Over 400 lines because the pool pass and its summary belong with the classifier whose maths
they repeat (``predict_proba`` and ``score_pool`` share one block function). The multi-label learner
(one-vs-rest, issue 13) is ``core.multilabel_learner``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.validation import check_array, check_is_fitted
from threadpoolctl import ThreadpoolController

# Default inverse regularisation strength. Evidence: `python bench/choose_c.py` (all-MiniLM-L6-v2,
# L2-normalised; labels drawn uniformly at random, mean of 3 seeds; fits single-threaded on the
# 2-core box; full table in bench/results/choose_c.json):
#          Banking77 test accuracy at N labels    fit s          SMS spam macro-F1 at N labels
#   C      100    500    2000   all(10k)          2000   all     100    500    2000   all(3.9k)
#   1      0.168  0.491  0.812  0.908             0.17   1.01    0.582  0.863  0.934  0.954
#   3      0.276  0.662  0.866  0.924             0.22   1.08    0.820  0.915  0.954  0.964
#   10     0.387  0.728  0.882  0.929             0.29   1.68    0.881  0.935  0.959  0.970
#   30     0.415  0.744  0.885  0.931             0.35   1.89    0.895  0.946  0.963  0.970
#   100    0.427  0.753  0.887  0.929             0.35   2.63    0.899  0.949  0.961  0.964
#   300    0.433  0.757  0.885  0.921             0.38   2.33    0.902  0.951  0.962  0.963
# Accuracy climbs steeply up to C=10 and is flat from 30 on (30 vs 100 differ by less than the
# seed-to-seed spread of ~0.02 at 100/500 labels); 30 is best or tied with all labels on both
# sets and fits in 0.35 s at 2000 labels x 77 classes. class_weight="balanced" (SMS, 13% spam)
# helps only at 100 labels (macro-F1 0.919 vs 0.895) and hurts from 2000 on (0.956 vs 0.963,
# 0.963 vs 0.970), so the default stays None.
DEFAULT_C = 30.0

# Each label's name (its embedding) joins the training data as one example of that label with this
# weight: a zero-shot prior that knows every label from the first fit and fades as real examples
# accumulate. Evidence (bench/learners.py, margin-kmeans, 3 seeds, mean test accuracy over 10-1000
# labels): Banking77 0.615 -> 0.751, HWU64 0.639 -> 0.712, XED 0.303 -> 0.311; weight 3 gained 1.6-2.3
# more on the intent sets but lost 0.2 on XED and reached 95% of the full pool later on HWU64. Through
# the real loop the whole change is in docs/benchmarks.md (issue 11).
LABEL_NAME_WEIGHT = 1.0

# The regularisation is chosen per project among these, by the out-of-fold log-likelihood of the labels
# (``choose_c``), once a project has MIN_LABELS_TO_CHOOSE_C labels; DEFAULT_C before. Evidence
# (bench/learners.py, margin-kmeans with the label-name prior, 3 seeds, mean test accuracy over 10-1000
# labels): noisy XED English 0.311 at C=30, 0.325 at C=3, 0.326 chosen; Banking77 and HWU64 keep
# C=30 (0.751 and 0.712 chosen, 0.661 and 0.654 at C=3). Below ~100 labels the choice is noise.
C_CHOICES = (3.0, DEFAULT_C)
MIN_LABELS_TO_CHOOSE_C = 100

# Below this many labels a cross-validated score is noise; report nothing instead.
MIN_LABELS_FOR_CV = 10
# CV runs on every retrain and costs one fit per fold, so above LARGE_CV_LABELS the folds are
# capped at LARGE_CV_FOLDS. bench/choose_c.py (Banking77, C=30): 0.15 s for 500 labels (5 folds),
# 0.70 s for 2000 (3 folds; 5 folds took ~2.5x as long). With that many labels 3 folds still train
# on 2/3 of them and the estimate barely moves (cv_accuracy 0.887 with 3 folds, 0.889 with 5).
LARGE_CV_LABELS = 1000
LARGE_CV_FOLDS = 3
# Scoring works through the pool in blocks of rows: each block is converted to float32 (the pool may be
# a float16 memmap), scored and reduced, so neither a float32 copy of the pool (1M x 384: 1.5 GB) nor
# the whole probability matrix (1M x 77 in float64: 616 MB) ever exists; a block's temporaries are
# ~25 MB. Measured at 1M x 384 x 77 (bench/speed.py) larger blocks were no faster.
POOL_BLOCK = 16_384
# The classes kept per row in PoolScores: two make the margin, three the entropy strategy's reason.
TOP_CLASSES = 3
# Blocks scored at once (each with one BLAS thread; numpy and BLAS release the GIL): the pool pass is
# most of a 1M retrain, and the training worker runs niced, so the bot's threads still come first.
SCORING_THREADS = 2


_threadpools: ThreadpoolController | None = None


def single_threaded(user_api: str | None = None) -> Any:
    """Context manager: BLAS (``user_api="blas"``) or all native thread pools limited to one.

    The matrices here are small, and on the 2-core target threaded BLAS/OpenMP made fits and
    k-means 3-8x slower and erratic whenever the other core was busy. The controller is built
    once: ``threadpool_limits`` rescans the loaded libraries on every call (~4 ms each).
    """
    global _threadpools
    if _threadpools is None:
        _threadpools = ThreadpoolController()
    return _threadpools.limit(limits=1, user_api=user_api)


def l2_normalize(X: np.ndarray) -> np.ndarray:
    """Row-normalise; the embeddings usually already are, but a stray vector must not dominate."""
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    norms[norms == 0] = 1.0  # an all-zero row stays zero instead of becoming NaN
    return X / norms


@dataclass(frozen=True)
class PoolScores:
    """What ranking and the guess table need from a model's probabilities, per row of a pool.

    ``top_classes`` holds the ``TOP_CLASSES`` most probable classes (column indices into the
    classifier's ``classes_``, most probable first; the first of tied columns first, like argmax),
    ``top_proba`` their probabilities and ``entropy`` the Shannon entropy (nats) of the whole row.
    1M rows x 3 classes take 28 MB, where the probabilities of 77 classes took 616 MB.
    """

    top_classes: np.ndarray  # (n, min(TOP_CLASSES, n_classes)) int32
    top_proba: np.ndarray  # same shape, float32 from a classifier (the input dtype from_proba)
    entropy: np.ndarray  # (n,)
    n_classes: int

    def __len__(self) -> int:
        return len(self.entropy)

    @property
    def best(self) -> np.ndarray:
        return self.top_classes[:, 0]

    @property
    def best_proba(self) -> np.ndarray:
        return self.top_proba[:, 0]

    def margin(self) -> np.ndarray:
        """Top-1 minus top-2 probability per row (0 = torn between two labels)."""
        if self.top_proba.shape[1] < 2:
            return np.ones(len(self), dtype=self.top_proba.dtype)
        return self.top_proba[:, 0] - self.top_proba[:, 1]

    def take(self, rows: np.ndarray) -> PoolScores:
        return PoolScores(self.top_classes[rows], self.top_proba[rows], self.entropy[rows], self.n_classes)

    @classmethod
    def from_proba(cls, proba: np.ndarray, *, block_rows: int = POOL_BLOCK) -> PoolScores:
        """The summary of a full probability matrix (small pools, tests, simulations)."""
        proba = np.asarray(proba)
        n, n_classes = proba.shape
        top = min(TOP_CLASSES, n_classes)
        scores = cls(np.empty((n, top), dtype=np.int32), np.empty((n, top), dtype=proba.dtype),
                     np.empty(n, dtype=proba.dtype), n_classes)
        for start in range(0, n, block_rows):
            block = proba[start : start + block_rows]
            p = np.clip(block, 1e-12, 1.0)
            scores.entropy[start : start + len(block)] = -(block * np.log(p)).sum(axis=1)
            _top_classes(block, scores.top_classes[start : start + len(block)],
                         scores.top_proba[start : start + len(block)])
        return scores


def _top_classes(proba: np.ndarray, classes_out: np.ndarray, proba_out: np.ndarray) -> None:
    """The most probable columns of each row, in order, by repeated argmax (first of ties first):
    with 3 of 77 columns, cheaper than sorting or partitioning every row."""
    rows = np.arange(len(proba))
    masked = proba
    for j in range(proba_out.shape[1]):
        best = masked.argmax(axis=1)
        classes_out[:, j] = best
        proba_out[:, j] = proba[rows, best]
        if j + 1 < proba_out.shape[1]:
            masked = masked if masked is not proba else proba.copy()
            masked[rows, best] = -np.inf


class EmbeddingClassifier(ClassifierMixin, BaseEstimator):
    """Multinomial logistic regression on L2-normalised sentence embeddings.

    Unlike a bare ``LogisticRegression`` it accepts a single class (everything is then
    predicted as that class with probability 1), because a project's first labels are
    often all the same.

    Parameters
    ----------
    C : float
        Inverse regularisation strength (see ``DEFAULT_C`` for the evidence behind the default).
    max_iter : int
        lbfgs iteration cap.
    random_state : int or None
        Passed to ``LogisticRegression`` (lbfgs is deterministic; kept for solver changes).
    class_weight : dict, "balanced" or None
        Passed to ``LogisticRegression``; None by default (see bench/choose_c.py, SMS spam).
    label_vectors : mapping of label name -> embedding of the name, or None
        The label-name prior: each name's vector is one extra training example of its label, with
        weight ``label_weight``, so the model knows every label (also unlabeled ones) from the first
        fit. It is used only when the names beat the labels' own base rate: their nearest-name
        guesses must agree with more of the labeled rows than the most common label's share (names
        like "ham"/"spam" or "0"/"1" that say nothing about the texts are left out).
    label_weight : float
        Weight of each label-name example (``LABEL_NAME_WEIGHT``; 0 turns the prior off).

    Attributes
    ----------
    classes_ : ndarray of str, sorted (with the prior: every named label, seen or not)
    model_ : LogisticRegression or None (None when only one class was seen)
    n_features_in_ : int
    label_names_used_ : bool, whether the label-name prior was part of this fit
    label_name_agreement_ : float or None, share of the labeled rows whose nearest label name is
        their label (None without ``label_vectors``)
    """

    def __init__(
        self,
        C: float = DEFAULT_C,
        max_iter: int = 1000,
        random_state: int | None = None,
        class_weight: dict[str, float] | str | None = None,
        label_vectors: Mapping[str, np.ndarray] | None = None,
        label_weight: float = LABEL_NAME_WEIGHT,
    ) -> None:
        self.C = C
        self.max_iter = max_iter
        self.random_state = random_state
        self.class_weight = class_weight
        self.label_vectors = label_vectors
        self.label_weight = label_weight

    def fit(
        self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> EmbeddingClassifier:
        """Fit on embeddings ``X`` (n, d) and labels ``y`` (n,) of str; ``sample_weight`` (n,): each row's
        weight (default 1), as scikit-learn estimators take it."""
        y = np.asarray(y)
        if len(y) == 0 or np.shape(X)[0] == 0:
            raise ValueError("Cannot train a classifier without labeled examples: label some records first.")
        X = check_array(X, dtype=[np.float32, np.float64])
        if X.shape[0] != len(y):
            raise ValueError(f"X has {X.shape[0]} rows but y has {len(y)} labels.")
        self.n_features_in_ = X.shape[1]
        X = l2_normalize(X)
        names, name_vectors = self._label_prior(X, y)
        weights = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if len(names):
            X = np.vstack([X, name_vectors.astype(X.dtype, copy=False)])
            y = np.concatenate([y.astype(object), names])
            rows = np.ones(len(y) - len(names)) if weights is None else weights
            weights = np.concatenate([rows, np.full(len(names), self.label_weight)])
        self.classes_ = np.unique(y)
        self._logits32 = None
        if len(self.classes_) == 1:
            self.model_ = None
            return self
        model = LogisticRegression(
            C=self.C, max_iter=self.max_iter, random_state=self.random_state, class_weight=self.class_weight
        )
        # One BLAS thread: on the 2-core target, threaded BLAS made this fit 3-4x *slower*
        # (0.57 s vs 1.7-2.3 s for 2000 labels x 77 classes), as the matrices are small.
        with warnings.catch_warnings(), single_threaded("blas"):
            # Early on there are often more labels than examples per label; sklearn then warns that
            # y "could represent a regression problem", which cannot be the case for str labels.
            warnings.filterwarnings("ignore", message="The number of unique classes", category=UserWarning)
            self.model_ = model.fit(X, y, sample_weight=weights)
        return self

    def _label_prior(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The label names and their normalised vectors to train on; empty when the prior is off.

        ``X`` is already normalised. Sets ``label_names_used_`` and ``label_name_agreement_``.
        """
        self.label_names_used_ = False
        self.label_name_agreement_ = None
        empty = np.zeros(0, dtype=object), np.zeros((0, X.shape[1]), dtype=np.float32)
        if not self.label_vectors:
            return empty
        names = np.array(sorted(self.label_vectors), dtype=object)
        vectors = l2_normalize(np.stack([np.asarray(self.label_vectors[n], np.float32) for n in names]))
        if vectors.shape[1] != X.shape[1]:
            raise ValueError(f"Label vectors have {vectors.shape[1]} dimensions, embeddings {X.shape[1]}.")
        nearest = names[np.argmax(X.astype(np.float32, copy=False) @ vectors.T, axis=1)]
        self.label_name_agreement_ = float(np.mean(nearest == y))
        _, counts = np.unique(y, return_counts=True)
        if self.label_weight <= 0 or self.label_name_agreement_ <= counts.max() / len(y):
            return empty
        self.label_names_used_ = True
        return names, vectors

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (n, len(classes_)), columns in ``classes_`` order.

        For a sample of rows (cross-validation, a stability check); a whole pool goes through
        :meth:`score_pool`, which never holds every row's probabilities.
        """
        X = self._check_rows(X)
        if self.model_ is None:
            return np.ones((X.shape[0], 1), dtype=np.float64)
        proba = np.empty((X.shape[0], len(self.classes_)), dtype=np.float64)
        with single_threaded("blas"):  # steadier than 2 threads on a busy 2-core box
            for start in range(0, X.shape[0], POOL_BLOCK):
                block = self._block_proba(X[start : start + POOL_BLOCK])
                proba[start : start + len(block)] = block
        return proba

    def score_pool(self, X: np.ndarray, *, block_rows: int = POOL_BLOCK,
                   threads: int = SCORING_THREADS) -> PoolScores:
        """Per row of ``X`` (float16, 32 or 64; an array or a memmap), what ranking and guesses need.

        Works through ``X`` in blocks of ``block_rows``, ``threads`` blocks at a time; other block
        sizes give the same result up to float32 rounding (BLAS may add up a block's products in
        another order), other thread counts the same result.
        """
        X = self._check_rows(X)
        n, n_classes = X.shape[0], len(self.classes_)
        if self.model_ is None:
            return PoolScores(np.zeros((n, 1), dtype=np.int32), np.ones((n, 1), dtype=np.float32),
                              np.zeros(n, dtype=np.float32), 1)
        top = min(TOP_CLASSES, n_classes)
        scores = PoolScores(np.empty((n, top), dtype=np.int32), np.empty((n, top), dtype=np.float32),
                            np.empty(n, dtype=np.float32), n_classes)
        self._logit_weights()  # made once, before the threads

        def score(start: int) -> None:
            stop = min(start + block_rows, n)
            proba = self._block_proba(X[start:stop], entropy_out=scores.entropy[start:stop])
            _top_classes(proba, scores.top_classes[start:stop], scores.top_proba[start:stop])

        with single_threaded("blas"):
            if threads <= 1 or n <= block_rows:
                for start in range(0, n, block_rows):
                    score(start)
            else:
                with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="labelbot-score") as pool:
                    for done in pool.map(score, range(0, n, block_rows)):
                        assert done is None
        return scores

    def _check_rows(self, X: np.ndarray) -> np.ndarray:
        """Shape checks only: converting a whole pool here would copy it (blocks convert their rows)."""
        check_is_fitted(self, "classes_")
        if not hasattr(X, "shape") or not hasattr(X, "dtype"):
            X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"Expected a 2-d array of embeddings, got shape {X.shape}.")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, the classifier was fit on {self.n_features_in_}.")
        return X

    def _block_proba(self, rows: np.ndarray, entropy_out: np.ndarray | None = None) -> np.ndarray:
        """Probabilities of a block of rows in float32: LogisticRegression.predict_proba's maths.

        ``entropy_out`` receives each row's entropy, as log Z - sum(p * logit) with the logits shifted
        by their maximum: no logarithm of every probability.
        """
        block = np.asarray(rows, dtype=np.float32)
        norms = np.sqrt(np.einsum("ij,ij->i", block, block))
        norms[norms == 0] = 1.0  # an all-zero row stays zero instead of becoming NaN
        coef, intercept = self._logit_weights()
        # (x / |x|) @ W == (x @ W) / |x|: dividing the (rows, classes) product is cheaper than the rows.
        logits = block @ coef.T
        # What check_array would reject, checked on (rows, classes) rather than (rows, dims) values.
        if not np.isfinite(logits).all():
            raise ValueError("Input contains NaN or infinity.")
        logits /= norms[:, None]
        logits += intercept
        logits -= logits.max(axis=1, keepdims=True)
        proba = np.exp(logits)
        total = proba.sum(axis=1)
        proba /= total[:, None]
        if entropy_out is not None:
            entropy_out[:] = np.log(total) - np.einsum("ij,ij->i", proba, logits)
        return proba

    def _logit_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """float32 weights with one column per class: sklearn keeps a single weight vector for two classes
        (for the second class), and softmax([0, s]) is its [1 - expit(s), expit(s)]."""
        weights = getattr(self, "_logits32", None)
        if weights is None:
            coef = self.model_.coef_.astype(np.float32)
            intercept = self.model_.intercept_.astype(np.float32)
            if coef.shape[0] == 1:
                coef = np.vstack([np.zeros_like(coef), coef])
                intercept = np.concatenate([np.zeros_like(intercept), intercept])
            weights = self._logits32 = (coef, intercept)
        return weights

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Most probable label per row."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def _cv_plan(y: np.ndarray, n_splits: int) -> tuple[np.ndarray, int]:
    """Rows that can be held out (their class has >= 2 examples) and the number of folds."""
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    holdable = counts[inverse] >= 2
    if len(classes) < 2 or not holdable.any():
        return holdable, 0
    if holdable.sum() > LARGE_CV_LABELS:
        n_splits = min(n_splits, LARGE_CV_FOLDS)
    # Every fold must see every class in training, so no more folds than the smallest class.
    return holdable, max(2, min(n_splits, int(counts[counts >= 2].min())))


def out_of_fold_proba(
    X: np.ndarray,
    y: np.ndarray,
    *,
    estimator_factory: Callable[[], Any],
    n_splits: int = 5,
    random_state: int = 0,
) -> np.ndarray:
    """Out-of-fold class probabilities, shape (n, n_classes), columns in sorted-unique-label order.

    Stratified k-fold with ``min(n_splits, smallest class count)`` folds (at least 2; at most
    ``LARGE_CV_FOLDS`` beyond ``LARGE_CV_LABELS`` labels, to bound the cost). Rows of
    a class with a single example cannot be held out without erasing the class, so they are in
    every training fold and their row is the mean of the fold models' *in-sample*
    probabilities: optimistic, so callers wanting honest scores should skip them (as
    ``cross_validated_metrics`` does; ``singleton_rows`` finds them).

    Raises ValueError with fewer than 2 classes or when no class has 2 examples.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    classes = np.unique(y)
    holdable, folds = _cv_plan(y, n_splits)
    if folds == 0:
        raise ValueError("Cross-validation needs at least 2 labels and one label with 2 or more examples.")
    proba = np.zeros((len(y), len(classes)), dtype=np.float64)
    held = np.flatnonzero(holdable)
    singles = np.flatnonzero(~holdable)
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
    for train_pos, test_pos in skf.split(held, y[held]):
        train = np.concatenate([held[train_pos], singles])
        test = held[test_pos]
        model = estimator_factory().fit(X[train], y[train])
        # A fold model may lack a class, or know more (the label-name prior knows every label):
        # map its columns by name and renormalise over the labels used here.
        cols = np.searchsorted(classes, model.classes_)
        known = (cols < len(classes)) & (classes[np.minimum(cols, len(classes) - 1)] == model.classes_)
        rows = np.concatenate([test, singles])
        p = model.predict_proba(X[rows])[:, known]
        p /= np.maximum(p.sum(axis=1, keepdims=True), np.finfo(float).tiny)
        proba[np.ix_(test, cols[known])] = p[: len(test)]
        if len(singles):
            proba[np.ix_(singles, cols[known])] += p[len(test) :] / folds
    return proba


def singleton_rows(y: np.ndarray) -> np.ndarray:
    """Boolean mask of rows whose label occurs once (never held out by ``out_of_fold_proba``)."""
    _, inverse, counts = np.unique(np.asarray(y), return_inverse=True, return_counts=True)
    return counts[inverse] == 1


def cross_validated_metrics(
    X: np.ndarray,
    y: np.ndarray,
    *,
    estimator_factory: Callable[[], Any],
    n_splits: int = 5,
    random_state: int = 0,
) -> dict[str, float]:
    """``{"cv_accuracy", "cv_macro_f1", "cv_log_likelihood"}`` from one out-of-fold pass; ``{}`` when
    too few labels.

    "Too few" means fewer than ``MIN_LABELS_FOR_CV`` labels, fewer than 2 classes, or no class
    with 2 examples. Rows of single-example classes are not scored (they were never held out).
    ``cv_log_likelihood`` is the mean log-probability of the given label.
    """
    y = np.asarray(y)
    holdable, folds = _cv_plan(y, n_splits)
    if len(y) < MIN_LABELS_FOR_CV or folds == 0:
        return {}
    proba = out_of_fold_proba(X, y, estimator_factory=estimator_factory, n_splits=n_splits,
                              random_state=random_state)
    classes = np.unique(y)
    y_true = y[holdable]
    y_pred = classes[np.argmax(proba[holdable], axis=1)]
    given = proba[holdable][np.arange(len(y_true)), np.searchsorted(classes, y_true)]
    return {
        "cv_accuracy": float(accuracy_score(y_true, y_pred)),
        "cv_macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "cv_log_likelihood": float(np.mean(np.log(np.clip(given, 1e-12, None)))),
    }


def choose_c(
    X: np.ndarray,
    y: np.ndarray,
    *,
    estimator_factory: Callable[..., Any],
    current: float,
    current_metrics: dict[str, float],
) -> float:
    """The C (of ``C_CHOICES``) whose out-of-fold log-likelihood is highest, for the next fit.

    ``current_metrics`` are :func:`cross_validated_metrics` of ``estimator_factory(C=current)``, so
    only the other choices cost a pass. ``current`` below ``MIN_LABELS_TO_CHOOSE_C`` labels or
    without metrics; a tie keeps the larger C.
    """
    if len(y) < MIN_LABELS_TO_CHOOSE_C or "cv_log_likelihood" not in current_metrics:
        return current
    scores = {current: current_metrics["cv_log_likelihood"]}
    for c in C_CHOICES:
        if c not in scores:
            other = cross_validated_metrics(X, y, estimator_factory=lambda c=c: estimator_factory(C=c))
            scores[c] = other.get("cv_log_likelihood", -np.inf)
    return max(scores, key=lambda c: (scores[c], c))
