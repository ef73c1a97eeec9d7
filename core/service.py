"""The facade every client uses (bot, CLI, simulator): ids and primitives in, frozen dataclasses out."""

from __future__ import annotations

import logging
import os
import pickle
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, delete, func, insert, select, union, update
from sqlmodel import Session

from core import aggregate as agg
from core import io, stopping
from core import review as rv
from core.config import Settings, load_settings
from core.embeddings import Embedder, ProgressCallback, make_embedder
from core.errors import (
    LabelbotError,
    NothingToUndo,
    ProjectExists,
    ProjectNotFound,
    RecordNotFound,
    StaleRecord,
    UnknownLabel,
)
from core.index import VectorIndex
from core.learner import EmbeddingClassifier, cross_validated_metrics, out_of_fold_proba, singleton_rows
from core.models import (
    Annotation,
    ContextBinding,
    Embedding,
    Lease,
    ModelRun,
    ModelRunReport,
    Project,
    QueueItem,
    Record,
    Skip,
    utcnow,
)
from core.store import create_db_engine, read_session, write_session
from core.strategies import STRATEGIES, get_strategy
from core.types import (
    AnnotatorStats,
    AnswerResult,
    ExportResult,
    ImportResult,
    LabelDef,
    ModelRunInfo,
    PairAgreement,
    ProjectInfo,
    ProjectStatus,
    RecordView,
    ReviewItem,
    SimilarRecord,
    UndoResult,
)

log = logging.getLogger(__name__)

SOURCES = ("slack", "import", "cli", "review")
EXPORT_COLUMNS = ("id", "text", "label", "n_annotations", "agreement", "predicted_label", "probability")
_INSERT_CHUNK = 5_000


@dataclass
class _Pool:
    """Embeddings of one project, in memory: rows ordered by record id."""

    data_version: int
    model: str
    index: VectorIndex

    @property
    def ids(self) -> np.ndarray:
        return self.index.ids

    @property
    def vectors(self) -> np.ndarray:
        return self.index.vectors


class _Guesses:
    """Lazy record id → (label, probability) lookup over a prediction table aligned with the pool."""

    def __init__(self, index: VectorIndex, table: np.ndarray | None, classes: tuple[str, ...]) -> None:
        self._index, self._table, self._classes = index, table, classes

    def get(self, record_id: int) -> tuple[str, float] | None:
        if self._table is None:
            return None
        row = self._index.row_of(record_id)
        if row is None:
            return None
        return self._classes[int(self._table[row, 0])], float(self._table[row, 1])


class LabelingService:
    """Projects, records, answers, the active-learning queue and the model.

    Thread-safe: the bot calls it from many request threads at once. Training runs either inline
    (``retrain``) or on one background worker (``request_retrain``), never on the caller's thread
    when ``background=True``.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        embedder: Embedder | None = None,
        engine: Engine | None = None,
        background: bool = False,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings or load_settings()
        # Lease expiry and seconds-per-answer read the time from here, so tests can move it.
        self.clock = clock
        self.engine = engine or create_db_engine(self.settings.database_url)
        self._embedder = embedder
        self._lock = threading.Lock()  # guards the dicts below
        self._handout_locks: dict[int, threading.Lock] = {}
        self._retrain_locks: dict[int, threading.Lock] = {}
        self._pools: dict[int, _Pool] = {}
        self._predictions: dict[int, tuple[int, int, np.ndarray, tuple[str, ...]]] = {}
        self._answers_since_train: Counter[int] = Counter()
        self._pending_retrains: dict[int, Future[ModelRunInfo | None]] = {}
        self._trained_fingerprints: dict[int, str] = {}  # labels each project was last trained on
        self._advice_cache: dict[int, tuple[str, Any]] = {}  # per-class F1 by labels fingerprint
        self._executor = (
            ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="labelbot-train", initializer=self._lower_training_priority
            )
            if background
            else None
        )
        self.retrain_listeners: list[Callable[[ModelRunInfo | None, str], None]] = []

    # ------------------------------------------------------------------ lifecycle

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            s = self.settings
            self._embedder = make_embedder(
                s.embedding_model, batch_size=s.embedding_batch_size, device=s.embedding_device
            )
        return self._embedder

    def close(self) -> None:
        """Wait for background work and release the database."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self.engine.dispose()

    # ------------------------------------------------------------------ projects

    def create_project(
        self,
        name: str,
        labels: Sequence[str | LabelDef],
        *,
        answers_per_record: int | None = None,
        strategy: str | None = None,
    ) -> ProjectInfo:
        """Create a project with an ordered label set."""
        name = name.strip()
        if not name:
            raise LabelbotError("A project needs a name.")
        defs = [label if isinstance(label, LabelDef) else LabelDef(str(label).strip()) for label in labels]
        names = [d.name for d in defs]
        if len(defs) < 2:
            raise LabelbotError("A project needs at least two labels.")
        if any(not n for n in names):
            raise LabelbotError("Label names must not be empty.")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise LabelbotError(f"Duplicate labels: {', '.join(duplicates)}.")
        settings = {
            "answers_per_record": self._check_k(answers_per_record or self.settings.answers_per_record),
            "strategy": self._check_strategy(strategy or self.settings.strategy),
        }
        with write_session(self.engine) as session:
            if session.exec(select(Project.id).where(Project.name == name)).first():
                raise ProjectExists(name)
            project = Project(
                name=name,
                labels=[{"name": d.name, "description": d.description} for d in defs],
                settings=settings,
            )
            session.add(project)
            session.flush()
            info = _project_info(project)
        return info

    def get_project(self, name: str) -> ProjectInfo:
        with read_session(self.engine) as session:
            return _project_info(self._project(session, name))

    def get_project_by_id(self, project_id: int) -> ProjectInfo:
        """For clients that carry a compact id (chat buttons); ProjectNotFound when it was deleted."""
        with read_session(self.engine) as session:
            project = session.get(Project, project_id)
            if project is None:
                raise ProjectNotFound(f"#{project_id}")
            return _project_info(project)

    def list_projects(self) -> list[ProjectInfo]:
        with read_session(self.engine) as session:
            return [_project_info(p) for p in session.exec(select(Project).order_by(Project.name)).scalars()]

    def configure_project(
        self,
        name: str,
        *,
        answers_per_record: int | None = None,
        strategy: str | None = None,
        extra_answer_on_disagreement: bool | None = None,
    ) -> ProjectInfo:
        """Change a project's crowd redundancy, disagreement routing or query strategy."""
        with write_session(self.engine) as session:
            project = self._project(session, name)
            settings = dict(project.settings)
            if answers_per_record is not None:
                settings["answers_per_record"] = self._check_k(answers_per_record)
            if strategy is not None:
                settings["strategy"] = self._check_strategy(strategy)
            if extra_answer_on_disagreement is not None:
                settings["extra_answer_on_disagreement"] = bool(extra_answer_on_disagreement)
            project.settings = settings
            session.add(project)
            k = settings["answers_per_record"]
            # Completeness depends on k: recompute it for every record in one statement.
            gold = select(Annotation.record_id).where(
                Annotation.project_id == project.id, Annotation.source == "review"
            )
            session.execute(
                update(Record)
                .where(Record.project_id == project.id)
                .values(complete=(Record.n_answers >= k) | Record.id.in_(gold))
            )
            session.flush()
            info = _project_info(project)
            self._reopen_ties(session.connection(), info)
            return info

    def delete_project(self, name: str) -> None:
        with write_session(self.engine) as session:
            project = self._project(session, name)
            session.execute(delete(Project).where(Project.id == project.id))
            pid = project.id
        with self._lock:
            self._pools.pop(pid, None)
            self._predictions.pop(pid, None)

    def bind_context(self, context: str, project: str) -> None:
        """Make ``project`` the default for an outside context (a chat channel, say)."""
        with write_session(self.engine) as session:
            pid = self._project(session, project).id
            session.merge(ContextBinding(context=context, project_id=pid))

    def default_project(self, context: str | None = None) -> str | None:
        """The project bound to ``context``, else the only project, else None."""
        with read_session(self.engine) as session:
            if context is not None:
                bound = session.exec(
                    select(Project.name)
                    .join(ContextBinding, ContextBinding.project_id == Project.id)
                    .where(ContextBinding.context == context)
                ).first()
                if bound:
                    return bound[0]
            names = session.exec(select(Project.name).limit(2)).all()
            return names[0][0] if len(names) == 1 else None

    # ------------------------------------------------------------------ import / export

    def import_file(
        self,
        project: str,
        path: str | Path,
        *,
        text_column: str = "text",
        id_column: str | None = "id",
        label_column: str | None = None,
        annotator_column: str | None = None,
        id_column_required: bool = False,
        fmt: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> ImportResult:
        """Import a CSV/TSV/JSONL file. Bad input raises ``InputFileError`` and writes nothing.

        Known ids are left as they are (re-importing updates nothing and embeds nothing); labels in
        ``label_column`` become annotations with source ``import`` by ``annotator_column`` (or "import").
        """
        info = self.get_project(project)
        rows = io.read_records(
            path,
            text_column=text_column,
            id_column=id_column,
            label_column=label_column,
            annotator_column=annotator_column,
            labels=info.label_names,
            id_column_required=id_column_required,
            fmt=fmt,
        )
        return self.import_rows(project, rows, path=str(path), progress=progress)

    def import_rows(
        self,
        project: str,
        rows: Sequence[io.ImportRow],
        *,
        path: str = "<rows>",
        source: str = "import",
        progress: ProgressCallback | None = None,
    ) -> ImportResult:
        """Import already-validated rows; embeddings are computed before the one write transaction."""
        info = self.get_project(project)
        labels = set(info.label_names)
        for row in rows:
            if row.label is not None and row.label not in labels:
                raise UnknownLabel(f"{path}, line {row.line}: unknown label {row.label!r}.")
        with read_session(self.engine) as session:
            existing = dict(
                session.execute(
                    select(Record.external_id, Record.id).where(Record.project_id == info.id)
                ).all()
            )
        new_texts: dict[str, str] = {}
        for row in rows:
            if row.external_id not in existing and row.external_id not in new_texts:
                new_texts[row.external_id] = row.text
        embedder = self.embedder
        vectors = embedder.encode(list(new_texts.values()), progress=progress) if new_texts else None

        n_annotations = 0
        with write_session(self.engine) as session:
            conn = session.connection()
            if new_texts:
                metas = {row.external_id: row.metadata for row in rows}
                values = [
                    {
                        "project_id": info.id,
                        "external_id": eid,
                        "text": text,
                        "meta": metas.get(eid, {}),
                        "n_answers": 0,
                        "complete": False,
                        "created_at": utcnow(),
                    }
                    for eid, text in new_texts.items()
                ]
                for start in range(0, len(values), _INSERT_CHUNK):
                    conn.execute(insert(Record), values[start : start + _INSERT_CHUNK])
                ids = (
                    dict(
                        conn.execute(
                            select(Record.external_id, Record.id).where(
                                Record.project_id == info.id, Record.external_id.in_(list(new_texts))
                            )
                        ).all()
                    )
                    if len(new_texts) < 30_000
                    else dict(
                        conn.execute(
                            select(Record.external_id, Record.id).where(Record.project_id == info.id)
                        ).all()
                    )
                )
                emb_rows = [
                    {
                        "record_id": ids[eid],
                        "project_id": info.id,
                        "model": embedder.name,
                        "vector": vectors[i].tobytes(),
                    }
                    for i, eid in enumerate(new_texts)
                ]
                for start in range(0, len(emb_rows), _INSERT_CHUNK):
                    conn.execute(insert(Embedding), emb_rows[start : start + _INSERT_CHUNK])
                existing.update(ids)
            answered = {
                (rid, who)
                for rid, who in conn.execute(
                    select(Annotation.record_id, Annotation.annotator).where(Annotation.project_id == info.id)
                ).all()
            }
            new_annotations = []
            for row in rows:
                if row.label is None:
                    continue
                key = (existing[row.external_id], row.annotator or "import")
                if key in answered:
                    continue
                answered.add(key)
                new_annotations.append(
                    {
                        "record_id": key[0],
                        "project_id": info.id,
                        "annotator": key[1],
                        "label": row.label,
                        "source": source,
                        "created_at": utcnow(),
                    }
                )
            for start in range(0, len(new_annotations), _INSERT_CHUNK):
                conn.execute(insert(Annotation), new_annotations[start : start + _INSERT_CHUNK])
            n_annotations = len(new_annotations)
            if n_annotations:
                self._refresh_counts(conn, info.id, info.answers_per_record)
                self._reopen_ties(conn, info)
            if new_texts or n_annotations:
                conn.execute(
                    update(Project).where(Project.id == info.id).values(data_version=Project.data_version + 1)
                )
        return ImportResult(
            project=info.name,
            path=path,
            rows=len(rows),
            new_records=len(new_texts),
            existing_records=len({r.external_id for r in rows}) - len(new_texts),
            annotations=n_annotations,
            embedded=len(new_texts),
        )

    def embed_pending(self, project: str, *, progress: ProgressCallback | None = None) -> int:
        """Embed records that have no vector for the current model (after a model change, say)."""
        info = self.get_project(project)
        model = self.embedder.name
        with read_session(self.engine) as session:
            have = select(Embedding.record_id).where(
                Embedding.project_id == info.id, Embedding.model == model
            )
            missing = session.execute(
                select(Record.id, Record.text).where(Record.project_id == info.id, Record.id.not_in(have))
            ).all()
        if not missing:
            return 0
        vectors = self.embedder.encode([text for _, text in missing], progress=progress)
        with write_session(self.engine) as session:
            conn = session.connection()
            rows = [
                {"record_id": rid, "project_id": info.id, "model": model, "vector": vectors[i].tobytes()}
                for i, (rid, _) in enumerate(missing)
            ]
            for start in range(0, len(rows), _INSERT_CHUNK):
                conn.execute(insert(Embedding), rows[start : start + _INSERT_CHUNK])
            conn.execute(
                update(Project).where(Project.id == info.id).values(data_version=Project.data_version + 1)
            )
        return len(missing)

    def export(self, project: str, path: str | Path, *, fmt: str | None = None) -> ExportResult:
        """One row per record: id, text, final label, answers, agreement, model guess and probability."""
        fmt = (fmt or Path(path).suffix.lstrip(".") or "csv").lower()
        if fmt not in ("csv", "jsonl"):
            raise LabelbotError(f"Unknown export format {fmt!r}: use csv or jsonl.")
        info = self.get_project(project)
        with read_session(self.engine) as session:
            records = session.execute(
                select(Record.id, Record.external_id, Record.text, Record.n_answers, Record.complete)
                .where(Record.project_id == info.id)
                .order_by(Record.id)
            ).all()
        finals = self._aggregate(info)
        predictions = self._predictions_for(info)
        rows = []
        for rid, eid, text, n_answers, complete in records:
            # Only complete records carry a label: the export is uploaded to a channel, where a
            # partial aggregate would show labelers the answers of others they have yet to match.
            final = finals.get(rid) if complete else None
            guess = predictions.get(rid)
            rows.append(
                {
                    "id": eid,
                    "text": text,
                    "label": final.label if final else None,
                    "n_annotations": n_answers,
                    "agreement": round(final.agreement, 4) if final else None,
                    "predicted_label": guess[0] if guess else None,
                    "probability": round(guess[1], 4) if guess else None,
                }
            )
        count = io.write_records(path, rows, fmt=fmt, columns=EXPORT_COLUMNS)
        return ExportResult(project=info.name, path=str(path), rows=count, format=fmt)

    # ------------------------------------------------------------------ labeling

    def next_records(self, project: str, user: str, n: int = 1) -> list[RecordView]:
        """Hand out the next ``n`` records for ``user`` from the ranked queue and lease them.

        Never a record this user answered, skipped or holds already, nor one that is complete or
        whose remaining answers are leased to others.
        """
        if n <= 0:
            return []
        info = self.get_project(project)
        if not self._has_queue(info.id):
            self._rebuild_queue_if_missing(info)
        now = self.clock()
        k = info.answers_per_record
        with self._project_lock(self._handout_locks, info.id), write_session(self.engine) as session:
            conn = session.connection()
            leased_by_others = (
                select(func.count(Lease.id))
                .where(Lease.record_id == Record.id, Lease.annotator != user, Lease.expires_at > now)
                .scalar_subquery()
            )
            mine = union(
                select(Annotation.record_id).where(
                    Annotation.project_id == info.id, Annotation.annotator == user
                ),
                select(Skip.record_id).where(Skip.project_id == info.id, Skip.annotator == user),
                select(Lease.record_id).where(
                    Lease.project_id == info.id, Lease.annotator == user, Lease.expires_at > now
                ),
            )
            # An incomplete record with k answers already was reopened for a tie: it needs one more.
            needs = ((Record.n_answers + leased_by_others) < k) | (
                (Record.n_answers >= k) & (leased_by_others == 0)
            )
            available = (
                (Record.project_id == info.id)
                & Record.complete.is_(False)
                & Record.id.not_in(mine)
                & needs
            )
            picked = conn.execute(
                select(
                    Record.id,
                    Record.external_id,
                    Record.text,
                    QueueItem.predicted_label,
                    QueueItem.confidence,
                    QueueItem.reason,
                )
                .join(QueueItem, QueueItem.record_id == Record.id)
                .where(available, QueueItem.project_id == info.id)
                .order_by(QueueItem.position)
                .limit(n)
            ).all()
            if len(picked) < n:
                # The queue ran dry before the next retrain: fall back to the rest of the pool.
                taken = [row[0] for row in picked]
                more = conn.execute(
                    select(Record.id, Record.external_id, Record.text)
                    .where(available, Record.id.not_in(taken))
                    .order_by(Record.id)
                    .limit(n - len(picked))
                ).all()
                guesses = self._predictions_for(info)
                for rid, eid, text in more:
                    guess = guesses.get(rid)
                    picked.append(
                        (
                            rid,
                            eid,
                            text,
                            guess[0] if guess else None,
                            guess[1] if guess else None,
                            "next in the pool",
                        )
                    )
            if picked:
                ids = [row[0] for row in picked]
                conn.execute(delete(Lease).where(Lease.annotator == user, Lease.record_id.in_(ids)))
                expires = now + timedelta(seconds=self.settings.lease_seconds)
                conn.execute(
                    insert(Lease),
                    [
                        {
                            "record_id": rid,
                            "project_id": info.id,
                            "annotator": user,
                            "shown_at": now,
                            "expires_at": expires,
                        }
                        for rid in ids
                    ],
                )
        return [
            RecordView(
                project=info.name,
                record_id=rid,
                external_id=eid,
                text=text,
                predicted_label=label,
                confidence=conf,
                reason=reason,
            )
            for rid, eid, text, label, conf, reason in picked
        ]

    def get_record(self, project: str, record_id: int) -> RecordView:
        """A record with the current model's guess (for re-rendering a card)."""
        info = self.get_project(project)
        with read_session(self.engine) as session:
            row = session.execute(
                select(Record.external_id, Record.text).where(
                    Record.id == record_id, Record.project_id == info.id
                )
            ).first()
        if row is None:
            raise RecordNotFound(f"Record {record_id} is not in project {info.name!r}.")
        guess = self._predictions_for(info).get(record_id)
        return RecordView(
            project=info.name,
            record_id=record_id,
            external_id=row[0],
            text=row[1],
            predicted_label=guess[0] if guess else None,
            confidence=guess[1] if guess else None,
        )

    def find_record(self, project: str, external_id: str) -> RecordView:
        """Look a record up by the id it had in the imported file."""
        info = self.get_project(project)
        with read_session(self.engine) as session:
            rid = session.execute(
                select(Record.id).where(Record.project_id == info.id, Record.external_id == str(external_id))
            ).scalar()
        if rid is None:
            raise RecordNotFound(f"Project {info.name!r} has no record with id {external_id!r}.")
        return self.get_record(project, rid)

    def record_answer(
        self, project: str, record_id: int, user: str, label: str, *, source: str = "slack"
    ) -> AnswerResult:
        """Store ``user``'s answer. Answering the same record again changes the answer, never adds a row.

        Raises ``StaleRecord`` when the record already has all the answers it needs from others.
        ``source="review"`` is an admin's gold decision: it completes the record whatever the answers.
        """
        if source not in SOURCES:
            raise LabelbotError(f"Unknown answer source {source!r}; expected one of {', '.join(SOURCES)}.")
        info = self.get_project(project)
        if label not in info.label_names:
            raise UnknownLabel(f"{label!r} is not a label of project {info.name!r}.")
        with write_session(self.engine) as session:
            record = self._record(session, info, record_id)
            existing = (
                session.exec(
                    select(Annotation).where(Annotation.record_id == record_id, Annotation.annotator == user)
                )
                .scalars()
                .first()
            )
            lease = (
                session.exec(select(Lease).where(Lease.record_id == record_id, Lease.annotator == user))
                .scalars()
                .first()
            )
            changed = True
            if existing is not None:
                changed = existing.label != label or (source == "review" and existing.source != "review")
                if changed:
                    existing.label = label
                    existing.source = source
                    existing.created_at = self.clock()
                    session.add(existing)
            else:
                if record.complete and source != "review":
                    raise StaleRecord(f"Record {record.external_id} already has all the answers it needs.")
                session.add(
                    Annotation(
                        record_id=record_id,
                        project_id=info.id,
                        annotator=user,
                        label=label,
                        source=source,
                        shown_at=lease.shown_at if lease else None,
                        created_at=self.clock(),
                    )
                )
                record.n_answers += 1
            if source == "review":
                record.complete = True
            else:
                record.complete = record.complete or self._enough_answers(session, info, record)
            session.add(record)
            if lease is not None:
                session.delete(lease)
            session.execute(delete(Skip).where(Skip.record_id == record_id, Skip.annotator == user))
            result_complete = record.complete
            external_id = record.external_id
        started = self._count_answer(info, changed)
        return AnswerResult(
            project=info.name,
            record_id=record_id,
            external_id=external_id,
            user=user,
            label=label,
            changed=changed,
            complete=result_complete,
            retrain_started=started,
        )

    def bulk_label(
        self, project: str, record_ids: Iterable[int], user: str, label: str, *, source: str = "slack"
    ) -> list[AnswerResult]:
        """Apply one label to several records (Show similar); records already complete are skipped."""
        results = []
        for record_id in dict.fromkeys(record_ids):
            try:
                results.append(self.record_answer(project, record_id, user, label, source=source))
            except StaleRecord:
                continue
        return results

    def skip(self, project: str, record_id: int, user: str) -> None:
        """``user`` won't be handed this record again."""
        info = self.get_project(project)
        with write_session(self.engine) as session:
            self._record(session, info, record_id)
            if not session.exec(
                select(Skip.id).where(Skip.record_id == record_id, Skip.annotator == user)
            ).first():
                session.add(Skip(record_id=record_id, project_id=info.id, annotator=user))
            session.execute(delete(Lease).where(Lease.record_id == record_id, Lease.annotator == user))

    def undo(self, project: str, user: str, record_id: int | None = None) -> UndoResult:
        """Remove ``user``'s answer to ``record_id`` (default: their latest) and lease it back to them."""
        info = self.get_project(project)
        with write_session(self.engine) as session:
            query = select(Annotation).where(Annotation.project_id == info.id, Annotation.annotator == user)
            if record_id is not None:
                query = query.where(Annotation.record_id == record_id)
            annotation = (
                session.exec(query.order_by(Annotation.created_at.desc(), Annotation.id.desc()))
                .scalars()
                .first()
            )
            if annotation is None:
                raise NothingToUndo("There is no answer of yours to undo.")
            record = self._record(session, info, annotation.record_id)
            removed_label = annotation.label
            session.delete(annotation)
            record.n_answers = max(0, record.n_answers - 1)
            has_gold = session.exec(
                select(Annotation.id).where(
                    Annotation.record_id == record.id,
                    Annotation.source == "review",
                    Annotation.id != annotation.id,
                )
            ).first()
            record.complete = bool(has_gold) or self._enough_answers(session, info, record)
            session.add(record)
            now = self.clock()
            session.add(
                Lease(
                    record_id=record.id,
                    project_id=info.id,
                    annotator=user,
                    shown_at=now,
                    expires_at=now + timedelta(seconds=self.settings.lease_seconds),
                )
            )
            result = UndoResult(
                project=info.name,
                record_id=record.id,
                external_id=record.external_id,
                user=user,
                label=removed_label,
            )
        self._count_answer(info, True)
        return result

    # ------------------------------------------------------------------ similarity

    def similar(
        self, project: str, *, record_id: int | None = None, text: str | None = None, k: int = 10
    ) -> list[SimilarRecord]:
        """The ``k`` records nearest by cosine similarity to a record (itself excluded) or to free text."""
        if (record_id is None) == (text is None):
            raise LabelbotError("Give either a record or a text to compare with.")
        info = self.get_project(project)
        pool = self._pool(info)
        if record_id is not None:
            row = pool.index.row_of(record_id)
            if row is None:
                raise RecordNotFound(f"Record {record_id} is not in project {info.name!r}.")
            query = pool.vectors[row]
        else:
            if not text or not text.strip():
                raise LabelbotError("Give some text to search for.")
            query = self.embedder.encode([text])[0]
        hits = pool.index.search(query, k, exclude=record_id)
        if not hits:
            return []
        ids = [rid for rid, _ in hits]
        with read_session(self.engine) as session:
            rows = {
                rid: (eid, txt, complete)
                for rid, eid, txt, complete in session.execute(
                    select(Record.id, Record.external_id, Record.text, Record.complete).where(
                        Record.id.in_(ids)
                    )
                ).all()
            }
        finals = self._aggregate(info, record_ids=ids)
        guesses = self._predictions_for(info)
        out = []
        for rid, score in hits:
            eid, txt, complete = rows[rid]
            # Others' answers stay hidden until the record is complete.
            final = finals.get(rid) if complete else None
            guess = guesses.get(rid)
            out.append(
                SimilarRecord(
                    record_id=rid,
                    external_id=eid,
                    text=txt,
                    score=score,
                    label=final.label if final else None,
                    predicted_label=guess[0] if guess else None,
                    confidence=guess[1] if guess else None,
                )
            )
        return out

    # ------------------------------------------------------------------ training

    def retrain(self, project: str, *, queue_size: int | None = None) -> ModelRunInfo | None:
        """Train on the aggregate labels, rescore the pool and replace the ranked queue atomically.

        Returns the recorded run, or None when there are fewer than two labeled classes (the queue is
        then built by the cold-start strategy). At most one retrain per project runs at a time.
        """
        info = self.get_project(project)
        with self._project_lock(self._retrain_locks, info.id):
            return self._retrain_locked(info, queue_size or self.settings.queue_size)

    def request_retrain(self, project: str) -> bool:
        """Retrain in the background; False if one is already waiting for this project."""
        info = self.get_project(project)
        if self._executor is None:
            self.retrain(project)
            return True
        with self._lock:
            pending = self._pending_retrains.get(info.id)
            if pending is not None and not pending.done():
                return False
            self._pending_retrains[info.id] = self._executor.submit(self._background_retrain, info.name)
        return True

    def wait_for_retrains(self, timeout: float | None = None) -> None:
        """Block until queued background retrains finish (for tests, benchmarks and shutdown)."""
        with self._lock:
            futures = list(self._pending_retrains.values())
        for future in futures:
            future.result(timeout=timeout)

    def _background_retrain(self, project: str) -> ModelRunInfo | None:
        try:
            run = self._retrain_in_background(project)
        except Exception:  # a failed retrain must not kill the worker; the old queue stays
            log.exception("Background retrain of %s failed", project)
            return None
        for listener in list(self.retrain_listeners):
            try:
                listener(run, project)
            except Exception:
                log.exception("Retrain listener failed")
        return run

    def _count_answer(self, info: ProjectInfo, changed: bool) -> bool:
        if not changed or self.settings.retrain_every <= 0:
            return False
        with self._lock:
            self._answers_since_train[info.id] += 1
            due = self._answers_since_train[info.id] >= self.settings.retrain_every
        if due and self._executor is not None:
            with self._lock:
                pending = self._pending_retrains.get(info.id)
            if pending is not None and not pending.done():
                # One is already waiting: skip request_retrain's project lookup on every answer meanwhile.
                return False
            return self.request_retrain(info.name)
        return False

    def _retrain_locked(self, info: ProjectInfo, queue_size: int) -> ModelRunInfo | None:
        started = time.perf_counter()
        with self._lock:
            self._answers_since_train[info.id] = 0
        fingerprint = self._labels_fingerprint(info.id)  # before reading labels: later changes count
        pool = self._pool(info)
        labeled_rows, y_arr, candidates = self._training_labels(info, pool)
        y = list(y_arr)
        classifier: EmbeddingClassifier | None = None
        proba: np.ndarray | None = None
        metrics: dict[str, float] = {}
        classes: tuple[str, ...] = ()
        if len(set(y)) >= 2:
            X = pool.vectors[labeled_rows]
            classifier = EmbeddingClassifier(random_state=0).fit(X, y_arr)
            metrics = cross_validated_metrics(
                X, y_arr, estimator_factory=lambda: EmbeddingClassifier(random_state=0)
            )
            proba = classifier.predict_proba(pool.vectors)
            classes = tuple(str(c) for c in classifier.classes_)
            metrics.update(self._stability_metrics(info, pool, labeled_rows, proba, classes))
        strategy = get_strategy(info.strategy)
        picks = strategy.query(
            proba=proba,
            embeddings=pool.vectors,
            candidates=candidates,
            classes=classes,
            n=min(queue_size, len(candidates)),
            rng=np.random.default_rng(len(y)),
            labeled=labeled_rows,
            # Labelers answer this many before the next retrain rebuilds the queue.
            batch_size=min(queue_size, self.settings.retrain_every or queue_size),
        )
        queue_rows = []
        for position, pick in enumerate(picks):
            guess_label = guess_conf = None
            if proba is not None:
                best = int(np.argmax(proba[pick.index]))
                guess_label, guess_conf = classes[best], float(proba[pick.index, best])
            queue_rows.append(
                {
                    "project_id": info.id,
                    "position": position,
                    "record_id": int(pool.ids[pick.index]),
                    "predicted_label": guess_label,
                    "confidence": guess_conf,
                    "reason": pick.reason,
                }
            )
        label_counts = {name: 0 for name in info.label_names}
        for label in y:
            label_counts[label] = label_counts.get(label, 0) + 1
        duration = time.perf_counter() - started
        run_info = None
        with write_session(self.engine) as session:
            conn = session.connection()
            if classifier is not None:
                run = ModelRun(
                    project_id=info.id,
                    n_labels=len(y),
                    strategy=info.strategy,
                    metrics=metrics,
                    label_counts=label_counts,
                    duration_seconds=duration,
                    embedding_model=self.embedder.name,
                    model_blob=pickle.dumps(classifier),
                )
                session.add(run)
                session.flush()
                run_info = _run_info(run, info.name)
                session.add(ModelRunReport(run_id=run.id, project_id=info.id, fingerprint=fingerprint))
            # The new queue replaces the old one in this same transaction: readers see one or the other.
            conn.execute(delete(QueueItem).where(QueueItem.project_id == info.id))
            if queue_rows:
                conn.execute(insert(QueueItem), queue_rows)
        with self._lock:
            self._trained_fingerprints[info.id] = fingerprint
        if classifier is not None and run_info is not None:
            best = proba.argmax(axis=1)
            with self._lock:
                self._predictions[info.id] = (
                    run_info.id,
                    pool.data_version,
                    np.stack([best, proba[np.arange(len(best)), best]], axis=1),
                    classes,
                )
        return run_info

    def _has_queue(self, project_id: int) -> bool:
        with read_session(self.engine) as session:
            return (
                session.execute(
                    select(QueueItem.id).where(QueueItem.project_id == project_id).limit(1)
                ).first()
                is not None
            )

    def _rebuild_queue_if_missing(self, info: ProjectInfo) -> None:
        with self._project_lock(self._retrain_locks, info.id):
            if not self._has_queue(info.id):
                self._retrain_locked(info, self.settings.queue_size)

    # ------------------------------------------------------------------ status

    def status(self, project: str) -> ProjectStatus:
        """Progress, per-label counts, per-annotator figures, agreement and the latest model run."""
        info = self.get_project(project)
        with read_session(self.engine) as session:
            total = session.execute(
                select(func.count(Record.id)).where(Record.project_id == info.id)
            ).scalar_one()
            remaining = session.execute(
                select(func.count(Record.id)).where(Record.project_id == info.id, Record.complete.is_(False))
            ).scalar_one()
            complete = set(
                session.execute(
                    select(Record.id).where(Record.project_id == info.id, Record.complete.is_(True))
                ).scalars()
            )
            answers = session.execute(
                select(
                    Annotation.record_id,
                    Annotation.annotator,
                    Annotation.label,
                    Annotation.source,
                    Annotation.shown_at,
                    Annotation.created_at,
                ).where(Annotation.project_id == info.id)
            ).all()
            latest = (
                session.exec(
                    select(ModelRun)
                    .where(ModelRun.project_id == info.id)
                    .order_by(ModelRun.id.desc())
                    .limit(1)
                )
                .scalars()
                .first()
            )
            latest_info = _run_info(latest, info.name) if latest else None
        # Counts, agreement and the labels shown cover complete records only: a partial aggregate
        # would reveal others' answers to someone still due to answer the record.
        finals = {
            rid: final for rid, final in self._aggregate_answers(info, answers).items() if rid in complete
        }
        label_counts = {name: 0 for name in info.label_names}
        for final in finals.values():
            if final.label is not None:
                label_counts[final.label] = label_counts.get(final.label, 0) + 1
        triples = [(rid, who, label) for rid, who, label, source, *_ in answers if source != "review"]
        per_user: dict[str, list[Any]] = defaultdict(list)
        for rid, who, label, source, shown_at, created_at in answers:
            per_user[who].append((rid, label, shown_at, created_at, source))
        estimated = {}
        if info.answers_per_record >= 3 and triples:
            estimated = agg.dawid_skene(triples, labels=info.label_names).annotator_accuracy
        annotators = []
        for who, items in per_user.items():
            seconds = [(c - s).total_seconds() for _, _, s, c, _ in items if s is not None and c >= s]
            # A gold decision agrees with the aggregate by definition: leave it out of agreement.
            scored = [
                (rid, label)
                for rid, label, _, _, source in items
                if source != "review" and finals.get(rid) and finals[rid].label
            ]
            agreement = (
                sum(label == finals[rid].label for rid, label in scored) / len(scored) if scored else None
            )
            annotators.append(
                AnnotatorStats(
                    user=who,
                    answers=len(items),
                    median_seconds=statistics.median(seconds) if seconds else None,
                    agreement=agreement,
                    estimated_accuracy=estimated.get(who),
                )
            )
        annotators.sort(key=lambda a: (-a.answers, a.user))
        agreement: dict[str, float] = {}
        finished = [t for t in triples if t[0] in complete]
        alpha = agg.krippendorff_alpha_nominal(finished) if finished else None
        if alpha is not None:
            agreement["krippendorff_alpha"] = float(alpha)
        pairs = self._pair_agreement(finished)
        return ProjectStatus(
            project=info.name,
            total=total,
            labeled=sum(1 for f in finals.values() if f.label is not None),
            annotations=len(answers),
            label_counts=label_counts,
            annotators=tuple(annotators),
            latest_run=latest_info,
            remaining=remaining,
            agreement=agreement,
            pairs=pairs,
        )

    def model_runs(self, project: str) -> list[ModelRunInfo]:
        """Every recorded retrain, oldest first (for learning curves)."""
        info = self.get_project(project)
        with read_session(self.engine) as session:
            runs = (
                session.exec(select(ModelRun).where(ModelRun.project_id == info.id).order_by(ModelRun.id))
                .scalars()
                .all()
            )
            return [_run_info(run, info.name) for run in runs]

    def final_labels(self, project: str) -> dict[str, str]:
        """External id → aggregate label, for complete records that have one (what training uses)."""
        info = self.get_project(project)
        finals = self._aggregate(info)
        with read_session(self.engine) as session:
            eids = dict(
                session.execute(
                    select(Record.id, Record.external_id).where(
                        Record.project_id == info.id, Record.complete.is_(True)
                    )
                ).all()
            )
        return {eids[rid]: f.label for rid, f in finals.items() if f.label is not None and rid in eids}

    # ------------------------------------------------------------------ internals

    def _project_lock(self, locks: dict[int, threading.Lock], project_id: int) -> threading.Lock:
        with self._lock:
            return locks.setdefault(project_id, threading.Lock())

    @staticmethod
    def _check_k(k: int) -> int:
        if not 1 <= int(k) <= 50:
            raise LabelbotError("answers_per_record must be between 1 and 50.")
        return int(k)

    @staticmethod
    def _check_strategy(name: str) -> str:
        if name not in STRATEGIES:
            raise LabelbotError(f"Unknown strategy {name!r}; choose one of {', '.join(sorted(STRATEGIES))}.")
        return name

    @staticmethod
    def _project(session: Session, name: str) -> Project:
        project = session.exec(select(Project).where(Project.name == name)).scalars().first()
        if project is None:
            raise ProjectNotFound(name)
        return project

    @staticmethod
    def _record(session: Session, info: ProjectInfo, record_id: int) -> Record:
        record = session.get(Record, record_id)
        if record is None or record.project_id != info.id:
            raise RecordNotFound(f"Record {record_id} is not in project {info.name!r} (was it deleted?).")
        return record

    @staticmethod
    def _refresh_counts(conn: Any, project_id: int, k: int) -> None:
        counts = select(func.count(Annotation.id)).where(Annotation.record_id == Record.id).scalar_subquery()
        gold = select(Annotation.record_id).where(
            Annotation.project_id == project_id, Annotation.source == "review"
        )
        conn.execute(update(Record).where(Record.project_id == project_id).values(n_answers=counts))
        conn.execute(
            update(Record)
            .where(Record.project_id == project_id)
            .values(complete=(Record.n_answers >= k) | Record.id.in_(gold))
        )

    def _aggregate(
        self, info: ProjectInfo, record_ids: Sequence[int] | None = None
    ) -> dict[int, agg.AggregateLabel]:
        with read_session(self.engine) as session:
            query = select(
                Annotation.record_id, Annotation.annotator, Annotation.label, Annotation.source
            ).where(Annotation.project_id == info.id)
            if record_ids is not None and info.answers_per_record < 3:
                query = query.where(Annotation.record_id.in_(list(record_ids)))
            answers = session.execute(query).all()
        return self._aggregate_answers(info, answers)

    @staticmethod
    def _aggregate_answers(info: ProjectInfo, answers: Sequence[Any]) -> dict[int, agg.AggregateLabel]:
        gold = {row[0]: row[2] for row in answers if row[3] == "review"}
        triples = [(row[0], row[1], row[2]) for row in answers if row[3] != "review"]
        return agg.aggregate(triples, info.label_names, answers_per_record=info.answers_per_record, gold=gold)

    def _pool(self, info: ProjectInfo, version: int | None = None) -> _Pool:
        """The project's embeddings in memory, reloaded only when an import changed them.

        ``version``: the project's ``data_version`` if the caller has just read it (saves a session).
        """
        model = self.embedder.name
        if version is None:
            with read_session(self.engine) as session:
                version = session.execute(
                    select(Project.data_version).where(Project.id == info.id)
                ).scalar_one()
        with self._lock:
            cached = self._pools.get(info.id)
            if cached is not None and cached.data_version == version and cached.model == model:
                return cached
        with read_session(self.engine) as session:
            rows = session.execute(
                select(Embedding.record_id, Embedding.vector)
                .where(Embedding.project_id == info.id, Embedding.model == model)
                .order_by(Embedding.record_id)
            ).all()
        if rows:
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
        else:
            ids = np.zeros(0, dtype=np.int64)
            vectors = np.zeros((0, 1), dtype=np.float32)
        pool = _Pool(data_version=version, model=model, index=VectorIndex(ids, vectors))
        with self._lock:
            self._pools[info.id] = pool
        return pool

    def _predictions_for(self, info: ProjectInfo) -> _Guesses:
        """The latest model's guess per record (empty before any model)."""
        with read_session(self.engine) as session:
            latest_id = session.execute(
                select(func.max(ModelRun.id)).where(ModelRun.project_id == info.id)
            ).scalar_one()
            # Read with the run id: every card render comes here, and a session costs more than the query.
            version = session.execute(select(Project.data_version).where(Project.id == info.id)).scalar_one()
        pool = self._pool(info, version)
        if latest_id is None:
            return _Guesses(pool.index, None, ())
        with self._lock:
            cached = self._predictions.get(info.id)
        if cached is None or cached[0] != latest_id or cached[1] != pool.data_version:
            with read_session(self.engine) as session:
                blob = session.execute(
                    select(ModelRun.model_blob).where(ModelRun.id == latest_id)
                ).scalar_one()
            if blob is None or len(pool.ids) == 0:
                return _Guesses(pool.index, None, ())
            classifier = pickle.loads(blob)  # written by this service only, never by users
            proba = classifier.predict_proba(pool.vectors)
            best = proba.argmax(axis=1)
            cached = (
                latest_id,
                pool.data_version,
                np.stack([best, proba[np.arange(len(best)), best]], axis=1),
                tuple(str(c) for c in classifier.classes_),
            )
            with self._lock:
                self._predictions[info.id] = cached
        return _Guesses(pool.index, cached[2], cached[3])

    # ------------------------------------------------------------------ read-only model access

    def latest_classifier(self, project: str) -> EmbeddingClassifier | None:
        """The classifier of the project's latest model run (None before the first), e.g. to evaluate it."""
        info = self.get_project(project)
        with read_session(self.engine) as session:
            blob = session.execute(
                select(ModelRun.model_blob)
                .where(ModelRun.project_id == info.id)
                .order_by(ModelRun.id.desc())
                .limit(1)
            ).scalar()
        return pickle.loads(blob) if blob is not None else None  # written by this service only

    # ------------------------------------------------------------------ crowd: agreement and review

    #: Cohen's kappa is reported for annotator pairs with at least this many complete records in common.
    min_kappa_overlap: int = 10

    def review_queue(self, project: str, limit: int = 10) -> list[ReviewItem]:
        """Complete records an admin should decide, most urgent first; never one with a gold label.

        In this order: ties (the classifier cannot train on them), records whose chosen label has no
        majority of the answers (``core.review.LOW_AGREEMENT``), likely mislabels found by confident
        learning on out-of-fold probabilities (``core.review.find_label_issues``), and records whose
        aggregate the latest model contradicts with probability >= ``core.review.MODEL_CONFIDENCE``.
        An answer with ``source="review"`` is the gold label and takes the record off the queue.
        """
        if limit <= 0:
            return []
        info = self.get_project(project)
        with read_session(self.engine) as session:
            complete = set(
                session.execute(
                    select(Record.id).where(Record.project_id == info.id, Record.complete.is_(True))
                ).scalars()
            )
            answers = session.execute(
                select(Annotation.record_id, Annotation.annotator, Annotation.label, Annotation.source)
                .where(Annotation.project_id == info.id)
                .order_by(Annotation.created_at, Annotation.id)
            ).all()
        gold = {rid for rid, _, _, source in answers if source == "review"}
        finals = self._aggregate_answers(info, answers)
        crowd: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for rid, who, label, source in answers:
            if source != "review":
                crowd[rid].append((who, label))
        guesses = self._predictions_for(info)
        # record id -> (sort key, kind, reason, suggested label, its probability)
        found: dict[int, tuple[tuple[float, ...], str, str, str | None, float | None]] = {}

        for rid in sorted(complete - gold):
            final = finals.get(rid)
            votes = [label for _, label in crowd.get(rid, [])]
            if final is None or len(votes) < 2:
                continue
            guess = guesses.get(rid)
            if final.label is None:
                split = ", ".join(f"{label} {n}" for label, n in Counter(votes).most_common())
                found[rid] = ((0, rid), "tie", f"The answers are split ({split}).", *(guess or (None, None)))
            elif final.agreement <= rv.LOW_AGREEMENT:
                reason = (
                    f"No majority: {final.label} got {final.agreement:.0%} of {len(votes)} answers "
                    f"({', '.join(f'{label} {n}' for label, n in Counter(votes).most_common())})."
                )
                key = (1, final.agreement, final.confidence, rid)
                found[rid] = (key, "low_agreement", reason, *(guess or (None, None)))

        for rid, suggested, proba in self._label_issues(info, finals, complete):
            if rid in found or rid in gold:
                continue
            reason = (
                f"Likely mislabel: labeled {finals[rid].label}, but a model trained without this record "
                f"says {suggested} ({proba:.0%})."
            )
            found[rid] = ((2, -proba, rid), "label_issue", reason, suggested, proba)

        for rid in sorted(complete - gold - set(found)):
            final, guess = finals.get(rid), guesses.get(rid)
            if final is None or final.label is None or guess is None:
                continue
            if guess[0] != final.label and guess[1] >= rv.MODEL_CONFIDENCE:
                reason = (
                    f"The model is {guess[1]:.0%} sure this is {guess[0]}; the answers say {final.label}."
                )
                found[rid] = ((3, -guess[1], rid), "model_disagrees", reason, guess[0], guess[1])

        chosen = sorted(found.items(), key=lambda kv: kv[1][0])[:limit]
        with read_session(self.engine) as session:
            texts = {
                rid: (eid, text)
                for rid, eid, text in session.execute(
                    select(Record.id, Record.external_id, Record.text).where(
                        Record.id.in_([rid for rid, _ in chosen])
                    )
                ).all()
            }
        return [
            ReviewItem(
                project=info.name,
                record_id=rid,
                external_id=texts[rid][0],
                text=texts[rid][1],
                kind=kind,
                reason=reason,
                label=finals[rid].label,
                answers=tuple(crowd.get(rid, [])),
                suggested_label=suggested,
                confidence=proba,
            )
            for rid, (_, kind, reason, suggested, proba) in chosen
        ]

    def _label_issues(
        self, info: ProjectInfo, finals: dict[int, agg.AggregateLabel], complete: set[int]
    ) -> list[tuple[int, str, float]]:
        """(record id, the class the out-of-fold model prefers, its probability) per likely mislabel."""
        pool = self._pool(info)
        rows, ids, y = [], [], []
        for row, rid in enumerate(pool.ids):
            final = finals.get(int(rid)) if int(rid) in complete else None
            if final is not None and final.label is not None:
                rows.append(row)
                ids.append(int(rid))
                y.append(final.label)
        y_arr = np.asarray(y, dtype=object)
        if len(y) < 10 or len(set(y)) < 2:
            return []
        try:
            proba = out_of_fold_proba(
                pool.vectors[np.asarray(rows, dtype=np.int64)],
                y_arr,
                estimator_factory=lambda: EmbeddingClassifier(random_state=0),
            )
        except ValueError:  # no label has two examples yet
            return []
        classes = np.unique(y_arr)
        given = np.searchsorted(classes, y_arr)
        # Rows of single-example labels were never held out: their probabilities are in-sample.
        singles = singleton_rows(y_arr)
        return [
            (ids[i], str(classes[proba[i].argmax()]), float(proba[i].max()))
            for i in rv.find_label_issues(given, proba)
            if not singles[i]
        ]

    def _pair_agreement(self, triples: Sequence[tuple[int, str, str]]) -> tuple[PairAgreement, ...]:
        """Cohen's kappa per annotator pair with enough overlap, the largest overlaps first."""
        if not triples:
            return ()
        pairs = agg.cohen_kappa_pairs(triples, min_overlap=self.min_kappa_overlap)
        ordered = sorted(pairs.items(), key=lambda kv: (-kv[1][1], str(kv[0][0]), str(kv[0][1])))
        return tuple(PairAgreement(str(a), str(b), float(kappa), n) for (a, b), (kappa, n) in ordered)

    def _enough_answers(self, session: Session, info: ProjectInfo, record: Record) -> bool:
        """Whether ``record`` has the answers it needs; a tie among exactly k asks for one more when
        the project routes disagreements to another labeler before review."""
        k = info.answers_per_record
        if record.n_answers < k:
            return False
        if not info.extra_answer_on_disagreement or record.n_answers > k:
            return True
        labels = session.execute(select(Annotation.label).where(Annotation.record_id == record.id)).scalars()
        return not rv.needs_extra_answer(list(labels), k)

    def _reopen_ties(self, conn: Any, info: ProjectInfo) -> None:
        """After a bulk completeness update: reopen tied records with exactly k answers (routing on)."""
        if not info.extra_answer_on_disagreement:
            return
        k = info.answers_per_record
        gold = select(Annotation.record_id).where(
            Annotation.project_id == info.id, Annotation.source == "review"
        )
        rows = conn.execute(
            select(Annotation.record_id, Annotation.label)
            .join(Record, Record.id == Annotation.record_id)
            .where(
                Record.project_id == info.id,
                Record.complete.is_(True),
                Record.n_answers == k,
                Record.id.not_in(gold),
            )
        ).all()
        votes: dict[int, list[str]] = defaultdict(list)
        for rid, label in rows:
            votes[rid].append(label)
        tied = [rid for rid, labels in votes.items() if rv.needs_extra_answer(labels, k)]
        for start in range(0, len(tied), _INSERT_CHUNK):
            conn.execute(update(Record).where(Record.id.in_(tied[start : start + _INSERT_CHUNK])).values(
                complete=False
            ))

    # ------------------------------------------------------------------ schedule: stopping advice (issue 4)

    #: Added to the training thread's nice value (Linux; 0 leaves it alone). Request threads then get
    #: the CPU first while a retrain runs: see "Click latency during a retrain" in docs/benchmarks.md.
    training_nice: int = 10
    #: Where background retrains run: None on the training thread of this process, or a
    #: ``core.trainer.ProcessTrainer`` (``labelbot serve`` sets one) in its worker process, so training
    #: never holds this process's GIL while request threads need it.
    trainer: Any = None

    def _retrain_in_background(self, project: str) -> ModelRunInfo | None:
        if self.trainer is None:
            return self.retrain(project)
        info = self.get_project(project)
        with self._project_lock(self._retrain_locks, info.id):
            with self._lock:
                self._answers_since_train[info.id] = 0
            fingerprint = self._labels_fingerprint(info.id)
            # The worker writes the run and swaps the queue, like retrain(); its guesses for the pool
            # come back with it, so no click has to predict the whole pool again in this process.
            run, guesses = self.trainer.retrain_with_guesses(project)
            with self._lock:
                self._trained_fingerprints[info.id] = fingerprint
                if guesses is not None:
                    self._predictions[info.id] = guesses  # checked against the pool's data version on use
        return run

    def _lower_training_priority(self) -> None:
        # Linux schedules each thread as its own task, so this lowers the training worker only.
        if self.training_nice and sys.platform.startswith("linux"):
            try:
                tid = threading.get_native_id()
                nice = min(19, os.getpriority(os.PRIO_PROCESS, tid) + self.training_nice)
                os.setpriority(os.PRIO_PROCESS, tid, nice)
            except OSError:
                log.warning("Could not lower the training thread's priority", exc_info=True)

    def labels_changed_since_retrain(self, project: str) -> bool:
        """Whether answers, undos or imports happened since the project's last retrain.

        Compares a fingerprint of the project's answers (count, newest id and time) and its data
        version with the one taken when the last retrain read its labels; that one is kept in memory
        and on the run (``ModelRunReport``), so a restarted bot does not retrain an unchanged project.
        """
        info = self.get_project(project)
        current = self._labels_fingerprint(info.id)
        with self._lock:
            last = self._trained_fingerprints.get(info.id)
        if last is None:
            with read_session(self.engine) as session:
                last = session.execute(
                    select(ModelRunReport.fingerprint)
                    .where(ModelRunReport.project_id == info.id)
                    .order_by(ModelRunReport.run_id.desc())
                    .limit(1)
                ).scalar()
        if last is None:
            return not current.startswith("0:")  # never trained: worth it once anyone answered
        return current != last

    def retrain_if_changed(self, project: str) -> bool:
        """Retrain (on the background worker when there is one) if anything changed; True if started."""
        if not self.labels_changed_since_retrain(project):
            return False
        return self.request_retrain(project)

    def pending_count(self, project: str) -> int:
        """Records that still need an answer (cheaper than ``status`` for a prompt)."""
        info = self.get_project(project)
        with read_session(self.engine) as session:
            return session.execute(
                select(func.count(Record.id)).where(Record.project_id == info.id, Record.complete.is_(False))
            ).scalar_one()

    def run_history(self, project: str) -> list[ModelRunInfo]:
        """Every recorded retrain, oldest first, without loading the stored classifiers (for charts)."""
        info = self.get_project(project)
        columns = (ModelRun.id, ModelRun.created_at, ModelRun.n_labels, ModelRun.strategy, ModelRun.metrics,
                   ModelRun.label_counts, ModelRun.duration_seconds)
        with read_session(self.engine) as session:
            rows = session.execute(
                select(*columns).where(ModelRun.project_id == info.id).order_by(ModelRun.id)
            ).all()
        return [
            ModelRunInfo(id=rid, project=info.name, created_at=created, n_labels=n, strategy=strategy,
                         metrics=dict(metrics), label_counts=dict(counts), duration_seconds=seconds)
            for rid, created, n, strategy, metrics, counts, seconds in rows
        ]

    def answers_by_user(self, project: str, *, since: datetime) -> dict[str, int]:
        """Answers per annotator given at or after ``since`` (aware or UTC), most first."""
        info = self.get_project(project)
        since = since.replace(tzinfo=UTC) if since.tzinfo is None else since.astimezone(UTC)
        with read_session(self.engine) as session:
            rows = session.execute(
                select(Annotation.annotator, func.count(Annotation.id))
                .where(Annotation.project_id == info.id, Annotation.created_at >= since)
                .group_by(Annotation.annotator)
            ).all()
        return dict(sorted(((who, int(n)) for who, n in rows), key=lambda kv: (-kv[1], kv[0])))

    def stopping_advice(self, project: str) -> stopping.StoppingAdvice:
        """Whether more labels are likely to help (stabilizing predictions + plateau) and the weak labels.

        Per-class F1 comes from one out-of-fold pass over the current labels, cached until they change.
        """
        info = self.get_project(project)
        fingerprint = self._labels_fingerprint(info.id)
        with self._lock:
            cached = self._advice_cache.get(info.id)
        if cached is not None and cached[0] == fingerprint:
            report = cached[1]
        else:
            pool = self._pool(info)
            rows, y, _ = self._training_labels(info, pool)
            report = stopping.cv_report(
                pool.vectors[rows], y, estimator_factory=lambda: EmbeddingClassifier(random_state=0)
            )
            with self._lock:
                self._advice_cache[info.id] = (fingerprint, report)
        return stopping.advise(
            info.name,
            self.run_history(project),
            label_names=info.label_names,
            per_class_f1=report.per_class_f1,
            support=report.support,
        )

    def _labels_fingerprint(self, project_id: int) -> str:
        with read_session(self.engine) as session:
            count, last_id, last_at = session.execute(
                select(func.count(Annotation.id), func.max(Annotation.id), func.max(Annotation.created_at))
                .where(Annotation.project_id == project_id)
            ).one()
            version = session.execute(
                select(Project.data_version).where(Project.id == project_id)
            ).scalar()
        return f"{count}:{last_id}:{last_at}:{version}"

    def _training_labels(self, info: ProjectInfo, pool: _Pool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pool rows and labels a retrain trains on now, and the rows still needing answers.

        Only complete records train: a partial aggregate would leak into the guess shown to the next
        labeler of that very record (others' answers stay hidden until complete).
        """
        finals = self._aggregate(info)
        with read_session(self.engine) as session:
            complete = set(
                session.execute(
                    select(Record.id).where(Record.project_id == info.id, Record.complete.is_(True))
                ).scalars()
            )
        rows, y, candidates = [], [], []
        for row, rid in enumerate(pool.ids):
            if int(rid) not in complete:
                candidates.append(row)
                continue
            final = finals.get(int(rid))
            if final is not None and final.label is not None:
                rows.append(row)
                y.append(final.label)
        return (np.asarray(rows, dtype=np.int64), np.asarray(y, dtype=object),
                np.asarray(candidates, dtype=np.int64))

    def _stability_metrics(
        self,
        info: ProjectInfo,
        pool: _Pool,
        labeled_rows: np.ndarray,
        proba: np.ndarray,
        classes: tuple[str, ...],
    ) -> dict[str, float]:
        """``{"stability_kappa": κ}`` between an earlier model and this one on a fixed unlabeled sample.

        The earlier model is the latest trained on ``stopping.stability_gap`` fewer labels or less (see
        there why not simply the previous one). It is read back from its stored blob (a few ms) rather
        than keeping its predictions: the sample then never has to match an old pool, and other
        processes' runs count. Empty until such a model exists, or after the embedding model changed.
        """
        unlabeled = np.setdiff1d(np.arange(len(pool.ids), dtype=np.int64), labeled_rows)
        if len(unlabeled) == 0:
            return {}
        n_labels = len(labeled_rows)
        with read_session(self.engine) as session:
            previous = session.execute(
                select(ModelRun.model_blob, ModelRun.embedding_model)
                .where(
                    ModelRun.project_id == info.id,
                    ModelRun.n_labels <= n_labels - stopping.stability_gap(n_labels),
                )
                .order_by(ModelRun.id.desc())
                .limit(1)
            ).first()
        if previous is None or previous[0] is None or previous[1] != self.embedder.name:
            return {}
        model = pickle.loads(previous[0])  # written by this service only, never by users
        if getattr(model, "n_features_in_", None) != pool.vectors.shape[1]:
            return {}
        sample = unlabeled[stopping.stable_sample(pool.ids[unlabeled], seed=info.id)]
        before = [str(label) for label in model.predict(pool.vectors[sample])]
        after = [classes[i] for i in proba[sample].argmax(axis=1)]
        return {"stability_kappa": stopping.prediction_kappa(before, after)}


def _project_info(project: Project) -> ProjectInfo:
    return ProjectInfo(
        id=project.id,  # type: ignore[arg-type]
        name=project.name,
        labels=tuple(LabelDef(d["name"], d.get("description", "")) for d in project.labels),
        answers_per_record=int(project.settings.get("answers_per_record", 1)),
        strategy=str(project.settings.get("strategy", "margin-kmeans")),
        created_at=project.created_at,
        extra_answer_on_disagreement=bool(project.settings.get("extra_answer_on_disagreement", False)),
    )


def _run_info(run: ModelRun, project: str) -> ModelRunInfo:
    return ModelRunInfo(
        id=run.id,  # type: ignore[arg-type]
        project=project,
        created_at=run.created_at,
        n_labels=run.n_labels,
        strategy=run.strategy,
        metrics=dict(run.metrics),
        label_counts=dict(run.label_counts),
        duration_seconds=run.duration_seconds,
    )
