"""Shared fixtures: a service on a temporary database with the fast deterministic embedder.

The database is a SQLite file in the test's ``tmp_path``, or on the PostgreSQL pass (``.ci/with-postgres``
sets ``LABELBOT_TEST_POSTGRES_URL``) a fresh database of that cluster, dropped when the test ends.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from core.config import Settings
from core.embeddings import HashingEmbedder
from core.service import LabelingService

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
BANKING77 = SHARED / "datasets" / "banking77"
SAMPLE = Path(__file__).resolve().parents[1] / "bot" / "data" / "banking77_sample.csv"


POSTGRES_URL = os.environ.get("LABELBOT_TEST_POSTGRES_URL")
ON_POSTGRES = bool(POSTGRES_URL)
sqlite_only = pytest.mark.skipif(ON_POSTGRES, reason="checks SQLite's own machinery")

_created: list[str] = []  # PostgreSQL databases made so far, in order


def database_url(tmp_path: Path, name: str = "labelbot", *, with_tables: bool = False) -> str:
    """The URL of the test's database ``name``: the same for every call with the same arguments, so
    two services, or a service and a CLI command, of one test share it.

    Empty, like a new SQLite file; on PostgreSQL ``with_tables`` copies a database the current code
    made the tables in (creating them per test took most of a test's time there). The first call for
    a name decides.
    """
    if not POSTGRES_URL:
        return f"sqlite:///{tmp_path / f'{name}.db'}"
    database = "t_" + hashlib.sha1(f"{tmp_path}/{name}".encode()).hexdigest()[:20]
    if database not in _created:
        template = f" TEMPLATE {_tables_template()}" if with_tables else ""
        with _admin().connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {database}{template}"))
        _created.append(database)
    return _postgres_url(database)


def _postgres_url(database: str) -> str:
    return sa.make_url(POSTGRES_URL).set(database=database).render_as_string(hide_password=False)


@functools.cache
def _tables_template() -> str:
    from core.store import create_db_engine

    with _admin().connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {TABLES_TEMPLATE}"))
    create_db_engine(_postgres_url(TABLES_TEMPLATE)).dispose()  # no connection left: copies need none
    return TABLES_TEMPLATE


TABLES_TEMPLATE = "labelbot_tables"


_admin_engine: sa.Engine | None = None


def _admin() -> sa.Engine:
    global _admin_engine
    if _admin_engine is None:
        _admin_engine = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")  # type: ignore[arg-type]
    return _admin_engine


def _drop_databases_after(start: int) -> None:
    with _admin().connect() as conn:
        while len(_created) > start:
            # FORCE: a test may leave a service unclosed; its connections end here.
            conn.execute(sa.text(f"DROP DATABASE {_created.pop()} WITH (FORCE)"))


@pytest.fixture(autouse=True)
def _fresh_postgres_databases() -> Iterator[None]:
    """Drops the databases a test made. Module-scoped fixtures set up before this one, so theirs stay
    until the session ends."""
    start = len(_created)
    yield
    if ON_POSTGRES:
        _drop_databases_after(start)


@pytest.fixture(autouse=True, scope="session")
def _drop_remaining_postgres_databases() -> Iterator[None]:
    yield
    if ON_POSTGRES:
        _drop_databases_after(0)
        if _tables_template.cache_info().currsize:
            with _admin().connect() as conn:
                conn.execute(sa.text(f"DROP DATABASE {TABLES_TEMPLATE}"))
        _admin().dispose()


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url(tmp_path, with_tables=True),
        "vector_dir": str(tmp_path / "vectors"),
        "embedding_model": "hashing-64",
        "retrain_every": 0,
        "retrain_cooldown": 0,  # retrains due after N answers start at once (tests click in milliseconds)
        "queue_size": 100,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def service(settings: Settings) -> Iterator[LabelingService]:
    svc = LabelingService(settings, embedder=HashingEmbedder(64))
    yield svc
    svc.close()


def banking_rows(n: int, *, split: str = "train") -> list[dict[str, str]]:
    """The first ``n`` Banking77 rows (text, category), read from ../shared."""
    with open(BANKING77 / f"{split}.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    # Interleave classes so a small sample covers many of them (the file is sorted by class).
    rows.sort(key=lambda row: hash_key(row["text"]))
    return rows[:n]


def hash_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def banking_labels() -> list[str]:
    return json.loads((BANKING77 / "categories.json").read_text(encoding="utf-8"))


def write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def serve_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a real ``labelbot serve`` subprocess on ``settings``' database: the hashing
    embedder, loopback, test Slack credentials (``extra`` adds e.g. the port and the stand-in's URL)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "HF_HUB_OFFLINE": "1",
        "LABELBOT_DATABASE_URL": settings.database_url,
        "LABELBOT_VECTOR_DIR": settings.vector_dir,
        "LABELBOT_EMBEDDING_MODEL": "hashing-64",
        "LABELBOT_HOST": "127.0.0.1",
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_SIGNING_SECRET": "test-secret",
    }
    env.pop("SLACK_APP_TOKEN", None)  # HTTP unless the test asks for Socket Mode in ``extra``
    env.update(extra)
    return env


def use_cli_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a CLI test runs in: its own directory and database, the hashing embedder, no automatic
    retrains, no Slack credentials from the developer's shell."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LABELBOT_DATABASE_URL", database_url(tmp_path, "cli", with_tables=True))
    monkeypatch.setenv("LABELBOT_EMBEDDING_MODEL", "hashing-64")
    monkeypatch.setenv("LABELBOT_RETRAIN_EVERY", "0")
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        monkeypatch.delenv(name, raising=False)

