"""Schema migrations (Alembic): every engine brings its database up to the newest revision on open.

``create_db_engine`` calls :func:`upgrade_to_head`. A database already at the newest revision costs one
``SELECT version_num FROM alembic_version`` and never imports Alembic; anything else is migrated by
``core.migrations.runner`` under a lock (SQLite's write lock, or a PostgreSQL advisory lock), so two
processes opening an old database at once migrate it once. A database made before migrations (tables
but no ``alembic_version``: release 5609fa7 or older) is adopted: given the columns that release's
schema update added, stamped, then upgraded like any other.

Revisions live in ``versions/`` as ``NNNN_what_changes.py`` with revision id ``NNNN``, one after the
other (no branches). To add one after changing ``core/models.py``::

    .venv/bin/python -m core.migrations revision "add record.priority"

writes ``versions/NNNN_add_record_priority.py`` from the difference between the models and a database
at the newest revision; read it and fix what autogenerate can't know (a server default for a new NOT
NULL column, a backfill, a rename that it sees as drop + add). A revision spells its tables and
columns out and never imports ``core.models``: it must do the same thing whatever the models become.
``tests/test_migrations.py`` fails while the models and the migrations differ.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from sqlalchemy import Engine, exc, text

MIGRATIONS_DIR = Path(__file__).resolve().parent
VERSIONS_DIR = MIGRATIONS_DIR / "versions"
_REVISION_FILE = re.compile(r"^(\d{4})_\w+\.py$")


@functools.cache
def head_revision() -> str:
    """The newest revision id, from the file names (reading Alembic's script directory costs ~100 ms)."""
    return max(m.group(1) for f in VERSIONS_DIR.iterdir() if (m := _REVISION_FILE.match(f.name)))


def current_revision(engine: Engine) -> str | None:
    """The database's revision; None for a new database or one made before migrations."""
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except (exc.OperationalError, exc.ProgrammingError):  # no such table
        return None


def upgrade_to_head(engine: Engine) -> None:
    """Bring the database to the newest revision (creating it when empty); cheap when it is there."""
    if current_revision(engine) == head_revision():
        return
    from core.migrations import runner  # Alembic only for a database that needs it

    runner.upgrade(engine)
