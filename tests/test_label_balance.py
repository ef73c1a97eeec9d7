"""Margin-k-means's single-label tuning: margins weighed by how covered each guessed label is, and a band
that narrows once a project has many labeled records (core.strategies)."""

from __future__ import annotations

import numpy as np
import pytest

from core.learner import PoolScores
from core.strategies import (
    LATE_BAND_LABELED,
    LATE_UNCERTAIN_POOL_FACTOR,
    MIN_LABELS_TO_BALANCE,
    MarginKMeans,
    MaxUncertaintyKMeans,
    label_balance,
    uncertain_pool_factor,
)


def test_label_balance_divides_by_the_mean_count_per_label():
    # Labeled rows 0-3 are guessed as label 0 (3 rows) and 1 (1 row); label 2 has none: mean 4/3.
    proba = np.array([[0.8, 0.1, 0.1]] * 3 + [[0.1, 0.8, 0.1]] + [[0.1, 0.1, 0.8], [0.6, 0.3, 0.1]])
    scores = PoolScores.from_proba(proba)
    weights = label_balance(scores, np.arange(4), np.array([4, 5, 3]))
    mean = 4 / 3
    np.testing.assert_allclose(weights, [1 / (mean + 1), 4 / (mean + 1), 2 / (mean + 1)])


def torn_pool(n_classes: int):
    """Row 0: margin 0.10, guessed as label 0, which has 30 labeled rows (1-30); row 31: margin 0.20,
    guessed as label 1, which has none. Embeddings are spread so each pick is its own cluster."""
    rng = np.random.default_rng(0)
    proba = np.full((40, n_classes), 0.0)
    proba[:, 0], proba[:, 2] = 0.9, 0.1 - 1e-3 * np.arange(40)  # confident label-0 rows
    proba[:, 3:] = (1 - proba[:, :3].sum(axis=1, keepdims=True)) / (n_classes - 3)
    proba[0, :3] = [0.45, 0.35, 0.2]
    proba[31, :3] = [0.2, 0.5, 0.3]
    proba[0, 3:] = proba[31, 3:] = 0.0
    X = rng.normal(size=(40, 8)).astype(np.float32)
    classes = [f"label_{i}" for i in range(n_classes)]
    return proba, X, classes


def first_pick(strategy, proba, X, classes, labeled):
    candidates = np.setdiff1d(np.arange(len(X)), labeled)
    picks = strategy.query(proba=proba, embeddings=X, candidates=candidates, classes=classes, n=1,
                           rng=np.random.default_rng(0), labeled=labeled, batch_size=1)
    return picks[0].index


def test_a_torn_record_of_an_uncovered_label_comes_first():
    proba, X, classes = torn_pool(MIN_LABELS_TO_BALANCE)
    labeled = np.arange(1, 31)
    assert first_pick(MarginKMeans(factor=1), proba, X, classes, labeled) == 31
    # Unweighted, the smaller margin wins.
    assert first_pick(MarginKMeans(factor=1, balance=False), proba, X, classes, labeled) == 0


@pytest.mark.parametrize("strategy", [MarginKMeans(factor=1), MaxUncertaintyKMeans(factor=1)])
def test_no_weighing_with_few_labels_or_for_multi_label(strategy):
    proba, X, classes = torn_pool(MIN_LABELS_TO_BALANCE - 1 if type(strategy) is MarginKMeans else 30)
    assert first_pick(strategy, proba, X, classes, np.arange(1, 31)) == 0


def test_the_band_narrows_late_for_many_labels_only():
    assert uncertain_pool_factor(77) == 38
    assert uncertain_pool_factor(77, LATE_BAND_LABELED - 1) == 38
    assert uncertain_pool_factor(77, LATE_BAND_LABELED) == LATE_UNCERTAIN_POOL_FACTOR
    assert uncertain_pool_factor(8, LATE_BAND_LABELED) == 10  # already narrower
