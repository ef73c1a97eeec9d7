"""Shared fixtures: a service on a temporary SQLite file with the fast deterministic embedder."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config import Settings
from core.embeddings import HashingEmbedder
from core.service import LabelingService

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
BANKING77 = SHARED / "datasets" / "banking77"
SAMPLE = Path(__file__).resolve().parents[1] / "bot" / "data" / "banking77_sample.csv"


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": f"sqlite:///{tmp_path / 'labelbot.db'}",
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
    import hashlib

    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def banking_labels() -> list[str]:
    return json.loads((BANKING77 / "categories.json").read_text(encoding="utf-8"))


def write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
