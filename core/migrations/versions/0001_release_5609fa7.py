"""The schema of release 5609fa7, written out (a revision must not change when core/models.py does).

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _project_fk(name: str = "project_id") -> sa.Column:
    return sa.Column(name, sa.Integer(), sa.ForeignKey("project.id", ondelete="CASCADE"), nullable=False)


def _record_fk() -> sa.Column:
    return sa.Column(
        "record_id", sa.Integer(), sa.ForeignKey("record.id", ondelete="CASCADE"), nullable=False
    )


def release_tables() -> sa.MetaData:
    """The tables and indexes as that release's ``create_all`` made them (columns in its order).

    Also used to adopt a database made before migrations: tables an older release lacked are created.
    """
    md = sa.MetaData()
    sa.Table(
        "project", md,
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("data_version", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("latest_run_id", sa.Integer(), nullable=True),
        _timestamp("created_at"),
        sa.Index("ix_project_name", "name", unique=True),
        sqlite_autoincrement=True,
    )
    sa.Table(
        "record", md,
        sa.Column("id", sa.Integer(), primary_key=True),
        _project_fk(),
        sa.Column("external_id", sa.String(), nullable=False),
        sa.Column("text", sa.String(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("n_answers", sa.Integer(), nullable=False),
        sa.Column("complete", sa.Boolean(), nullable=False),
        _timestamp("created_at"),
        sa.UniqueConstraint("project_id", "external_id"),
        sa.Index("ix_record_project_id", "project_id"),
        sa.Index("ix_record_complete", "complete"),
        sqlite_autoincrement=True,
    )
    sa.Table(
        "modelrun", md,
        sa.Column("id", sa.Integer(), primary_key=True),
        _project_fk(),
        _timestamp("created_at"),
        sa.Column("n_labels", sa.Integer(), nullable=False),
        sa.Column("strategy", sa.String(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("label_counts", sa.JSON(), nullable=False),
        sa.Column("duration_seconds", sa.Float(), nullable=False),
        sa.Column("embedding_model", sa.String(), nullable=False),
        sa.Column("model_blob", sa.LargeBinary(), nullable=True),
        sa.Index("ix_modelrun_project_id", "project_id"),
    )
    sa.Table(
        "contextbinding", md,
        sa.Column("context", sa.String(), primary_key=True),
        _project_fk(),
        sa.Index("ix_contextbinding_project_id", "project_id"),
    )
    sa.Table(
        "annotation", md,
        sa.Column("id", sa.Integer(), primary_key=True),
        _record_fk(),
        _project_fk(),
        sa.Column("annotator", sa.String(), nullable=False),
        sa.Column("label", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        _timestamp("shown_at", nullable=True),
        _timestamp("created_at"),
        sa.UniqueConstraint("record_id", "annotator"),
        sa.Index("ix_annotation_record_id", "record_id"),
        sa.Index("ix_annotation_project_annotator", "project_id", "annotator", "created_at"),
        sa.Index("ix_annotation_project_id", "project_id"),
    )
    sa.Table(
        "skip", md,
        sa.Column("id", sa.Integer(), primary_key=True),
        _record_fk(),
        _project_fk(),
        sa.Column("annotator", sa.String(), nullable=False),
        _timestamp("created_at"),
        sa.UniqueConstraint("record_id", "annotator"),
        sa.Index("ix_skip_project_id", "project_id"),
        sa.Index("ix_skip_annotator", "annotator"),
        sa.Index("ix_skip_record_id", "record_id"),
    )
    sa.Table(
        "lease", md,
        sa.Column("id", sa.Integer(), primary_key=True),
        _record_fk(),
        _project_fk(),
        sa.Column("annotator", sa.String(), nullable=False),
        _timestamp("shown_at"),
        _timestamp("expires_at"),
        sa.UniqueConstraint("record_id", "annotator"),
        sa.Index("ix_lease_annotator", "annotator"),
        sa.Index("ix_lease_record_id", "record_id"),
        sa.Index("ix_lease_project_id", "project_id"),
        sa.Index("ix_lease_expires_at", "expires_at"),
    )
    sa.Table(
        "queueitem", md,
        sa.Column("id", sa.Integer(), primary_key=True),
        _project_fk(),
        sa.Column("position", sa.Integer(), nullable=False),
        _record_fk(),
        sa.Column("predicted_label", sa.String(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Index("ix_queueitem_project_id", "project_id"),
        sa.Index("ix_queueitem_project_position", "project_id", "position"),
        sa.Index("ix_queueitem_record_id", "record_id"),
    )
    sa.Table(
        "embedding", md,
        sa.Column(
            "record_id", sa.Integer(), sa.ForeignKey("record.id", ondelete="CASCADE"), primary_key=True,
            autoincrement=False,
        ),
        _project_fk(),
        sa.Column("model", sa.String(), primary_key=True),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Index("ix_embedding_project_id", "project_id"),
    )
    sa.Table(
        "modelrunreport", md,
        sa.Column(
            "run_id", sa.Integer(), sa.ForeignKey("modelrun.id", ondelete="CASCADE"), primary_key=True,
            autoincrement=False,
        ),
        _project_fk(),
        sa.Column("per_class_f1", sa.JSON(), nullable=False),
        sa.Column("support", sa.JSON(), nullable=False),
        sa.Column("fingerprint", sa.String(), nullable=False),
        sa.Index("ix_modelrunreport_project_id", "project_id"),
    )
    return md


def upgrade() -> None:
    release_tables().create_all(op.get_bind())


def downgrade() -> None:
    release_tables().drop_all(op.get_bind())
