"""The job table of the scheduler (APScheduler's ``apscheduler_jobs``), made here rather than by it.

Two replicas starting at once on a fresh database both had APScheduler create the table (check, then
create) and one of them failed to start; migrations run once, under a lock. The definition is
APScheduler 3.x's own (``SQLAlchemyJobStore``), which then finds the table and leaves it alone. A
database where the scheduler made it already keeps it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("apscheduler_jobs"):
        return
    op.create_table(
        "apscheduler_jobs",
        sa.Column("id", sa.Unicode(191), primary_key=True),
        sa.Column("next_run_time", sa.Float(25), index=True),
        sa.Column("job_state", sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("apscheduler_jobs")
