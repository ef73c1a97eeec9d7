"""Gold questions: the queue also holds gold records, with the guesses of a model fit without them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A database adopted from before migrations (core.migrations.runner.adopt_unversioned) is stamped by
    # the columns it lacks; one made by code that had this column already keeps it.
    if "gold" in {column["name"] for column in sa.inspect(op.get_bind()).get_columns("queueitem")}:
        return
    with op.batch_alter_table("queueitem") as batch:
        # Queue rows from before gold questions are ranked records.
        batch.add_column(sa.Column("gold", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("queueitem") as batch:
        batch.drop_column("gold")
