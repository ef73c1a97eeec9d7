"""Schema migrations: a database made by release 5609fa7 (or older) opens, upgrades itself and keeps
every row; the migrations at head match core/models.py.

"Made by release 5609fa7": the statements that release's create_all ran, frozen per dialect in
tests/data/schema_5609fa7.<dialect>.sql, then rows written through tables reflected from it (no
current model touches it). Runs on SQLite, and on PostgreSQL when LABELBOT_TEST_POSTGRES_URL is set.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

from core.embeddings import HashingEmbedder
from core.migrations import current_revision, head_revision, runner
from core.service import LabelingService
from core.store import create_db_engine
from tests.conftest import database_url, make_settings, sqlite_only

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
RELEASE_TABLES = (
    *("project", "record", "modelrun", "contextbinding", "annotation"),
    *("skip", "lease", "queueitem", "embedding", "modelrunreport"),
)
WHEN = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)


def release_database(url: str) -> sa.Engine:
    """An empty database as release 5609fa7 made it: its tables, no alembic_version."""
    engine = create_db_engine(url, upgrade=False)
    script = (DATA / f"schema_5609fa7.{engine.dialect.name}.sql").read_text()
    with engine.begin() as conn:
        for statement in script.split(";\n"):
            sql = "\n".join(line for line in statement.splitlines() if not line.startswith("--")).strip()
            if sql:
                conn.exec_driver_sql(sql)
    return engine


def fill(engine: sa.Engine) -> dict[str, int]:
    """Two projects with records, answers, a skip, a lease, two model runs (one with a report), a
    queue, vectors and a channel binding, written through the tables as the database has them."""
    md = sa.MetaData()
    md.reflect(engine)
    tables = md.tables
    with engine.begin() as conn:

        def add(table: str, **values: Any) -> int:
            columns = tables[table].columns
            values = {k: v for k, v in values.items() if k in columns}  # an older release lacks some
            insert = tables[table].insert().values(**values).returning(*tables[table].primary_key)
            return conn.execute(insert).scalar_one()

        labels = [{"name": "money", "description": "about money"}, {"name": "weather", "description": ""}]
        p1 = add(
            "project", name="p", labels=labels, settings={"answers_per_record": 1}, data_version=3,
            version=2, created_at=WHEN,
        )
        p2 = add("project", name="q", labels=labels, settings={}, data_version=1, version=0, created_at=WHEN)
        records = []
        for i in range(6):
            text = f"message {i} about {'money' if i % 2 else 'rain'}"
            records.append(
                add(
                    "record", project_id=p1, external_id=f"r{i}", text=text, meta={"row": i},
                    n_answers=int(i < 4), complete=i < 4, created_at=WHEN,
                )
            )
        other = add(
            "record", project_id=p2, external_id="x", text="elsewhere", meta={}, n_answers=0, complete=False,
            created_at=WHEN,
        )
        for i, record in enumerate(records[:4]):
            add(
                "annotation", record_id=record, project_id=p1, annotator="alice",
                label="money" if i % 2 else "weather", source="slack", shown_at=WHEN, created_at=WHEN,
            )
        add("skip", record_id=records[4], project_id=p1, annotator="bob", created_at=WHEN)
        add("lease", record_id=records[5], project_id=p1, annotator="bob", shown_at=WHEN, expires_at=WHEN)
        runs = [
            add(
                "modelrun", project_id=p1, created_at=WHEN, n_labels=n, strategy="margin-kmeans",
                metrics={"f1_macro": 0.5 + n / 10}, label_counts={"money": n // 2, "weather": n - n // 2},
                duration_seconds=1.5, embedding_model="hashing-64", model_blob=blob,
            )
            # The latest run has no classifier: the service would unpickle it to guess.
            for n, blob in ((2, b"not a pickle" * 8), (4, None))
        ]
        add(
            "modelrunreport", run_id=runs[1], project_id=p1, per_class_f1={"money": 0.5, "weather": 0.7},
            support={"money": 2, "weather": 2}, fingerprint="abc",
        )
        for position, record in enumerate(records[4:]):
            add(
                "queueitem", project_id=p1, position=position, record_id=record, predicted_label="money",
                confidence=0.6, reason="margin",
            )
        for record in [*records, other]:
            project = p2 if record == other else p1
            add("embedding", record_id=record, project_id=project, model="old-model", vector=bytes(range(16)))
        add("contextbinding", context="C123", project_id=p1)
        if "latest_run_id" in tables["project"].columns:
            project = tables["project"]
            conn.execute(project.update().where(project.c.id == p1).values(latest_run_id=runs[1]))
    return {"p1": p1, "p2": p2, "latest_run": runs[1], "records": len(records) + 1}


def rows(engine: sa.Engine, columns: dict[str, list[str]] | None = None) -> dict[str, list[tuple]]:
    """Every row of the release's tables (only ``columns`` of each, when given), in primary key order."""
    inspector = sa.inspect(engine)
    out = {}
    with engine.connect() as conn:
        for table in RELEASE_TABLES:
            names = columns[table] if columns else [c["name"] for c in inspector.get_columns(table)]
            key = ", ".join(inspector.get_pk_constraint(table)["constrained_columns"])
            query = f"SELECT {', '.join(names)} FROM {table} ORDER BY {key}"
            out[table] = [tuple(row) for row in conn.exec_driver_sql(query)]
    return out


def column_names(engine: sa.Engine) -> dict[str, list[str]]:
    inspector = sa.inspect(engine)
    return {table: [c["name"] for c in inspector.get_columns(table)] for table in inspector.get_table_names()}


def differences_from_models(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        # APScheduler's job table is made by revision 0003 but is not one of the models.
        def not_the_scheduler_table(name: str | None, kind: str, _parents: Any) -> bool:
            return not (kind == "table" and name == "apscheduler_jobs")

        options = {"compare_type": True, "include_name": not_the_scheduler_table}
        context = MigrationContext.configure(conn, opts=options)
        return compare_metadata(context, SQLModel.metadata)


def test_a_database_made_by_the_release_upgrades_itself_and_keeps_every_row(tmp_path: Path) -> None:
    url = database_url(tmp_path)
    old = release_database(url)
    made = fill(old)
    before, old_columns = rows(old), column_names(old)
    old.dispose()
    assert "alembic_version" not in old_columns and "leaderlease" not in old_columns

    engine = create_db_engine(url)
    assert current_revision(engine) == head_revision()
    assert rows(engine, old_columns) == before  # every record, answer, model run, … as it was
    assert all(len(before[t]) > 0 for t in RELEASE_TABLES)
    assert differences_from_models(engine) == []  # the new columns and tables are there
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT DISTINCT batch FROM embedding").all() == [(0,)]
        assert conn.exec_driver_sql("SELECT count(*) FROM leaderlease").scalar() == 0
        # Each project keeps the model its vectors are for, whatever LABELBOT_EMBEDDING_MODEL says later.
        models = conn.exec_driver_sql("SELECT name, embedding_model FROM project ORDER BY name").all()
        assert [tuple(m) for m in models] == [("p", "old-model"), ("q", "old-model")]
    engine.dispose()

    service = LabelingService(make_settings(tmp_path), embedder=HashingEmbedder(64))
    try:
        assert [p.name for p in service.list_projects()] == ["p", "q"]
        assert [run.n_labels for run in service.run_history("p")] == [2, 4]
        assert service.final_labels("p") == {"r0": "weather", "r1": "money", "r2": "weather", "r3": "money"}
        assert service.default_project("C123") == "p"
        record = service.find_record("p", "r5")
        service.record_answer("p", record.record_id, "carol", "money")  # writes to the upgraded tables
        assert service.final_labels("p")["r5"] == "money"
        status = service.status("p")
        assert (status.total, status.annotations) == (made["records"] - 1, 5)
        assert status.latest_run is not None and status.latest_run.id == made["latest_run"]
    finally:
        service.close()


def test_a_database_from_before_the_version_columns_gets_them_and_the_latest_run(tmp_path: Path) -> None:
    url = database_url(tmp_path)
    old = release_database(url)
    with old.begin() as conn:  # as releases before these columns left a database
        conn.exec_driver_sql("ALTER TABLE project DROP COLUMN version")
        conn.exec_driver_sql("ALTER TABLE project DROP COLUMN latest_run_id")
    made = fill(old)
    before, old_columns = rows(old), column_names(old)
    old.dispose()

    engine = create_db_engine(url)
    with engine.connect() as conn:
        projects = conn.exec_driver_sql("SELECT id, version, latest_run_id FROM project ORDER BY id").all()
    assert projects == [(made["p1"], 0, made["latest_run"]), (made["p2"], 0, None)]  # q has no run
    assert rows(engine, old_columns) == before
    assert differences_from_models(engine) == []
    engine.dispose()


def test_an_unversioned_database_of_the_development_schema_is_adopted_at_0002(tmp_path: Path) -> None:
    """Made between release 5609fa7 and migrations (create_all of the day, a leaderlease table)."""
    url = database_url(tmp_path)
    engine = create_db_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE alembic_version")
        conn.exec_driver_sql("DROP INDEX ix_embedding_project_model_batch")
        conn.exec_driver_sql("ALTER TABLE embedding DROP COLUMN batch")  # code older than the batches
        conn.exec_driver_sql("ALTER TABLE queueitem DROP COLUMN gold")  # ... and than gold questions
        conn.exec_driver_sql("DROP TABLE labelvector")  # ... and than the label-name prior
    engine.dispose()
    engine = create_db_engine(url)
    assert current_revision(engine) == head_revision()
    assert differences_from_models(engine) == []
    engine.dispose()


def test_processes_opening_an_old_database_at_once_migrate_it_once(tmp_path: Path) -> None:
    url = database_url(tmp_path)
    old = release_database(url)
    fill(old)
    before, old_columns = rows(old), column_names(old)
    old.dispose()
    errors: list[str] = []

    def open_it() -> None:
        try:
            create_db_engine(url).dispose()
        except Exception as exc:  # a second migration would fail on a table or column already there
            errors.append(repr(exc))

    openers = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in openers:
        thread.start()
    for thread in openers:
        thread.join(60)
    assert errors == []
    engine = create_db_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").all() == [(head_revision(),)]
    assert rows(engine, old_columns) == before
    engine.dispose()


def test_the_migrations_at_head_match_the_models(tmp_path: Path) -> None:
    """Fails when core/models.py changes without a revision: see core/migrations for adding one."""
    engine = create_db_engine(database_url(tmp_path))
    try:
        assert differences_from_models(engine) == []
        assert autoincrement_tables(engine) >= {"project", "record"}
    finally:
        engine.dispose()


def autoincrement_tables(engine: sa.Engine) -> set[str]:
    """Tables that never reuse an id: on SQLite only AUTOINCREMENT does that, and compare_metadata
    does not see it (a batch migration that copies the table must keep it); PostgreSQL's sequences
    never go back, so there every table with a serial id counts."""
    wanted = {t.name for t in SQLModel.metadata.sorted_tables if t.dialect_kwargs.get("sqlite_autoincrement")}
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            found = conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'table'").all()
            return {name for name, sql in found if "AUTOINCREMENT" in sql} & wanted
        found = conn.execute(
            sa.text("SELECT table_name FROM information_schema.columns WHERE column_default LIKE :serial"),
            {"serial": "nextval(%"},
        ).all()
        return {name for (name,) in found} & wanted


def schema_of(engine: sa.Engine) -> set[tuple]:
    """The schema as the database itself describes it (what reflection would smooth over: SQLite's
    AUTOINCREMENT, PostgreSQL's serial defaults), without alembic_version."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            found = conn.exec_driver_sql(
                "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'"
            )
        else:
            found = conn.exec_driver_sql(
                "SELECT table_name, column_name, column_default, data_type, is_nullable, ordinal_position"
                " FROM information_schema.columns WHERE table_schema = 'public'"
                " UNION ALL SELECT tablename, indexname, indexdef, '', '', 0 FROM pg_indexes"
                " WHERE schemaname = 'public'"
                " UNION ALL SELECT conrelid::regclass::text, contype::text, pg_get_constraintdef(oid),"
                " '', '', 0 FROM pg_constraint WHERE connamespace = 'public'::regnamespace"
            )
        return {tuple(row) for row in found if "alembic_version" not in str(row)}


def test_revision_0001_is_the_schema_release_5609fa7_made(tmp_path: Path) -> None:
    release = release_database(database_url(tmp_path, "release"))
    migrated = create_db_engine(database_url(tmp_path, "migrated"), upgrade=False)
    runner.upgrade(migrated, "0001")
    try:
        assert len(schema_of(release)) >= 30  # its 10 tables and 20 indexes, at least
        assert schema_of(migrated) == schema_of(release)
    finally:
        release.dispose()
        migrated.dispose()


def test_a_downgrade_and_upgrade_again_keep_every_row(tmp_path: Path) -> None:
    """SQLite drops a column by copying the table: with foreign keys on, dropping the old project
    table would delete every record under it (ON DELETE CASCADE). Migrations run with them off."""
    url = database_url(tmp_path)
    old = release_database(url)
    fill(old)
    before, old_columns = rows(old), column_names(old)
    old.dispose()
    engine = create_db_engine(url)
    runner.downgrade(engine, "0001")
    assert current_revision(engine) == "0001"
    assert column_names(engine)["project"] == old_columns["project"]
    assert rows(engine) == before
    assert autoincrement_tables(engine) >= {"project", "record"}  # project was copied without a column
    runner.upgrade(engine)
    assert rows(engine, old_columns) == before
    assert differences_from_models(engine) == []
    engine.dispose()


def test_a_database_of_a_newer_labelbot_is_refused(tmp_path: Path) -> None:
    url = database_url(tmp_path)
    create_db_engine(url).dispose()
    engine = create_db_engine(url, upgrade=False)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    engine.dispose()
    with pytest.raises(RuntimeError, match="newer labelbot"):
        create_db_engine(url)


def test_revisions_are_numbered_one_after_the_other_and_head_is_read_from_the_file_names() -> None:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "core" / "migrations"))
    script = ScriptDirectory.from_config(cfg)
    assert script.get_heads() == [head_revision()]
    chain = [rev.revision for rev in script.walk_revisions()][::-1]  # base first
    assert chain == [f"{i:04d}" for i in range(1, len(chain) + 1)]
    assert all(len(rev.nextrev) <= 1 for rev in script.walk_revisions())  # no branches


def test_opening_an_up_to_date_database_does_not_import_alembic(tmp_path: Path) -> None:
    url = database_url(tmp_path)
    create_db_engine(url).dispose()
    code = (
        f"import sys; from core.store import create_db_engine; create_db_engine({url!r}).dispose(); "
        "print('alembic' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@sqlite_only
def test_a_migration_leaves_foreign_keys_on_for_the_connections_after_it(tmp_path: Path) -> None:
    engine = create_db_engine(database_url(tmp_path))
    try:
        with runner.migration_transaction(engine) as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 0
        with engine.connect() as conn:  # the pool's one connection, given back
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


def test_a_new_database_has_the_scheduler_job_table_before_any_scheduler_starts(tmp_path: Path) -> None:
    # Two replicas starting at once used to race to create it (one failed to start).
    engine = create_db_engine(database_url(tmp_path))
    try:
        assert sa.inspect(engine).has_table("apscheduler_jobs")
    finally:
        engine.dispose()
