"""Rules in the model's predictions: every rule matching a record is a vote for its label, weighed by the
rule's estimated precision, and multiplied into the classifier's probabilities (a product of experts).

A rule right a share ``q`` of the time among ``K`` labels says its label is ``q (K - 1) / (1 - q)`` times as
likely as any other; its vote multiplies that label's probability by this ratio raised to ``strength`` and
the row is normalised again. Tempered (``strength`` < 1) because a rule and the classifier read the same
words, so their evidence is not independent: at 0.25 rules read from a sample of the data gained 1-7
points of accuracy at 50-100 labels on Banking77 and HWU64, and rules written from the label names alone
(right a third of the time) lost nothing, where 0.5 and 1 lost up to 8 points (docs/benchmarks.md, "Rules
in the model's predictions"). A rule never answers a record and never trains the classifier: the votes
change the guesses (cards, export, Show similar) and the test predictions of a simulation; the ranking
reads the classifier's own uncertainty, since that is what a label teaches (ranking on the voted
probabilities did no better).

In a multi-label project each label is a yes/no of its own: a rule adds ``strength · (logit(q) -
logit(base rate))`` to its label's log-odds, the base rate being the label's share of the labeled sets.

The votes are fitted with the classifier (``classifier.rule_votes_``, pickled with its run), so every
process that loads the run scores the pool the same way without evaluating rules itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from core import rules
from core.learner import POOL_BLOCK, EmbeddingClassifier, PoolScores
from core.multilabel_learner import MultiLabelClassifier, MultiLabelScores, SetNames
from core.types import RuleInfo

Classifier = EmbeddingClassifier | MultiLabelClassifier

#: A rule's precision is shrunk toward PRIOR_PRECISION as if it had PRIOR_STRENGTH labeled matches more,
#: so a rule with few labeled matches is neither trusted nor dismissed on them.
PRIOR_PRECISION, PRIOR_STRENGTH = 0.7, 5
#: Precisions are clipped to at most this: a rule right on all of its few labeled matches is not certain.
MAX_PRECISION = 0.99


@dataclass(frozen=True)
class WeightedRule:
    kind: str
    pattern: str
    label: str
    log_odds: float  # added to its label's logit on every record it matches


@dataclass(frozen=True)
class RuleVoting:
    """What a retrain needs from the project's rules: the weighted rules and the records each matches."""

    rules: tuple[WeightedRule, ...]
    matched: tuple[frozenset[int], ...]  # per rule, the record ids it matches
    seed_cold_start: bool = False  # half of a cold start's first batch: rule-matched records


@dataclass(frozen=True)
class RuleVotes:
    """The votes fitted with a classifier: its ``classes`` (a multi-label classifier's: its labels, each a
    yes/no) and each matched record's bias over them."""

    rules: tuple[WeightedRule, ...]
    classes: tuple[str, ...]
    record_ids: np.ndarray  # sorted, unique
    bias: sparse.csr_matrix  # (len(record_ids), len(classes)): log-odds added to the logits
    multi_label: bool = False

    def rows_of(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions in ``ids`` of voted records, and their rows of ``bias``."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(self.record_ids) == 0 or len(ids) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        at = np.minimum(np.searchsorted(self.record_ids, ids), len(self.record_ids) - 1)
        hit = self.record_ids[at] == ids
        return np.flatnonzero(hit), at[hit]


def shrunk_precision(rule: RuleInfo) -> float:
    return (rule.agreeing + PRIOR_PRECISION * PRIOR_STRENGTH) / (rule.labeled + PRIOR_STRENGTH)


def log_odds(precision: float, n_labels: int, strength: float) -> float:
    """``strength · log(q (K - 1) / (1 - q))``; never below 0 (a rule no better than chance says nothing)."""
    if n_labels < 2 or strength <= 0:
        return 0.0
    q = min(max(precision, 1.0 / n_labels), MAX_PRECISION)
    return float(strength * np.log(q * (n_labels - 1) / (1.0 - q)))


def label_log_odds(precision: float, base_rate: float, strength: float) -> float:
    """A multi-label rule's vote on its label's yes/no: ``strength · (logit(q) - logit(base rate))``, the
    log of how much likelier the label is where the rule fires than anywhere; never below 0."""
    if strength <= 0:
        return 0.0
    q = min(max(precision, 1e-6), MAX_PRECISION)
    base = min(max(base_rate, 1e-6), MAX_PRECISION)
    return float(strength * max(0.0, np.log(q / (1 - q)) - np.log(base / (1 - base))))


def voting(
    stats: Sequence[RuleInfo],
    evaluations: dict[int, rules.Evaluation],
    label_names: Sequence[str],
    strength: float,
    *,
    seed_cold_start: bool = False,
    base_rates: Mapping[str, float] | None = None,
) -> RuleVoting | None:
    """The rules of labels still in the set that did not time out, each weighed by its precision on the
    labels so far shrunk toward ``PRIOR_PRECISION``; None without any. ``base_rates`` (a multi-label
    project's: each label's share of the labeled sets) weigh a rule against its label's base rate."""
    weighted, matched = [], []
    for rule in stats:
        evaluation = evaluations.get(rule.id)
        if evaluation is None or evaluation.timed_out or rule.label not in label_names:
            continue
        precision = shrunk_precision(rule)
        weight = (
            log_odds(precision, len(label_names), strength) if base_rates is None
            else label_log_odds(precision, base_rates.get(rule.label, 0.5), strength)
        )
        if weight > 0 and evaluation.matched:
            weighted.append(WeightedRule(rule.kind, rule.pattern, rule.label, weight))
            matched.append(evaluation.matched)
    return RuleVoting(tuple(weighted), tuple(matched), seed_cold_start) if weighted else None


def fit_votes(spec: RuleVoting, classifier: Classifier) -> RuleVotes:
    """The votes over a fitted classifier's classes, or a multi-label classifier's labels (a rule of a
    class it does not know is left out)."""
    multi_label = isinstance(classifier.classes_, SetNames)
    classes = tuple(classifier.classes_.labels) if multi_label else tuple(str(c) for c in classifier.classes_)
    column = {str(c): i for i, c in enumerate(classes)}
    ids: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    data: list[np.ndarray] = []
    for rule, found in zip(spec.rules, spec.matched, strict=True):
        if rule.label in column and found:
            hit = np.fromiter(found, dtype=np.int64, count=len(found))
            ids.append(hit)
            cols.append(np.full(len(hit), column[rule.label], dtype=np.int64))
            data.append(np.full(len(hit), rule.log_odds))
    all_ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    record_ids, rows = np.unique(all_ids, return_inverse=True)
    bias = sparse.coo_matrix(  # duplicates (two rules of one label on a record) add up
        (np.concatenate(data) if data else np.zeros(0), (rows, np.concatenate(cols) if cols else rows)),
        shape=(len(record_ids), len(classes)),
    ).tocsr()
    kept = tuple(rule for rule in spec.rules if rule.label in column)
    return RuleVotes(kept, classes, record_ids, bias, multi_label)


def votes_of(classifier: object) -> RuleVotes | None:
    return getattr(classifier, "rule_votes_", None)


def _voted(votes: RuleVotes, proba: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Probabilities with the votes' log-odds added: to each label's own yes/no logit in a multi-label
    model, else to the class's logit and normalised over the classes."""
    if votes.multi_label:
        p = np.clip(proba, 1e-7, 1 - 1e-7)
        return 1.0 / (1.0 + np.exp(-(np.log(p / (1 - p)) + bias)))
    out = proba * np.exp(bias)
    out /= out.sum(axis=1, keepdims=True)
    return out


def _summary(votes: RuleVotes, proba: np.ndarray, dtype: np.dtype) -> PoolScores:
    if votes.multi_label:
        return MultiLabelScores.from_label_proba(proba)
    return PoolScores.from_proba(proba.astype(dtype))


def score_pool(
    classifier: Classifier, vectors: np.ndarray, ids: np.ndarray, **scoring: int
) -> PoolScores:
    """``classifier.score_pool(vectors)`` with the votes (``ids``: the record id of each row; ``scoring``:
    ``score_pool``'s block_rows and threads)."""
    return with_votes(classifier, vectors, ids, classifier.score_pool(vectors, **scoring))


def with_votes(
    classifier: Classifier, vectors: np.ndarray, ids: np.ndarray, scores: PoolScores
) -> PoolScores:
    """``scores`` (the classifier's own, left as they are) with the rows of voted records scored again
    with their votes; ``scores`` itself without votes."""
    votes = votes_of(classifier)
    if votes is None:
        return scores
    rows, bias_rows = votes.rows_of(ids)
    if len(rows) == 0:
        return scores
    # Every per-row array of the scores (a multi-label model's carry more), copied, then voted rows redone.
    per_row = [f.name for f in dataclasses.fields(scores) if isinstance(getattr(scores, f.name), np.ndarray)]
    out = dataclasses.replace(scores, **{name: getattr(scores, name).copy() for name in per_row})
    for start in range(0, len(rows), POOL_BLOCK):
        block, block_bias = rows[start : start + POOL_BLOCK], bias_rows[start : start + POOL_BLOCK]
        proba = _voted(votes, classifier.predict_proba(vectors[block]), votes.bias[block_bias].toarray())
        voted = _summary(votes, proba, out.top_proba.dtype)
        for name in per_row:
            getattr(out, name)[block] = getattr(voted, name)
    return out


def predict(classifier: Classifier, X: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    """Labels of texts that are not records (a simulation's test set): the votes' rules run on ``texts``."""
    votes = votes_of(classifier)
    if votes is None:
        return classifier.predict(X)
    proba = classifier.predict_proba(X)
    if votes.rules:
        column = {c: i for i, c in enumerate(votes.classes)}
        bias = np.zeros_like(proba)
        for rule in votes.rules:
            if rule.label in column:
                pattern = rules.compiled(rule.kind, rule.pattern)
                hit = [i for i, text in enumerate(texts) if rules.matches(pattern, text)]
                bias[hit, column[rule.label]] += rule.log_odds
        proba = _voted(votes, proba, bias)
    if votes.multi_label:
        return np.array([classifier.classes_[m] for m in MultiLabelScores.from_label_proba(proba).best],
                        dtype=object)
    return np.asarray(classifier.classes_)[np.argmax(proba, axis=1)]


def cold_start_rows(
    spec: RuleVoting, pool_ids: np.ndarray, candidates: np.ndarray, label_names: Collection[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Before any model: the candidate rows some rule matches and the label of their strongest vote
    (records whose rules disagree are left out), for the first batch (:func:`seed_rows`)."""
    best: dict[int, tuple[float, str]] = {}
    clashing: set[int] = set()
    for rule, found in zip(spec.rules, spec.matched, strict=True):
        if rule.label not in label_names:
            continue
        for rid in found:
            if rid in best and best[rid][1] != rule.label:
                clashing.add(rid)
            elif rid not in best or best[rid][0] < rule.log_odds:
                best[rid] = (rule.log_odds, rule.label)
    ids = np.asarray(pool_ids)[candidates]
    keep = [i for i, rid in enumerate(ids.tolist()) if rid in best and rid not in clashing]
    rows = np.asarray(candidates)[keep]
    labels = np.asarray([best[int(ids[i])][1] for i in keep], dtype=object)
    return rows.astype(np.int64), labels


def seed_rows(
    rows: np.ndarray, labels: np.ndarray, n: int, rng: np.random.Generator
) -> list[tuple[int, str]]:
    """Up to ``n`` of the rule-matched ``rows``, spread over their labels (one of each label in turn, in a
    random order): the first batch of a cold start."""
    by_label: dict[str, list[int]] = {}
    for i in rng.permutation(len(rows)).tolist():
        by_label.setdefault(str(labels[i]), []).append(int(rows[i]))
    order = sorted(by_label, key=lambda label: rng.random())
    out: list[tuple[int, str]] = []
    while len(out) < n and any(by_label.values()):
        for label in order:
            if by_label[label] and len(out) < n:
                out.append((by_label[label].pop(), label))
    return out
