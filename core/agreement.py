"""How much annotators agree: Krippendorff's alpha, Cohen's kappa (per pair of annotators) and each
annotator's agreement with the aggregate label.

Pure numpy functions on the answer triples and encoding of :mod:`core.aggregate` (the same
conventions: the last answer of an annotator on an item counts; order of first appearance).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence

import numpy as np

from core.aggregate import AggregateLabel, Answer, EncodedAnswers, last_answers

__all__ = ["agreement_with_aggregate", "cohen_kappa", "cohen_kappa_pairs", "krippendorff_alpha_nominal"]


def krippendorff_alpha_nominal(answers: Iterable[Answer]) -> float | None:
    """Krippendorff's alpha for nominal data, from the coincidence matrix.

    Only items with at least two answers are pairable; the others are ignored. Returns None
    when nothing is pairable, or when every pairable value is the same category: then the
    expected disagreement is 0 and alpha is 0/0, undefined (data without variation say nothing
    about reliability, so we report no number rather than a misleading 1.0 or a nan).
    """
    enc = EncodedAnswers(answers)
    counts = enc.vote_counts()
    m = counts.sum(axis=1)
    pairable = m >= 2
    counts, m = counts[pairable], m[pairable]
    if len(m) == 0:
        return None
    # Coincidence matrix: within a unit with m values, each ordered pair of values from
    # different annotators contributes 1 / (m - 1); self-pairs are excluded on the diagonal.
    weighted = counts / (m - 1)[:, None]
    coincidence = weighted.T @ counts - np.diag(weighted.sum(axis=0))
    n_c = coincidence.sum(axis=1)
    n = n_c.sum()
    expected = n * n - float(np.sum(n_c**2))
    if expected <= 0:
        return None
    observed = n - float(np.trace(coincidence))
    return float(1.0 - (n - 1) * observed / expected)


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's kappa between two equal-length label sequences (same result as sklearn's).

    Returns nan when both raters use one and the same category throughout: chance agreement
    is then 1 and kappa is 0/0 (sklearn's ``cohen_kappa_score`` also gives nan there).
    """
    if len(a) != len(b):
        raise ValueError(f"Sequences differ in length: {len(a)} and {len(b)}.")
    if len(a) == 0:
        raise ValueError("Cohen's kappa needs at least one pair of labels.")
    index: dict[Hashable, int] = {}
    ia = np.array([index.setdefault(x, len(index)) for x in a], dtype=np.intp)
    ib = np.array([index.setdefault(x, len(index)) for x in b], dtype=np.intp)
    return _kappa_from_indices(ia, ib, len(index))


def _kappa_from_indices(ia: np.ndarray, ib: np.ndarray, k: int) -> float:
    n = len(ia)
    observed = float(np.count_nonzero(ia == ib)) / n
    expected = float(np.bincount(ia, minlength=k) @ np.bincount(ib, minlength=k)) / (n * n)
    if expected >= 1.0:
        return float("nan")
    return (observed - expected) / (1.0 - expected)


def cohen_kappa_pairs(
    answers: Iterable[Answer], *, min_overlap: int = 10
) -> dict[tuple[Hashable, Hashable], tuple[float, int]]:
    """Cohen's kappa ``(kappa, overlap)`` for each annotator pair with >= ``min_overlap`` common items.

    Keys are ``(a, b)`` with ``a`` appearing before ``b`` in ``answers``. A pair whose two
    annotators used one and the same category on all common items gets nan (see
    :func:`cohen_kappa`).
    """
    if min_overlap < 1:
        raise ValueError(f"min_overlap must be at least 1, got {min_overlap}.")
    enc = EncodedAnswers(answers)
    n_ann = len(enc.annotators)
    # Dense annotator x item matrix of label indices, -1 where the annotator did not answer.
    grid = np.full((n_ann, enc.n_items), -1, dtype=np.intp)
    grid[enc.annotator, enc.item] = enc.label
    answered = grid >= 0
    overlap = answered.astype(np.int64) @ answered.T.astype(np.int64)
    result: dict[tuple[Hashable, Hashable], tuple[float, int]] = {}
    for x in range(n_ann):
        for y in range(x + 1, n_ann):
            if overlap[x, y] < min_overlap:
                continue
            common = answered[x] & answered[y]
            kappa = _kappa_from_indices(grid[x, common], grid[y, common], enc.n_classes)
            result[(enc.annotators[x], enc.annotators[y])] = (kappa, int(overlap[x, y]))
    return result


def agreement_with_aggregate(
    answers: Iterable[Answer], aggregate: Mapping[Hashable, AggregateLabel]
) -> dict[Hashable, float]:
    """Share of each annotator's answers that equal the aggregate label of the item.

    Only items with a decided aggregate label count (ties and items missing from ``aggregate``
    are skipped); annotators with no such answer are left out. The annotator's own answer is
    part of the aggregate, so this is an optimistic estimate of accuracy.
    """
    hits: dict[Hashable, int] = {}
    total: dict[Hashable, int] = {}
    for (item, annotator), label in last_answers(answers).items():
        decided = aggregate.get(item)
        if decided is None or decided.label is None:
            continue
        total[annotator] = total.get(annotator, 0) + 1
        hits[annotator] = hits.get(annotator, 0) + (label == decided.label)
    return {annotator: hits[annotator] / n for annotator, n in total.items()}
