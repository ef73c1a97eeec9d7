"""EmbeddingClassifier and the cross-validation helpers, on small synthetic embeddings."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from core.learner import (
    LARGE_CV_FOLDS,
    TOP_CLASSES,
    EmbeddingClassifier,
    PoolScores,
    cross_validated_metrics,
    out_of_fold_proba,
    singleton_rows,
)
from core.strategies import get_strategy


def blobs(n_per_class: int, labels: list[str], dim: int = 32, noise: float = 0.05, seed: int = 0):
    """Well-separated clusters, one per label, around random unit directions."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(labels), dim))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    X = np.concatenate([c + noise * rng.normal(size=(n_per_class, dim)) for c in centers]).astype(np.float32)
    y = np.repeat(np.array(labels), n_per_class)
    perm = rng.permutation(len(y))
    return X[perm], y[perm]


def test_fit_without_samples_raises_clear_error():
    with pytest.raises(ValueError, match="label"):
        EmbeddingClassifier().fit(np.zeros((0, 8), dtype=np.float32), np.array([], dtype=str))


def test_fit_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        EmbeddingClassifier().fit(np.ones((3, 4), dtype=np.float32), np.array(["a", "b"]))


def test_single_class_puts_all_mass_on_it():
    X, _ = blobs(5, ["a", "b"])
    clf = EmbeddingClassifier().fit(X, np.array(["only"] * len(X)))
    proba = clf.predict_proba(X[:4])
    assert proba.shape == (4, 1)
    np.testing.assert_allclose(proba, 1.0)
    assert list(clf.predict(X[:4])) == ["only"] * 4
    assert list(clf.classes_) == ["only"]


def test_two_classes_separable():
    X, y = blobs(20, ["spam", "ham"])
    clf = EmbeddingClassifier().fit(X, y)
    assert list(clf.classes_) == ["ham", "spam"]
    assert (clf.predict(X) == y).mean() == 1.0
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2)
    # Each column must be the probability of the class of the same position in classes_.
    assert np.all(proba[np.arange(len(y)), np.searchsorted(clf.classes_, y)] > 0.5)


@pytest.mark.parametrize("as_type", [list, lambda y: np.asarray(y, dtype=object)])
def test_string_labels_sorted_classes_and_normalised_proba(as_type):
    labels = ["zeta", "alpha", "mid", "beta"]
    X, y = blobs(10, labels)
    clf = EmbeddingClassifier().fit(X, as_type(list(y)))  # a list, or object array as the service passes
    assert list(clf.classes_) == sorted(set(labels))
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert np.all(clf.predict(X) == clf.classes_[proba.argmax(axis=1)])
    assert all(isinstance(p, str) for p in clf.predict(X))


def test_row_scale_does_not_matter():
    # Inputs are L2-normalised, so scaling a row changes nothing.
    X, y = blobs(10, ["a", "b", "c"])
    clf = EmbeddingClassifier().fit(X, y)
    scales = np.random.default_rng(1).uniform(0.1, 10, size=(len(X), 1)).astype(np.float32)
    np.testing.assert_allclose(clf.predict_proba(X * scales), clf.predict_proba(X), atol=1e-5)


def test_predict_proba_checks_feature_count():
    X, y = blobs(5, ["a", "b"], dim=8)
    clf = EmbeddingClassifier().fit(X, y)
    with pytest.raises(ValueError):
        clf.predict_proba(np.ones((2, 9), dtype=np.float32))


def test_params_follow_sklearn_conventions():
    from sklearn.base import clone

    clf = EmbeddingClassifier(C=3.0, max_iter=50, random_state=1)
    assert clone(clf).get_params()["C"] == 3.0
    assert clf.get_params()["max_iter"] == 50
    assert not hasattr(clf, "classes_")  # learned attributes appear only after fit


def test_cv_metrics_empty_for_one_class_or_too_few_labels():
    X, _ = blobs(20, ["a", "b"])
    factory = EmbeddingClassifier
    assert cross_validated_metrics(X, np.array(["a"] * len(X)), estimator_factory=factory) == {}
    assert cross_validated_metrics(X[:6], np.array(["a", "b"] * 3), estimator_factory=factory) == {}
    # 12 labels, every class a singleton: nothing can be held out.
    assert cross_validated_metrics(X[:12], np.array([f"l{i}" for i in range(12)]),
                                   estimator_factory=factory) == {}


@pytest.mark.parametrize("dtype", [str, object])
def test_cv_metrics_on_separable_data_beat_chance(dtype):
    X, y = blobs(15, ["a", "b", "c", "d"])
    y = y.astype(dtype)
    m = cross_validated_metrics(X, y, estimator_factory=EmbeddingClassifier)
    assert set(m) == {"cv_accuracy", "cv_macro_f1", "cv_log_likelihood"}
    assert 0.0 <= m["cv_accuracy"] <= 1.0 and 0.0 <= m["cv_macro_f1"] <= 1.0
    assert m["cv_accuracy"] > 0.9 and m["cv_macro_f1"] > 0.9  # chance is 0.25
    assert np.log(0.25) < m["cv_log_likelihood"] <= 0.0  # a uniform guess scores log(1/4)


def test_out_of_fold_is_really_out_of_fold():
    # Pure noise with more dimensions than rows: any in-sample fit is perfect, held-out is chance.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 384)).astype(np.float32)
    y = rng.choice(["a", "b"], size=60)
    assert (EmbeddingClassifier().fit(X, y).predict(X) == y).mean() == 1.0
    m = cross_validated_metrics(X, y, estimator_factory=EmbeddingClassifier)
    assert m["cv_accuracy"] < 0.8


def test_out_of_fold_columns_follow_sorted_labels():
    labels = ["zeta", "alpha", "mid"]
    X, y = blobs(12, labels)
    proba = out_of_fold_proba(X, y, estimator_factory=EmbeddingClassifier)
    assert proba.shape == (len(y), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    predicted = np.array(sorted(labels))[proba.argmax(axis=1)]
    assert (predicted == y).mean() > 0.9


def test_folds_shrink_to_smallest_class():
    X, y = blobs(10, ["a", "b", "c"])
    y = y.copy()
    # Make "c" a 3-example class: at most 3 folds keep it in every training set.
    c_rows = np.flatnonzero(y == "c")
    keep = np.setdiff1d(np.arange(len(y)), c_rows[3:])
    X, y = X[keep], y[keep]
    calls = []

    def factory():
        calls.append(1)
        return EmbeddingClassifier()

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # StratifiedKFold warns when a class is too small
        m = cross_validated_metrics(X, y, estimator_factory=factory, n_splits=5)
    assert len(calls) == 3
    assert m["cv_accuracy"] > 0.9


def test_singleton_classes_stay_in_training():
    X, y = blobs(10, ["a", "b", "c"])
    X = np.concatenate([X, X[:1] + 0.01])
    y = np.concatenate([y, ["lonely"]])
    mask = singleton_rows(y)
    assert mask.sum() == 1 and y[mask][0] == "lonely"
    proba = out_of_fold_proba(X, y, estimator_factory=EmbeddingClassifier, n_splits=5)
    assert proba.shape == (len(y), 4)
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    m = cross_validated_metrics(X, y, estimator_factory=EmbeddingClassifier)
    assert 0.9 < m["cv_accuracy"] <= 1.0


def test_out_of_fold_rejects_single_class():
    X, _ = blobs(10, ["a", "b"])
    with pytest.raises(ValueError):
        out_of_fold_proba(X, np.array(["a"] * len(X)), estimator_factory=EmbeddingClassifier)


@pytest.mark.parametrize("labels", [["no", "yes"], ["a", "b", "c"]])
def test_predict_proba_matches_logistic_regression(labels):
    # predict_proba re-implements the softmax in float32 blocks; it must agree with sklearn.
    X, y = blobs(30, labels, noise=0.5)
    clf = EmbeddingClassifier(C=1.0).fit(X, y)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    expected = clf.model_.predict_proba(Xn.astype(np.float64))
    np.testing.assert_allclose(clf.predict_proba(X), expected, atol=1e-5)


def test_many_labels_cap_the_folds():
    X, y = blobs(400, ["a", "b", "c"], dim=8, noise=0.3)  # 1200 labels, above LARGE_CV_LABELS
    calls = []

    def factory():
        calls.append(1)
        return EmbeddingClassifier()

    out_of_fold_proba(X, y, estimator_factory=factory, n_splits=5)
    assert len(calls) == LARGE_CV_FOLDS


def scored_pool(labels=("a", "b", "c", "d", "e"), n_per_class=80, seed=0):
    X, y = blobs(n_per_class, list(labels), noise=0.6, seed=seed)
    return EmbeddingClassifier(C=1.0).fit(X[:60], y[:60]), X


def test_score_pool_summarises_predict_proba():
    clf, X = scored_pool()
    proba = clf.predict_proba(X)
    scores = clf.score_pool(X)
    order = np.argsort(-proba, axis=1, kind="stable")[:, :TOP_CLASSES]
    np.testing.assert_array_equal(scores.top_classes, order)
    np.testing.assert_allclose(scores.top_proba, np.take_along_axis(proba, order, axis=1), atol=1e-6)
    np.testing.assert_allclose(scores.entropy, -(proba * np.log(proba)).sum(axis=1), atol=1e-5)
    assert scores.top_proba.dtype == np.float32 and scores.n_classes == 5
    np.testing.assert_allclose(scores.margin(), scores.top_proba[:, 0] - scores.top_proba[:, 1])


@pytest.mark.parametrize("labels", [("no", "yes"), ("a", "b", "c", "d", "e")])
def test_score_pool_in_blocks_selects_what_one_block_selects(labels):
    clf, X = scored_pool(labels)
    whole = clf.score_pool(X, block_rows=len(X))
    blocks = clf.score_pool(X, block_rows=7, threads=1)
    threaded = clf.score_pool(X, block_rows=7, threads=3)
    for field in ("top_classes", "top_proba", "entropy"):  # each block is scored alike on any thread
        np.testing.assert_array_equal(getattr(threaded, field), getattr(blocks, field))
    np.testing.assert_array_equal(blocks.top_classes, whole.top_classes)
    np.testing.assert_allclose(blocks.top_proba, whole.top_proba, atol=1e-6)
    np.testing.assert_allclose(blocks.entropy, whole.entropy, atol=1e-6)
    candidates = np.arange(60, len(X))
    for name in ("margin-kmeans", "entropy", "least-confidence"):
        picks = [get_strategy(name).query(proba=None, scores=scores, embeddings=X, candidates=candidates,
                                          classes=list(clf.classes_), n=30, rng=np.random.default_rng(0))
                 for scores in (whole, blocks)]
        assert [p.index for p in picks[0]] == [p.index for p in picks[1]]


def test_score_pool_and_fit_accept_float16_memmaps(tmp_path):
    clf, X = scored_pool()
    mm = np.memmap(tmp_path / "pool.f16", dtype=np.float16, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    half = np.memmap(tmp_path / "pool.f16", dtype=np.float16, mode="r", shape=X.shape)
    scores = clf.score_pool(half, block_rows=64)
    widened = clf.score_pool(np.asarray(half, dtype=np.float32), block_rows=64)
    np.testing.assert_array_equal(scores.top_classes, widened.top_classes)
    np.testing.assert_array_equal(scores.top_proba, widened.top_proba)
    # float16 rounding moves probabilities by about 1e-3 at most; the guesses stay.
    assert (scores.best == clf.score_pool(X).best).mean() > 0.98
    refit = EmbeddingClassifier(C=1.0).fit(half[:60], clf.predict(X[:60]))
    assert refit.predict_proba(half).shape == (len(X), 5)


def test_score_pool_of_a_single_class():
    clf = EmbeddingClassifier().fit(np.eye(3, dtype=np.float32), ["x", "x", "x"])
    scores = clf.score_pool(np.ones((4, 3), dtype=np.float16))
    assert scores.n_classes == 1
    assert scores.best.tolist() == [0] * 4 and scores.best_proba.tolist() == [1.0] * 4


def test_pool_scores_from_proba_keep_the_first_of_tied_classes():
    proba = np.array([[0.2, 0.4, 0.4], [0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3]])
    scores = PoolScores.from_proba(proba, block_rows=2)
    assert scores.top_classes.tolist() == [[1, 2, 0], [0, 1, 2], [0, 1, 2]]
    np.testing.assert_allclose(scores.margin(), [0.0, 0.25, 0.0])
    np.testing.assert_allclose(scores.entropy, -(proba * np.log(proba)).sum(axis=1))
    assert proba.tolist()[0] == [0.2, 0.4, 0.4]  # the input is left as it was


def test_score_pool_rejects_non_finite_rows():
    clf, X = scored_pool()
    X = X.copy()
    X[5, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        clf.score_pool(X, block_rows=4)


# --------------------------------------------------------------------------- the label-name prior


def centred_blobs(n_per_class: int, labels: list[str], dim: int = 32, noise: float = 0.3, seed: int = 0):
    """Overlapping clusters and the true centre of each: names that describe their label perfectly."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(labels), dim))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    X = np.concatenate([c + noise * rng.normal(size=(n_per_class, dim)) for c in centers]).astype(np.float32)
    y = np.repeat(np.array(labels, dtype=object), n_per_class)
    return X, y, dict(zip(labels, centers.astype(np.float32), strict=True))


def test_label_names_that_fit_the_labels_teach_labels_nobody_used_yet():
    X, y, names = centred_blobs(40, ["a", "b", "c", "d"])
    seen = np.isin(y, ["a", "b"])
    train = np.flatnonzero(seen)[::4]  # 20 labels of a and b only
    plain = EmbeddingClassifier().fit(X[train], y[train])
    prior = EmbeddingClassifier(label_vectors=names).fit(X[train], y[train])
    assert prior.label_names_used_ and prior.label_name_agreement_ > 0.5
    assert list(prior.classes_) == ["a", "b", "c", "d"] and list(plain.classes_) == ["a", "b"]
    unseen = ~seen
    # Without the prior the unseen half is always wrong; with one name example per label, better than
    # a guess among the four labels, though the 20 real labels still pull hard.
    assert (plain.predict(X[unseen]) == y[unseen]).mean() == 0.0
    assert (prior.predict(X[unseen]) == y[unseen]).mean() > 0.25
    proba = prior.predict_proba(X[:5])
    assert proba.shape == (5, 4) and np.allclose(proba.sum(axis=1), 1.0)
    scores = prior.score_pool(X)
    assert scores.n_classes == 4 and np.array_equal(prior.classes_[scores.best], prior.predict(X))


def test_label_names_that_do_not_fit_the_labels_are_left_out():
    X, y, _ = centred_blobs(40, ["a", "b", "c"])
    rng = np.random.default_rng(1)
    # Names pointing nowhere near their clusters, the way "0"/"1" or "ham"/"spam" would.
    unrelated = {label: rng.normal(size=X.shape[1]).astype(np.float32) for label in ["a", "b", "c"]}
    train = np.arange(0, len(y), 3)
    clf = EmbeddingClassifier(label_vectors=unrelated).fit(X[train], y[train])
    plain = EmbeddingClassifier().fit(X[train], y[train])
    assert clf.label_name_agreement_ <= 0.34 + 0.2 and not clf.label_names_used_
    assert np.allclose(clf.predict_proba(X), plain.predict_proba(X))


def test_label_names_must_beat_the_most_common_label_share():
    # Overlapping clusters: the names guess ~85% of the records right, good against a 50/50 split but
    # no better than always saying "a" where 90% of the labels are "a".
    X, y, names = centred_blobs(40, ["a", "b"], noise=0.6, seed=4)
    skewed = np.concatenate([np.flatnonzero(y == "a")[:36], np.flatnonzero(y == "b")[:4]])
    balanced = np.concatenate([np.flatnonzero(y == "a")[:20], np.flatnonzero(y == "b")[:20]])
    for rows, share in ((skewed, 0.9), (balanced, 0.5)):
        clf = EmbeddingClassifier(label_vectors=names).fit(X[rows], y[rows])
        vectors = np.stack([names["a"], names["b"]])
        nearest = np.array(["a", "b"], dtype=object)[np.argmax(X[rows] @ vectors.T, axis=1)]
        assert clf.label_name_agreement_ == pytest.approx(float(np.mean(nearest == y[rows])))
        assert 0.5 < clf.label_name_agreement_ < 1.0
        assert clf.label_names_used_ == (clf.label_name_agreement_ > share)
        assert clf.label_names_used_ == (share == 0.5)  # the same names: out at 90/10, in at 50/50


def test_label_weight_zero_turns_the_prior_off_and_a_wrong_dimension_is_refused():
    X, y, names = centred_blobs(20, ["a", "b", "c"])
    off = EmbeddingClassifier(label_vectors=names, label_weight=0.0).fit(X, y)
    assert not off.label_names_used_
    assert np.allclose(off.predict_proba(X), EmbeddingClassifier().fit(X, y).predict_proba(X))
    short = {label: vector[:8] for label, vector in names.items()}
    with pytest.raises(ValueError, match="dimensions"):
        EmbeddingClassifier(label_vectors=short).fit(X, y)


def test_out_of_fold_proba_maps_a_prior_models_extra_labels_away():
    X, y, names = centred_blobs(20, ["a", "b", "c", "d"])
    keep = np.isin(y, ["a", "b", "c"])
    def factory() -> EmbeddingClassifier:
        return EmbeddingClassifier(label_vectors=names)

    proba = out_of_fold_proba(X[keep], y[keep], estimator_factory=factory)
    assert proba.shape == (keep.sum(), 3) and np.allclose(proba.sum(axis=1), 1.0)
    assert (np.array(["a", "b", "c"])[proba.argmax(axis=1)] == y[keep]).mean() > 0.8


def test_choose_c_prefers_strong_regularisation_on_noisy_labels_and_waits_for_enough_labels():
    from core.learner import C_CHOICES, DEFAULT_C, MIN_LABELS_TO_CHOOSE_C, choose_c

    X, y = blobs(60, ["a", "b", "c"], noise=0.3)
    rng = np.random.default_rng(2)
    noisy = y.copy()
    flip = rng.random(len(y)) < 0.5  # half the labels replaced at random: a noisy crowd
    noisy[flip] = rng.choice(["a", "b", "c"], size=int(flip.sum()))
    scores = {c: cross_validated_metrics(X, noisy, estimator_factory=lambda c=c: EmbeddingClassifier(C=c))
              for c in C_CHOICES}
    best = max(scores, key=lambda c: scores[c]["cv_log_likelihood"])
    chosen = choose_c(X, noisy, estimator_factory=EmbeddingClassifier, current=DEFAULT_C,
                      current_metrics=scores[DEFAULT_C])
    assert chosen == best == min(C_CHOICES)
    few = np.arange(MIN_LABELS_TO_CHOOSE_C - 1)
    assert choose_c(X[few], noisy[few], estimator_factory=EmbeddingClassifier, current=DEFAULT_C,
                    current_metrics=scores[DEFAULT_C]) == DEFAULT_C


def test_label_text_spells_names_as_words_and_adds_the_description():
    from core.embeddings import label_text

    assert label_text("card_arrival") == "card arrival"
    assert label_text("CardArrival") == "Card Arrival"
    assert label_text("iot-hue-light.up") == "iot hue light up"
    assert label_text("refund", "  Asks for money back ") == "refund: Asks for money back"
    assert label_text("__") == "__"
