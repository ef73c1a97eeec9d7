"""When to stop labeling: stabilizing predictions plus a plateau test on the learning curve.

Two signals, both cheap enough to compute on every retrain:

* **Stabilizing predictions** (Bloodgood & Vijay-Shanker, 2009): Cohen's κ between the predictions
  of two models on a fixed sample of unlabeled records. When the last few retrains agree almost
  perfectly (mean κ ≥ 0.99 over the last 3), new labels no longer change what the model predicts.
  In the measurements behind the issue this stopped within about one accuracy point of the
  full-pool model on four of eight datasets, but on others κ never got there even after accuracy
  had stopped improving. Each model is compared with the latest one trained on at least
  :func:`stability_gap` fewer labels (10%, at least 50), not with the previous retrain: the bot
  retrains every 10 answers, and two models 10 labels apart agree at κ ≥ 0.99 long before the
  curve is flat (Banking77: 6 points below the full-pool model, bench/stopping_advice.py).
* **Plateau of the cross-validated learning curve**: a straight line fitted to the last runs'
  cross-validated accuracy and macro-F1 against the number of labels; when it promises less than
  one point for as many labels again, the curve is flat.

:func:`advise` says "more labels are unlikely to help much" when predictions are stable, or when
the curve is flat *and* predictions are nearly stable (mean κ ≥ 0.95): a flat cross-validated curve
alone is not trusted, because active learning picks ever harder records, which holds the
cross-validated score down while the model still improves (see bench/stopping_advice.py). It also
names the weakest labels by per-class F1 from the out-of-fold predictions.

Multi-label projects (an answer is a set) measure both per label, as their aggregation and agreement do
(each label a yes/no question): κ is the mean over labels of Cohen's κ between the two models' yes/no
predictions (:func:`multilabel_prediction_kappa`; the set taken as one class would count a change of one
label in eight as a whole disagreement, and with up to 2^L sets hardly ever agree at 0.99), the plateau
test reads cross-validated micro- and macro-F1 (``MULTI_LABEL_METRICS``, which their runs record), and
the weak labels are those of lowest out-of-fold per-label F1 (:func:`multilabel_cv_report`).

Pure: numpy and scikit-learn only; the service stores what is computed here on each model run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import KFold

from core import multilabel
from core.agreement import cohen_kappa
from core.learner import MIN_LABELS_FOR_CV, out_of_fold_proba, singleton_rows
from core.multilabel_learner import decide_sets
from core.types import ModelRunInfo

__all__ = [
    "KAPPA_THRESHOLD",
    "KAPPA_WINDOW",
    "SAMPLE_SIZE",
    "CVReport",
    "StoppingAdvice",
    "WeakLabel",
    "advise",
    "cv_report",
    "multilabel_cv_report",
    "multilabel_prediction_kappa",
    "plateau_gain",
    "prediction_kappa",
    "stability_gap",
    "stable_sample",
]

SAMPLE_SIZE = 2000  # unlabeled records both models predict; κ's standard error is ~0.002 near 0.99
# κ compares a model with the latest one trained on max(50, 10%) fewer labels. bench/stopping_advice.py
# (margin-kmeans, retrain every 10 answers, κ ≥ 0.99 over 3 retrains), test accuracy when κ first fires,
# points below the full-pool model; Banking77 (77 labels) / SMS spam (2 labels):
#   previous retrain   610 labels, -6.1  /  160, -0.7
#   50 labels         1170 labels, -3.1  /  300, -0.4
#   100 labels        1340 labels, -2.3  /  340, -0.1
#   max(50, 10%)      1650 labels, -1.5  /  300, -0.4
#   20%               not within 2500    /  310, -0.2
STABILITY_MIN_GAP = 50
STABILITY_GAP_FRACTION = 0.10
KAPPA_THRESHOLD = 0.99
KAPPA_WINDOW = 3  # retrains averaged
NEAR_STABLE_KAPPA = 0.95  # enough stability to trust a flat cross-validated curve
PLATEAU_MIN_GAIN = 0.01  # less than one point for as many labels again counts as flat
PLATEAU_MIN_WINDOW = 100  # labels the line is fitted over, at least (CV noise needs a span)
PLATEAU_MIN_POINTS = 4
# Cross-validated scores on a handful of labels swing wildly (1.0 on 10 labels, 0.2 on 50): a "flat"
# line through them means nothing, so the plateau test only looks at curves this long.
PLATEAU_MIN_LABELS = 200
MIN_LABELS_FOR_ADVICE = 50
WEAK_F1 = 0.8  # labels below this per-class F1 are listed as weak
METRICS = ("cv_accuracy", "cv_macro_f1")
MULTI_LABEL_METRICS = ("cv_micro_f1", "cv_macro_f1")  # what multi-label runs record (no accuracy)


# ------------------------------------------------------------------------- stabilizing predictions


def stability_gap(n_labels: int) -> int:
    """How many labels fewer the model a new one is compared with must have had (max(50, 10%))."""
    return max(STABILITY_MIN_GAP, math.ceil(STABILITY_GAP_FRACTION * n_labels))


def _mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a fixed pseudo-random key per integer, the same on every machine."""
    z = values.astype(np.uint64)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def stable_sample(ids: np.ndarray, size: int = SAMPLE_SIZE, *, seed: int = 0) -> np.ndarray:
    """Positions in ``ids`` of the ``size`` records with the smallest seeded hash of their id.

    The choice depends on each id alone, not on the order or the size of ``ids``: as records get
    labeled (and leave the unlabeled pool) or new ones are imported, the sample changes only where
    it must, so successive retrains are compared on (nearly) the same records. Returned sorted.
    """
    ids = np.asarray(ids, dtype=np.int64)
    if size <= 0 or len(ids) == 0:
        return np.zeros(0, dtype=np.int64)
    if len(ids) <= size:
        return np.arange(len(ids), dtype=np.int64)
    keys = _mix64(ids.astype(np.uint64) ^ _mix64(np.asarray([seed], dtype=np.int64))[0])
    return np.sort(np.argpartition(keys, size - 1)[:size]).astype(np.int64)


def prediction_kappa(previous: Sequence[Any], current: Sequence[Any]) -> float:
    """Cohen's κ between two models' predicted labels on the same records.

    Identical predictions give 1.0 even when they are all one class (where κ itself is 0/0).
    """
    if len(previous) != len(current):
        raise ValueError(f"Predictions differ in length: {len(previous)} and {len(current)}.")
    if len(previous) == 0:
        raise ValueError("Need at least one prediction to compare.")
    if all(a == b for a, b in zip(previous, current, strict=True)):
        return 1.0
    kappa = cohen_kappa(list(previous), list(current))
    return 0.0 if math.isnan(kappa) else float(kappa)


def multilabel_prediction_kappa(
    previous: Sequence[str], current: Sequence[str], labels: Sequence[str]
) -> float:
    """Two multi-label models' predicted sets (canonical texts) compared per label: the mean over
    ``labels`` of :func:`prediction_kappa` between their yes/no predictions of that label (a label both
    predict the same way on every record counts 1.0)."""
    if not labels:
        raise ValueError("Need at least one label to compare.")
    return float(np.mean([
        prediction_kappa([multilabel.yes_no(t, label) for t in previous],
                         [multilabel.yes_no(t, label) for t in current])
        for label in labels
    ]))


# ------------------------------------------------------------------------- cross-validation report


@dataclass(frozen=True)
class CVReport:
    """One out-of-fold pass: the run metrics and per-class F1 of the labels that could be held out."""

    metrics: dict[str, float]  # cv_accuracy, cv_macro_f1 (empty when too few labels)
    per_class_f1: dict[str, float]
    support: dict[str, int]  # labeled examples per class (all of them, held out or not)


def cv_report(
    X: np.ndarray,
    y: np.ndarray,
    *,
    estimator_factory: Callable[[], Any],
    n_splits: int = 5,
    random_state: int = 0,
) -> CVReport:
    """``cross_validated_metrics`` plus per-class F1, from the same single out-of-fold pass.

    The metrics are exactly those of :func:`core.learner.cross_validated_metrics` (same folds, same
    rows scored), so swapping one for the other changes no recorded number.
    """
    y = np.asarray(y)
    classes, counts = np.unique(y, return_counts=True)
    support = {str(c): int(n) for c, n in zip(classes, counts, strict=True)}
    holdable = ~singleton_rows(y)
    # The same "too few" rule as cross_validated_metrics: no score below MIN_LABELS_FOR_CV labels,
    # with one class, or when no class has two examples to hold one out.
    if len(y) < MIN_LABELS_FOR_CV or len(classes) < 2 or not holdable.any():
        return CVReport({}, {}, support)
    proba = out_of_fold_proba(X, y, estimator_factory=estimator_factory, n_splits=n_splits,
                              random_state=random_state)
    y_true = y[holdable]
    y_pred = classes[np.argmax(proba[holdable], axis=1)]
    scored = np.unique(y_true)
    per_class = f1_score(y_true, y_pred, labels=scored, average=None, zero_division=0)
    return CVReport(
        metrics={
            "cv_accuracy": float(accuracy_score(y_true, y_pred)),
            "cv_macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        },
        per_class_f1={str(c): float(f) for c, f in zip(scored, per_class, strict=True)},
        support=support,
    )


def multilabel_cv_report(
    X: np.ndarray,
    y: np.ndarray,
    *,
    labels: Sequence[str],
    estimator_factory: Callable[[], Any],
    n_splits: int = 5,
    random_state: int = 0,
) -> CVReport:
    """Per-label F1 out of fold for a multi-label project (``y``: canonical set texts), with the folds of
    :func:`core.multilabel_learner.multilabel_cv_metrics`; ``support`` counts the records with each label.

    ``estimator_factory`` makes an unfitted ``MultiLabelClassifier`` (it takes 0/1 rows in ``labels``
    order). A label with fewer than two examples gets no F1 (listed as too few examples). Empty below
    ``MIN_LABELS_FOR_CV`` labeled records, as there.
    """
    Y = np.asarray(multilabel.indicator([str(t) for t in y], labels), dtype=np.int8).reshape(-1, len(labels))
    support = {label: int(n) for label, n in zip(labels, Y.sum(axis=0).tolist(), strict=True)}
    if len(y) < MIN_LABELS_FOR_CV:
        return CVReport({}, {}, support)
    chosen = np.zeros_like(Y, dtype=bool)
    folds = KFold(n_splits=min(n_splits, len(Y)), shuffle=True, random_state=random_state)
    for train, test in folds.split(X):
        chosen[test] = decide_sets(estimator_factory().fit(X[train], Y[train]).predict_proba(X[test]))
    truth = Y.astype(bool)
    scored = [j for j, label in enumerate(labels) if support[label] >= 2]
    per_label = f1_score(truth, chosen, average=None, zero_division=0)
    return CVReport(
        metrics={
            "cv_micro_f1": float(f1_score(truth, chosen, average="micro", zero_division=0)),
            "cv_macro_f1": float(f1_score(truth, chosen, average="macro", zero_division=0)),
        },
        per_class_f1={labels[j]: float(per_label[j]) for j in scored},
        support=support,
    )


# ------------------------------------------------------------------------------------- plateau


def plateau_gain(points: Sequence[tuple[int, float]], *, min_window: int = PLATEAU_MIN_WINDOW,
                 min_points: int = PLATEAU_MIN_POINTS,
                 min_labels: int = PLATEAU_MIN_LABELS) -> tuple[float, int] | None:
    """Projected gain of a score over the next ``window`` labels, and ``window``; None if unknown.

    ``points`` are ``(n_labels, score)`` pairs. The window is the last half of the labels (at least
    ``min_window``); a least-squares line through the points inside it, extrapolated by as many
    labels again, gives the gain. None below ``min_labels`` labels or with fewer than ``min_points``
    points in the window.
    """
    pts = sorted((int(n), float(v)) for n, v in points if v is not None and math.isfinite(v))
    if not pts or pts[-1][0] < min_labels:
        return None
    latest = pts[-1][0]
    window = max(min_window, latest // 2)
    inside = [(n, v) for n, v in pts if n >= latest - window]
    if len(inside) < min_points or len({n for n, _ in inside}) < 2:
        return None
    n_arr = np.asarray([n for n, _ in inside], dtype=np.float64)
    v_arr = np.asarray([v for _, v in inside], dtype=np.float64)
    slope = float(np.polyfit(n_arr, v_arr, 1)[0])
    return slope * window, window


# ------------------------------------------------------------------------------------- advice


@dataclass(frozen=True)
class WeakLabel:
    label: str
    f1: float | None  # None: too few examples to cross-validate (fewer than 2)
    examples: int


@dataclass(frozen=True)
class StoppingAdvice:
    """Whether more labels are likely to help, in plain words, with the numbers behind it."""

    project: str
    n_labels: int
    stop: bool  # True: more labels are unlikely to help much
    message: str  # one or two plain sentences for people
    kappa: float | None = None  # mean κ of the last KAPPA_WINDOW retrains
    kappas: tuple[float, ...] = ()
    stable: bool = False  # kappa >= KAPPA_THRESHOLD
    plateau: bool | None = None  # None: not enough points to say
    projected_gain: float | None = None  # best of accuracy / macro-F1, over ``window`` more labels
    window: int | None = None
    weak_labels: tuple[WeakLabel, ...] = field(default_factory=tuple)  # lowest F1 first

    @property
    def weak_text(self) -> str:
        """``"refund (F1 0.41, 12 examples), ..."`` or ""."""
        parts = []
        for w in self.weak_labels:
            score = "too few examples" if w.f1 is None else f"F1 {w.f1:.2f}"
            parts.append(f"{w.label} ({score}, {w.examples} example{'s' if w.examples != 1 else ''})")
        return ", ".join(parts)


def weak_labels(
    label_names: Sequence[str], per_class_f1: Mapping[str, float], support: Mapping[str, int],
    *, threshold: float = WEAK_F1, limit: int = 5,
) -> tuple[WeakLabel, ...]:
    """Labels below ``threshold`` F1, lowest first; labels with fewer than 2 examples come first."""
    weak = []
    for name in label_names:
        examples = int(support.get(name, 0))
        f1 = per_class_f1.get(name)
        if f1 is None and examples < 2:
            weak.append(WeakLabel(name, None, examples))
        elif f1 is not None and f1 < threshold:
            weak.append(WeakLabel(name, float(f1), examples))
    weak.sort(key=lambda w: (-1.0 if w.f1 is None else w.f1, w.examples, w.label))
    return tuple(weak[:limit])


def advise(
    project: str,
    runs: Sequence[ModelRunInfo],
    *,
    label_names: Sequence[str] = (),
    per_class_f1: Mapping[str, float] | None = None,
    support: Mapping[str, int] | None = None,
    kappa_threshold: float = KAPPA_THRESHOLD,
    window: int = KAPPA_WINDOW,
    min_gain: float = PLATEAU_MIN_GAIN,
    min_labels: int = MIN_LABELS_FOR_ADVICE,
    multi_label: bool = False,
) -> StoppingAdvice:
    """Combine stabilizing predictions and the plateau test over a project's runs (oldest first).

    ``multi_label``: the runs' κ is the mean per-label κ and the curve is micro-/macro-F1 (module doc);
    the message says so."""
    weak = weak_labels(label_names, per_class_f1 or {}, support or {}) if label_names else ()
    if not runs:
        return StoppingAdvice(project, 0, False, "No model yet: keep labeling.", weak_labels=weak)
    latest = runs[-1]
    kappas = tuple(float(r.metrics["stability_kappa"]) for r in runs
                   if r.metrics.get("stability_kappa") is not None)[-window:]
    kappa = float(np.mean(kappas)) if len(kappas) == window else None
    stable = kappa is not None and kappa >= kappa_threshold
    gains = [plateau_gain([(r.n_labels, r.metrics.get(m)) for r in runs if m in r.metrics])
             for m in (MULTI_LABEL_METRICS if multi_label else METRICS)]
    known = [g for g in gains if g is not None]
    gain = max(g for g, _ in known) if known else None
    span = max(w for _, w in known) if known else None
    plateau = None if gain is None else gain < min_gain
    near_stable = kappa is not None and kappa >= NEAR_STABLE_KAPPA
    early = latest.n_labels < min_labels
    stop = not early and (stable or (bool(plateau) and near_stable))
    message = _message(latest.n_labels, stop, early, kappa, stable, plateau, gain, span, min_labels,
                       multi_label=multi_label)
    return StoppingAdvice(
        project=project, n_labels=latest.n_labels, stop=stop, message=message, kappa=kappa, kappas=kappas,
        stable=stable, plateau=plateau, projected_gain=gain, window=span, weak_labels=weak,
    )


def _points(value: float) -> str:
    return f"{value * 100:.1f} point{'' if round(value * 100, 1) == 1 else 's'}"


def _message(n: int, stop: bool, early: bool, kappa: float | None, stable: bool, plateau: bool | None,
             gain: float | None, span: int | None, min_labels: int, *, multi_label: bool = False) -> str:
    measure = "mean per-label Cohen's κ of their yes/no predictions" if multi_label else "Cohen's κ"
    kappa_text = (f"models {STABILITY_GAP_FRACTION:.0%} of the labels apart agree on {kappa:.3f} "
                  f"({measure}, last {KAPPA_WINDOW} retrains)" if kappa is not None else "")
    scores = "micro-/macro-F1 " if multi_label else ""
    curve = (f"the cross-validated {scores}curve promises {_points(max(gain, 0.0))} for another {span} labels"
             if gain is not None else "")
    if early:
        return f"Too early to judge with {n} labels (advice starts at {min_labels}): keep labeling."
    if stop:
        reasons = " and ".join(r for r in (
            "the model's predictions have stopped changing" if stable else kappa_text,
            curve if plateau else "") if r)
        extra = f" ({kappa_text})" if stable and kappa_text else ""
        return f"More labels are unlikely to help much: {reasons}{extra}."
    why = "; ".join(r for r in (curve, kappa_text) if r) or "not enough retrains yet to measure progress"
    return f"More labels should still help: {why}."
