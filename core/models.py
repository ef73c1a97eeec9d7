"""SQLModel tables. Bulk paths (import, embeddings, queue) go through SQLAlchemy Core on these tables."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, ForeignKey, Index, Integer, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def _fk(target: str) -> Any:
    # ON DELETE CASCADE so deleting a project removes everything under it in one statement.
    return Column(Integer, ForeignKey(target, ondelete="CASCADE"), nullable=False, index=True)


class Project(SQLModel, table=True):
    # AUTOINCREMENT: an id is never reused, so a button naming a deleted project can't reach a new one.
    __table_args__ = {"sqlite_autoincrement": True}
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)
    # Ordered label set: [{"name": ..., "description": ...}, ...]
    labels: list[dict[str, str]] = Field(sa_column=Column(JSON, nullable=False))
    settings: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # Bumped on every import so long-lived processes know their cached embeddings are stale.
    data_version: int = 0
    # Bumped on every change of labels or settings: processes sharing the database check it (one
    # indexed read in the transaction they open anyway) before trusting their cached ProjectInfo.
    version: int = 0
    # The latest ModelRun, written with it: cached guesses are checked against it without a max() query.
    latest_run_id: int | None = None
    # The embedding model whose vectors the project uses (None: the settings' model, for projects made
    # before models were per project). ``embedding_target`` is the model being embedded towards by
    # ``labelbot embed --model``: the project switches to it, atomically, once every record has one.
    embedding_model: str | None = None
    embedding_target: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Record(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("project_id", "external_id"), {"sqlite_autoincrement": True})
    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(sa_column=_fk("project.id"))
    external_id: str
    text: str
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # Denormalized so hand-out is one indexed query: answers so far, and whether none is needed.
    n_answers: int = 0
    complete: bool = Field(default=False, index=True)
    created_at: datetime = Field(default_factory=utcnow)


class Annotation(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("record_id", "annotator"),
        Index("ix_annotation_project_annotator", "project_id", "annotator", "created_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    record_id: int = Field(sa_column=_fk("record.id"))
    project_id: int = Field(sa_column=_fk("project.id"))
    annotator: str
    label: str
    source: str = "slack"  # slack / import / cli / review (review = an admin's gold decision)
    # When the record was handed to this annotator (for seconds-per-answer), if known.
    shown_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Skip(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("record_id", "annotator"),)
    id: int | None = Field(default=None, primary_key=True)
    record_id: int = Field(sa_column=_fk("record.id"))
    project_id: int = Field(sa_column=_fk("project.id"))
    annotator: str = Field(index=True)
    created_at: datetime = Field(default_factory=utcnow)


class Lease(SQLModel, table=True):
    """A record handed to a labeler and reserved for them until ``expires_at``."""

    __table_args__ = (UniqueConstraint("record_id", "annotator"),)
    id: int | None = Field(default=None, primary_key=True)
    record_id: int = Field(sa_column=_fk("record.id"))
    project_id: int = Field(sa_column=_fk("project.id"))
    annotator: str = Field(index=True)
    shown_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(index=True)


class ModelRun(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(sa_column=_fk("project.id"))
    created_at: datetime = Field(default_factory=utcnow)
    n_labels: int
    strategy: str
    metrics: dict[str, float] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    label_counts: dict[str, int] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    duration_seconds: float = 0.0
    embedding_model: str = ""
    # The fitted classifier (pickle), so other processes (CLI export, the bot) predict with it.
    model_blob: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))


class QueueItem(SQLModel, table=True):
    """The ranked queue of a project: replaced as a whole, in one transaction, after each retrain.

    It also holds the project's gold records (``gold``) with the guesses their cards show."""

    __table_args__ = (Index("ix_queueitem_project_position", "project_id", "position"),)
    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(sa_column=_fk("project.id"))
    position: int
    record_id: int = Field(sa_column=_fk("record.id"))
    predicted_label: str | None = None
    confidence: float | None = None
    reason: str = ""
    # A gold record (core.gold): never ranked; its guess is from a model fit without the gold labels.
    gold: bool = False


class Embedding(SQLModel, table=True):
    """One normalized float32 vector per record and model, stored as raw bytes.

    ``batch`` is the project's ``data_version`` that the transaction writing the row bumped to: batches
    commit in that order, so a process holding rows up to batch b loads only ``batch > b`` next.
    """

    __table_args__ = (Index("ix_embedding_project_model_batch", "project_id", "model", "batch"),)
    record_id: int = Field(
        sa_column=Column(Integer, ForeignKey("record.id", ondelete="CASCADE"), primary_key=True)
    )
    project_id: int = Field(sa_column=_fk("project.id"))
    model: str = Field(primary_key=True)
    vector: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    batch: int = 0


class LabelVector(SQLModel, table=True):
    """The embedding of a label's name (and description) per model: the learner's label-name prior.

    ``text`` is what was embedded, so a renamed or re-described label is embedded again.
    """

    project_id: int = Field(
        sa_column=Column(Integer, ForeignKey("project.id", ondelete="CASCADE"), primary_key=True)
    )
    model: str = Field(primary_key=True)
    label: str = Field(primary_key=True)
    text: str
    vector: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class ContextBinding(SQLModel, table=True):
    """Maps an outside context (e.g. a chat channel id) to a project; core knows nothing about Slack."""

    context: str = Field(primary_key=True)
    project_id: int = Field(sa_column=_fk("project.id"))


class ModelRunReport(SQLModel, table=True):
    """Per-run diagnostics for stopping advice (issue 4), one row per ModelRun.

    Kept beside ``ModelRun`` instead of in its ``metrics`` (which hold scalars that are printed and
    plotted): per-class F1 from the out-of-fold predictions, per-class example counts, and the
    fingerprint of the labels the run was trained on (for "retrain on an interval when anything changed").
    """

    run_id: int = Field(
        sa_column=Column(Integer, ForeignKey("modelrun.id", ondelete="CASCADE"), primary_key=True)
    )
    project_id: int = Field(sa_column=_fk("project.id"))
    per_class_f1: dict[str, float] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    support: dict[str, int] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    fingerprint: str = ""


class LeaderLease(SQLModel, table=True):
    """A named lock held in the database by one process at a time (the scheduler and retrain leader).

    The holder renews ``expires_at``; another process takes the lease over once it has expired, so a
    dead holder is replaced within one lease period.
    """

    name: str = Field(primary_key=True)
    holder: str
    expires_at: datetime
    acquired_at: datetime = Field(default_factory=utcnow)


class Delivery(SQLModel, table=True):
    """The outbox: what a client still owes a labeler after a click (core.deliveries).

    Written in the click's own transaction; deleted once delivered. ``address`` and ``reply_to`` are
    the client's, opaque here (a chat client's card location and where to tell the user of a refusal).
    A row is claimed by one process at a time (``claim_token`` until ``claimed_until``).
    """

    __table_args__ = (Index("ix_delivery_due", "gave_up_at", "due_at"),)
    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(sa_column=_fk("project.id"))
    annotator: str = Field(index=True)
    kind: str  # core.deliveries.KINDS
    record_id: int | None = None  # the clicked record (card updates); none for "cards"
    label: str | None = None  # the answer an "answered" card shows
    complete: bool = False  # whether that answer completed the record
    n: int = 0  # cards still to hand out and send ("cards")
    notify_empty: bool = False  # "cards": say so when none is left
    address: str | None = None
    reply_to: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    due_at: datetime = Field(default_factory=utcnow)
    attempts: int = 0
    claim_token: str | None = None
    claimed_until: datetime | None = None
    last_error: str | None = None
    gave_up_at: datetime | None = None


class Rule(SQLModel, table=True):
    """A keyword or regex rule an admin wrote: a weak label, never an answer (core.rules)."""

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(sa_column=_fk("project.id"))
    label: str  # by name
    kind: str  # core.rules.KINDS
    pattern: str  # keywords: "refund, money back"; regex: "/refund(ed)?/i"
    created_by: str
    created_at: datetime = Field(default_factory=utcnow)
