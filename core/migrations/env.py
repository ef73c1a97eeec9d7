"""Alembic's environment: runs on the connection ``core.migrations.runner`` passes (already in its
transaction, under its lock); there is no alembic.ini and no offline (``--sql``) mode."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString, UTCDateTime

from core import models  # noqa: F401  (the tables autogenerate compares the database with)

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through core.migrations (see its docstring), not the alembic command")


def render_item(kind: str, item: Any, _autogen_context: Any) -> str | bool:
    """Autogenerate writes SQLModel's types as plain SQLAlchemy ones: a revision never imports sqlmodel."""
    if kind == "type" and isinstance(item, AutoString):
        return "sa.String()"
    if kind == "type" and isinstance(item, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def include_name(name: str | None, type_: str, _parent_names: Any) -> bool:
    """Autogenerate leaves alone the table APScheduler keeps in the same database (bot/scheduler.py)."""
    return not (type_ == "table" and name == "apscheduler_jobs")


context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=True,  # SQLite alters most things by copying the table
    compare_type=True,
    render_item=render_item,
    include_name=include_name,
)
with context.begin_transaction():
    context.run_migrations()
