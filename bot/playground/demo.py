"""The demo project (a bundled Banking77 sample) and the ``labelbot demo`` / ``serve --playground`` runner."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from core import io
from core.config import Settings
from core.errors import ProjectNotFound
from core.service import LabelingService

DEMO_PROJECT = "banking-demo"
DEMO_DATABASE_URL = "sqlite:///labelbot-demo.db"
SAMPLE_NAME = "banking77_sample.csv"
LABELS_NAME = "banking77_labels.yml"


def data_path(name: str) -> Path:
    """A file bundled in ``bot/data`` (installed as package data)."""
    return Path(str(resources.files("bot").joinpath("data", name)))


@dataclass(frozen=True)
class DemoSetup:
    """What ``ensure_demo_project`` did."""

    project: str
    created: bool
    new_records: int
    total_records: int


def demo_settings(settings: Settings) -> Settings:
    """``settings``, with the demo's own database unless ``LABELBOT_DATABASE_URL`` was configured."""
    if "database_url" in settings.model_fields_set:
        return settings
    return settings.model_copy(update={"database_url": DEMO_DATABASE_URL})


def ensure_demo_project(
    service: LabelingService,
    *,
    name: str = DEMO_PROJECT,
    progress: Callable[[int, int], None] | None = None,
) -> DemoSetup:
    """Create the demo project from the bundled sample unless it exists; idempotent.

    On a second run the import finds every id known and embeds nothing; records left without a
    vector for the current embedding model (a model change, an interrupted first run) are embedded.
    """
    try:
        service.get_project(name)
        created = False
    except ProjectNotFound:
        service.create_project(name, io.read_label_set(data_path(LABELS_NAME)))
        created = True
    result = service.import_file(name, data_path(SAMPLE_NAME), text_column="text", id_column="id",
                                 progress=progress)
    service.embed(name, progress=progress)  # vectors an earlier, interrupted demo left to make
    total = result.new_records + result.existing_records
    return DemoSetup(project=name, created=created, new_records=result.new_records, total_records=total)


def use_database(settings: Settings) -> None:
    """Make later ``load_settings()`` calls (e.g. ``labelbot serve``'s) open the same database."""
    os.environ["LABELBOT_DATABASE_URL"] = settings.database_url


def serve_playground(
    service: LabelingService,
    *,
    host: str,
    port: int,
    project: str | None = None,
    admins: frozenset[str] = frozenset(),
    announce: Callable[[str], None] = print,
) -> None:
    """Serve the bot with the playground page until Ctrl+C; ``announce(url)`` once it listens."""
    from bot.playground.workspace import ADMIN_USER_ID, Playground

    playground = Playground(service, host=host, port=port, project=project,
                            admin_ids=frozenset({ADMIN_USER_ID}) | admins)
    try:
        announce(playground.url)
        playground.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        playground.stop()
