"""Combine crowd answers into one label per item, and measure how much annotators agree.

Over 400 lines because it holds several small, independent estimators (majority, Dawid–Skene,
alpha, kappa) that share one answer encoding; split them when one grows.

Pure numpy functions, no database. Every function takes ``answers``: a sequence of
``(item, annotator, label)`` triples, where ``item`` and ``annotator`` are hashable (ints or
strings) and ``label`` is a string.

Conventions shared by all functions:

* If an annotator answered the same item more than once, only the **last** answer counts
  (it mirrors the bot, where a changed answer replaces the earlier one).
* Items and annotators keep the order of their first appearance (never sorted, so mixed
  int/str ids work); label names are sorted unless ``labels`` gives their order. The output
  is deterministic for a given input.
* A **tie** gives ``AggregateLabel(label=None, tie=True, ...)``: the record goes to review and
  the classifier does not train on it. With two answers per record, any disagreement is a tie.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from core.errors import UnknownLabel

Answer = tuple[Hashable, Hashable, str]

__all__ = [
    "AggregateLabel",
    "DawidSkeneResult",
    "aggregate",
    "agreement_with_aggregate",
    "cohen_kappa",
    "cohen_kappa_pairs",
    "dawid_skene",
    "krippendorff_alpha_nominal",
    "majority_vote",
]


@dataclass(frozen=True)
class AggregateLabel:
    """The combined label of one item.

    label: the chosen label, or None for a tie (the record needs review).
    confidence: share of votes for majority vote, posterior probability for Dawid-Skene,
        1.0 for a gold label. For a tie, the share / posterior of each tied label.
    n_answers: number of answers the item has (one per annotator).
    tie: True when two or more labels share the top vote count (or exactly the top posterior).
    agreement: share of the answers equal to the chosen label; for a tie, the share of the
        best-supported tied label; nan for a gold item without answers.
    """

    label: str | None
    confidence: float
    n_answers: int
    tie: bool
    agreement: float


@dataclass(frozen=True)
class DawidSkeneResult:
    """Output of :func:`dawid_skene`.

    ``confusion[a][k, l]`` is the estimated probability that annotator ``a`` answers
    ``classes[l]`` when the true class is ``classes[k]`` (rows sum to 1). ``posteriors`` has one
    row per entry of ``items``, columns in the order of ``classes``.
    """

    labels: dict[Hashable, AggregateLabel]
    annotator_accuracy: dict[Hashable, float]
    confusion: dict[Hashable, np.ndarray]
    priors: dict[str, float]
    classes: tuple[str, ...]
    items: tuple[Hashable, ...]
    posteriors: np.ndarray
    n_iter: int
    converged: bool


# --------------------------------------------------------------------------- input handling


def _last_answers(answers: Iterable[Answer]) -> dict[tuple[Hashable, Hashable], str]:
    """(item, annotator) -> label, keeping the last answer and the order of first appearance."""
    last: dict[tuple[Hashable, Hashable], str] = {}
    for triple in answers:
        try:
            item, annotator, label = triple
        except (TypeError, ValueError):
            raise ValueError(
                f"Each answer must be an (item, annotator, label) triple, got {triple!r}."
            ) from None
        last[(item, annotator)] = label
    return last


class _Encoded:
    """Answers as integer arrays: one observation per (item, annotator), last answer kept."""

    def __init__(
        self,
        answers: Iterable[Answer],
        labels: Sequence[str] | None = None,
        extra_items: Iterable[Hashable] = (),
        extra_labels: Iterable[str] = (),
    ) -> None:
        last = _last_answers(answers)
        if labels is None:
            classes = tuple(sorted(set(last.values()) | set(extra_labels)))
        else:
            classes = tuple(labels)
            if len(set(classes)) != len(classes):
                raise ValueError(f"Duplicate names in labels: {list(classes)}.")
            unknown = sorted(set(last.values()) - set(classes))
            if unknown:
                raise UnknownLabel(f"Answers use labels not in the label set {list(classes)}: {unknown}.")
        self.classes = classes
        self.class_index = {c: k for k, c in enumerate(classes)}

        self.item_index: dict[Hashable, int] = {}
        annotator_index: dict[Hashable, int] = {}
        items, anns, labs = [], [], []
        for (item, annotator), label in last.items():
            items.append(self.item_index.setdefault(item, len(self.item_index)))
            anns.append(annotator_index.setdefault(annotator, len(annotator_index)))
            labs.append(self.class_index[label])
        for item in extra_items:
            self.item_index.setdefault(item, len(self.item_index))
        self.item = np.asarray(items, dtype=np.intp)
        self.annotator = np.asarray(anns, dtype=np.intp)
        self.label = np.asarray(labs, dtype=np.intp)
        self.items = tuple(self.item_index)
        self.annotators = tuple(annotator_index)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def vote_counts(self) -> np.ndarray:
        """(n_items, n_classes) number of answers per item and label."""
        counts = np.zeros((self.n_items, self.n_classes))
        np.add.at(counts, (self.item, self.label), 1.0)
        return counts


def _make_label(
    scores: np.ndarray, votes: np.ndarray, classes: Sequence[str], chosen: int | None = None
) -> AggregateLabel:
    """Build an AggregateLabel from one item's scores (shares or posteriors) and vote counts."""
    n = int(votes.sum())
    if chosen is None:
        top = scores.max()
        winners = np.flatnonzero(scores == top)
        if len(winners) > 1:
            share = float(votes[winners].max() / n) if n else float("nan")
            return AggregateLabel(label=None, confidence=float(top), n_answers=n, tie=True, agreement=share)
        chosen = int(winners[0])
    agreement = float(votes[chosen] / n) if n else float("nan")
    return AggregateLabel(
        label=classes[chosen], confidence=float(scores[chosen]), n_answers=n, tie=False, agreement=agreement
    )


# --------------------------------------------------------------------------- aggregation


def majority_vote(answers: Iterable[Answer]) -> dict[Hashable, AggregateLabel]:
    """Most frequent label per item; a tie for the top count gives ``label=None, tie=True``.

    ``confidence`` and ``agreement`` are both the share of answers for the chosen label.
    """
    enc = _Encoded(answers)
    if enc.n_items == 0:
        return {}
    counts = enc.vote_counts()
    shares = counts / counts.sum(axis=1, keepdims=True)
    return {item: _make_label(shares[i], counts[i], enc.classes) for i, item in enumerate(enc.items)}


def _m_step(enc: _Encoded, post: np.ndarray, smoothing: float) -> tuple[np.ndarray, np.ndarray]:
    """Priors (K,) and confusion matrices (J, K, K) from soft labels, with Dirichlet pseudo-counts."""
    n_ann, k = len(enc.annotators), enc.n_classes
    priors = post.sum(axis=0) + smoothing
    priors /= priors.sum()
    # counts[j, true, given] += post[item, true] for each answer (item, j, given).
    flat = (enc.annotator[:, None] * k + np.arange(k)[None, :]) * k + enc.label[:, None]
    counts = np.bincount(flat.ravel(), weights=post[enc.item].ravel(), minlength=n_ann * k * k)
    confusion = counts.reshape(n_ann, k, k) + smoothing
    confusion /= confusion.sum(axis=2, keepdims=True)
    return priors, confusion


def _e_step(enc: _Encoded, priors: np.ndarray, confusion: np.ndarray) -> tuple[np.ndarray, float]:
    """Posteriors (n_items, K) and the log-likelihood of all answers given the parameters."""
    # Work in log space: an item with many answers would underflow a product of probabilities.
    log_post = np.tile(np.log(priors), (enc.n_items, 1))
    np.add.at(log_post, enc.item, np.log(confusion[enc.annotator, :, enc.label]))
    top = log_post.max(axis=1, keepdims=True)
    post = np.exp(log_post - top)
    norm = post.sum(axis=1, keepdims=True)
    return post / norm, float(np.sum(np.log(norm) + top))


def dawid_skene(
    answers: Iterable[Answer],
    labels: Sequence[str] | None = None,
    *,
    max_iter: int = 100,
    tol: float = 1e-6,
    smoothing: float = 0.01,
    gold: Mapping[Hashable, str] | None = None,
) -> DawidSkeneResult:
    """Dawid & Skene (1979) EM estimate of true labels and per-annotator confusion matrices.

    Starts from the soft majority vote (vote shares), then alternates the M-step (class priors
    and confusion matrices, each with ``smoothing`` pseudo-counts so that an annotator who never
    gave some answer still has a non-zero probability of giving it, and a class in ``labels``
    that nobody used keeps a non-zero prior) and the E-step (posteriors). Stops when
    the log-likelihood per answer changes by less than ``tol`` between iterations, or after
    ``max_iter`` iterations. Deterministic.

    ``gold`` (item -> label) pins those items' posteriors to the given label throughout, so
    reviewed items also teach the annotators' confusion matrices; their result label is the
    gold label with confidence 1.0. Gold items need not have answers.

    The chosen label is the arg-max posterior; an exact tie gives ``label=None, tie=True``.
    ``annotator_accuracy[a]`` is ``sum_k prior[k] * confusion[a][k, k]``.
    """
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}.")
    if not smoothing > 0:
        # Without pseudo-counts a zero in a confusion matrix can rule out every class for an item.
        raise ValueError(f"smoothing must be positive, got {smoothing}.")
    gold = dict(gold or {})
    enc = _Encoded(answers, labels, extra_items=gold, extra_labels=gold.values())
    unknown = sorted(set(gold.values()) - set(enc.classes))
    if unknown:
        raise UnknownLabel(f"Gold labels not in the label set {list(enc.classes)}: {unknown}.")

    k = enc.n_classes
    if enc.n_items == 0 or k == 0:
        return DawidSkeneResult(
            {}, {}, {}, {c: 1.0 / k for c in enc.classes}, enc.classes, (), np.zeros((0, k)), 0, True
        )

    counts = enc.vote_counts()
    n_votes = counts.sum(axis=1, keepdims=True)
    # Soft majority vote; a gold item without answers starts uniform (it is pinned anyway).
    post = np.divide(counts, n_votes, out=np.full_like(counts, 1.0 / k), where=n_votes > 0)
    gold_rows = np.array([enc.item_index[item] for item in gold], dtype=np.intp) if gold else None
    gold_post = None
    if gold_rows is not None:
        gold_post = np.zeros((len(gold_rows), k))
        gold_post[np.arange(len(gold_rows)), [enc.class_index[gold[enc.items[r]]] for r in gold_rows]] = 1.0
        post[gold_rows] = gold_post

    # Stop on the likelihood, not on the posteriors: where the answers say nothing about an
    # annotator's reliability (e.g. one answer per item) the likelihood is flat, and the
    # pseudo-counts would otherwise pull that annotator's confusion matrix slowly towards uniform,
    # and their items' posteriors towards the class prior, for as long as we keep iterating.
    converged = False
    n_iter = 0
    previous = -np.inf
    scale = max(len(enc.label), 1)
    for n_iter in range(1, max_iter + 1):  # noqa: B007 (n_iter is reported after the loop)
        priors, confusion = _m_step(enc, post, smoothing)
        post, log_lik = _e_step(enc, priors, confusion)
        if gold_rows is not None:
            post[gold_rows] = gold_post
        if abs(log_lik - previous) < tol * scale:
            converged = True
            break
        previous = log_lik
    # Report parameters consistent with the final posteriors.
    priors, confusion = _m_step(enc, post, smoothing)

    item_labels: dict[Hashable, AggregateLabel] = {}
    for i, item in enumerate(enc.items):
        if item in gold:
            chosen = enc.class_index[gold[item]]
            item_labels[item] = _make_label(post[i], counts[i], enc.classes, chosen=chosen)
        else:
            item_labels[item] = _make_label(post[i], counts[i], enc.classes)
    accuracy = np.einsum("k,jkk->j", priors, confusion)
    return DawidSkeneResult(
        labels=item_labels,
        annotator_accuracy={a: float(accuracy[j]) for j, a in enumerate(enc.annotators)},
        confusion={a: confusion[j].copy() for j, a in enumerate(enc.annotators)},
        priors={c: float(priors[kk]) for kk, c in enumerate(enc.classes)},
        classes=enc.classes,
        items=enc.items,
        posteriors=post,
        n_iter=n_iter,
        converged=converged,
    )


def aggregate(
    answers: Iterable[Answer],
    labels: Sequence[str] | None = None,
    *,
    answers_per_record: int,
    gold: Mapping[Hashable, str] | None = None,
) -> dict[Hashable, AggregateLabel]:
    """The project's rule: majority vote for 1-2 answers per record, Dawid-Skene for 3 or more.

    ``gold`` (an admin's review decisions) wins over everything: those items get the gold label
    with confidence 1.0 and ``tie=False``, even if they have no answers. With Dawid-Skene the
    gold items also inform the annotators' confusion matrices.
    """
    if answers_per_record < 1:
        raise ValueError(f"answers_per_record must be at least 1, got {answers_per_record}.")
    answers = list(answers)
    gold = dict(gold or {})
    if labels is not None:
        unknown = sorted(set(gold.values()) - set(labels))
        if unknown:
            raise UnknownLabel(f"Gold labels not in the label set {list(labels)}: {unknown}.")
    if answers_per_record >= 3:
        return dawid_skene(answers, labels, gold=gold).labels

    if labels is not None:
        _Encoded(answers, labels)  # validates the answers' labels
    result = majority_vote(answers)
    if gold:
        votes: dict[Hashable, dict[str, int]] = {}
        for (item, _), label in _last_answers(answers).items():
            votes.setdefault(item, {}).setdefault(label, 0)
            votes[item][label] += 1
        for item, label in gold.items():
            item_votes = votes.get(item, {})
            n = sum(item_votes.values())
            agreement = item_votes.get(label, 0) / n if n else float("nan")
            result[item] = AggregateLabel(
                label=label, confidence=1.0, n_answers=n, tie=False, agreement=agreement
            )
    return result


# --------------------------------------------------------------------------- agreement


def krippendorff_alpha_nominal(answers: Iterable[Answer]) -> float | None:
    """Krippendorff's alpha for nominal data, from the coincidence matrix.

    Only items with at least two answers are pairable; the others are ignored. Returns None
    when nothing is pairable, or when every pairable value is the same category: then the
    expected disagreement is 0 and alpha is 0/0, undefined (data without variation say nothing
    about reliability, so we report no number rather than a misleading 1.0 or a nan).
    """
    enc = _Encoded(answers)
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
    enc = _Encoded(answers)
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
    for (item, annotator), label in _last_answers(answers).items():
        decided = aggregate.get(item)
        if decided is None or decided.label is None:
            continue
        total[annotator] = total.get(annotator, 0) + 1
        hits[annotator] = hits.get(annotator, 0) + (label == decided.label)
    return {annotator: hits[annotator] / n for annotator, n in total.items()}
