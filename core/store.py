"""The database: engine creation (SQLite in WAL with foreign keys and a busy timeout), transactions.

Everything below works on SQLAlchemy Core connections: one click is one short transaction, and the
ORM's unit of work costs more CPU than the handful of statements it runs. Modules of core own their
SQL as functions taking a ``Connection``; the facade (``core.service``) opens the transactions.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, event, exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlmodel import Session, create_engine

from core.errors import DatabaseUnavailable
from core.migrations import upgrade_to_head

BUSY_TIMEOUT_MS = 30_000


def create_db_engine(url: str, *, upgrade: bool = True) -> Engine:
    """Create the engine and bring the schema to the newest migration (``core.migrations``).

    SQLite gets WAL, foreign keys and IMMEDIATE write transactions. ``upgrade=False``: leave the
    schema as it is (tests and tools that build an old database). A database that cannot be opened
    (a bad URL, a missing directory, a file that is not a database, no server) raises
    :class:`DatabaseUnavailable`, one line for the person who set ``LABELBOT_DATABASE_URL``.
    """
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        raise DatabaseUnavailable(url, "not a database URL (e.g. sqlite:///labelbot.db)") from None
    is_sqlite = parsed.get_backend_name() == "sqlite"
    connect_args = {"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000} if is_sqlite else {}
    try:
        # PostgreSQL: a server restart or an idle timeout ends pooled connections; check each on checkout.
        engine = create_engine(url, connect_args=connect_args, pool_pre_ping=not is_sqlite)
    except (exc.NoSuchModuleError, ImportError) as error:
        raise DatabaseUnavailable(_shown(parsed), f"no driver for it ({error})") from None
    if is_sqlite:
        _configure_sqlite(engine, in_memory=parsed.database in (None, "", ":memory:"))
    if upgrade:
        _check_opens(engine, parsed)
        upgrade_to_head(engine)
    return engine


def _shown(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _check_opens(engine: Engine, url: URL) -> None:
    """Open one connection (kept in the pool), so a database that cannot be opened fails here in words."""
    try:
        with engine.connect():
            pass
    except exc.DBAPIError as error:
        engine.dispose()
        cause = error.orig if error.orig is not None else error
        # The driver's first line says it ("file is not a database", "Connection refused"); the rest is hints.
        reason = next(iter(str(cause).strip().splitlines()), "").rstrip(". ") or type(cause).__name__
        if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).parent.is_dir():
            reason = f"the directory {Path(url.database).parent} does not exist"
        raise DatabaseUnavailable(_shown(url), reason) from None


def _configure_sqlite(engine: Engine, *, in_memory: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Let SQLAlchemy (not pysqlite) emit BEGIN, so writes can take the lock up front.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        # Write transactions take the write lock at BEGIN: a deferred transaction that reads and then
        # writes fails at once with SQLITE_BUSY under WAL when another writer got in between.
        if conn.get_execution_options().get("write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def upsert(conn: Connection, table: Any) -> Any:
    """``INSERT … ON CONFLICT`` for the connection's dialect (SQLite and PostgreSQL spell it alike)."""
    return upsert_for(conn.dialect.name, table)


def upsert_for(dialect: str, table: Any) -> Any:
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A read transaction (a consistent snapshot under WAL); never writes."""
    with engine.connect() as conn, conn.begin():
        yield conn


class WriteQueue:
    """The one SQLite writer of this process at a time, with answers a user waits on served first.

    Without a queue, a thread that finds the database locked sleeps in SQLite's busy handler (1, 2,
    5, 10 … 100 ms steps) even when the writer before it finished a millisecond later. And an answer
    whose ack Slack is waiting for should not queue behind the card updates that follow earlier
    acks: ``urgent`` writers go first. Other processes still meet the busy handler; PostgreSQL locks
    rows and needs none of this.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = False
        self._urgent_waiting = 0

    @contextmanager
    def turn(self, *, urgent: bool = False) -> Iterator[None]:
        with self._cond:
            self._urgent_waiting += urgent
            while self._busy or (not urgent and self._urgent_waiting):
                self._cond.wait()
            self._urgent_waiting -= urgent
            self._busy = True
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()


_WRITE_QUEUES: weakref.WeakKeyDictionary[Engine, WriteQueue] = weakref.WeakKeyDictionary()
_WRITE_QUEUES_GUARD = threading.Lock()


def _write_queue(engine: Engine) -> WriteQueue | None:
    if engine.dialect.name != "sqlite":
        return None
    with _WRITE_QUEUES_GUARD:
        return _WRITE_QUEUES.setdefault(engine, WriteQueue())


@contextmanager
def writing(engine: Engine, *, urgent: bool = False) -> Iterator[Connection]:
    """A write transaction that holds SQLite's write lock from BEGIN; commits on success.

    ``urgent``: a user is waiting on it (an answer before its ack). Keep every write short: no model
    loading or predicting inside, since other writers queue behind it.
    """
    queue = _write_queue(engine)
    with queue.turn(urgent=urgent) if queue else contextlib.nullcontext(), engine.connect() as conn:
        conn.execution_options(write=True)
        with conn.begin():
            yield conn


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    """An ORM session, for tests and tools that inspect the tables."""
    with Session(engine) as session:
        yield session
