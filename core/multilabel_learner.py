"""The multi-label learner (issue 13): one logistic regression per label on the sentence embeddings, with
the single-label learner's label-name prior, pool contract (``PoolScores``) and cross-validation plan.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import KFold
from sklearn.utils.validation import check_array, check_is_fitted

from core.learner import (
    LABEL_NAME_WEIGHT,
    MIN_LABELS_FOR_CV,
    POOL_BLOCK,
    PoolScores,
    l2_normalize,
    single_threaded,
)
from core.multilabel import MAX_MULTI_LABELS

# Multi-label projects (issue 13): one binary LR per label. Evidence (bench/multilabel.py on XED, 8
# emotions, docs/benchmarks.md "Multi-label"): C=3 with the label-name prior and balanced class weights had
# the best mean micro-F1 (0.346 against 0.313 unweighted) and macro-F1 over 10-1,000 labels.
MULTI_LABEL_C = 3.0


class SetNames(Sequence[str]):
    """The label sets of a multi-label classifier, indexed by bitmask (bit i: the i-th label), as their
    canonical text (core.multilabel): what ``classes_`` is for a single-label classifier, never listed."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = tuple(labels)

    def __len__(self) -> int:
        return 1 << len(self.labels)

    def __getitem__(self, mask: Any) -> Any:
        if isinstance(mask, slice):
            return [self[i] for i in range(*mask.indices(len(self)))]
        mask = int(mask)
        if not 0 <= mask < len(self):
            raise IndexError(mask)
        return "|".join(label for i, label in enumerate(self.labels) if mask >> i & 1)


@dataclass(frozen=True)
class MultiLabelScores(PoolScores):
    """Pool scores of a multi-label classifier: ``best`` is the predicted set's bitmask (``SetNames``),
    ``best_proba`` the mean probability of its labels, ``entropy`` the labels' binary entropies summed;
    ``uncertainty`` the largest min(p, 1 - p) over labels, for ``doubt`` (its label's index)."""

    uncertainty: np.ndarray  # (n,) float32
    doubt: np.ndarray  # (n,) int16: the label nearest 0.5
    doubt_proba: np.ndarray  # (n,) float32: its probability
    n_labels: int = 0

    def take(self, rows: np.ndarray) -> MultiLabelScores:
        return MultiLabelScores(
            self.top_classes[rows], self.top_proba[rows], self.entropy[rows], self.n_classes,
            self.uncertainty[rows], self.doubt[rows], self.doubt_proba[rows], self.n_labels,
        )

    @classmethod
    def from_label_proba(cls, P: np.ndarray) -> MultiLabelScores:
        """From per-label probabilities (n, L): the set by "at least one label" (:func:`decide_sets`)."""
        P = np.asarray(P, dtype=np.float32)
        chosen = decide_sets(P)
        masks = (chosen.astype(np.int64) << np.arange(P.shape[1], dtype=np.int64)).sum(axis=1)
        mean = np.where(chosen, P, 0).sum(axis=1) / np.maximum(chosen.sum(axis=1), 1)
        q = np.clip(P, 1e-7, 1 - 1e-7)
        entropy = -(q * np.log(q) + (1 - q) * np.log(1 - q)).sum(axis=1)
        closeness = np.minimum(P, 1 - P)
        doubt = np.argmax(closeness, axis=1)
        rows = np.arange(len(P))
        return cls(masks.astype(np.int32)[:, None], mean.astype(np.float32)[:, None],
                   entropy.astype(np.float32), 1 << P.shape[1], closeness[rows, doubt].astype(np.float32),
                   doubt.astype(np.int16), P[rows, doubt], P.shape[1])


def decide_sets(P: np.ndarray) -> np.ndarray:
    """Each row's predicted set (bool, n x L): labels with p >= 0.5, or the most probable when none is.

    "At least one label": with balanced weights it beat the plain 0.5 rule over 10-1,000 labels on XED
    (docs/benchmarks.md); a project whose records often carry no label is the case it does not measure.
    """
    chosen = P >= 0.5
    empty = ~chosen.any(axis=1)
    chosen[np.flatnonzero(empty), np.argmax(P[empty], axis=1)] = True
    return chosen


class MultiLabelClassifier(BaseEstimator):
    """One binary logistic regression per label on L2-normalised embeddings (one-vs-rest).

    ``fit`` takes the answers' canonical set texts (core.multilabel) or a 0/1 indicator matrix in
    ``labels`` order; ``predict_proba`` gives each label's probability (n, L); ``predict`` and
    ``score_pool`` the sets by "at least one label". A label all-absent (or all-present) among the fit's
    rows gets that constant probability. With ``label_vectors`` each label's name is one positive example
    of its label (and negative of the others) with weight ``label_weight``, as for single-label projects.
    A per-label loop rather than sklearn's OneVsRestClassifier: that passes sample weights on only with
    metadata routing switched on globally.
    """

    def __init__(
        self,
        labels: Sequence[str] = (),
        C: float = MULTI_LABEL_C,
        class_weight: str | None = "balanced",
        label_vectors: Mapping[str, np.ndarray] | None = None,
        label_weight: float = LABEL_NAME_WEIGHT,
        max_iter: int = 1000,
        random_state: int | None = None,
    ) -> None:
        self.labels = labels
        self.C = C
        self.class_weight = class_weight
        self.label_vectors = label_vectors
        self.label_weight = label_weight
        self.max_iter = max_iter
        self.random_state = random_state

    def indicator(self, y: Any) -> np.ndarray:
        """0/1 rows (n, L) of set texts; an indicator matrix as it is."""
        y = np.asarray(y)
        if y.ndim == 2:
            return y.astype(np.int8)
        position = {name: i for i, name in enumerate(self.labels)}
        Y = np.zeros((len(y), len(self.labels)), dtype=np.int8)
        for row, text in enumerate(y):
            for name in str(text).split("|") if text else ():
                if name in position:
                    Y[row, position[name]] = 1
        return Y

    def fit(self, X: np.ndarray, y: Any, sample_weight: np.ndarray | None = None) -> MultiLabelClassifier:
        if not 2 <= len(self.labels) <= MAX_MULTI_LABELS:
            raise ValueError(f"A multi-label classifier needs 2 to {MAX_MULTI_LABELS} labels.")
        Y = self.indicator(y)
        if len(Y) == 0:
            raise ValueError("Cannot train a classifier without labeled examples: label some records first.")
        X = l2_normalize(check_array(X, dtype=[np.float32, np.float64]))
        self.n_features_in_ = X.shape[1]
        weights = np.ones(len(Y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        names = [n for n in self.labels if n in (self.label_vectors or {})] if self.label_weight > 0 else []
        self.label_names_used_, self.label_name_agreement_ = bool(names), None
        if names:
            vectors = l2_normalize(np.stack([np.asarray(self.label_vectors[n], np.float32) for n in names]))
            rows = np.zeros((len(names), len(self.labels)), dtype=np.int8)
            rows[np.arange(len(names)), [list(self.labels).index(n) for n in names]] = 1
            X, Y = np.vstack([X, vectors.astype(X.dtype)]), np.vstack([Y, rows])
            weights = np.concatenate([weights, np.full(len(names), self.label_weight)])
        self.coef_ = np.zeros((len(self.labels), X.shape[1]), dtype=np.float32)
        self.intercept_ = np.zeros(len(self.labels), dtype=np.float32)
        with warnings.catch_warnings(), single_threaded("blas"):
            warnings.simplefilter("ignore", UserWarning)
            for j in range(len(self.labels)):
                column = Y[:, j]
                if column.min() == column.max():  # constant: a large logit of its sign
                    self.intercept_[j] = 10.0 if column[0] else -10.0
                    continue
                model = LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=self.max_iter,
                                           random_state=self.random_state)
                model.fit(X, column, sample_weight=weights)
                self.coef_[j], self.intercept_[j] = model.coef_[0], model.intercept_[0]
        self.classes_ = SetNames(self.labels)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Each label's probability, (n, L) in ``labels`` order."""
        check_is_fitted(self, "coef_")
        block = np.asarray(X, dtype=np.float32)
        if block.ndim != 2 or block.shape[1] != self.n_features_in_:
            raise ValueError(f"Expected {self.n_features_in_} features per row, got shape {block.shape}.")
        norms = np.sqrt(np.einsum("ij,ij->i", block, block))
        norms[norms == 0] = 1.0
        logits = (block @ self.coef_.T) / norms[:, None] + self.intercept_
        return 1.0 / (1.0 + np.exp(-logits))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Each row's set as its canonical text (object array)."""
        masks = self.score_pool(X, threads=1).best
        return np.array([self.classes_[m] for m in masks], dtype=object)

    def score_pool(
        self, X: np.ndarray, *, block_rows: int = POOL_BLOCK, threads: int = 1
    ) -> MultiLabelScores:
        """The pool's sets and uncertainties, a block of rows at a time (a float16 memmap stays on disk)."""
        parts = [
            MultiLabelScores.from_label_proba(self.predict_proba(X[start : start + block_rows]))
            for start in range(0, X.shape[0], block_rows)
        ] or [MultiLabelScores.from_label_proba(np.zeros((0, len(self.labels)), dtype=np.float32))]
        def joined(*fields: str) -> list[np.ndarray]:
            return [np.concatenate([getattr(p, f) for p in parts]) for f in fields]

        return MultiLabelScores(
            *joined("top_classes", "top_proba", "entropy"), 1 << len(self.labels),
            *joined("uncertainty", "doubt", "doubt_proba"), len(self.labels),
        )


def multilabel_metrics(Y_true: np.ndarray, chosen: np.ndarray) -> dict[str, float]:
    """Micro-F1, macro-F1 (over labels) and subset accuracy (the exact set) of predicted sets."""
    return {
        "micro_f1": float(f1_score(Y_true, chosen, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(Y_true, chosen, average="macro", zero_division=0)),
        "subset_accuracy": float(np.mean(np.all(Y_true == chosen, axis=1))) if len(Y_true) else 0.0,
    }


def multilabel_cv_metrics(
    X: np.ndarray, y: np.ndarray, *, estimator_factory: Callable[[], MultiLabelClassifier],
    n_splits: int = 5, random_state: int = 0,
) -> dict[str, float]:
    """``{"cv_micro_f1", "cv_macro_f1", "cv_subset_accuracy"}`` out of fold (k-fold, shuffled); ``{}``
    below ``MIN_LABELS_FOR_CV`` labeled records."""
    if len(y) < MIN_LABELS_FOR_CV:
        return {}
    model = estimator_factory()
    Y = model.indicator(y)
    chosen = np.zeros_like(Y, dtype=bool)
    folds = KFold(n_splits=min(n_splits, len(Y)), shuffle=True, random_state=random_state)
    for train, test in folds.split(X):
        fitted = estimator_factory().fit(X[train], Y[train])
        chosen[test] = decide_sets(fitted.predict_proba(X[test]))
    return {f"cv_{name}": value for name, value in multilabel_metrics(Y.astype(bool), chosen).items()}
