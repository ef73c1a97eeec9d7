"""Answers: storing, changing and undoing a labeler's answer, skips, and each record's completeness.

Functions take the connection of a transaction the facade opened; completeness follows
``core.policy.is_complete`` (decided there, applied here in Python for one record and in SQL for many).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, func, insert, select, update

from core import multilabel, policy
from core.errors import NothingToUndo, RecordNotFound, StaleRecord
from core.models import Annotation, Lease, Record, Skip
from core.review import needs_extra_answer
from core.store import upsert
from core.types import ProjectInfo

_CHUNK = 5_000

#: Where an answer came from; "review" is an admin's gold decision and completes the record.
SOURCES = ("slack", "import", "cli", "review")


@dataclass(frozen=True)
class StoredAnswer:
    external_id: str
    changed: bool  # False for a repeated click with the same label
    complete: bool


def _record_not_found(info: ProjectInfo, record_id: int) -> RecordNotFound:
    return RecordNotFound(f"Record {record_id} is not in project {info.name!r} (was it deleted?).")


def counts_for_nothing(info: ProjectInfo, label: str) -> bool:
    """Whether an answer is for retired labels only: it stays in the history and the export and counts
    for nothing else (core.labelset). A multi-label set counts while it names an active label, or none
    ("none of these")."""
    if not info.retired_labels:
        return False
    if info.multi_label:
        names = multilabel.split(label)
        return bool(names) and all(name in info.retired_labels for name in names)
    return label in info.retired_labels


def _uncounted(conn: Connection, info: ProjectInfo) -> list[str]:
    """The stored answer texts that count for nothing (:func:`counts_for_nothing`), for SQL filters: a
    single-label project's retired labels; a multi-label project's sets of retired labels only, as stored
    (in whatever order they were when answered)."""
    if not info.multi_label or not info.retired_labels:
        return list(info.retired_labels)
    stored = select(Annotation.label).where(Annotation.project_id == info.id).distinct()
    texts = conn.execute(stored).scalars()
    return [text for text in texts if counts_for_nothing(info, text)]


def _complete(conn: Connection, info: ProjectInfo, record_id: int, n_answers: int, has_gold: bool) -> bool:
    k, extra = info.answers_per_record, info.extra_answer_on_disagreement
    labels = None
    if not has_gold and policy.needs_labels_for_completeness(n_answers, k, extra):
        # The record's own answers, those that count kept here (not by a project-wide query: a click).
        given = conn.execute(select(Annotation.label).where(Annotation.record_id == record_id)).scalars()
        labels = [label for label in given if not counts_for_nothing(info, label)]
    if labels is not None and info.multi_label:  # k set answers: a tie on any label asks one more
        return not multilabel.needs_extra_answer(info, labels)
    return policy.is_complete(
        n_answers, k, has_gold=has_gold, labels=labels, extra_answer_on_disagreement=extra
    )


# The click path's statements, built once: building and cache-keying a statement costs more CPU than
# SQLite takes to run it.
_ANSWER_STATE = (
    select(
        Record.project_id,
        Record.external_id,
        Record.n_answers,
        Record.complete,
        Annotation.id,
        Annotation.label,
        Annotation.source,
        Lease.id,
        Lease.shown_at,
        Skip.id,
    )
    .select_from(Record)
    .outerjoin(Annotation, and_(Annotation.record_id == Record.id, Annotation.annotator == bindparam("user")))
    .outerjoin(Lease, and_(Lease.record_id == Record.id, Lease.annotator == bindparam("user")))
    .outerjoin(Skip, and_(Skip.record_id == Record.id, Skip.annotator == bindparam("user")))
    .where(Record.id == bindparam("record_id"))
)
_CHANGE_ANSWER = (
    update(Annotation)
    .where(Annotation.id == bindparam("answer_id"))
    .values(label=bindparam("label"), source=bindparam("source"), created_at=bindparam("now"))
)
_ADD_ANSWER = insert(Annotation)
_SET_COUNT = (
    update(Record)
    .where(Record.id == bindparam("record_id"))
    .values(n_answers=bindparam("n"), complete=bindparam("done"))
)
_DROP_LEASE = delete(Lease).where(Lease.id == bindparam("lease_id"))
# PostgreSQL: the record's row lock, taken first. Two replicas (or one click delivered twice) answering
# one record at once would both read its count and both write count + 1, or both insert the same
# user's answer. NO KEY UPDATE: it does not wait for hand-outs inserting leases that reference the row.
_LOCK_RECORD = select(Record.id).where(Record.id == bindparam("record_id")).with_for_update(key_share=True)
_DROP_SKIP = delete(Skip).where(Skip.id == bindparam("skip_id"))


_HAS_GOLD = (
    select(Annotation.id)
    .where(Annotation.record_id == bindparam("record_id"), Annotation.source == "review")
    .limit(1)
)


def _has_gold(conn: Connection, record_id: int) -> bool:
    return conn.execute(_HAS_GOLD, {"record_id": record_id}).first() is not None


def store_answer(
    conn: Connection, info: ProjectInfo, record_id: int, user: str, label: str, source: str, now: datetime
) -> StoredAnswer:
    """Insert or change ``user``'s answer; drop their lease and skip of the record. Four statements
    (one more on PostgreSQL: the record's lock, before the read, so that the read sees the answer a
    concurrent copy of this click committed while this one waited)."""
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK_RECORD, {"record_id": record_id})
    row = conn.execute(_ANSWER_STATE, {"user": user, "record_id": record_id}).first()
    if row is None or row[0] != info.id:
        raise _record_not_found(info, record_id)
    _, external_id, n_answers, complete, answer_id, old_label, old_source, lease_id, shown_at, skip_id = row
    if answer_id is not None:
        changed = old_label != label or (source == "review" and old_source != "review")
        if changed:
            conn.execute(
                _CHANGE_ANSWER, {"answer_id": answer_id, "label": label, "source": source, "now": now}
            )
            if counts_for_nothing(info, old_label):  # n_answers counts answers with an active label only
                n_answers += 1
    else:
        # A gold record takes the answer of whoever it was handed to (a gold question): it is scored,
        # and never changes the record's label.
        if complete and source != "review" and (lease_id is None or not _has_gold(conn, record_id)):
            raise StaleRecord(f"Record {external_id} already has all the answers it needs.")
        conn.execute(
            _ADD_ANSWER,
            {
                "record_id": record_id,
                "project_id": info.id,
                "annotator": user,
                "label": label,
                "source": source,
                "shown_at": shown_at,
                "created_at": now,
            },
        )
        n_answers += 1
        changed = True
    if source == "review":
        now_complete = True
    else:
        now_complete = bool(complete) or _complete(conn, info, record_id, n_answers, has_gold=False)
    if changed or now_complete != bool(complete):
        conn.execute(_SET_COUNT, {"record_id": record_id, "n": n_answers, "done": now_complete})
    if lease_id is not None:
        conn.execute(_DROP_LEASE, {"lease_id": lease_id})
    if skip_id is not None:
        conn.execute(_DROP_SKIP, {"skip_id": skip_id})
    return StoredAnswer(external_id, changed, now_complete)


def skip(conn: Connection, info: ProjectInfo, record_id: int, user: str) -> None:
    row = conn.execute(
        select(Record.project_id, Skip.id)
        .select_from(Record)
        .outerjoin(Skip, and_(Skip.record_id == Record.id, Skip.annotator == user))
        .where(Record.id == record_id)
    ).first()
    if row is None or row[0] != info.id:
        raise _record_not_found(info, record_id)
    if row[1] is None:  # DO NOTHING: the same skip delivered twice, to two replicas at once
        conn.execute(
            upsert(conn, Skip)
            .values(record_id=record_id, project_id=info.id, annotator=user)
            .on_conflict_do_nothing(index_elements=["record_id", "annotator"])
        )
    conn.execute(delete(Lease).where(Lease.record_id == record_id, Lease.annotator == user))


@dataclass(frozen=True)
class RemovedAnswer:
    record_id: int
    external_id: str
    label: str


def undo(
    conn: Connection, info: ProjectInfo, user: str, record_id: int | None, now: datetime, lease_seconds: int
) -> RemovedAnswer:
    """Remove ``user``'s answer (default: their latest), recompute completeness, lease the record back."""
    query = select(Annotation.id, Annotation.record_id, Annotation.label).where(
        Annotation.project_id == info.id, Annotation.annotator == user
    )
    if record_id is not None:
        query = query.where(Annotation.record_id == record_id)
    answer = conn.execute(query.order_by(Annotation.created_at.desc(), Annotation.id.desc()).limit(1)).first()
    if answer is None:
        raise NothingToUndo("There is no answer of yours to undo.")
    answer_id, rid, label = answer
    # Locked (PostgreSQL), so the count is the latest; a copy of this undo that got there first has
    # deleted the answer, which this one then finds gone.
    record = conn.execute(
        select(Record.external_id, Record.n_answers).where(Record.id == rid).with_for_update(key_share=True)
    ).one()
    if not conn.execute(delete(Annotation).where(Annotation.id == answer_id)).rowcount:
        raise NothingToUndo("That answer was undone already.")
    n_answers = max(0, record[1] - (not counts_for_nothing(info, label)))
    complete = _complete(conn, info, rid, n_answers, _has_gold(conn, rid))
    conn.execute(update(Record).where(Record.id == rid).values(n_answers=n_answers, complete=complete))
    conn.execute(delete(Lease).where(Lease.record_id == rid, Lease.annotator == user))
    conn.execute(
        insert(Lease).values(
            record_id=rid,
            project_id=info.id,
            annotator=user,
            shown_at=now,
            expires_at=now + timedelta(seconds=lease_seconds),
        )
    )
    return RemovedAnswer(rid, record[0], label)


def insert_imported(conn: Connection, rows: list[dict]) -> None:
    for start in range(0, len(rows), _CHUNK):
        conn.execute(insert(Annotation), rows[start : start + _CHUNK])


def answered_pairs(conn: Connection, project_id: int) -> set[tuple[int, str]]:
    return {
        (rid, who)
        for rid, who in conn.execute(
            select(Annotation.record_id, Annotation.annotator).where(Annotation.project_id == project_id)
        ).all()
    }


def recompute_completeness(
    conn: Connection, info: ProjectInfo, *, record_ids: list[int] | None = None
) -> None:
    """After a bulk change: completeness of every record (a new k), or count and completeness of
    ``record_ids`` (imported answers), in a few statements per chunk."""
    if record_ids is None:
        _recompute(conn, info, Record.project_id == info.id, recount=False)
        return
    for start in range(0, len(record_ids), _CHUNK):
        _recompute(conn, info, Record.id.in_(record_ids[start : start + _CHUNK]), recount=True)


def _recompute(conn: Connection, info: ProjectInfo, which: Any, *, recount: bool) -> None:
    uncounted = _uncounted(conn, info)
    gold = select(Annotation.record_id).where(
        Annotation.project_id == info.id,
        Annotation.source == "review",
        Annotation.label.not_in(uncounted),  # a retired gold label decides nothing
    )
    if recount:
        # Answers with a retired label stay in the history but count for nothing (core.labelset.retire).
        counts = (
            select(func.count(Annotation.id))
            .where(Annotation.record_id == Record.id, Annotation.label.not_in(uncounted))
            .scalar_subquery()
        )
        conn.execute(update(Record).where(which).values(n_answers=counts))
    k = info.answers_per_record
    conn.execute(update(Record).where(which).values(complete=(Record.n_answers >= k) | Record.id.in_(gold)))
    if not info.extra_answer_on_disagreement:
        return
    # Ties among exactly k answers are reopened for one more labeler (core.policy.is_complete).
    rows = conn.execute(
        select(Annotation.record_id, Annotation.label)
        .join(Record, Record.id == Annotation.record_id)
        .where(
            which,
            Record.complete.is_(True),
            Record.n_answers == k,
            Record.id.not_in(gold),
            Annotation.label.not_in(uncounted),
        )
    ).all()
    votes: dict[int, list[str]] = defaultdict(list)
    for rid, label in rows:
        votes[rid].append(label)
    tied = [  # multi-label: a tie on any label's yes/no (core.multilabel)
        rid for rid, labels in votes.items()
        if (multilabel.needs_extra_answer(info, labels) if info.multi_label
            else needs_extra_answer(labels, k))
    ]
    for start in range(0, len(tied), _CHUNK):
        conn.execute(update(Record).where(Record.id.in_(tied[start : start + _CHUNK])).values(complete=False))


def active(info: ProjectInfo, rows: Sequence[tuple]) -> list[tuple]:
    """Answer rows (record, annotator, label, ...) without those for a retired label: they stay in the
    history and the export and count for nothing else (core.labelset)."""
    if not info.retired_labels:
        return list(rows)
    return [row for row in rows if not counts_for_nothing(info, row[2])]


def load(conn: Connection, project_id: int, record_ids: list[int] | None = None) -> list[tuple]:
    """(record id, annotator, label, source, shown_at, created_at) per answer, oldest first."""
    query = (
        select(
            Annotation.record_id,
            Annotation.annotator,
            Annotation.label,
            Annotation.source,
            Annotation.shown_at,
            Annotation.created_at,
        )
        .where(Annotation.project_id == project_id)
        .order_by(Annotation.created_at, Annotation.id)
    )
    if record_ids is not None:
        query = query.where(Annotation.record_id.in_(record_ids))
    return [tuple(row) for row in conn.execute(query).all()]


def count_by_user(conn: Connection, project_id: int, since: datetime) -> list[tuple[str, int]]:
    """(annotator, answers given at or after ``since``)."""
    return [
        (who, int(n))
        for who, n in conn.execute(
            select(Annotation.annotator, func.count(Annotation.id))
            .where(Annotation.project_id == project_id, Annotation.created_at >= since)
            .group_by(Annotation.annotator)
        ).all()
    ]


def complete_ids(conn: Connection, project_id: int) -> set[int]:
    return set(
        conn.execute(
            select(Record.id).where(Record.project_id == project_id, Record.complete.is_(True))
        ).scalars()
    )


def fingerprint(conn: Connection, project_id: int, data_version: int) -> str:
    """Changes whenever an answer is added, changed or removed, or records are imported."""
    count, last_id, last_at = conn.execute(
        select(func.count(Annotation.id), func.max(Annotation.id), func.max(Annotation.created_at)).where(
            Annotation.project_id == project_id
        )
    ).one()
    return f"{count}:{last_id}:{last_at}:{data_version}"
