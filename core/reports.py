"""Reports: project status (progress, per-label counts, annotators, agreement), export rows, the review
queue. Pure functions over what the facade read in one snapshot; nothing here touches the database.

Counts, agreement and the labels shown cover complete records only: a partial aggregate would reveal
others' answers to someone still due to answer the record.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.model_selection import KFold

from core import aggregate as agg
from core import gold as core_gold
from core import multilabel
from core import review as rv
from core.agreement import cohen_kappa_pairs, krippendorff_alpha_nominal
from core.answers import active
from core.learner import EmbeddingClassifier, out_of_fold_proba, singleton_rows
from core.multilabel_learner import MultiLabelClassifier
from core.training import aggregate_answers
from core.types import AnnotatorStats, ModelRunInfo, PairAgreement, ProjectInfo, ProjectStatus, ReviewItem

EXPORT_COLUMNS = (
    "id", "text", "label", "n_annotations", "agreement", "tie", "predicted_label", "probability",
)  # fmt: skip

Guess = Callable[[int], "tuple[str, float] | None"]


def status(
    info: ProjectInfo,
    *,
    total: int,
    remaining: int,
    complete: set[int],
    answers: Sequence[tuple],
    latest_run: ModelRunInfo | None,
    min_kappa_overlap: int,
) -> ProjectStatus:
    """``answers``: (record, annotator, label, source, shown_at, created_at) rows."""
    answers = active(info, answers)
    finals = {rid: f for rid, f in aggregate_answers(info, list(answers)).items() if rid in complete}
    label_counts = {name: 0 for name in info.label_names}
    for final in finals.values():
        # A multi-label record counts once for each label of its set.
        for name in multilabel.split(final.label) if info.multi_label else [final.label]:
            if name is not None:
                label_counts[name] = label_counts.get(name, 0) + 1
    triples = [(rid, who, label) for rid, who, label, source, *_ in answers if source != "review"]
    per_user: dict[str, list[Any]] = defaultdict(list)
    for rid, who, label, source, shown_at, created_at in answers:
        per_user[who].append((rid, label, shown_at, created_at, source))
    gold = {rid: label for rid, _, label, source, *_ in answers if source == "review"}
    # A gold question is an answer given after the record had its gold label: earlier answers on a
    # record an admin then reviewed were part of the dispute, not a test.
    gold_since = {rid: created_at for rid, _, _, source, _, created_at in answers if source == "review"}
    estimated = {}
    if info.answers_per_record >= 3 and triples:
        # Answers on gold records (gold questions, reviewed records) count against the gold label.
        estimated = (
            multilabel_accuracy(info, triples, gold) if info.multi_label
            else agg.hierarchical_mace(triples, labels=info.label_names, gold=gold).annotator_accuracy
        )
    annotators = []
    for who, items in per_user.items():
        gold_questions = [
            (label, gold[rid])
            for rid, label, _, created_at, src in items
            if src != "review" and rid in gold and created_at > gold_since[rid]
        ]
        on_gold = [label == truth for label, truth in gold_questions]  # multi-label: the whole set
        label_accuracy = None
        if info.multi_label and gold_questions:  # and per label, each a yes/no question
            decided = [core_gold.label_decisions(info.label_names, a, t) for a, t in gold_questions]
            label_accuracy = sum(r for r, _ in decided) / max(1, sum(n for _, n in decided))
        seconds = [(c - s).total_seconds() for _, _, s, c, _ in items if s is not None and c >= s]
        # A gold decision agrees with the aggregate by definition, and a tie's label sides with half
        # the crowd until an admin decides: leave both out of agreement.
        scored = [
            (rid, label)
            for rid, label, _, _, source in items
            if source != "review" and finals.get(rid) and finals[rid].label and not finals[rid].tie
        ]
        agreement = sum(label == finals[rid].label for rid, label in scored) / len(scored) if scored else None
        annotators.append(
            AnnotatorStats(
                user=who,
                answers=len(items),
                median_seconds=statistics.median(seconds) if seconds else None,
                agreement=agreement,
                estimated_accuracy=estimated.get(who),
                gold_answers=len(on_gold),
                gold_correct=sum(on_gold),
                gold_label_accuracy=label_accuracy,
            )
        )
    annotators.sort(key=lambda a: (-a.answers, a.user))
    finished = [t for t in triples if t[0] in complete]
    overall: dict[str, float] = {}
    if info.multi_label:  # each label a yes/no question, then the mean over labels
        alpha, per_pair = multilabel.agreement_per_label(info, finished, min_kappa_overlap)
    else:
        alpha = krippendorff_alpha_nominal(finished) if finished else None
    if alpha is not None:
        overall["krippendorff_alpha"] = float(alpha)
    # Gold records are never ties: these are the ones still waiting in the review queue.
    ties = sum(1 for f in finals.values() if f.tie)
    return ProjectStatus(
        project=info.name,
        total=total,
        labeled=sum(1 for f in finals.values() if f.label is not None),
        annotations=len(answers),
        label_counts=label_counts,
        annotators=tuple(annotators),
        latest_run=latest_run,
        remaining=remaining,
        agreement=overall,
        pairs=_ordered_pairs(per_pair) if info.multi_label else pair_agreement(finished, min_kappa_overlap),
        ties=ties,
        multi_label=info.multi_label,
    )


def multilabel_accuracy(
    info: ProjectInfo, triples: Sequence[tuple], gold: dict[int, str]
) -> dict[str, float]:
    """Each annotator's estimated accuracy in a multi-label project: hierarchical MACE on each label's yes/no
    question (gold sets as yes/no gold, as ``multilabel.aggregate`` does), then the mean over labels."""
    per_label: dict[str, list[float]] = defaultdict(list)
    for label in info.label_names:
        estimated = agg.hierarchical_mace(
            [(rid, who, multilabel.yes_no(text, label)) for rid, who, text in triples],
            labels=("no", "yes"),
            gold={rid: multilabel.yes_no(text, label) for rid, text in gold.items()},
        ).annotator_accuracy
        for who, accuracy in estimated.items():
            per_label[who].append(accuracy)
    return {who: sum(values) / len(values) for who, values in per_label.items()}


def pair_agreement(triples: Sequence[tuple[int, str, str]], min_overlap: int) -> tuple[PairAgreement, ...]:
    """Cohen's kappa per annotator pair with enough overlap, the largest overlaps first."""
    if not triples:
        return ()
    return _ordered_pairs(cohen_kappa_pairs(triples, min_overlap=min_overlap))


def _ordered_pairs(pairs: dict[tuple[Any, Any], tuple[float, int]]) -> tuple[PairAgreement, ...]:
    ordered = sorted(pairs.items(), key=lambda kv: (-kv[1][1], str(kv[0][0]), str(kv[0][1])))
    return tuple(PairAgreement(str(a), str(b), float(kappa), n) for (a, b), (kappa, n) in ordered)


def export_rows(
    info: ProjectInfo, records: Sequence[tuple], answers: list[tuple], guess: Guess
) -> list[dict[str, Any]]:
    """One row per record; ``records``: (id, external id, text, n answers, complete).

    Only complete records carry a label: the export is uploaded to a channel, where a partial
    aggregate would show labelers the answers of others they have yet to match. A tie carries the
    aggregate's label with ``tie`` true (until an admin's gold label); ``agreement`` is the share of
    answers equal to the label (empty for a gold label without answers).
    """
    finals = aggregate_answers(info, answers)
    rows = []
    for rid, eid, text, n_answers, complete in records:
        final = finals.get(rid) if complete else None
        g = guess(rid)
        rows.append(
            {
                "id": eid,
                "text": text,
                "label": final.label if final else None,
                "n_annotations": n_answers,
                "agreement": round(final.agreement, 4) if final and not math.isnan(final.agreement) else None,
                "tie": final.tie if final else None,
                "predicted_label": g[0] if g else None,
                "probability": round(g[1], 4) if g else None,
            }
        )
    return rows


def review_candidates(
    info: ProjectInfo,
    answers: list[tuple],
    complete: set[int],
    guess: Guess,
    pool_ids: np.ndarray,
    vectors: np.ndarray,
    limit: int,
) -> list[tuple[int, str, str, str | None, tuple[tuple[str, str], ...], str | None, float | None]]:
    """Complete records an admin should decide, most urgent first; never one with a gold label.

    In this order: ties (the crowd split evenly; the aggregate's label, chosen by annotator quality,
    stands and is trained on until an admin decides), records whose chosen label has no
    majority of the answers (``core.review.LOW_AGREEMENT``), likely mislabels found by confident
    learning on out-of-fold probabilities (``core.review.find_label_issues``; in a multi-label project
    per label, naming the labels, ``core.review.find_label_issues_per_label``), and records whose
    aggregate the latest model contradicts with probability >= ``core.review.MODEL_CONFIDENCE``.
    Returns (record id, kind, reason, label, answers, suggested label, its probability).
    """
    answers = active(info, answers)
    gold = {row[0] for row in answers if row[3] == "review"}
    finals = aggregate_answers(info, answers)
    crowd: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for rid, who, label, source, *_ in answers:
        if source != "review":  # a set shows its active labels (core.labelset.retire)
            shown_label = multilabel.without(label, info.retired_labels) if info.multi_label else label
            crowd[rid].append((who, shown_label))
    found: dict[int, tuple[tuple[float, ...], str, str, str | None, float | None]] = {}
    sep = "; " if info.multi_label else ", "  # a set reads "billing, urgent": ";" between answers

    def shown(label: str | None) -> str:
        if not info.multi_label:
            return str(label)
        return ", ".join(multilabel.split(label)) or "none of these"

    for rid in sorted(complete - gold):
        final = finals.get(rid)
        votes = [label for _, label in crowd.get(rid, [])]
        if final is None or len(votes) < 2:
            continue
        split = sep.join(f"{shown(label)} {n}" for label, n in Counter(votes).most_common())
        if final.tie:
            # A multi-label record is a tie when any label's yes/no is: name the labels split evenly.
            even = [
                name for name in info.label_names
                if info.multi_label and 2 * sum(name in multilabel.split(v) for v in votes) == len(votes)
            ]
            reason = f"The answers are split{' on ' + ', '.join(even) if even else ''} ({split})."
            if final.label is not None:
                reason += f" Annotator quality chose {shown(final.label)} until you decide."
            found[rid] = ((0, rid), "tie", reason, *(guess(rid) or (None, None)))
        elif final.agreement <= rv.LOW_AGREEMENT:
            reason = (
                f"No majority: {shown(final.label)} got {final.agreement:.0%} of {len(votes)} answers "
                f"({split})."
            )
            found[rid] = (
                (1, final.agreement, final.confidence, rid),
                "low_agreement",
                reason,
                *(guess(rid) or (None, None)),
            )
    issues = (
        label_issues_per_label(info, finals, complete, pool_ids, vectors) if info.multi_label
        else label_issues(finals, complete, pool_ids, vectors)
    )
    for rid, suggested, proba, *why in issues:
        if rid in found or rid in gold:
            continue
        reason = f"Likely mislabel: {why[0]}." if why else (
            f"Likely mislabel: labeled {shown(finals[rid].label)}, but a model trained without this record "
            f"says {shown(suggested)} ({proba:.0%})."
        )
        found[rid] = ((2, -proba, rid), "label_issue", reason, suggested, proba)
    for rid in sorted(complete - gold - set(found)):
        final, g = finals.get(rid), guess(rid)
        if final is None or final.label is None or g is None:
            continue
        if g[0] != final.label and g[1] >= rv.MODEL_CONFIDENCE:
            reason = (
                f"The model is {g[1]:.0%} sure this is {shown(g[0])}; the answers say {shown(final.label)}."
            )
            found[rid] = ((3, -g[1], rid), "model_disagrees", reason, g[0], g[1])
    chosen = sorted(found.items(), key=lambda kv: kv[1][0])[:limit]
    return [
        (rid, kind, reason, finals[rid].label, tuple(crowd.get(rid, [])), suggested, proba)
        for rid, (_, kind, reason, suggested, proba) in chosen
    ]


def review_items(
    candidates: list[tuple], texts: dict[int, tuple[str, str, bool]], project: str
) -> list[ReviewItem]:
    return [
        ReviewItem(
            project=project,
            record_id=rid,
            external_id=texts[rid][0],
            text=texts[rid][1],
            kind=kind,
            reason=reason,
            label=label,
            answers=answers,
            suggested_label=suggested,
            confidence=proba,
        )
        for rid, kind, reason, label, answers, suggested, proba in candidates
    ]


def label_issues(
    finals: dict[int, agg.AggregateLabel], complete: set[int], pool_ids: np.ndarray, vectors: np.ndarray
) -> list[tuple[int, str, float]]:
    """(record id, the class the out-of-fold model prefers, its probability) per likely mislabel."""
    rows, ids, y = [], [], []
    for row, rid in enumerate(pool_ids.tolist()):
        final = finals.get(rid) if rid in complete else None
        if final is not None and final.label is not None:
            rows.append(row)
            ids.append(rid)
            y.append(final.label)
    y_arr = np.asarray(y, dtype=object)
    if len(y) < 10 or len(set(y)) < 2:
        return []
    try:
        proba = out_of_fold_proba(
            vectors[np.asarray(rows, dtype=np.int64)],
            y_arr,
            estimator_factory=lambda: EmbeddingClassifier(random_state=0),
        )
    except ValueError:  # no label has two examples yet
        return []
    classes = np.unique(y_arr)
    given = np.searchsorted(classes, y_arr)
    singles = singleton_rows(y_arr)  # never held out: their probabilities are in-sample
    return [
        (ids[i], str(classes[proba[i].argmax()]), float(proba[i].max()))
        for i in rv.find_label_issues(given, proba)
        if not singles[i]
    ]


def label_issues_per_label(
    info: ProjectInfo,
    finals: dict[int, agg.AggregateLabel],
    complete: set[int],
    pool_ids: np.ndarray,
    vectors: np.ndarray,
    n_splits: int = 5,
) -> list[tuple[int, str, float, str]]:
    """Multi-label: (record id, its final set with the suspect labels flipped, the model's probability of
    the most suspect flip, a reason naming the labels) per likely mislabel, from out-of-fold one-vs-rest
    probabilities (k-fold: a set is no class to stratify by)."""
    rows, ids, sets = [], [], []
    for row, rid in enumerate(pool_ids.tolist()):
        final = finals.get(rid) if rid in complete else None
        if final is not None and final.label is not None:
            rows.append(row)
            ids.append(rid)
            sets.append(final.label)
    labels = info.label_names
    if len(sets) < 10:
        return []
    X = vectors[np.asarray(rows, dtype=np.int64)]
    given = np.asarray(multilabel.indicator(sets, labels), dtype=np.int8)
    proba = np.zeros(given.shape, dtype=np.float64)
    folds = KFold(n_splits=min(n_splits, len(sets)), shuffle=True, random_state=0)
    for train, test in folds.split(X):
        # Unweighted: "balanced" weights (the learner's, for rare labels' recall) lift a label's probability
        # on records without it, and flag them (bench/mislabel_multilabel.py: top-20 precision 0.12 -> 0.25).
        model = MultiLabelClassifier(labels=labels, class_weight=None, random_state=0)
        model.fit(X[train], given[train])
        proba[test] = model.predict_proba(X[test])
    out = []
    for i, suspects in rv.find_label_issues_per_label(given, proba).items():
        flipped = [name for j, name in enumerate(labels) if given[i, j] != (j in suspects)]
        parts = [
            f"{labels[j]!r} is {'in' if given[i, j] else 'not in'} the set, but a model trained without "
            f"this record gives it {proba[i, j]:.2f}" if n == 0 else
            f"{labels[j]!r} is {'in' if given[i, j] else 'not in'} the set ({proba[i, j]:.2f})"
            for n, j in enumerate(suspects)
        ]
        first = suspects[0]
        sure = float(proba[i, first] if not given[i, first] else 1.0 - proba[i, first])
        out.append((ids[i], multilabel.SEPARATOR.join(flipped), sure, "; ".join(parts)))
    return out


def final_labels(info: ProjectInfo, answers: list[tuple], complete: dict[int, str]) -> dict[str, str]:
    """External id → aggregate label for complete records; ``complete``: record id → external id."""
    finals = aggregate_answers(info, answers)
    return {complete[rid]: f.label for rid, f in finals.items() if f.label is not None and rid in complete}
