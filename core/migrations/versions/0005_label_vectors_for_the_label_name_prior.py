"""Label vectors: each label's name (and description) embedded per model, for the label-name prior.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A database adopted from before migrations (core.migrations.runner.adopt_unversioned) is stamped by
    # what it lacks; one made by code that had this table already keeps it. Nothing to backfill: a
    # retrain embeds the labels it finds missing.
    if "labelvector" in sa.inspect(op.get_bind()).get_table_names():
        return
    op.create_table(
        "labelvector",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("label", sa.String(), nullable=False),
        sa.Column("text", sa.String(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["project.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("project_id", "model", "label"),
    )


def downgrade() -> None:
    op.drop_table("labelvector")
