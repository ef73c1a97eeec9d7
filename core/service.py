"""The facade every client uses (bot, CLI, playground, simulator): ids and primitives in, frozen
dataclasses out. It opens the transactions and tells ``core.retraining`` what happened (which applies
``core.policy`` and retrains off the click path); the job modules (projects, ingest, handout, answers,
training, pools, reports) own the SQL and the computing.

A read never writes. The one write a hand-out makes is its leases. Who refills an emptied queue is
decided after the hand-out's transaction, and done on the training worker.

Over 400 lines because it is the one list of use cases the clients call (about 55 public methods,
each opening its transaction and calling the job modules, 10–30 lines apiece, the SQL and the work
in the job modules): splitting it would give the bot and the CLI several facades to learn instead
of one.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine

from core import (
    answers,
    deliveries,
    embedding_job,
    handout,
    ingest,
    io,
    labelset,
    multilabel,
    reports,
    rule_votes,
    rules,
    stopping,
    training,
    vectors,
)
from core.config import Settings, load_settings
from core.embeddings import Embedder, ProgressCallback, make_embedder
from core.errors import LabelbotError, RecordNotFound, StaleRecord, UnknownLabel
from core.leadership import SCHEDULER_LEASE, Leadership, database_answers
from core.learner import DEFAULT_C, EmbeddingClassifier
from core.models import utcnow
from core.multilabel_learner import MultiLabelClassifier
from core.policy import RetrainPolicy
from core.pools import PoolCache
from core.projects import (
    ProjectCatalog,
    ProjectKey,
    ProjectState,
    check_answers_per_record,
    check_gold_rate,
    check_labels,
    check_strategy,
)
from core.retraining import RetrainForward, Retraining, RetrainListener
from core.store import create_db_engine, reading, writing
from core.types import (
    AnswerResult,
    CardUpdate,
    Delivery,
    EmbeddingStatus,
    EmbedResult,
    ExportResult,
    ImportResult,
    LabelDef,
    ModelRunInfo,
    ProjectInfo,
    ProjectStatus,
    RecordView,
    ReviewItem,
    RuleInfo,
    SimilarRecord,
    UndoResult,
)
from core.vectors import VectorFiles, default_vector_dir

log = logging.getLogger(__name__)

SOURCES = answers.SOURCES
#: Records written per transaction by an import (well under 0.1 s of SQLite's write lock, written
#: straight to the driver), and the pause between two such transactions, which lets a process waiting
#: for the lock in SQLite's busy handler in. An answer from another process waited at most 0.23-0.34 s
#: during a 100k import with 10,000 / 0.05 s as with 5,000 / 0.1 s, and a 1M import pauses 5 s in all
#: instead of 20 (bench/import_contention.py, docs/benchmarks.md).
IMPORT_BATCH = 10_000
IMPORT_PAUSE = 0.05
#: ``rule_labels``: the labels of the keyword/regex rules matching the record, ``|``-joined (core.rules).
EXPORT_COLUMNS = (*reports.EXPORT_COLUMNS, "rule_labels")

#: Seconds a process may work on a claimed delivery before another may take it over (a delivery is
#: a few Web API calls; the bot's delivery client gives up on one call after 10 s).
DELIVERY_CLAIM_SECONDS = 60.0
#: Waits between attempts at a delivery: doubling from 1 s, at most 15 s (or what the client was told),
#: so a labeler has their card within about 15 s of Slack coming back.
DELIVERY_BACKOFF_CAP = 15.0
#: Given-up deliveries are kept this long, to be counted and looked at.
DELIVERY_KEEP_GIVEN_UP = 7 * 24 * 3600

#: A label by name, or a function choosing it from the project's label set as the answer's own
#: transaction reads it (a chat button carries a label's index; the set may have changed since).
#: An answer: a label's name (or a callable choosing it against the project as the transaction reads it);
#: for a multi-label project a collection of names, or a callable returning one (core.multilabel).
LabelChoice = str | Callable[[ProjectInfo], str] | multilabel.LabelChoice
#: Called with the project as a write transaction reads it; raises to refuse the write.
ProjectCheck = Callable[[ProjectInfo], None]


class LabelingService:
    """Projects, records, answers, the active-learning queue and the model. Thread-safe.

    Collaborators come in at construction: ``embedder`` (default: the settings' model, loaded on first
    use), ``engine``, ``clock`` (lease expiry and seconds per answer read the time from it) and
    ``trainer`` (where background retrains run: None for this process's training thread, or a
    ``core.trainer.ProcessTrainer``). ``background=True`` gives the service its training thread.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        embedder: Embedder | None = None,
        engine: Engine | None = None,
        background: bool = False,
        clock: Callable[[], datetime] = utcnow,
        trainer: Any = None,
    ) -> None:
        self.settings = settings or load_settings()
        self.clock = clock
        self.engine = engine or create_db_engine(self.settings.database_url)
        self._embedder = embedder
        self.projects = ProjectCatalog()
        self.pools = PoolCache(
            self.engine,
            lambda: self.embedder.name,
            VectorFiles(self.settings.vector_dir or default_vector_dir(self.settings.database_url),
                        self.settings.database_url),
        )
        self._embedders: dict[str, Embedder] = {}
        self.retraining = Retraining(
            RetrainPolicy(every=self.settings.retrain_every, cooldown=self.settings.retrain_cooldown),
            self.pools,
            retrain_here=lambda project_id: self.retrain_with_guesses(project_id),
            background=background,
            trainer=trainer,
            nice=self.settings.training_nice,
        )
        self.closed = False
        self._lock = threading.Lock()
        self._advice_cache: dict[int, tuple[str, Any]] = {}
        self._rule_cache = rules.RuleMatches()

    @property
    def retrain_listeners(self) -> list[RetrainListener]:
        """Called after each background retrain with its run and the project's name."""
        return self.retraining.listeners

    def forward_retrains(self, forward: RetrainForward | None) -> None:
        """Send this process's background retrain requests to ``forward`` (None: retrain here): a
        follower replica hands them to the leader, the one process that retrains (bot.scheduler)."""
        self.retraining.forward = forward

    def leadership(self, name: str = SCHEDULER_LEASE, **options: Any) -> Leadership:
        """This process's claim on the lease ``name`` in the database (``core.leadership``; the service's
        clock unless ``clock`` is given); not started."""
        return Leadership(self.engine, name, **{"clock": self.clock, **options})

    def database_answers(self) -> bool:
        """Whether the database answers a trivial query now (health checks); never raises."""
        return database_answers(self.engine)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            s = self.settings
            self._embedder = make_embedder(
                s.embedding_model, batch_size=s.embedding_batch_size, device=s.embedding_device
            )
        return self._embedder

    def embedder_for(self, model: str) -> Embedder:
        """The embedder of ``model`` (a project's own model may differ from the settings' one)."""
        if model == self.embedder.name:
            return self.embedder
        with self._lock:
            if model not in self._embedders:
                s = self.settings
                self._embedders[model] = make_embedder(
                    model, batch_size=s.embedding_batch_size, device=s.embedding_device
                )
            return self._embedders[model]

    def close(self) -> None:
        """Wait for background work and release the database."""
        self.closed = True  # pollers on this service (bot.deliveries) end
        self.retraining.close()
        self.engine.dispose()

    # ------------------------------------------------------------------ projects

    def create_project(
        self,
        name: str,
        labels: Sequence[str | LabelDef],
        *,
        answers_per_record: int | None = None,
        strategy: str | None = None,
        multi_label: bool = False,
    ) -> ProjectInfo:
        """Create a project with an ordered label set; ``multi_label``: an answer is a set of labels."""
        name = name.strip()
        if not name:
            raise LabelbotError("A project needs a name.")
        defs = check_labels(labels)
        if multi_label:
            multilabel.check_names(d.name for d in defs)
            strategy = strategy or multilabel.DEFAULT_STRATEGY
        settings = {
            "answers_per_record": check_answers_per_record(
                self.settings.answers_per_record if answers_per_record is None else answers_per_record
            ),
            "strategy": check_strategy(strategy or self.settings.strategy, multi_label=multi_label),
            "gold_rate": check_gold_rate(self.settings.gold_rate),
            **({"multi_label": True} if multi_label else {}),
        }
        with writing(self.engine) as conn:
            pid = self.projects.create(conn, name, defs, settings, self.embedder.name)
            return self.projects.info(conn, pid)

    def get_project(self, project: ProjectKey) -> ProjectInfo:
        """A project by name or id; ``ProjectNotFound`` when there is none (or it was deleted)."""
        with reading(self.engine) as conn:
            return self.projects.info(conn, project)

    def get_project_by_id(self, project_id: int) -> ProjectInfo:
        return self.get_project(int(project_id))

    def list_projects(self) -> list[ProjectInfo]:
        with reading(self.engine) as conn:
            return self.projects.list(conn)

    def configure_project(
        self,
        name: ProjectKey,
        *,
        answers_per_record: int | None = None,
        strategy: str | None = None,
        extra_answer_on_disagreement: bool | None = None,
        gold_rate: float | None = None,
    ) -> ProjectInfo:
        """Change a project's crowd redundancy, disagreement routing, gold question rate or strategy."""
        changes: dict[str, Any] = {}
        if answers_per_record is not None:
            changes["answers_per_record"] = check_answers_per_record(answers_per_record)
        if extra_answer_on_disagreement is not None:
            changes["extra_answer_on_disagreement"] = bool(extra_answer_on_disagreement)
        if gold_rate is not None:
            changes["gold_rate"] = check_gold_rate(gold_rate)
        with writing(self.engine) as conn:
            info = self.projects.info(conn, name)
            if strategy is not None:
                changes["strategy"] = check_strategy(strategy, multi_label=info.multi_label)
            self.projects.update_settings(conn, info, changes)
            info = self.projects.info(conn, info.id)
            # Completeness depends on k and the routing: recompute it for every record.
            answers.recompute_completeness(conn, info)
            return info

    def delete_project(self, name: ProjectKey) -> None:
        with writing(self.engine) as conn:
            info = self.projects.info(conn, name)
            self.projects.delete(conn, info.id)
        self.pools.forget(info.id, info.created_at)

    def bind_context(self, context: str, project: ProjectKey) -> None:
        """Make ``project`` the default for an outside context (a chat channel, say)."""
        with writing(self.engine) as conn:
            self.projects.bind(conn, context, self.projects.info(conn, project).id)

    def default_project(self, context: str | None = None) -> str | None:
        """The project bound to ``context``, else the only project, else None."""
        with reading(self.engine) as conn:
            return self.projects.default_name(conn, context)

    # ------------------------------------------------------------------ import / export

    def import_file(
        self,
        project: ProjectKey,
        path: str | Path,
        *,
        text_column: str = "text",
        id_column: str | None = "id",
        label_column: str | None = None,
        annotator_column: str | None = None,
        id_column_required: bool = False,
        fmt: str | None = None,
        embed: bool = True,
        progress: ProgressCallback | None = None,
    ) -> ImportResult:
        """Import a CSV/TSV/JSONL file. Bad input raises ``InputFileError`` and writes nothing.

        Known ids are left as they are (re-importing updates nothing); labels in ``label_column``
        become answers with source ``import`` by ``annotator_column`` (or "import"). ``embed``: see
        :meth:`import_rows`.
        """
        info = self.get_project(project)
        rows = io.read_records(
            path,
            text_column=text_column,
            id_column=id_column,
            label_column=label_column,
            annotator_column=annotator_column,
            labels=None if info.multi_label else info.label_names,  # sets: checked by import_rows
            id_column_required=id_column_required,
            fmt=fmt,
        )
        return self.import_rows(info.name, rows, path=str(path), embed=embed, progress=progress)

    def import_rows(
        self,
        project: ProjectKey,
        rows: Sequence[io.ImportRow],
        *,
        path: str = "<rows>",
        source: str = "import",
        embed: bool = True,
        progress: ProgressCallback | None = None,
    ) -> ImportResult:
        """Import already-validated rows: records in transactions of ``IMPORT_BATCH`` (so clicks
        meanwhile wait for the write lock briefly), the answers and the new data version in a last
        one; then, with ``embed``, their vectors (:meth:`embed`). ``embed=False`` leaves the vectors
        to the embedding job (``labelbot serve``, ``labelbot embed``): records without one are not
        handed out until they have it. Interrupted, it is simply run again: known ids are skipped.

        Every imported answer counts, whatever the project's answers per record (k); a project still at
        the default k with no answers takes k from multi-answer rows (see :class:`ImportResult`)."""
        info = self.get_project(project)
        if info.multi_label:  # "|"-joined sets, stored as their canonical text
            rows = multilabel.canonical_rows(info, rows, path)
        else:
            labels = set(info.label_names)
            # A JSONL [] (a multi-label project's "none of these") is no answer in a single-label one.
            rows = [dataclasses.replace(row, label=None) if row.label == "" else row for row in rows]
            for row in rows:
                if row.label is not None and row.label not in labels:
                    raise UnknownLabel(f"{path}, line {row.line}: unknown label {row.label!r}.")
        with reading(self.engine) as conn:
            texts = ingest.new_texts(rows, ingest.known_ids(conn, info.id))
        new = list(texts.items())
        metas = {row.external_id: row.metadata for row in rows}
        for start in range(0, len(new), IMPORT_BATCH):
            if start:
                # Other processes wait for SQLite's write lock by polling (1 ms … 100 ms apart): a
                # pause lets a click's answer in before the next batch takes the lock again.
                time.sleep(IMPORT_PAUSE if self.engine.dialect.name == "sqlite" else 0)
            with writing(self.engine) as conn:
                ingest.add_records(conn, info.id, new[start : start + IMPORT_BATCH], metas)
        per_record = ingest.answers_per_record_of(rows)
        with writing(self.engine) as conn:
            info = self.projects.info(conn, info.id)
            # A project never configured (the default k, no answers yet) takes k from multi-answer data,
            # so imported crowd records are complete, labeled and trained on as they come.
            k = ingest.k_from_data(per_record)
            k_set = (
                k is not None
                and k != info.answers_per_record
                and info.answers_per_record == self.settings.answers_per_record
                and not ingest.has_answers(conn, info.id)
            )
            if k_set:
                self.projects.update_settings(conn, info, {"answers_per_record": k})
                info = self.projects.info(conn, info.id)
            new_answers = ingest.add_answers(conn, info, rows, source)
            if new or new_answers:
                self.projects.bump_data_version(conn, info.id)
            counts = ingest.answer_counts(conn, info.id, rows) if per_record else []
        embedded = self.embed(info.id, progress=progress).embedded if embed and new else 0
        self.retraining.imported(info, len(new), new_answers)
        k = info.answers_per_record
        return ImportResult(
            project=info.name,
            path=path,
            rows=len(rows),
            new_records=len(new),
            existing_records=len({r.external_id for r in rows}) - len(new),
            annotations=new_answers,
            embedded=embedded,
            answers_per_record=k,
            k_from_data=k_set,
            records_at_k=sum(n == k for n in counts),
            records_over_k=sum(n > k for n in counts),
            records_under_k=sum(n < k for n in counts),
        )

    def embed(
        self,
        project: ProjectKey,
        *,
        model: str | None = None,
        progress: ProgressCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> EmbedResult:
        """Give every record of the project a vector: for its model, or for ``model``, which the
        project then moves to (atomically, once every record has one; the old vectors serve until
        then). Resumable: each batch is committed, so a run stopped or killed resumes where it was."""
        with reading(self.engine) as conn:
            state = self.projects.state(conn, project)
            current = self.pools.model_of(state)
            target = model or vectors.models_of(conn, state.info.id)[1] or current
        embedder = self.embedder_for(target)
        if target != current:
            _ = embedder.dim  # loads the model: one that cannot load fails before the project moves to it
        if target != current or model is not None:
            with writing(self.engine) as conn:
                vectors.set_target(conn, state.info.id, None if target == current else target)
        result = embedding_job.embed_project(
            self.engine,
            state.info.name,
            state.info.id,
            target,
            embedder,
            progress=progress,
            should_stop=should_stop,
        )
        # The label-name prior's vectors, made here so the training worker need not load the model.
        if self.settings.label_name_weight > 0 and not result.stopped:
            embedding_job.label_vectors(self.engine, state.info, target, lambda: self.embedder_for(target))
        if result.switched:  # the queue was ranked on the old vectors
            self.request_retrain(state.info.id)
        elif result.embedded:
            self.retraining.imported(state.info, result.embedded, 0)
        return result

    def embed_everything(
        self, *, should_stop: Callable[[], bool] | None = None, progress_log: bool = False
    ) -> int:
        """Run the embedding job over every project that needs it; the number of vectors written."""
        written = 0
        for info in self.list_projects():
            status = self.embedding_status(info.id)
            if status.missing == 0 or (should_stop is not None and should_stop()):
                continue
            model = status.target or status.model
            reporter = embedding_job.RateReporter(f"Embedding {status.project!r} with {model}")
            written += self.embed(
                status.project, progress=reporter if progress_log else None, should_stop=should_stop
            ).embedded
        return written

    def update_search_index(self, project: ProjectKey) -> bool:
        """Add the vectors the project's similar-search index lacks (building it the first time, above
        ``core.index.EXACT_BELOW`` records); True if it was due. Minutes at 1M: the embedding worker
        runs it when idle, in the background."""
        with reading(self.engine) as conn:
            state = self.projects.state(conn, project)
        index = self.pools.pool(state).index
        if not index.needs_update:
            return False
        index.update()
        return True

    def embedding_status(self, project: ProjectKey) -> EmbeddingStatus:
        """The project's model, the model it is moving to, and how many records have a vector for it."""
        with reading(self.engine) as conn:
            state = self.projects.state(conn, project)
            current = self.pools.model_of(state)
            target = vectors.models_of(conn, state.info.id)[1]
            model = target or current
            return EmbeddingStatus(
                project=state.info.name,
                model=current,
                target=target,
                with_vectors=vectors.count(conn, state.info.id, model),
                missing=vectors.count_missing(conn, state.info.id, model),
            )

    def export(self, project: ProjectKey, path: str | Path, *, fmt: str | None = None) -> ExportResult:
        """One row per record: id, text, final label, answers, agreement, model guess and probability."""
        fmt = (fmt or Path(path).suffix.lstrip(".") or "csv").lower()
        if fmt not in ("csv", "jsonl"):
            raise LabelbotError(f"Unknown export format {fmt!r}: use csv or jsonl.")
        with reading(self.engine) as conn:
            state = self.projects.state(conn, project)
            records = ingest.records_for_export(conn, state.info.id)
            given = answers.load(conn, state.info.id)
        rows = reports.export_rows(state.info, records, given, self.pools.guess(state))
        rule_labels = self._rule_labels(state.info)
        for record, row in zip(records, rows, strict=True):
            row["rule_labels"] = rule_labels.get(record[0])
        columns = EXPORT_COLUMNS
        if state.info.retired_labels:  # answers with a retired label, marked (core.labelset)
            columns = (*columns, "retired_answers")
            retired = labelset.retired_answers(state.info, given)
            for record, row in zip(records, rows, strict=True):
                row["retired_answers"] = retired.get(record[0])
        if state.info.multi_label and fmt == "jsonl":  # sets as lists; the CSV keeps the "|"-joined text
            rows = [multilabel.as_lists(row) for row in rows]
        count = io.write_records(path, rows, fmt=fmt, columns=columns)
        return ExportResult(project=state.info.name, path=str(path), rows=count, format=fmt)

    # ------------------------------------------------------------------ labeling: the click path

    def next_records(self, project: ProjectKey, user: str, n: int = 1) -> list[RecordView]:
        """Hand out the next ``n`` records for ``user`` from the ranked queue and lease them.

        Never a record this user answered, skipped or holds already, nor one that is complete or whose
        remaining answers are leased to others. Never retrains: a queue that ran short is refilled
        on the training worker after this returns.
        """
        if n <= 0:
            return []
        with writing(self.engine) as conn:
            state = self.projects.state(conn, project)
            lease, model = self.settings.lease_seconds, self.pools.model_of(state)
            out = handout.hand_out(conn, state.info, user, n, self.clock(), lease, model)
            found = rules.load(conn, state.info.id)
        self.retraining.handed_out(state.info, out, n)
        # After the commit (it may load the pool); a click shows the previous run's guesses while the
        # latest run's are being made.
        guess = self.pools.guess(state, fresh=False)
        return rules.with_rules(state.info, found, [handout.with_guess(view, guess) for view in out.records])

    def record_answer(
        self,
        project: ProjectKey,
        record_id: int,
        user: str,
        label: LabelChoice,
        *,
        source: str = "slack",
        card_address: str | None = None,
    ) -> AnswerResult:
        """Store ``user``'s answer in one short transaction. Answering again changes the answer.

        Raises ``StaleRecord`` when the record already has all the answers it needs from others.
        ``source="review"`` is an admin's gold decision: it completes the record whatever the answers.
        ``card_address`` (the client's name for the card clicked): the same transaction writes the
        card's update and, for a new answer, the user's next card to the outbox (core.deliveries);
        their ids come back in ``AnswerResult.deliveries``.
        """
        if source not in SOURCES:
            raise LabelbotError(f"Unknown answer source {source!r}; expected one of {', '.join(SOURCES)}.")
        with writing(self.engine, urgent=True) as conn:
            info = self.projects.info(conn, project)
            name = multilabel.answer_text(info, label)  # a multi-label project's set as its stored text
            now = self.clock()
            stored = answers.store_answer(conn, info, record_id, user, name, source, now)
            owed: tuple[int, ...] = ()
            if card_address is not None:
                owed = deliveries.for_click(
                    conn, info.id, user, "answered", now, record_id=record_id, label=name,
                    complete=stored.complete, address=card_address, next_card=stored.changed,
                )
        started = self.retraining.answer_counted(info, stored.changed)
        return AnswerResult(
            project=info.name,
            record_id=record_id,
            external_id=stored.external_id,
            user=user,
            label=name,
            changed=stored.changed,
            complete=stored.complete,
            retrain_started=started,
            deliveries=owed,
        )

    def card_update(
        self, project: ProjectKey, record_id: int, user: str, *, next_cards: int = 0
    ) -> CardUpdate:
        """After a click: the record as its card should now show it, and ``user``'s next cards.

        One transaction; its only writes are the leases of the cards handed out (none asked: a read).
        """
        with (writing if next_cards > 0 else reading)(self.engine) as conn:
            state = self.projects.state(conn, project)
            record = handout.record_view(conn, state.info, record_id)
            out = (
                handout.hand_out(
                    conn,
                    state.info,
                    user,
                    next_cards,
                    self.clock(),
                    self.settings.lease_seconds,
                    self.pools.model_of(state),
                )
                if next_cards > 0
                else None
            )
            found = rules.load(conn, state.info.id)
        if out is not None:
            self.retraining.handed_out(state.info, out, next_cards)
        # After the commit (it may load the pool); a click shows the previous run's guesses while the
        # latest run's are being made.
        guess = self.pools.guess(state, fresh=False)
        cards = tuple(handout.with_guess(view, guess) for view in out.records) if out else ()
        record, *cards = rules.with_rules(state.info, found, [handout.with_guess(record, guess), *cards])
        return CardUpdate(state.info, record, tuple(cards))

    def get_record(self, project: ProjectKey, record_id: int) -> RecordView:
        """A record with the current model's guess (for re-rendering a card)."""
        with reading(self.engine) as conn:
            state = self.projects.state(conn, project)
            view = handout.record_view(conn, state.info, record_id)
            found = rules.load(conn, state.info.id)
        return rules.with_rules(state.info, found, [handout.with_guess(view, self.pools.guess(state))])[0]

    def find_record(self, project: ProjectKey, external_id: str) -> RecordView:
        """Look a record up by the id it had in the imported file."""
        with reading(self.engine) as conn:
            state = self.projects.state(conn, project)
            rid = handout.record_id_of(conn, state.info, external_id)
            view = handout.record_view(conn, state.info, rid)
            found = rules.load(conn, state.info.id)
        return rules.with_rules(state.info, found, [handout.with_guess(view, self.pools.guess(state))])[0]

    def bulk_label(
        self, project: ProjectKey, record_ids: Iterable[int], user: str, label: LabelChoice, *,
        source: str = "slack",
    ) -> list[AnswerResult]:
        """Apply one label (a multi-label project: one set) to several records (Show similar) in one
        transaction; complete ones are left."""
        if source not in SOURCES:
            raise LabelbotError(f"Unknown answer source {source!r}; expected one of {', '.join(SOURCES)}.")
        results = []
        with writing(self.engine, urgent=True) as conn:
            info = self.projects.info(conn, project)
            label = multilabel.answer_text(info, label)
            now = self.clock()
            for record_id in dict.fromkeys(record_ids):
                try:
                    with conn.begin_nested():  # a stale record leaves the others' answers in place
                        stored = answers.store_answer(conn, info, record_id, user, label, source, now)
                except StaleRecord:
                    continue
                results.append(
                    AnswerResult(
                        info.name, record_id, stored.external_id, user, label, stored.changed, stored.complete
                    )
                )
        for result in results:
            self.retraining.answer_counted(info, result.changed)
        return results

    def skip(
        self,
        project: ProjectKey,
        record_id: int,
        user: str,
        *,
        confirm: ProjectCheck | None = None,
        card_address: str | None = None,
    ) -> tuple[int, ...]:
        """``user`` won't be handed this record again.

        ``confirm`` sees the project as this transaction reads it and may refuse it by raising (a chat
        button names its project by id and checks it is still the one the button was made for).
        ``card_address``: as for :meth:`record_answer` (the card's update and the next card); returns
        the ids of the outbox rows written.
        """
        with writing(self.engine, urgent=True) as conn:
            info = self.projects.info(conn, project)
            if confirm is not None:
                confirm(info)
            answers.skip(conn, info, record_id, user)
            if card_address is None:
                return ()
            return deliveries.for_click(
                conn, info.id, user, "skipped", self.clock(), record_id=record_id, address=card_address,
                next_card=True,
            )

    def undo(
        self,
        project: ProjectKey,
        user: str,
        record_id: int | None = None,
        *,
        confirm: ProjectCheck | None = None,
        card_address: str | None = None,
    ) -> UndoResult:
        """Remove ``user``'s answer to ``record_id`` (default: their latest) and lease it back to them.
        ``confirm``, ``card_address``: as for :meth:`skip` (the card is restored; no next card)."""
        with writing(self.engine, urgent=True) as conn:
            info = self.projects.info(conn, project)
            if confirm is not None:
                confirm(info)
            now = self.clock()
            removed = answers.undo(conn, info, user, record_id, now, self.settings.lease_seconds)
            owed: tuple[int, ...] = ()
            if card_address is not None:
                owed = deliveries.for_click(
                    conn, info.id, user, "restored", now, record_id=removed.record_id, address=card_address
                )
        self.retraining.answer_counted(info, True)
        return UndoResult(
            project=info.name,
            record_id=removed.record_id,
            external_id=removed.external_id,
            user=user,
            label=removed.label,
            deliveries=owed,
        )

    # ------------------------------------------------------------------ deliveries (core.deliveries)

    def request_cards(
        self,
        project: ProjectKey,
        user: str,
        n: int,
        *,
        reply_to: str | None = None,
        notify_empty: bool = False,
    ) -> int:
        """Owe ``user`` their next ``n`` cards (core.deliveries): records are handed out when the cards
        are sent, so none is held by a card that never arrives. ``reply_to``: the client's address for
        telling the user what happened. Returns the outbox row's id."""
        if n <= 0:
            raise LabelbotError("Ask for at least one card.")
        with writing(self.engine, urgent=True) as conn:
            info = self.projects.info(conn, project)
            return deliveries.add(
                conn, project_id=info.id, user=user, kind="cards", now=self.clock(), n=n,
                notify_empty=notify_empty, reply_to=reply_to,
            )

    def claim_deliveries(self, *, ids: Iterable[int] | None = None, limit: int = 8) -> list[Delivery]:
        """Claim up to ``limit`` deliveries that are due (of ``ids`` only, when given) for this process.

        Each is then reported with :meth:`delivery_done` or :meth:`delivery_failed`; a claim not
        reported within a minute lapses and another process may take the row.
        """
        if ids is None:
            with reading(self.engine) as conn:
                if not deliveries.any_due(conn, self.clock()):
                    return []
        with writing(self.engine) as conn:
            return deliveries.claim(conn, self.clock(), DELIVERY_CLAIM_SECONDS, limit=limit, ids=ids)

    def delivery_done(self, delivery: Delivery) -> None:
        with writing(self.engine) as conn:
            deliveries.finish(conn, delivery)

    def delivery_failed(
        self,
        delivery: Delivery,
        error: str,
        *,
        permanent: bool = False,
        retry_after: float | None = None,
        remaining: int | None = None,
        unsent: Sequence[int] = (),
    ) -> bool:
        """A delivery failed: try again later, or give up (``permanent``, or older than the settings'
        ``delivery_give_up_seconds``); returns True when given up. ``unsent``: records handed out for
        cards that were not sent, released at once; ``remaining``: cards still owed."""
        now = self.clock()
        wait = max(retry_after or 0.0, min(DELIVERY_BACKOFF_CAP, 2.0 ** (delivery.attempts - 1)))
        too_old = (now - delivery.created_at).total_seconds() >= self.settings.delivery_give_up_seconds
        with writing(self.engine) as conn:
            deliveries.release(conn, delivery.project_id, delivery.user, unsent)
            if permanent or too_old:
                deliveries.give_up(conn, delivery, now, error)
                deliveries.prune(conn, now - timedelta(seconds=DELIVERY_KEEP_GIVEN_UP))
                return True
            deliveries.retry_at(conn, delivery, now + timedelta(seconds=wait), error, remaining=remaining)
        return False

    def delivery_counts(self, project: ProjectKey | None = None) -> tuple[int, int]:
        """(waiting, given up) deliveries, of one project or all."""
        with reading(self.engine) as conn:
            project_id = None if project is None else self.projects.info(conn, project).id
            return deliveries.counts(conn, project_id)

    def similar(
        self, project: ProjectKey, *, record_id: int | None = None, text: str | None = None, k: int = 10
    ) -> list[SimilarRecord]:
        """The ``k`` records nearest by cosine similarity to a record (itself excluded) or to free text."""
        if (record_id is None) == (text is None):
            raise LabelbotError("Give either a record or a text to compare with.")
        with reading(self.engine) as conn:
            state = self.projects.state(conn, project)
        pool = self.pools.pool(state)
        pool.index.refresh()  # the embedding worker may have written a newer index file
        if record_id is not None:
            row = pool.index.row_of(record_id)
            if row is None:
                raise RecordNotFound(f"Record {record_id} is not in project {state.info.name!r}.")
            query = pool.vectors[row]
        else:
            if not text or not text.strip():
                raise LabelbotError("Give some text to search for.")
            query = self.embedder_for(pool.model).encode([text])[0]
        hits = pool.index.search(query, k, exclude=record_id)
        if not hits:
            return []
        ids = [rid for rid, _ in hits]
        with reading(self.engine) as conn:
            rows = handout.records_by_id(conn, ids)
            # The crowd model weighs each answer by its annotator, judged on all their answers.
            given = answers.load(conn, state.info.id)
        finals = training.aggregate_answers(state.info, given)
        guess = self.pools.guess(state)
        out = []
        for rid, score in hits:
            eid, txt, complete = rows[rid]
            final = finals.get(rid) if complete else None  # others' answers stay hidden until complete
            g = guess(rid)
            out.append(
                SimilarRecord(
                    record_id=rid,
                    external_id=eid,
                    text=txt,
                    score=score,
                    label=final.label if final else None,
                    predicted_label=g[0] if g else None,
                    confidence=g[1] if g else None,
                )
            )
        return out

    # ------------------------------------------------------------------ training

    def retrain(self, project: ProjectKey, *, queue_size: int | None = None) -> ModelRunInfo | None:
        """Train on the aggregate labels, rescore the pool and replace the ranked queue atomically.

        Returns the recorded run, or None when there are fewer than two labeled classes (the queue is
        then built by the cold-start strategy). At most one retrain per project runs at a time.
        """
        return self.retrain_with_guesses(project, queue_size=queue_size).run

    def retrain_with_guesses(self, project: ProjectKey, *, queue_size: int | None = None) -> training.Trained:
        """:meth:`retrain`, with the new model's guesses over the pool (the training worker sends them)."""
        info = self.get_project(project)
        queue_size = queue_size or self.settings.queue_size
        with self.retraining.exclusive(info.id):
            with reading(self.engine) as conn:  # labels and their fingerprint from one snapshot
                state = self.projects.state(conn, info.id)
                given = answers.load(conn, info.id)
                labels = (
                    given,
                    answers.complete_ids(conn, info.id),
                    answers.fingerprint(conn, info.id, state.data_version),
                )
            trained = training.retrain(
                self.engine,
                self.projects,
                self.pools,
                state,
                queue_size=queue_size,
                batch_size=min(queue_size, self.settings.retrain_every or queue_size),
                embedding_model=self.pools.model_of(state),
                labels=labels,
                learner=self._learner(state),
                rule_voting=self._rule_voting(state.info, given, labels[1]),
            )
            self.retraining.trained(info.id, trained.fingerprint)
        return trained

    def _learner(self, state: ProjectState) -> Callable[..., EmbeddingClassifier]:
        """The project's unfitted classifier: logistic regression with the label-name prior, its label
        vectors embedded now if the embedding worker has not yet, and the C the last retrain chose
        (``core.learner``)."""
        weight = self.settings.label_name_weight
        names: dict[str, np.ndarray] = {}
        if weight > 0:
            model = self.pools.model_of(state)
            try:
                names = embedding_job.label_vectors(
                    self.engine, state.info, model, lambda: self.embedder_for(model)
                )
            except Exception as exc:  # e.g. the model cannot load here: train without the prior
                log.warning("Retraining %s without its label names: %s", state.info.name, exc)
        with reading(self.engine) as conn:
            latest = training.run_history(conn, state.info, latest_only=True)
        if state.info.multi_label:  # one-vs-rest with the prior and balanced weights (core.learner)
            return functools.partial(
                MultiLabelClassifier, labels=state.info.label_names, random_state=0,
                label_vectors=names or None, label_weight=weight,
            )
        c = latest[0].metrics.get("next_c", DEFAULT_C) if latest else DEFAULT_C
        return functools.partial(
            EmbeddingClassifier, C=c, random_state=0, label_vectors=names or None, label_weight=weight
        )

    def request_retrain(self, project: ProjectKey) -> bool:
        """Retrain on the training worker (inline without one); False if one is already waiting."""
        return self.retraining.request(self.get_project(project))

    def wait_for_retrains(self, timeout: float | None = None) -> None:
        """Block until queued background retrains finish (for tests, benchmarks and shutdown)."""
        self.retraining.wait(timeout)

    def labels_changed_since_retrain(self, project: ProjectKey) -> bool:
        """Whether answers, undos or imports happened since the project's last retrain (by fingerprint,
        kept in memory and on the run, so a restarted bot does not retrain an unchanged project)."""
        with reading(self.engine) as conn:
            state = self.projects.state(conn, project)
            current = answers.fingerprint(conn, state.info.id, state.data_version)
            last = self.retraining.fingerprint(state.info.id)
            if last is None:
                last = training.last_trained_fingerprint(conn, state.info.id)
        if last is None:
            return not current.startswith("0:")  # never trained: worth it once anyone answered
        return current != last

    def retrain_if_changed(self, project: ProjectKey) -> bool:
        """Retrain (on the background worker when there is one) if anything changed; True if started."""
        return self.labels_changed_since_retrain(project) and self.request_retrain(project)

    def latest_classifier(self, project: ProjectKey) -> EmbeddingClassifier | None:
        """The classifier of the project's latest model run (None before the first), e.g. to evaluate it."""
        with reading(self.engine) as conn:
            return training.latest_classifier(conn, self.projects.info(conn, project).id)

    # ------------------------------------------------------------------ reports

    def status(self, project: ProjectKey) -> ProjectStatus:
        """Progress, per-label counts, per-annotator figures, agreement and the latest model run."""
        with reading(self.engine) as conn:
            info = self.projects.info(conn, project)
            total, remaining = ingest.counts(conn, info.id)
            complete = answers.complete_ids(conn, info.id)
            given = answers.load(conn, info.id)
            latest = training.run_history(conn, info, latest_only=True)
        status = reports.status(
            info,
            total=total,
            remaining=remaining,
            complete=complete,
            answers=given,
            latest_run=latest[0] if latest else None,
            min_kappa_overlap=self.settings.min_kappa_overlap,
        )
        return dataclasses.replace(status, rules=tuple(self.list_rules(info.id)))

    def run_history(self, project: ProjectKey) -> list[ModelRunInfo]:
        """Every recorded retrain, oldest first (learning curves, stopping advice)."""
        with reading(self.engine) as conn:
            return training.run_history(conn, self.projects.info(conn, project))

    def final_labels(self, project: ProjectKey) -> dict[str, str]:
        """External id → aggregate label, for complete records that have one (what training uses)."""
        with reading(self.engine) as conn:
            info = self.projects.info(conn, project)
            return reports.final_labels(
                info, answers.load(conn, info.id), ingest.complete_external_ids(conn, info.id)
            )

    def pending_count(self, project: ProjectKey) -> int:
        """Records that still need an answer (cheaper than ``status`` for a prompt)."""
        with reading(self.engine) as conn:
            return handout.pending_count(conn, self.projects.info(conn, project).id)

    def answers_by_user(self, project: ProjectKey, *, since: datetime) -> dict[str, int]:
        """Answers per annotator given at or after ``since`` (aware or UTC), most first."""
        since = since.replace(tzinfo=UTC) if since.tzinfo is None else since.astimezone(UTC)
        with reading(self.engine) as conn:
            info = self.projects.info(conn, project)
            rows = answers.count_by_user(conn, info.id, since)
        return dict(sorted(((who, int(n)) for who, n in rows), key=lambda kv: (-kv[1], kv[0])))

    def stopping_advice(self, project: ProjectKey) -> stopping.StoppingAdvice:
        """Whether more labels are likely to help (stabilizing predictions + plateau) and the weak labels.

        Per-class F1 comes from one out-of-fold pass over the current labels, cached until they change.
        """
        with reading(self.engine) as conn:
            state = self.projects.state(conn, project)
            info = state.info
            fingerprint = answers.fingerprint(conn, info.id, state.data_version)
            given, complete = answers.load(conn, info.id), answers.complete_ids(conn, info.id)
            runs = training.run_history(conn, info)
        with self._lock:
            cached = self._advice_cache.get(info.id)
        if cached is not None and cached[0] == fingerprint:
            report = cached[1]
        else:
            pool = self.pools.pool(state)
            rows, y, _ = training.training_rows(pool, training.aggregate_answers(info, given), complete)
            if info.multi_label:  # per-label F1 of the one-vs-rest learner (sets are not classes)
                report = stopping.multilabel_cv_report(
                    pool.vectors[rows], y, labels=info.label_names,
                    estimator_factory=functools.partial(MultiLabelClassifier, labels=info.label_names,
                                                        random_state=0),
                )
            else:
                report = stopping.cv_report(
                    pool.vectors[rows], y, estimator_factory=lambda: EmbeddingClassifier(random_state=0)
                )
            with self._lock:
                self._advice_cache[info.id] = (fingerprint, report)
        return stopping.advise(
            info.name,
            runs,
            label_names=info.label_names,
            per_class_f1=report.per_class_f1,
            support=report.support,
            multi_label=info.multi_label,
        )

    def review_queue(self, project: ProjectKey, limit: int = 10) -> list[ReviewItem]:
        """Complete records an admin should decide, most urgent first (see ``reports.review_candidates``).
        An answer with ``source="review"`` is the gold label and takes the record off the queue."""
        if limit <= 0:
            return []
        with reading(self.engine) as conn:
            state = self.projects.state(conn, project)
            given, complete = answers.load(conn, state.info.id), answers.complete_ids(conn, state.info.id)
        pool = self.pools.pool(state)
        found = reports.review_candidates(
            state.info, given, complete, self.pools.guess(state), pool.ids, pool.vectors, limit
        )
        with reading(self.engine) as conn:
            texts = handout.records_by_id(conn, [item[0] for item in found])
        return reports.review_items(found, texts, state.info.name)

    # ------------------------------------------------------------------ rules (core.rules)

    def add_rule(self, project: ProjectKey, text: str, user: str) -> RuleInfo:
        """Add a keyword/regex rule written ``<keywords or /regex/flags> -> LABEL``; it comes back with
        its statistics. A bad pattern, an unknown label or no pattern: one ``LabelbotError`` line."""
        with writing(self.engine) as conn:
            info = self.projects.info(conn, project)
            rule_id = rules.add(conn, info.id, rules.parse(text, info.label_names), user, self.clock())
        return next(rule for rule in self.list_rules(info.id) if rule.id == rule_id)

    def list_rules(self, project: ProjectKey) -> list[RuleInfo]:
        """The project's rules, oldest first, with coverage, overlap, conflicts and precision against
        the final labels. Each pattern runs over the records once per data version (cached here)."""
        with reading(self.engine) as conn:
            info = self.projects.info(conn, project)
            found = rules.load(conn, info.id)
            if not found:
                return []
            total = ingest.counts(conn, info.id)[0]
            given, complete = answers.load(conn, info.id), answers.complete_ids(conn, info.id)
        return rules.statistics(info.name, found, self._rule_evaluations(info.id, found), total=total,
                                finals=_finals(info, given, complete), multi_label=info.multi_label)

    def remove_rule(self, project: ProjectKey, rule_id: int) -> RuleInfo:
        """Delete a rule (answers are untouched: a rule never gave any); returns it as it was."""
        with writing(self.engine) as conn:
            info = self.projects.info(conn, project)
            rule = rules.remove(conn, info.id, int(rule_id))
        return rules.statistics(info.name, [rule], {rule.id: rules.Evaluation(frozenset())},
                                total=0, finals={})[0]  # fmt: skip

    def rule_matches(self, project: ProjectKey, record_id: int) -> tuple[str, ...]:
        """The rules matching a record, as shown (``refund, money back → request_refund``)."""
        with reading(self.engine) as conn:
            info = self.projects.info(conn, project)
            text = handout.record_view(conn, info, record_id).text
            found = rules.load(conn, info.id)
        return rules.matching(found, text, info.label_names)

    def _rule_evaluations(self, project_id: int, found: Sequence[Any]) -> dict[int, rules.Evaluation]:
        return self._rule_cache.evaluations(
            self.engine, project_id, found, lambda conn: self.projects.state(conn, project_id).data_version
        )

    def _rule_voting(
        self, info: ProjectInfo, given: list[tuple], complete: set[int]
    ) -> rule_votes.RuleVoting | None:
        """The project's rules weighed by their precision on the labels so far, for a retrain
        (``core.rule_votes``); none when ``rule_vote_strength`` is 0 or there are no rules."""
        if self.settings.rule_vote_strength <= 0:
            return None
        with reading(self.engine) as conn:
            found = rules.load(conn, info.id)
        if not found:
            return None
        evaluations = self._rule_evaluations(info.id, found)
        finals = _finals(info, given, complete)
        stats = rules.statistics(info.name, found, evaluations, total=0, finals=finals,
                                 multi_label=info.multi_label)  # fmt: skip
        return rule_votes.voting(stats, evaluations, info.label_names, self.settings.rule_vote_strength,
                                 seed_cold_start=self.settings.rule_cold_start,
                                 base_rates=multilabel.base_rates(info, finals.values()) if info.multi_label
                                 else None)  # fmt: skip

    def _rule_labels(self, info: ProjectInfo) -> dict[int, str]:
        """Record → the labels of the rules matching it, ``|``-joined (the export's ``rule_labels``)."""
        with reading(self.engine) as conn:
            found = [rule for rule in rules.load(conn, info.id) if rule.label in info.label_names]
        return rules.labels_by_record(found, self._rule_evaluations(info.id, found))

    # ------------------------------------------------------------------ guidelines and the label set

    def set_guideline(
        self, project: ProjectKey, label: str, description: str | None, examples: Sequence[str] | None = None
    ) -> ProjectInfo:
        """Set a label's description and its examples (None keeps what there is). Bumps the project's
        version; chat cards already sent keep working (their buttons name labels, not guidelines)."""
        with writing(self.engine) as conn:
            return labelset.set_guideline(conn, self.projects, project, label, description, examples)

    def edit_labels(
        self,
        project: ProjectKey,
        edit: labelset.Edit,
        label: str,
        target: str | None = None,
        *,
        description: str = "",
    ) -> labelset.LabelSetEdit:
        """Add ``label`` (``description``), rename it to ``target``, merge it into ``target`` or retire
        it (core.labelset, which rewrites a multi-label project's stored sets), in one transaction; then a
        retrain is requested so the model follows. ``LabelSetEdit.renamed``/``.retired`` say what else
        keyed by label name must follow."""
        with writing(self.engine) as conn:
            if edit == "add":
                done = labelset.add(conn, self.projects, project, label, description)
            elif edit in ("rename", "merge"):
                if not target:
                    raise LabelbotError(f"{edit} needs the label's new name." if edit == "rename"
                                        else "merge needs the label to merge into.")
                step = labelset.rename if edit == "rename" else labelset.merge
                done = step(conn, self.projects, project, label, target)
            elif edit == "retire":
                done = labelset.retire(conn, self.projects, project, label)
            else:
                raise LabelbotError(f"Unknown label edit {edit!r}; use add, rename, merge or retire.")
            if done.renamed and done.info is not None:  # rules name their label: they follow it
                rules.relabel(conn, done.info.id, done.renamed)
        self.request_retrain(done.project)
        return done


def _finals(info: ProjectInfo, given: list[tuple], complete: set[int]) -> dict[int, str]:
    """Record → final label, of complete records that have one (what rules are measured against)."""
    return {
        rid: final.label
        for rid, final in training.aggregate_answers(info, given).items()
        if rid in complete and final.label is not None
    }


__all__ = ["SOURCES", "LabelChoice", "LabelingService", "ProjectKey", "ProjectState"]
