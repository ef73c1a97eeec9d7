"""Training: the embeddings pool in memory, the latest model's guesses, and a retrain — fit on the
aggregate labels, rank the pool with the project's strategy, and swap the ranked queue atomically.

A retrain has a critical path (labels → fit → predict → rank → one transaction writing the run and the
new queue) and a tail that does not change the ranked queue (the gold questions' rows, from a second fit
without their gold labels; cross-validated metrics, the next C and prediction stability, written onto
the run afterwards): labelers get the new ranking as soon as it exists.
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Connection, Engine, delete, insert, select, update

from core import aggregate as agg
from core import handout, multilabel, rule_votes, stopping
from core.answers import active
from core.gold import held_out_queue_rows
from core.learner import EmbeddingClassifier, PoolScores, choose_c, cross_validated_metrics
from core.models import ModelRun, ModelRunReport, QueueItem, utcnow
from core.multilabel_learner import multilabel_cv_metrics
from core.pools import Guesses, Pool, PoolCache, guess_table
from core.projects import ProjectCatalog, ProjectState
from core.store import reading, writing
from core.strategies import Pick, get_strategy
from core.types import ModelRunInfo, ProjectInfo

log = logging.getLogger(__name__)


def aggregate_answers(info: ProjectInfo, answers: list[tuple]) -> dict[int, agg.AggregateLabel]:
    """The final label per record from (record, annotator, label, source, ...) rows; gold wins.

    Every answer counts, however many a record has beside the project's k. A tie carries the
    aggregate's best label (and ``tie``), so it trains like any complete record until an admin decides.
    """
    answers = active(info, answers)
    gold = {row[0]: row[2] for row in answers if row[3] == "review"}
    triples = [(row[0], row[1], row[2]) for row in answers if row[3] != "review"]
    if info.multi_label:  # each label a yes/no question through the same aggregator
        return multilabel.aggregate(info, triples, gold)
    return agg.aggregate(triples, info.label_names, answers_per_record=info.answers_per_record, gold=gold)


def training_rows(
    pool: Pool, finals: dict[int, agg.AggregateLabel], complete: set[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pool rows and labels a retrain trains on, and the rows still needing answers.

    Only complete records train: a partial aggregate would leak into the guess shown to the next
    labeler of that very record (others' answers stay hidden until complete). Rows come in pool
    order; vectorised, as a Python loop over a 1M pool took ~0.3 s.
    """
    done = np.isin(pool.ids, np.fromiter(complete, dtype=np.int64, count=len(complete)))
    rows, y = [], []
    for row, rid in zip(np.flatnonzero(done).tolist(), pool.ids[done].tolist(), strict=True):
        final = finals.get(rid)
        if final is not None and final.label is not None:
            rows.append(row)
            y.append(final.label)
    return np.asarray(rows, dtype=np.int64), np.asarray(y, dtype=object), np.flatnonzero(~done)


@dataclass(frozen=True)
class Trained:
    """What a retrain produced: the run (None below two classes), its guesses and the metrics tail."""

    run: ModelRunInfo | None
    guesses: Guesses | None
    fingerprint: str


def retrain(
    engine: Engine,
    catalog: ProjectCatalog,
    pools: PoolCache,
    state: ProjectState,
    *,
    queue_size: int,
    batch_size: int,
    embedding_model: str,
    labels: tuple[list[tuple], set[int], str],
    learner: Callable[..., EmbeddingClassifier] = EmbeddingClassifier,
    rule_voting: rule_votes.RuleVoting | None = None,
) -> Trained:
    """Fit, rank, swap the queue; then compute the metrics that do not change the queue.

    ``rule_voting``: the project's rules as votes in the model's predictions (``core.rule_votes``), fitted
    with the classifier and pickled with it; with its ``seed_cold_start`` half of a cold start's first batch
    is rule-matched records spread over the rules' labels. The classifier and its metrics use the human
    labels only; the ranking reads the classifier's own scores.

    ``labels``: the answers, the complete record ids and their fingerprint, read in one snapshot.
    ``learner`` makes the project's unfitted classifier (for the fit and its cross-validation; ``C=``
    overrides its regularisation, for :func:`core.learner.choose_c`).
    """
    started = time.perf_counter()
    info = state.info
    answers, complete, fingerprint = labels
    pool = pools.pool(state)
    labeled_rows, y, candidates = training_rows(pool, aggregate_answers(info, answers), complete)
    classifier = scores = own_scores = None
    classes: tuple[str, ...] = ()
    if len(set(y)) >= 2:
        classifier = learner().fit(pool.vectors[labeled_rows], y)
        if rule_voting is not None:
            classifier.rule_votes_ = rule_votes.fit_votes(rule_voting, classifier)
        # Per row only the top classes and the entropy, in blocks: the pool may be a float16 memmap,
        # and its (rows, classes) probabilities would be 616 MB at 1M x 77 in float64.
        own_scores = classifier.score_pool(pool.vectors)
        # The guesses with the rules' votes; the ranking reads the classifier's own uncertainty.
        scores = rule_votes.with_votes(classifier, pool.vectors, pool.ids, own_scores)
        # A multi-label model's classes are its label sets by bitmask (SetNames), never listed.
        classes = classifier.classes_ if info.multi_label else tuple(str(c) for c in classifier.classes_)
    picks = get_strategy(info.strategy).query(
        proba=None,
        scores=own_scores,
        embeddings=pool.vectors,
        candidates=candidates,
        classes=classes,
        n=min(queue_size, len(candidates)),
        rng=np.random.default_rng(len(y)),
        labeled=labeled_rows,
        batch_size=batch_size,  # labelers answer this many before the next retrain rebuilds the queue
    )
    seed_rows, seed_labels = (
        rule_votes.cold_start_rows(rule_voting, pool.ids, candidates, info.label_names)
        if scores is None and rule_voting is not None and rule_voting.seed_cold_start
        else (np.zeros(0, np.int64), np.zeros(0, object))
    )
    if len(seed_rows):  # a cold start: the rules' matches first, over their labels
        n_seeds = min(len(picks), batch_size // 2)
        seeds = rule_votes.seed_rows(seed_rows, seed_labels, n_seeds, np.random.default_rng(len(y)))
        seeded = {row for row, _ in seeds}
        picks = [Pick(row, 0.0, f"a rule says {label}") for row, label in seeds] + [
            p for p in picks if p.index not in seeded
        ][: len(picks) - len(seeds)]
    queue_rows = [
        {
            "project_id": info.id,
            "position": position,
            "record_id": int(pool.ids[pick.index]),
            "predicted_label": classes[int(scores.best[pick.index])] if scores is not None else None,
            "confidence": float(scores.best_proba[pick.index]) if scores is not None else None,
            "reason": pick.reason,
        }
        for position, pick in enumerate(picks)
    ]
    label_counts = {name: 0 for name in info.label_names}
    for label in y:
        for name in multilabel.split(label) if info.multi_label else (label,):
            label_counts[name] = label_counts.get(name, 0) + 1
    run = None
    with writing(engine) as conn:
        # First the project's lock (PostgreSQL): two processes' swaps at once would each delete only the
        # queue rows they saw and leave both new queues; and a hand-out waits for the new queue whole.
        handout.lock_hand_outs(conn, info.id)
        if classifier is not None:
            run_id = conn.execute(
                insert(ModelRun)
                .values(
                    project_id=info.id,
                    n_labels=len(y),
                    strategy=info.strategy,
                    metrics={},
                    label_counts=label_counts,
                    duration_seconds=time.perf_counter() - started,
                    embedding_model=embedding_model,
                    model_blob=pickle.dumps(classifier),
                    created_at=utcnow(),
                )
                .returning(ModelRun.id)
            ).scalar_one()
            conn.execute(
                insert(ModelRunReport).values(
                    run_id=run_id, project_id=info.id, fingerprint=fingerprint, per_class_f1={}, support={}
                )
            )
            catalog.set_latest_run(conn, info.id, run_id)
            run = _run_info(conn, run_id, info.name)
        # The new queue replaces the old one in this same transaction: readers see one or the other.
        conn.execute(delete(QueueItem).where(QueueItem.project_id == info.id, QueueItem.gold.is_(False)))
        if queue_rows:
            conn.execute(insert(QueueItem), queue_rows)
    guesses = guess_table(run.id, pool, scores, classes) if run is not None and scores is not None else None
    pools.remember_guesses(info.id, guesses)
    replace_gold_queue(engine, info, answers, pool, labeled_rows, y, learner)
    if run is None or classifier is None or scores is None:
        return Trained(run, guesses, fingerprint)
    # The tail: metrics that describe the run but never change the queue. If they fail, the run and
    # its queue stand without them (the learning curve skips the point).
    try:
        X = pool.vectors[labeled_rows]
        if info.multi_label:  # micro/macro-F1 and subset accuracy out of fold; C stays the learner's
            metrics = multilabel_cv_metrics(X, y, estimator_factory=learner)
        else:
            metrics = cross_validated_metrics(X, y, estimator_factory=learner)
        metrics.update(label_name_metrics(classifier))
        # The regularisation the next retrain uses (the tail, so the queue never waits for it).
        metrics["c"] = classifier.C
        if not info.multi_label:
            metrics["next_c"] = choose_c(
                X, y, estimator_factory=learner, current=classifier.C, current_metrics=metrics
            )
        metrics.update(stability_metrics(engine, info, pool, labeled_rows, scores, classes, embedding_model))
        with writing(engine) as conn:
            conn.execute(update(ModelRun).where(ModelRun.id == run.id).values(metrics=metrics))
            run = _run_info(conn, run.id, info.name)
    except Exception:
        log.exception("Metrics of run %s of %s failed; the run and its queue stand", run.id, info.name)
    return Trained(run, guesses, fingerprint)


def replace_gold_queue(
    engine: Engine,
    info: ProjectInfo,
    answers: list[tuple],
    pool: Pool,
    labeled_rows: np.ndarray,
    y: np.ndarray,
    learner: Callable[..., EmbeddingClassifier],
) -> None:
    """Gold questions' queue rows: their cards show the guess of a model that never saw their gold labels
    (``core.gold``). After the swap, so the new queue never waits for this second fit."""
    retired = set(info.retired_labels)
    gold_ids = [  # a retired gold label (or a set naming one) is no question to ask
        row[0] for row in answers if row[3] == "review"
        and retired.isdisjoint(multilabel.split(row[2]) if info.multi_label else (row[2],))
    ] if info.gold_rate > 0 else []
    rows = (
        held_out_queue_rows(
            project_id=info.id,
            strategy=info.strategy,
            record_ids=pool.ids,
            vectors=pool.vectors,
            labeled_rows=labeled_rows,
            y=y,
            gold_rows=np.flatnonzero(np.isin(pool.ids, np.asarray(gold_ids, dtype=np.int64))),
            rng=np.random.default_rng(len(y)),
            learner=learner,
        )
        if gold_ids
        else []
    )
    with writing(engine) as conn:
        handout.lock_hand_outs(conn, info.id)
        conn.execute(delete(QueueItem).where(QueueItem.project_id == info.id, QueueItem.gold.is_(True)))
        if rows:
            conn.execute(insert(QueueItem), rows)


def label_name_metrics(classifier: EmbeddingClassifier) -> dict[str, float]:
    """Whether the label-name prior took part in the fit, and how well the names fit the labels."""
    agreement = getattr(classifier, "label_name_agreement_", None)
    if agreement is None:
        return {}
    return {"label_names_used": float(classifier.label_names_used_), "label_name_agreement": agreement}


def stability_metrics(
    engine: Engine,
    info: ProjectInfo,
    pool: Pool,
    labeled_rows: np.ndarray,
    scores: PoolScores,
    classes: tuple[str, ...],
    embedding_model: str,
) -> dict[str, float]:
    """``{"stability_kappa": κ}`` between an earlier model and this one on a fixed unlabeled sample (a
    multi-label project's: the mean per-label κ, ``stopping.multilabel_prediction_kappa``).

    The earlier model is the latest trained on ``stopping.stability_gap`` fewer labels or less (see
    there why not simply the previous one), read back from its stored blob. Empty until such a model
    exists, or after the embedding model changed.
    """
    unlabeled = np.setdiff1d(np.arange(len(pool.ids), dtype=np.int64), labeled_rows)
    if len(unlabeled) == 0:
        return {}
    n_labels = len(labeled_rows)
    with reading(engine) as conn:
        previous = conn.execute(
            select(ModelRun.model_blob, ModelRun.embedding_model)
            .where(
                ModelRun.project_id == info.id,
                ModelRun.n_labels <= n_labels - stopping.stability_gap(n_labels),
            )
            .order_by(ModelRun.id.desc())
            .limit(1)
        ).first()
    if previous is None or previous[0] is None or previous[1] != embedding_model:
        return {}
    model = pickle.loads(previous[0])  # written by this service only, never by users
    if getattr(model, "n_features_in_", None) != pool.vectors.shape[1]:
        return {}
    sample = unlabeled[stopping.stable_sample(pool.ids[unlabeled], seed=info.id)]
    before = [str(label) for label in model.predict(pool.vectors[sample])]
    after = [classes[i] for i in scores.best[sample]]
    if info.multi_label:  # sets: per label, each a yes/no question (core.stopping)
        return {"stability_kappa": stopping.multilabel_prediction_kappa(before, after, info.label_names)}
    return {"stability_kappa": stopping.prediction_kappa(before, after)}


_RUN_COLUMNS = (
    ModelRun.id,
    ModelRun.created_at,
    ModelRun.n_labels,
    ModelRun.strategy,
    ModelRun.metrics,
    ModelRun.label_counts,
    ModelRun.duration_seconds,
)


def run_history(conn: Connection, info: ProjectInfo, *, latest_only: bool = False) -> list[ModelRunInfo]:
    """Recorded retrains, oldest first (or just the latest), without loading the stored classifiers."""
    query = select(*_RUN_COLUMNS).where(ModelRun.project_id == info.id)
    query = query.order_by(ModelRun.id.desc()).limit(1) if latest_only else query.order_by(ModelRun.id)
    return [_to_info(row, info.name) for row in conn.execute(query).all()]


def latest_classifier(conn: Connection, project_id: int) -> EmbeddingClassifier | None:
    blob = conn.execute(
        select(ModelRun.model_blob)
        .where(ModelRun.project_id == project_id)
        .order_by(ModelRun.id.desc())
        .limit(1)
    ).scalar()
    return pickle.loads(blob) if blob is not None else None  # written by this service only


def last_trained_fingerprint(conn: Connection, project_id: int) -> str | None:
    return conn.execute(
        select(ModelRunReport.fingerprint)
        .where(ModelRunReport.project_id == project_id)
        .order_by(ModelRunReport.run_id.desc())
        .limit(1)
    ).scalar()


def _run_info(conn: Connection, run_id: int, project: str) -> ModelRunInfo:
    return _to_info(conn.execute(select(*_RUN_COLUMNS).where(ModelRun.id == run_id)).one(), project)


def _to_info(row: tuple, project: str) -> ModelRunInfo:
    rid, created, n, strategy, metrics, counts, seconds = row
    return ModelRunInfo(
        id=rid,
        project=project,
        created_at=created,
        n_labels=n,
        strategy=strategy,
        metrics=dict(metrics),
        label_counts=dict(counts),
        duration_seconds=seconds,
    )
