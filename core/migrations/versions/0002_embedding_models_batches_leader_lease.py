"""Per-project embedding models, the batch that wrote each vector, and the leader lease table.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("project", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.add_column(sa.Column("embedding_model", sa.String(), nullable=True))
        batch.add_column(sa.Column("embedding_target", sa.String(), nullable=True))
    with op.batch_alter_table("embedding") as batch:
        # Rows written before batches existed count as batch 0: every pool loads them.
        batch.add_column(sa.Column("batch", sa.Integer(), nullable=False, server_default="0"))
    op.create_index("ix_embedding_project_model_batch", "embedding", ["project_id", "model", "batch"])
    # A project from before models were per project keeps the model most of its vectors are for, so
    # a later change of LABELBOT_EMBEDDING_MODEL no longer strands it (projects without vectors: None,
    # the settings' model).
    op.execute(
        "UPDATE project SET embedding_model = (SELECT model FROM embedding WHERE embedding.project_id ="
        " project.id GROUP BY model ORDER BY count(*) DESC, model LIMIT 1)"
    )
    op.create_table(
        "leaderlease",
        sa.Column("name", sa.String(), primary_key=True),
        sa.Column("holder", sa.String(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("leaderlease")
    op.drop_index("ix_embedding_project_model_batch", table_name="embedding")
    with op.batch_alter_table("embedding") as batch:
        batch.drop_column("batch")
    with op.batch_alter_table("project", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("embedding_target")
        batch.drop_column("embedding_model")
