"""The delivery outbox: what a client still owes a labeler after a click — the clicked card's update
and their next cards — kept in the database until it is delivered.

A click writes its rows in the answer's own transaction, so an answer Slack got its 200 for always
has them. Whichever process runs drains them: the one that took the click at once, any other on its
next poll. A row is *claimed* (a token and a time limit) before it is worked on, so with several
replicas each row is worked on by one at a time, and a claim left by a process that died lapses.
A delivered row is deleted; a failed one is due again later; one that failed for good, or for longer
than ``Settings.delivery_give_up_seconds``, is kept as given up (the facade decides which).

``cards`` rows hand records out only when they are delivered, so a card that cannot be sent never
holds a record: :func:`release` gives the leases of unsent cards back at once.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update

from core.models import Delivery as DeliveryRow
from core.models import Lease
from core.types import Delivery

#: Card updates (the clicked card shows the answer, the skip, or is restored after an undo) and
#: "hand out and send n cards".
KINDS = ("answered", "skipped", "restored", "cards")
CARD_UPDATES = frozenset(KINDS[:3])

_COLUMNS = (
    DeliveryRow.id, DeliveryRow.project_id, DeliveryRow.annotator, DeliveryRow.kind, DeliveryRow.record_id,
    DeliveryRow.label, DeliveryRow.complete, DeliveryRow.n, DeliveryRow.notify_empty, DeliveryRow.address,
    DeliveryRow.reply_to, DeliveryRow.attempts, DeliveryRow.created_at,
)


def _utc(moment: datetime) -> datetime:
    """SQLite hands datetimes back without their zone; every time here is UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def add(
    conn: Connection,
    *,
    project_id: int,
    user: str,
    kind: str,
    now: datetime,
    record_id: int | None = None,
    label: str | None = None,
    complete: bool = False,
    n: int = 0,
    notify_empty: bool = False,
    address: str | None = None,
    reply_to: str | None = None,
) -> int:
    """Write one outbox row, due now; returns its id.

    A card update replaces the same card's update still waiting (not claimed): only the latest state
    of a card is worth sending.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown delivery kind {kind!r}")
    if kind in CARD_UPDATES and address is not None:
        conn.execute(
            delete(DeliveryRow).where(
                DeliveryRow.annotator == user,
                DeliveryRow.address == address,
                DeliveryRow.kind.in_(CARD_UPDATES),
                DeliveryRow.gave_up_at.is_(None),
                _unclaimed(now),
            )
        )
    row = {
        "project_id": project_id, "annotator": user, "kind": kind, "record_id": record_id, "label": label,
        "complete": complete, "n": n, "notify_empty": notify_empty, "address": address,
        "reply_to": reply_to, "created_at": now, "due_at": now, "attempts": 0,
    }
    return conn.execute(insert(DeliveryRow).values(**row).returning(DeliveryRow.id)).scalar_one()


def for_click(
    conn: Connection,
    project_id: int,
    user: str,
    kind: str,
    now: datetime,
    *,
    next_card: bool = False,
    **card: object,
) -> tuple[int, ...]:
    """The rows a click owes: its card's update (``kind``, ``card`` the row's fields), and with
    ``next_card`` the user's next card, saying so when none is left (they are waiting for one)."""
    owed = [add(conn, project_id=project_id, user=user, kind=kind, now=now, **card)]  # type: ignore[arg-type]
    if next_card:
        owed.append(
            add(conn, project_id=project_id, user=user, kind="cards", now=now, n=1, notify_empty=True)
        )
    return tuple(owed)


def _unclaimed(now: datetime):  # type: ignore[no-untyped-def]
    return or_(DeliveryRow.claimed_until.is_(None), DeliveryRow.claimed_until < now)


def claim(
    conn: Connection,
    now: datetime,
    claim_seconds: float,
    *,
    limit: int,
    ids: Iterable[int] | None = None,
) -> list[Delivery]:
    """Claim up to ``limit`` rows that are due (of ``ids`` only, when given), oldest first.

    One UPDATE marks them with a fresh token; what it marked is what this caller got. Another process
    claiming at the same time gets other rows: on PostgreSQL its SELECT skips the rows this one has
    locked (and its UPDATE re-checks the WHERE of any it still meets); SQLite runs one writer at a time.
    """
    due = and_(DeliveryRow.gave_up_at.is_(None), DeliveryRow.due_at <= now, _unclaimed(now))
    candidates = (
        select(DeliveryRow.id).where(due).order_by(DeliveryRow.id).limit(limit).with_for_update(skip_locked=True)
    )
    if ids is not None:
        wanted = list(ids)
        if not wanted:
            return []
        candidates = candidates.where(DeliveryRow.id.in_(wanted))
    chosen = list(conn.execute(candidates).scalars())
    if not chosen:
        return []
    token = secrets.token_hex(8)
    conn.execute(
        update(DeliveryRow)
        .where(DeliveryRow.id.in_(chosen), due)
        .values(
            claim_token=token,
            claimed_until=now + timedelta(seconds=claim_seconds),
            attempts=DeliveryRow.attempts + 1,
        )
    )
    rows = conn.execute(
        select(*_COLUMNS).where(DeliveryRow.claim_token == token).order_by(DeliveryRow.id)
    ).all()
    return [
        Delivery(
            id=row[0], project_id=row[1], user=row[2], kind=row[3], record_id=row[4], label=row[5],
            complete=bool(row[6]), n=row[7], notify_empty=bool(row[8]), address=row[9], reply_to=row[10],
            attempts=row[11], created_at=_utc(row[12]), token=token,
        )
        for row in rows
    ]


def any_due(conn: Connection, now: datetime) -> bool:
    """Whether a row is due and unclaimed (a read, so an idle poller never takes the write lock)."""
    due = and_(DeliveryRow.gave_up_at.is_(None), DeliveryRow.due_at <= now, _unclaimed(now))
    return conn.execute(select(DeliveryRow.id).where(due).limit(1)).first() is not None


def _claimed(delivery: Delivery):  # type: ignore[no-untyped-def]
    return and_(DeliveryRow.id == delivery.id, DeliveryRow.claim_token == delivery.token)


def finish(conn: Connection, delivery: Delivery) -> bool:
    """Delivered: the row goes. False when the claim was lost (lapsed and taken by another process)."""
    return conn.execute(delete(DeliveryRow).where(_claimed(delivery))).rowcount == 1


def retry_at(
    conn: Connection, delivery: Delivery, due_at: datetime, error: str, *, remaining: int | None = None
) -> bool:
    """Failed for now: due again at ``due_at`` (claim released); ``remaining`` cards still to send."""
    values: dict = {"due_at": due_at, "claim_token": None, "claimed_until": None, "last_error": error[:500]}
    if remaining is not None:
        values["n"] = remaining
    return conn.execute(update(DeliveryRow).where(_claimed(delivery)).values(**values)).rowcount == 1


def give_up(conn: Connection, delivery: Delivery, now: datetime, error: str) -> bool:
    """Failed for good: kept, marked, never claimed again."""
    values = {"gave_up_at": now, "claim_token": None, "claimed_until": None, "last_error": error[:500]}
    return conn.execute(update(DeliveryRow).where(_claimed(delivery)).values(**values)).rowcount == 1


def release(conn: Connection, project_id: int, user: str, record_ids: Iterable[int]) -> int:
    """Give back ``user``'s leases on records whose cards were never sent; returns how many."""
    wanted = list(record_ids)
    if not wanted:
        return 0
    return conn.execute(
        delete(Lease).where(
            Lease.project_id == project_id, Lease.annotator == user, Lease.record_id.in_(wanted)
        )
    ).rowcount


def prune(conn: Connection, before: datetime) -> int:
    """Forget given-up rows older than ``before`` (they are kept a while to be counted and looked at)."""
    return conn.execute(
        delete(DeliveryRow).where(DeliveryRow.gave_up_at.is_not(None), DeliveryRow.gave_up_at < before)
    ).rowcount


def counts(conn: Connection, project_id: int | None = None) -> tuple[int, int]:
    """(waiting, given up) rows, of one project or all."""
    query = select(DeliveryRow.gave_up_at.is_(None), func.count()).group_by(DeliveryRow.gave_up_at.is_(None))
    if project_id is not None:
        query = query.where(DeliveryRow.project_id == project_id)
    found = {bool(waiting): count for waiting, count in conn.execute(query).all()}
    return found.get(True, 0), found.get(False, 0)
