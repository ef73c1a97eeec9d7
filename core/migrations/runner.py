"""Runs Alembic on one connection, in one transaction, under a lock (imported only when a database needs it).

SQLite: the write lock (``BEGIN IMMEDIATE``) from before the revision is read until the commit, with
foreign keys off: batch mode copies a table and drops the old one, and with foreign keys on that DROP
would delete every row referring to it (``ON DELETE CASCADE``). ``PRAGMA foreign_key_check`` runs
before the commit instead. PostgreSQL: a transaction-scoped advisory lock; its DDL is transactional.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, inspect, text

from core.migrations import MIGRATIONS_DIR

# pg_advisory_xact_lock's key: "labelbot" in ASCII, so other applications' keys are unlikely to collide.
ADVISORY_LOCK_KEY = int.from_bytes(b"labelbot", "big")


def config(connection: Connection) -> Config:
    """Alembic's configuration without an ini file; env.py runs on ``connection``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade to ``revision``, adopting a database made before migrations first."""
    with migration_transaction(engine) as conn:
        cfg = config(conn)
        current = MigrationContext.configure(conn).get_current_revision()
        if current is None and inspect(conn).has_table("project"):
            command.stamp(cfg, adopt_unversioned(conn))
        elif current is not None:
            _check_known(cfg, current)
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Downgrade to ``revision`` (a developer's tool; the application only upgrades)."""
    with migration_transaction(engine) as conn:
        command.downgrade(config(conn), revision)


def _check_known(cfg: Config, current: str) -> None:
    try:
        ScriptDirectory.from_config(cfg).get_revision(current)
    except CommandError as exc:
        raise RuntimeError(
            f"the database's schema is at revision {current}, which this labelbot does not know: "
            "it was made by a newer labelbot; upgrade labelbot to open it"
        ) from exc


@contextmanager
def migration_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the migration lock; commits on success."""
    is_sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        if is_sqlite:  # outside any transaction: SQLite ignores this pragma inside one
            conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        try:
            conn.execution_options(write=True)  # BEGIN IMMEDIATE (core.store's begin hook)
            with conn.begin():
                if engine.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
                yield conn
                if is_sqlite and (broken := conn.exec_driver_sql("PRAGMA foreign_key_check").all()):
                    raise RuntimeError(f"a migration left rows referring to missing rows: {broken[:5]}")
        finally:
            if is_sqlite:
                conn.connection.driver_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]


# Columns that release 5609fa7 and older added with ALTER TABLE (the rest of a table came from
# create_all): (table, column, SQL type and default, backfill or None).
_RELEASE_ADDED_COLUMNS = (
    ("project", "version", "INTEGER NOT NULL DEFAULT 0", None),
    (
        "project",
        "latest_run_id",
        "INTEGER",
        "UPDATE project SET latest_run_id = (SELECT max(id) FROM modelrun WHERE project_id = project.id)",
    ),
)
# Development databases made between release 5609fa7 and migrations (they have a leaderlease table)
# got revision 0002's changes from create_all and ALTER TABLE, as far as the code of their day had them.
_DEVELOPMENT_ADDED_COLUMNS = (
    ("project", "embedding_model", "VARCHAR", None),
    ("project", "embedding_target", "VARCHAR", None),
    ("embedding", "batch", "INTEGER NOT NULL DEFAULT 0", None),
)


def adopt_unversioned(conn: Connection) -> str:
    """Bring a database made before migrations to the shape of a revision; returns that revision.

    Release 5609fa7 made its tables with create_all (older releases lacked some of them) and added
    the columns of ``_RELEASE_ADDED_COLUMNS`` to older databases; that is revision 0001.
    """
    release_tables = ScriptDirectory.from_config(config(conn)).get_revision("0001").module.release_tables
    release_tables().create_all(conn, checkfirst=True)  # tables older releases did not have
    inspector = inspect(conn)
    if inspector.has_table("leaderlease"):
        added, revision = (*_RELEASE_ADDED_COLUMNS, *_DEVELOPMENT_ADDED_COLUMNS), "0002"
    else:
        added, revision = _RELEASE_ADDED_COLUMNS, "0001"
    columns = {table: {c["name"] for c in inspector.get_columns(table)} for table, *_ in added}
    for table, column, ddl, backfill in added:
        if column not in columns[table]:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}"))
            if backfill:
                conn.execute(text(backfill))
    if revision == "0002":
        indexes = {index["name"] for index in inspector.get_indexes("embedding")}
        if "ix_embedding_project_model_batch" not in indexes:
            conn.execute(
                text("CREATE INDEX ix_embedding_project_model_batch ON embedding (project_id, model, batch)")
            )
    return revision
