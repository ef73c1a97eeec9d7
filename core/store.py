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
from typing import Any

from sqlalchemy import Connection, Engine, event, inspect, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlmodel import Session, SQLModel, create_engine

from core import models  # noqa: F401  (registers the tables on SQLModel.metadata)

BUSY_TIMEOUT_MS = 30_000


def create_db_engine(url: str) -> Engine:
    """Create the engine and the tables. SQLite gets WAL, foreign keys and IMMEDIATE write transactions."""
    parsed = make_url(url)
    is_sqlite = parsed.get_backend_name() == "sqlite"
    connect_args = {"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000} if is_sqlite else {}
    engine = create_engine(url, connect_args=connect_args)
    if is_sqlite:
        _configure_sqlite(engine, in_memory=parsed.database in (None, "", ":memory:"))
    SQLModel.metadata.create_all(engine)
    _add_missing_columns(engine)
    return engine


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


# Columns added after a release: (table, column, SQL type and default, backfill statement or None).
_LATER_COLUMNS = (
    ("project", "version", "INTEGER NOT NULL DEFAULT 0", None),
    (
        "project",
        "latest_run_id",
        "INTEGER",
        "UPDATE project SET latest_run_id = (SELECT max(id) FROM modelrun WHERE project_id = project.id)",
    ),
)


def _add_missing_columns(engine: Engine) -> None:
    """Bring a database made by an earlier release up to date (``create_all`` never alters a table)."""
    inspector = inspect(engine)
    existing = {t: {c["name"] for c in inspector.get_columns(t)} for t in {t for t, *_ in _LATER_COLUMNS}}
    with engine.begin() as conn:
        for table, column, ddl, backfill in _LATER_COLUMNS:
            if column not in existing[table]:
                conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}"))
                if backfill:
                    conn.execute(text(backfill))


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


_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
_WRITE_LOCKS_GUARD = threading.Lock()


def _write_lock(engine: Engine) -> threading.Lock | None:
    """SQLite has one writer at a time; threads of this process queue for it here, in order.

    Without this, a thread that finds the database locked sleeps in SQLite's busy handler (1, 2, 5,
    10 … 100 ms steps) even when the writer before it finished a millisecond later: under 20
    clicking labelers that back-off, not the work, made the slowest acks. Other processes still wait
    in the busy handler. PostgreSQL locks rows and needs none of this.
    """
    if engine.dialect.name != "sqlite":
        return None
    with _WRITE_LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(engine, threading.Lock())


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A write transaction that holds SQLite's write lock from BEGIN; commits on success.

    Keep it short: no model loading or predicting inside (other writers queue behind it).
    """
    with _write_lock(engine) or contextlib.nullcontext(), engine.connect() as conn:
        conn.execution_options(write=True)
        with conn.begin():
            yield conn


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    """An ORM session, for tests and tools that inspect the tables."""
    with Session(engine) as session:
        yield session
