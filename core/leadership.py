"""Leadership: which of several processes on one database runs the scheduled jobs and the retrains.

Each process has a :class:`Leadership` with its own holder id (``host:pid:random``). The lease is one
row of ``leaderlease`` per name; one atomic statement takes it or renews it::

    INSERT INTO leaderlease (name, holder, expires_at, acquired_at) VALUES (:name, :me, :until, :now)
    ON CONFLICT (name) DO UPDATE SET holder = :me, expires_at = :until, …
    WHERE leaderlease.expires_at < :now OR leaderlease.holder = :me

and the row read back in the same transaction says who holds it. SQLite runs it under its write lock,
PostgreSQL under the row's lock, so two processes racing for an expired lease cannot both win. The
holder renews every ``renew_seconds`` (default a third of the lease) on a daemon thread; a holder that
dies without releasing (kill -9, a lost host) is replaced once its lease expires, by the first process
that tries after that: within ``lease_seconds + renew_seconds`` (30 + 10 s by default).

A process counts itself leader only until ``renew_seconds`` before its lease runs out, so it steps
down (pauses its jobs) before anyone else can take over, even when it cannot reach the database to
renew. Times are the processes' own clocks in UTC: hosts must agree on the time to well within
``renew_seconds`` (NTP does).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, case, delete, select, text

from core.models import LeaderLease
from core.store import reading, upsert, writing

log = logging.getLogger(__name__)

SCHEDULER_LEASE = "scheduler"  # the lease of the process that runs scheduled jobs and retrains
LEASE_SECONDS = 30.0

#: Called with True when this process became leader, False when it stopped being leader.
RoleListener = Callable[[bool], None]


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds a lease as the database says, and until when (UTC)."""

    holder: str
    expires_at: datetime
    acquired_at: datetime


def new_holder_id() -> str:
    """``host:pid:random``: unique per process, and says which process it is in logs and /healthz."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def database_answers(engine: Engine) -> bool:
    """Whether the database answers ``SELECT 1`` (for health checks); never raises."""
    try:
        with reading(engine) as conn:
            return conn.execute(text("SELECT 1")).scalar() == 1
    except Exception as error:  # a health check reports, it does not fail
        log.warning("Database does not answer: %s", str(error).splitlines()[0] if str(error) else error)
        return False


class Leadership:
    """One process's claim on the lease ``name``: :meth:`try_acquire` (which also renews),
    :meth:`release`, :attr:`is_leader`; :meth:`start` keeps trying and renewing on a daemon thread.

    ``clock`` returns the current time (aware, UTC); tests pass one they control. ``listeners`` are
    called on the thread that noticed the change, with True on becoming leader and False on stepping down.
    """

    def __init__(
        self,
        engine: Engine,
        name: str = SCHEDULER_LEASE,
        *,
        lease_seconds: float = LEASE_SECONDS,
        renew_seconds: float | None = None,
        clock: Callable[[], datetime] | None = None,
        holder: str | None = None,
    ) -> None:
        renew = lease_seconds / 3 if renew_seconds is None else renew_seconds
        if not 0 < renew < lease_seconds:
            raise ValueError("renew_seconds must be positive and shorter than lease_seconds")
        self.engine, self.name = engine, name
        self.lease = timedelta(seconds=lease_seconds)
        self.renew_every = timedelta(seconds=renew)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.holder = holder or new_holder_id()
        self.listeners: list[RoleListener] = []
        self._lock = threading.Lock()
        self._leading_until: datetime | None = None  # this process leads until then (local view)
        self._reported = False  # the role the listeners last heard
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ the lease

    def try_acquire(self) -> bool:
        """Take the lease if it is free or expired, or renew it if this process holds it; True if it
        holds it now. One upsert and one read in one write transaction. Raises on database errors."""
        now = self.clock()
        table = LeaderLease.__table__
        with writing(self.engine) as conn:
            insert = upsert(conn, table).values(
                name=self.name, holder=self.holder, expires_at=now + self.lease, acquired_at=now
            )
            mine = table.c.holder == self.holder
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=[table.c.name],
                    set_={
                        "holder": self.holder,
                        "expires_at": insert.excluded.expires_at,
                        # A renewal keeps the time this holder first took it.
                        "acquired_at": case((mine, table.c.acquired_at), else_=insert.excluded.acquired_at),
                    },
                    where=(table.c.expires_at < now) | mine,
                )
            )
            holder = conn.execute(select(table.c.holder).where(table.c.name == self.name)).scalar()
        with self._lock:
            self._leading_until = now + self.lease - self.renew_every if holder == self.holder else None
        self._report()
        return self.is_leader

    renew = try_acquire

    def release(self) -> None:
        """Give the lease up (clean shutdown): the next process that tries takes it at once."""
        with self._lock:
            self._leading_until = None
        try:
            with writing(self.engine) as conn:
                table = LeaderLease.__table__
                conn.execute(delete(table).where(table.c.name == self.name, table.c.holder == self.holder))
        finally:
            self._report()

    def current(self) -> LeaseHolder | None:
        """The lease as the database has it now (None: nobody ever took it, or it was released)."""
        table = LeaderLease.__table__
        with reading(self.engine) as conn:
            columns = (table.c.holder, table.c.expires_at, table.c.acquired_at)
            row = conn.execute(select(*columns).where(table.c.name == self.name)).one_or_none()
        if row is None:
            return None
        return LeaseHolder(row.holder, row.expires_at, row.acquired_at)

    @property
    def is_leader(self) -> bool:
        """Whether this process holds the lease, with ``renew_seconds`` to spare before it expires."""
        with self._lock:
            until = self._leading_until
        return until is not None and self.clock() < until

    @property
    def role(self) -> str:
        return "leader" if self.is_leader else "follower"

    # ------------------------------------------------------------------ the renewing thread

    def start(self) -> Leadership:
        """Try once now, then every ``renew_seconds`` on a daemon thread until :meth:`stop`."""
        self._tick()
        self._thread = threading.Thread(target=self._run, name=f"labelbot-lease-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, *, release: bool = True) -> None:
        """Stop renewing, and give the lease up when ``release`` (a clean shutdown)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        if release:
            try:
                self.release()
            except Exception as error:  # the lease then expires on its own
                log.warning("Could not release the %s lease: %s", self.name, error)

    def _run(self) -> None:
        while not self._stop.wait(self.renew_every.total_seconds()):
            self._tick()

    def _tick(self) -> None:
        try:
            self.try_acquire()
        except Exception as error:
            # Unreachable database: keep the lease in mind until it lapses (is_leader turns False).
            log.warning("Could not renew the %s lease: %s", self.name, str(error).splitlines()[0])
            self._report()

    def _report(self) -> None:
        leading = self.is_leader
        with self._lock:
            if leading == self._reported:
                return
            self._reported = leading
        log.info("%s the %s lease (holder %s)", "Took" if leading else "Lost", self.name, self.holder)
        for listener in list(self.listeners):
            try:
                listener(leading)
            except Exception:
                log.exception("Leadership listener failed")

