"""Combine crowd answers into one label per item (how much annotators agree: ``core.agreement``).

Over 400 lines because it is one job done three ways that lean on each other: the project's crowd
model (hierarchical MACE) starts its EM from majority vote and from Dawid–Skene's posteriors, and all
three share one answer encoding (:class:`EncodedAnswers`); apart, each would import the others'
internals.

Pure numpy functions, no database. Every function takes ``answers``: a sequence of
``(item, annotator, label)`` triples, where ``item`` and ``annotator`` are hashable (ints or
strings) and ``label`` is a string.

Conventions shared by all functions:

* If an annotator answered the same item more than once, only the **last** answer counts
  (it mirrors the bot, where a changed answer replaces the earlier one).
* Items and annotators keep the order of their first appearance (never sorted, so mixed
  int/str ids work); label names are sorted unless ``labels`` gives their order. The output
  is deterministic for a given input.

The project's rule, :func:`aggregate`, is :func:`hierarchical_mace` for every number of answers:
an item always gets a label (the one the crowd gave that is most likely once each annotator's
estimated reliability is weighed; one answer is taken as it is), and ``tie`` says the crowd split
evenly (two or more labels share the top vote count), which keeps the record in the review queue
until an admin decides. Why this model and not Dawid–Skene: on real crowds most workers answer a
handful of items, and a full confusion matrix per worker learnt from ~20 answers overfits (on the
RTE crowd with three answers per item, Dawid–Skene with Laplace smoothing falls below majority
vote); see docs/benchmarks.md, "Real crowd: RTE (issue 11)". :func:`majority_vote` and
:func:`dawid_skene` stay as references, and leave ``label=None`` on a tie.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from core.errors import UnknownLabel

Answer = tuple[Hashable, Hashable, str]

__all__ = [
    "AggregateLabel",
    "Answer",
    "CrowdModelResult",
    "DawidSkeneResult",
    "EncodedAnswers",
    "aggregate",
    "dawid_skene",
    "hierarchical_mace",
    "last_answers",
    "majority_vote",
]


@dataclass(frozen=True)
class AggregateLabel:
    """The combined label of one item.

    label: the chosen label. Never None from :func:`aggregate` for an item with an answer or a
        gold label; None from the reference functions :func:`majority_vote` and
        :func:`dawid_skene` on a tie.
    confidence: the model's posterior probability of the label (share of votes for majority
        vote), 1.0 for a gold label.
    n_answers: number of answers the item has (one per annotator).
    tie: True when two or more labels share the top vote count among the item's answers,
        whatever label was chosen (the reference functions: also an exact tie of their scores);
        False for a gold item.
    agreement: share of the answers equal to the chosen label (for a reference function's tie,
        the share of the best-supported tied label); nan for a gold item without answers.
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


def last_answers(answers: Iterable[Answer]) -> dict[tuple[Hashable, Hashable], str]:
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


class EncodedAnswers:
    """Answers as integer arrays: one observation per (item, annotator), last answer kept."""

    def __init__(
        self,
        answers: Iterable[Answer],
        labels: Sequence[str] | None = None,
        extra_items: Iterable[Hashable] = (),
        extra_labels: Iterable[str] = (),
    ) -> None:
        last = last_answers(answers)
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

    def subset(self, rows: np.ndarray) -> EncodedAnswers:
        """The same items, annotators and classes with only the answers ``rows``."""
        part = copy.copy(self)
        part.item, part.annotator, part.label = self.item[rows], self.annotator[rows], self.label[rows]
        return part

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


def _encoded_with_gold(
    answers: Iterable[Answer], labels: Sequence[str] | None, gold: Mapping[Hashable, str] | None
) -> tuple[dict[Hashable, str], EncodedAnswers]:
    """The gold labels as a dict and the answers encoded with the gold items and labels among them."""
    gold = dict(gold or {})
    enc = EncodedAnswers(answers, labels, extra_items=gold, extra_labels=gold.values())
    unknown = sorted(set(gold.values()) - set(enc.classes))
    if unknown:
        raise UnknownLabel(f"Gold labels not in the label set {list(enc.classes)}: {unknown}.")
    return gold, enc


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

    The plain reference for benchmarks and tests: unlike :func:`aggregate` it leaves a tie without
    a label. ``confidence`` and ``agreement`` are both the share of answers for the chosen label.
    """
    enc = EncodedAnswers(answers)
    if enc.n_items == 0:
        return {}
    counts = enc.vote_counts()
    shares = counts / counts.sum(axis=1, keepdims=True)
    return {item: _make_label(shares[i], counts[i], enc.classes) for i, item in enumerate(enc.items)}


def _m_step(enc: EncodedAnswers, post: np.ndarray, smoothing: float) -> tuple[np.ndarray, np.ndarray]:
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


def _e_step(enc: EncodedAnswers, priors: np.ndarray, confusion: np.ndarray) -> tuple[np.ndarray, float]:
    """Posteriors (n_items, K) and the log-likelihood of all answers given the parameters."""
    # Work in log space: an item with many answers would underflow a product of probabilities.
    log_post = np.tile(np.log(priors), (enc.n_items, 1))
    np.add.at(log_post, enc.item, np.log(confusion[enc.annotator, :, enc.label]))
    top = log_post.max(axis=1, keepdims=True)
    post = np.exp(log_post - top)
    norm = post.sum(axis=1, keepdims=True)
    return post / norm, float(np.sum(np.log(norm) + top))


def _dawid_skene_em(
    enc: EncodedAnswers, gold: Mapping[Hashable, str], max_iter: int, tol: float, smoothing: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, bool]:
    """Posteriors, priors, confusion matrices, iterations and convergence of Dawid-Skene's EM."""
    k = enc.n_classes
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
    return post, priors, confusion, n_iter, converged


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
    ``annotator_accuracy[a]`` is ``sum_k prior[k] * confusion[a][k, k]``. A reference for
    benchmarks (``smoothing=1.0`` is the usual Laplace variant); the project uses
    :func:`hierarchical_mace`.
    """
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}.")
    if not smoothing > 0:
        # Without pseudo-counts a zero in a confusion matrix can rule out every class for an item.
        raise ValueError(f"smoothing must be positive, got {smoothing}.")
    gold, enc = _encoded_with_gold(answers, labels, gold)

    k = enc.n_classes
    if enc.n_items == 0 or k == 0:
        return DawidSkeneResult(
            {}, {}, {}, {c: 1.0 / k for c in enc.classes}, enc.classes, (), np.zeros((0, k)), 0, True
        )

    counts = enc.vote_counts()
    post, priors, confusion, n_iter, converged = _dawid_skene_em(enc, gold, max_iter, tol, smoothing)

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


# Pseudo-answers that pull an annotator's estimates towards the crowd's. With 8, an annotator with
# 8 answers is judged half on their own record and half on the typical annotator's. Chosen on
# rte_crowd, where 6 to 16 all beat majority vote and match or beat Dawid-Skene (Laplace 1.0) at 3,
# 5 and 10 answers per item, and 2 and 4 fall one item short at 10 (of 800); checked on simulated
# crowds too (docs/benchmarks.md, "Real crowd: RTE (issue 11)").
SHRINKAGE = 8.0
_CHUNK = 1 << 16  # answers per block in the EM steps: bounds the (answers x labels) temporaries
_PROBE_ITERATIONS = 10  # EM iterations from each start before the better one is kept
_TIE_TOLERANCE = 1e-9  # posteriors this close (relative) count as equal, so symmetric cases break alike


@dataclass(frozen=True)
class CrowdModelResult:
    """Output of :func:`hierarchical_mace`.

    ``competence[a]`` is the estimated probability that annotator ``a`` knows the answer (1 - the
    probability of guessing). ``confusion[a][k, l]`` is the probability that ``a`` answers
    ``classes[l]`` when the true class is ``classes[k]``; ``annotator_accuracy[a]`` is
    ``sum_k prior[k] * confusion[a][k, k]``. Annotators whose answers are all on items with no
    other answer and no gold label are left out of these three: nothing tells how good they are.
    ``posteriors`` has one row per entry of ``items`` (columns in the order of ``classes``).
    """

    labels: dict[Hashable, AggregateLabel]
    annotator_accuracy: dict[Hashable, float]
    competence: dict[Hashable, float]
    confusion: dict[Hashable, np.ndarray]
    priors: dict[str, float]
    classes: tuple[str, ...]
    items: tuple[Hashable, ...]
    posteriors: np.ndarray
    n_iter: int
    converged: bool


class _Grouped:
    """Answer rows grouped by a key once, so that per-key sums of per-row vectors are cheap.

    Many small groups (answers per item): one pass per rank within the group, each adding at most
    one row per key with plain fancy indexing. Few large groups (answers per annotator and label):
    ``np.add.reduceat`` over the sorted rows. Both beat ``np.add.at`` (40% of the EM's time), and
    both work in blocks of rows, which bounds the (rows x labels) temporaries on large projects.
    """

    def __init__(self, keys: np.ndarray, rows: np.ndarray) -> None:
        self.key_of = keys  # one per answer row of the encoding
        self.rows = rows[np.argsort(keys[rows], kind="stable")]
        self.keys = keys[self.rows]
        starts = np.flatnonzero(np.r_[True, self.keys[1:] != self.keys[:-1]]) if len(rows) else rows
        sizes = np.diff(np.r_[starts, len(rows)])
        self.by_rank: list[np.ndarray] | None = None
        if len(rows) and sizes.max() <= 64:
            rank = np.arange(len(rows)) - np.repeat(starts, sizes)
            order = np.argsort(rank, kind="stable")
            bounds = np.searchsorted(rank[order], np.arange(sizes.max() + 1))
            self.by_rank = [self.rows[order[bounds[r] : bounds[r + 1]]] for r in range(sizes.max())]

    def sums(self, values: Callable[[np.ndarray], np.ndarray], n_keys: int, width: int) -> np.ndarray:
        """(n_keys, width): the sum of ``values(rows)`` over each key's rows."""
        out = np.zeros((n_keys, width))
        if self.by_rank is not None:
            for same_rank in self.by_rank:  # keys are distinct within a rank
                for block in range(0, len(same_rank), _CHUNK):
                    rows = same_rank[block : block + _CHUNK]
                    out[self.key_of[rows]] += values(rows)
            return out
        for block in range(0, len(self.rows), _CHUNK):
            rows, keys = self.rows[block : block + _CHUNK], self.keys[block : block + _CHUNK]
            starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
            out[keys[starts]] += np.add.reduceat(values(rows), starts, axis=0)
        return out


class _Mace:
    """Parameters of the hierarchical MACE model and its EM steps over an encoding's answers."""

    def __init__(self, enc: EncodedAnswers, learn_rows: np.ndarray, strength: float) -> None:
        self.enc = enc
        self.strength = strength
        n_ann, k = len(enc.annotators), enc.n_classes
        self.by_answer = _Grouped(enc.annotator * k + enc.label, learn_rows)
        self.known = np.full(n_ann, 0.5)  # 1 - theta: probability of knowing the answer
        self.guess = np.full((n_ann, k, k), 1.0 / k)  # xi[a, true, given]
        self.priors = np.full(k, 1.0 / k)
        self.answered = np.zeros(n_ann, dtype=bool)

    @property
    def confusion(self) -> np.ndarray:
        k = self.enc.n_classes
        return (1.0 - self.known)[:, None, None] * self.guess + self.known[:, None, None] * np.eye(k)

    def soft_counts(self, post: np.ndarray) -> np.ndarray:
        """counts[a, true, given]: answers ``given`` by ``a`` weighted by P(item's class = true)."""
        enc, k = self.enc, self.enc.n_classes
        sums = self.by_answer.sums(lambda rows: post[enc.item[rows]], len(enc.annotators) * k, k)
        return sums.reshape(len(enc.annotators), k, k).transpose(0, 2, 1)

    def m_step(self, post: np.ndarray, fitted: np.ndarray) -> None:
        """Class priors, then each annotator's competence and guesses, shrunk towards the crowd's."""
        k, s = self.enc.n_classes, self.strength
        self.priors = post[fitted].sum(axis=0) + 1.0
        self.priors /= self.priors.sum()
        counts = self.soft_counts(post)
        # An answer equal to the true class was a guess with probability (theta xi) / (1 - theta + theta xi);
        # any other answer was a guess.
        diag = np.arange(k)
        hit_guess = (1.0 - self.known)[:, None] * self.guess[:, diag, diag]
        guessed = counts.copy()
        guessed[:, diag, diag] *= hit_guess / (self.known[:, None] + hit_guess)
        n = counts.sum(axis=(1, 2))
        per_class = guessed.sum(axis=2)
        n_guessed = per_class.sum(axis=1)
        self.answered = n > 0
        # The crowd's centre: the average annotator (each counts once, Laplace-smoothed), not the
        # average answer: a few prolific spammers must not define what a typical annotator is.
        who = self.answered if self.answered.any() else slice(None)
        guess_rate = float(np.mean((n_guessed[who] + 1.0) / (n[who] + 2.0)))
        centre = np.mean((guessed[who] + 1.0) / (per_class[who, :, None] + k), axis=0)
        self.known = 1.0 - (n_guessed + s * guess_rate) / (n + s)
        self.guess = (guessed + s * centre) / (per_class[:, :, None] + s)

    def e_step(self, post: np.ndarray, items: np.ndarray, by_item: _Grouped) -> float:
        """Posteriors of ``items`` (in place) from their answers; the log-likelihood of those answers."""
        enc = self.enc
        log_conf = np.log(self.confusion)
        evidence = by_item.sums(lambda rows: log_conf[enc.annotator[rows], :, enc.label[rows]], enc.n_items,
                                enc.n_classes)  # fmt: skip
        log_post = np.log(self.priors) + evidence[items]
        top = log_post.max(axis=1, keepdims=True)
        p = np.exp(log_post - top)
        norm = p.sum(axis=1, keepdims=True)
        post[items] = p / norm
        return float(np.sum(np.log(norm) + top))


@dataclass
class _Run:
    """One EM run of :func:`hierarchical_mace` from one start."""

    model: _Mace
    post: np.ndarray
    n_iter: int = 0
    converged: bool = False
    log_lik: float = -np.inf


def hierarchical_mace(
    answers: Iterable[Answer],
    labels: Sequence[str] | None = None,
    *,
    strength: float = SHRINKAGE,
    gold: Mapping[Hashable, str] | None = None,
    max_iter: int = 100,
    tol: float = 1e-5,
) -> CrowdModelResult:
    """MACE (Hovy et al. 2013) with class-dependent guesses and per-annotator shrinkage, by EM.

    The model: an item's true class ``t`` follows the class priors; annotator ``a`` knows it with
    probability ``1 - theta_a`` and then answers ``t``; otherwise they guess from ``xi_a[t]``, a
    distribution over the labels that may depend on ``t`` (people confuse similar intents) and
    may favour one label whatever the item (a spammer who always says "yes"). So
    ``confusion_a[t, l] = (1 - theta_a) [t == l] + theta_a xi_a[t, l]``: one number for how good
    an annotator is, and the crowd's habits for what a guess looks like.

    Shrinkage: each annotator's ``theta_a`` and ``xi_a[t]`` are posterior means under a Beta /
    Dirichlet prior worth ``strength`` answers and centred on the average annotator (each counts
    once), so an annotator with a few answers is judged mostly as a typical member of the crowd
    and one with hundreds mostly on their own record. EM runs 10 iterations from two starts (the
    soft majority vote, and Dawid-Skene's posteriors), goes on from the one whose fit explains the
    answers better, and stops when the log-likelihood per answer changes by less than ``tol`` (1e-4
    stopped some simulated two-label crowds after 3 iterations, a point of accuracy short), or after
    ``max_iter`` iterations. Deterministic; numpy only.

    The model learns from items with two or more answers and from ``gold`` items (item -> label,
    pinned to that label throughout, with or without answers): an item with one answer says
    nothing about who is right. Every item with answers then gets the label with the highest
    posterior among the labels it was given (one answer is taken as it is; posteriors within 1e-9
    of each other are broken by vote count, then by label order), ``tie`` when the top vote count
    is shared; a gold item gets its gold label with confidence 1.0.
    """
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}.")
    if not strength > 0:
        raise ValueError(f"strength must be positive, got {strength}.")
    gold, enc = _encoded_with_gold(answers, labels, gold)
    k = enc.n_classes
    if enc.n_items == 0 or k == 0:
        return CrowdModelResult({}, {}, {}, {}, {c: 1.0 / k for c in enc.classes}, enc.classes, (),
                                np.zeros((0, k)), 0, True)  # fmt: skip

    counts = enc.vote_counts()
    n_votes = counts.sum(axis=1)
    gold_rows = np.array([enc.item_index[item] for item in gold], dtype=np.intp)
    gold_post = np.zeros((len(gold_rows), k))
    gold_post[np.arange(len(gold_rows)), [enc.class_index[label] for label in gold.values()]] = 1.0
    is_fitted = n_votes >= 2
    is_fitted[gold_rows] = True
    fitted = np.flatnonzero(is_fitted)
    learn_rows = np.flatnonzero(is_fitted[enc.item])
    free = np.setdiff1d(fitted, gold_rows)  # gold items keep their pinned posteriors
    on_gold = np.isin(enc.item[learn_rows], gold_rows)
    free_answers = _Grouped(enc.item, learn_rows[~on_gold])
    gold_answers = learn_rows[on_gold]
    gold_class = np.full(enc.n_items, -1, dtype=np.intp)
    gold_class[gold_rows] = gold_post.argmax(axis=1)

    def start(post: np.ndarray) -> _Run:
        run = _Run(_Mace(enc, learn_rows, strength), post.copy())
        run.post[gold_rows] = gold_post
        return run

    def advance(run: _Run, until: int) -> _Run:
        """EM iterations until convergence or ``until`` iterations in all."""
        while not run.converged and run.n_iter < until:
            run.n_iter += 1
            run.model.m_step(run.post, fitted)
            log_lik = run.model.e_step(run.post, free, free_answers)
            run.converged = abs(log_lik - run.log_lik) < tol * len(learn_rows)
            run.log_lik = log_lik
        return run

    def explained(run: _Run) -> float:
        """Log-likelihood of all the answers learnt from (those on gold items given their gold label)."""
        on_gold = run.model.confusion[enc.annotator[gold_answers], gold_class[enc.item[gold_answers]],
                                      enc.label[gold_answers]]  # fmt: skip
        return run.log_lik + float(np.sum(np.log(on_gold)))

    # EM finds a local optimum, and which one depends on the start. Two starts: the soft majority
    # vote, and Dawid-Skene's posteriors (which escape a majority of spammers who all give one
    # answer, where the majority start stays). After a few iterations the one that explains the
    # answers better goes on (the first on a tie); the other is dropped.
    post = np.divide(counts, n_votes[:, None], out=np.full_like(counts, 1.0 / k), where=n_votes[:, None] > 0)
    best = _Run(_Mace(enc, learn_rows, strength), post, converged=True)
    if len(learn_rows):
        ds_post = _dawid_skene_em(enc.subset(learn_rows), gold, _PROBE_ITERATIONS, tol, smoothing=0.01)[0]
        runs = [advance(start(post), _PROBE_ITERATIONS), advance(start(ds_post), _PROBE_ITERATIONS)]
        best = advance(max(runs, key=explained), max_iter)
        best.model.m_step(best.post, fitted)  # parameters consistent with the final posteriors
    model, post, n_iter, converged = best.model, best.post, best.n_iter, best.converged
    # Items the model did not learn from (one answer, no gold) get their posteriors from it now.
    single = np.flatnonzero(~is_fitted)
    if len(single):
        model.e_step(post, single, _Grouped(enc.item, np.flatnonzero(~is_fitted[enc.item])))
        if not model.answered.any():
            post[single] = counts[single] / n_votes[single, None]  # nobody overlaps: the answer's share

    labels_out = _crowd_labels(enc, post, counts, gold)
    confusion = model.confusion
    accuracy = np.einsum("k,akk->a", model.priors, confusion)
    known = [(j, a) for j, a in enumerate(enc.annotators) if model.answered[j]]
    return CrowdModelResult(
        labels=labels_out,
        annotator_accuracy={a: float(accuracy[j]) for j, a in known},
        competence={a: float(model.known[j]) for j, a in known},
        confusion={a: confusion[j].copy() for j, a in known},
        priors={c: float(model.priors[i]) for i, c in enumerate(enc.classes)},
        classes=enc.classes,
        items=enc.items,
        posteriors=post,
        n_iter=n_iter,
        converged=converged,
    )


def _crowd_labels(
    enc: EncodedAnswers, post: np.ndarray, counts: np.ndarray, gold: Mapping[Hashable, str]
) -> dict[Hashable, AggregateLabel]:
    """The tie contract: a label for every item, ``tie`` from the vote counts, gold wins."""
    result: dict[Hashable, AggregateLabel] = {}
    n_votes = counts.sum(axis=1)
    # Only labels somebody gave compete; an exact tie of posteriors goes to more votes, then label order.
    scores = np.where(counts > 0, post, -1.0)
    top = scores.max(axis=1, keepdims=True)
    near = scores >= top * (1.0 - _TIE_TOLERANCE)
    chosen = np.argmax(np.where(near, counts, -1.0), axis=1)
    top_votes = counts.max(axis=1)
    n_top = np.count_nonzero(counts == top_votes[:, None], axis=1)
    for i, item in enumerate(enc.items):
        n = int(n_votes[i])
        if item in gold:
            c = enc.class_index[gold[item]]
            agreement = float(counts[i, c] / n) if n else float("nan")
            result[item] = AggregateLabel(label=gold[item], confidence=1.0, n_answers=n, tie=False,
                                          agreement=agreement)  # fmt: skip
            continue
        c = int(chosen[i])
        result[item] = AggregateLabel(
            label=enc.classes[c],
            confidence=float(post[i, c]),
            n_answers=n,
            tie=bool(n_top[i] > 1),
            agreement=float(counts[i, c] / n),
        )
    return result


def aggregate(
    answers: Iterable[Answer],
    labels: Sequence[str] | None = None,
    *,
    answers_per_record: int,
    gold: Mapping[Hashable, str] | None = None,
) -> dict[Hashable, AggregateLabel]:
    """The project's rule: :func:`hierarchical_mace` for any number of answers per record.

    Every item with an answer or a gold label gets a label; ``tie`` marks a crowd split evenly
    (see :class:`AggregateLabel`). ``gold`` (an admin's review decisions) wins: those items get
    the gold label with confidence 1.0 and ``tie=False``, even without answers, and teach the
    model who answers well. ``answers_per_record`` is validated only: every answer counts,
    however many an item has.
    """
    if answers_per_record < 1:
        raise ValueError(f"answers_per_record must be at least 1, got {answers_per_record}.")
    if labels is not None:
        unknown = sorted(set((gold or {}).values()) - set(labels))
        if unknown:
            raise UnknownLabel(f"Gold labels not in the label set {list(labels)}: {unknown}.")
    return hierarchical_mace(answers, labels, gold=gold).labels
