"""What an admin should look at: crowd disagreements and likely mislabels.

Pure numpy, no database: :class:`~core.service.LabelingService` gathers the answers, the aggregate
and the model's probabilities, and these functions decide which records go to the review queue.

Label errors are found by *confident learning* (Northcutt, Jiang & Chuang, "Confident Learning:
Estimating Uncertainty in Dataset Labels", JAIR 2021) on out-of-fold predicted probabilities, the
rule cleanlab's ``find_label_issues`` applies by default (``filter_by="prune_by_noise_rate"``):

1. per-class thresholds ``t[j]`` = the mean predicted probability of class ``j`` over the records
   labeled ``j`` (how sure the model usually is when ``j`` is right);
2. the *confident joint* ``C[i, j]`` counts records labeled ``i`` whose probability of ``j`` reaches
   ``t[j]`` (the most probable such ``j`` when several do); rows are then calibrated to the number
   of records labeled ``i``, so ``C[i, j]`` estimates how many records labeled ``i`` are really ``j``;
3. for each off-diagonal cell, that many records labeled ``i`` with the largest margin
   ``p[j] - p[i]`` are flagged (never all the records of a label);
4. a flagged record whose most probable class *is* its label is unflagged.

Multi-label projects apply the same rule to each label as its own yes/no question on out-of-fold
one-vs-rest probabilities (cleanlab's ``multilabel_classification.find_label_issues`` does so too):
:func:`find_label_issues_per_label` names the labels whose yes/no a record's final set likely has wrong.

It is ~60 lines here rather than a cleanlab dependency: the rule is small, fully testable by hand,
and the project stays on its existing numpy/scikit-learn stack.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

__all__ = [
    "LOW_AGREEMENT",
    "MODEL_CONFIDENCE",
    "confident_joint",
    "find_label_issues",
    "find_label_issues_per_label",
    "is_tied",
    "needs_extra_answer",
    "per_class_thresholds",
]

#: A complete record whose chosen label got at most this share of the answers has no majority.
LOW_AGREEMENT = 0.5
#: The latest model must be at least this sure before its disagreement with the answers is reported.
MODEL_CONFIDENCE = 0.8


def is_tied(labels: Sequence[str]) -> bool:
    """Whether two or more labels share the top vote count (one answer or none is never a tie)."""
    if len(labels) < 2:
        return False
    counts = Counter(labels).most_common(2)
    return len(counts) > 1 and counts[0][1] == counts[1][1]


def needs_extra_answer(labels: Sequence[str], answers_per_record: int) -> bool:
    """With disagreement routing on: a record that has exactly k answers and a tie gets one more."""
    return len(labels) == answers_per_record and is_tied(labels)


def _check(labels: np.ndarray, pred_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=np.intp)
    pred_probs = np.asarray(pred_probs, dtype=np.float64)
    if pred_probs.ndim != 2 or labels.shape != (pred_probs.shape[0],):
        raise ValueError(
            f"Expected labels (n,) and pred_probs (n, K); got {labels.shape} and {pred_probs.shape}."
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= pred_probs.shape[1]):
        raise ValueError("labels must be column indices of pred_probs.")
    return labels, pred_probs


def per_class_thresholds(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """``t[j]``: mean ``pred_probs[:, j]`` over the records labeled ``j``; inf for an unused class."""
    labels, pred_probs = _check(labels, pred_probs)
    k = pred_probs.shape[1]
    sums = np.bincount(labels, weights=pred_probs[np.arange(len(labels)), labels], minlength=k)
    counts = np.bincount(labels, minlength=k)
    # A class nobody used has no evidence of what "sure" means for it: never assign records to it.
    return np.divide(sums, counts, out=np.full(k, np.inf), where=counts > 0)


def confident_joint(labels: np.ndarray, pred_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The calibrated confident joint (K, K) and each record's confident class (-1 for none)."""
    labels, pred_probs = _check(labels, pred_probs)
    k = pred_probs.shape[1]
    thresholds = per_class_thresholds(labels, pred_probs)
    above = pred_probs >= thresholds[None, :]
    # Among the classes a record clears the threshold of, the most probable one.
    masked = np.where(above, pred_probs, -np.inf)
    confident = np.where(above.any(axis=1), masked.argmax(axis=1), -1)
    joint = np.zeros((k, k))
    has = confident >= 0
    np.add.at(joint, (labels[has], confident[has]), 1.0)
    # Calibrate each row to the number of records with that label (Northcutt et al., eq. 2).
    label_counts = np.bincount(labels, minlength=k).astype(np.float64)
    row_sums = joint.sum(axis=1)
    for i in range(k):
        if row_sums[i] > 0:
            joint[i] *= label_counts[i] / row_sums[i]
        else:
            joint[i, i] = label_counts[i]
    return joint, confident


def find_label_issues(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """Indices of likely mislabeled records, most suspicious (lowest self-confidence) first.

    ``labels``: (n,) given label per record as a column index of ``pred_probs``; ``pred_probs``:
    (n, K) out-of-fold probabilities (in-sample probabilities hide the very errors we look for).
    """
    labels, pred_probs = _check(labels, pred_probs)
    n, k = pred_probs.shape
    if n == 0:
        return np.zeros(0, dtype=np.intp)
    joint, _ = confident_joint(labels, pred_probs)
    flagged = np.zeros(n, dtype=bool)
    for i in range(k):
        rows = np.flatnonzero(labels == i)
        budget = len(rows) - 1  # keep at least one record of every label
        for j in np.argsort(-joint[i]):  # biggest estimated confusions first
            if j == i or budget <= 0:
                continue
            n_remove = min(int(np.rint(joint[i, j])), budget)
            if n_remove <= 0:
                continue
            margin = pred_probs[rows, j] - pred_probs[rows, i]
            order = rows[np.argsort(-margin, kind="stable")]
            # Records already taken for another class do not count twice.
            chosen = [r for r in order if not flagged[r]][:n_remove]
            flagged[chosen] = True
            budget -= len(chosen)
    flagged &= pred_probs.argmax(axis=1) != labels
    issues = np.flatnonzero(flagged)
    self_confidence = pred_probs[issues, labels[issues]]
    return issues[np.argsort(self_confidence, kind="stable")]


def find_label_issues_per_label(given: np.ndarray, label_proba: np.ndarray) -> dict[int, list[int]]:
    """Multi-label: row -> the labels (column indices) its given set likely has wrong, most suspicious
    first (the model's probability furthest on the other side).

    ``given``: (n, L) 0/1 final sets; ``label_proba``: (n, L) out-of-fold probability of each label.
    Each label is a yes/no question through :func:`find_label_issues`; a label every record answers the
    same way has nothing to compare with and is skipped.
    """
    given = np.asarray(given, dtype=np.intp)
    label_proba = np.asarray(label_proba, dtype=np.float64)
    if given.shape != label_proba.shape or given.ndim != 2:
        raise ValueError(f"Expected given and label_proba of one shape (n, L); got {given.shape} and "
                         f"{label_proba.shape}.")
    found: dict[int, list[tuple[float, int]]] = {}
    for j in range(given.shape[1]):
        yes = given[:, j]
        if len(yes) == 0 or yes.min() == yes.max():
            continue
        p = label_proba[:, j]
        for row in find_label_issues(yes, np.column_stack([1.0 - p, p])).tolist():
            self_confidence = p[row] if yes[row] else 1.0 - p[row]
            found.setdefault(row, []).append((self_confidence, j))
    return {row: [j for _, j in sorted(pairs)] for row, pairs in sorted(found.items())}
