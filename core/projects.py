"""Projects: their labels and settings, channel bindings, and a cache of them checked by version.

Every facade call opens one transaction and reads the project's small state row in it
(:meth:`ProjectCatalog.state`): id, name, ``version``, ``data_version`` and ``latest_run_id``. The
labels and settings are parsed again only when ``version`` moved, which every change bumps in the
same transaction as the change — so a process sharing the database with others never acts on a
stale label set, and a click costs one indexed read for its project.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from core.errors import LabelbotError, ProjectExists, ProjectNotFound
from core.models import ContextBinding, Project, utcnow
from core.store import upsert
from core.strategies import STRATEGIES
from core.types import LabelDef, ProjectInfo

#: Highest gold rate a project may set: above it gold cards would outnumber the ones that label.
MAX_GOLD_RATE = 0.5

#: A project named by the user (its name) or by a compact value (its id, as on chat buttons).
ProjectKey = str | int


@dataclass(frozen=True)
class ProjectState:
    """A project as one transaction sees it: its info and the versions caches are checked against."""

    info: ProjectInfo
    data_version: int
    latest_run_id: int | None
    embedding_model: str | None = None  # None: a project from before models were per project


def check_answers_per_record(k: int) -> int:
    if not 1 <= int(k) <= 50:
        raise LabelbotError("answers_per_record must be between 1 and 50.")
    return int(k)


def check_gold_rate(rate: float) -> float:
    """A share of each labeler's cards that are gold questions: 0 (none) to ``MAX_GOLD_RATE``."""
    rate = float(rate)
    if not 0.0 <= rate <= MAX_GOLD_RATE:  # also refuses nan
        raise LabelbotError(f"gold_rate must be between 0 and {MAX_GOLD_RATE}.")
    return rate


def check_strategy(name: str, *, multi_label: bool = False) -> str:
    if name not in STRATEGIES:
        raise LabelbotError(f"Unknown strategy {name!r}; choose one of {', '.join(sorted(STRATEGIES))}.")
    if multi_label and not STRATEGIES[name].multi_label:
        suited = ", ".join(sorted(n for n, cls in STRATEGIES.items() if cls.multi_label))
        raise LabelbotError(f"Strategy {name!r} compares a record's two likeliest labels, which the sets "
                            f"of a multi-label project do not have; choose one of {suited}.")
    return name


def check_labels(labels: Sequence[str | LabelDef]) -> list[LabelDef]:
    defs = [label if isinstance(label, LabelDef) else LabelDef(str(label).strip()) for label in labels]
    names = [d.name for d in defs]
    if len(defs) < 2:
        raise LabelbotError("A project needs at least two labels.")
    if any(not n for n in names):
        raise LabelbotError("Label names must not be empty.")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise LabelbotError(f"Duplicate labels: {', '.join(duplicates)}.")
    return defs


_STATE_COLUMNS = (
    Project.id,
    Project.name,
    Project.version,
    Project.data_version,
    Project.latest_run_id,
    Project.created_at,
    Project.embedding_model,
)
# Built once: every facade call runs one of these.
_STATE_BY_ID = select(*_STATE_COLUMNS).where(Project.id == bindparam("key"))
_STATE_BY_NAME = select(*_STATE_COLUMNS).where(Project.name == bindparam("key"))


class ProjectCatalog:
    """Reads and writes the ``project`` and ``contextbinding`` tables; keeps parsed infos by version."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._infos: dict[int, tuple[tuple, ProjectInfo]] = {}  # id -> ((version, name, created), info)

    def state(self, conn: Connection, key: ProjectKey) -> ProjectState:
        """The project's state row (one indexed read); ProjectNotFound when there is none."""
        by_id = isinstance(key, int)
        row = conn.execute(_STATE_BY_ID if by_id else _STATE_BY_NAME, {"key": key}).first()
        if row is None:
            raise ProjectNotFound(f"#{key}" if by_id else str(key))
        pid, name, version, data_version, latest_run_id, created_at, embedding_model = row
        # A project deleted and made again can get the same id (databases from before AUTOINCREMENT)
        # and starts at version 0 again: its name and creation time tell it apart.
        stamp = (version, name, created_at)
        with self._lock:
            cached = self._infos.get(pid)
        if cached is None or cached[0] != stamp:
            full = conn.execute(
                select(Project.name, Project.labels, Project.settings, Project.created_at).where(
                    Project.id == pid
                )
            ).one()
            cached = (stamp, _info(pid, *full))
            with self._lock:
                self._infos[pid] = cached
        return ProjectState(cached[1], int(data_version), latest_run_id, embedding_model)

    def info(self, conn: Connection, key: ProjectKey) -> ProjectInfo:
        return self.state(conn, key).info

    def list(self, conn: Connection) -> list[ProjectInfo]:
        rows = conn.execute(
            select(Project.id, Project.name, Project.labels, Project.settings, Project.created_at).order_by(
                Project.name
            )
        ).all()
        return [_info(*row) for row in rows]

    def create(
        self,
        conn: Connection,
        name: str,
        labels: list[LabelDef],
        settings: dict[str, Any],
        embedding_model: str,
    ) -> int:
        if conn.execute(select(Project.id).where(Project.name == name)).first():
            raise ProjectExists(name)
        return int(
            conn.execute(
                insert(Project)
                .values(
                    name=name,
                    labels=label_rows(labels),
                    settings=settings,
                    embedding_model=embedding_model,
                    data_version=0,
                    version=0,
                    created_at=utcnow(),
                )
                .returning(Project.id)
            ).scalar_one()
        )

    def update_settings(self, conn: Connection, info: ProjectInfo, changes: dict[str, Any]) -> None:
        settings = dict(
            conn.execute(select(Project.settings).where(Project.id == info.id)).scalar_one() or {}
        )
        settings.update(changes)
        conn.execute(
            update(Project)
            .where(Project.id == info.id)
            .values(settings=settings, version=Project.version + 1)
        )

    def delete(self, conn: Connection, project_id: int) -> None:
        conn.execute(delete(Project).where(Project.id == project_id))
        with self._lock:
            self._infos.pop(project_id, None)

    @staticmethod
    def bump_data_version(conn: Connection, project_id: int) -> None:
        conn.execute(
            update(Project).where(Project.id == project_id).values(data_version=Project.data_version + 1)
        )

    @staticmethod
    def set_latest_run(conn: Connection, project_id: int, run_id: int) -> None:
        conn.execute(update(Project).where(Project.id == project_id).values(latest_run_id=run_id))

    @staticmethod
    def bind(conn: Connection, context: str, project_id: int) -> None:
        """Upsert ``context → project``."""
        stmt = upsert(conn, ContextBinding).values(context=context, project_id=project_id)
        conn.execute(stmt.on_conflict_do_update(index_elements=["context"], set_={"project_id": project_id}))

    @staticmethod
    def default_name(conn: Connection, context: str | None) -> str | None:
        """The project bound to ``context``, else the only project, else None."""
        if context is not None:
            bound = conn.execute(
                select(Project.name)
                .join(ContextBinding, ContextBinding.project_id == Project.id)
                .where(ContextBinding.context == context)
            ).scalar()
            if bound:
                return str(bound)
        names = conn.execute(select(Project.name).limit(2)).scalars().all()
        return names[0] if len(names) == 1 else None


def label_rows(labels: Sequence[LabelDef], retired: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The ``project.labels`` JSON: active labels in order, then retired names (``"retired": true``)."""
    rows: list[dict[str, Any]] = []
    for d in labels:
        row: dict[str, Any] = {"name": d.name, "description": d.description}
        if d.examples:
            row["examples"] = list(d.examples)
        rows.append(row)
    return rows + [{"name": name, "description": "", "retired": True} for name in retired]


def _info(pid: int, name: str, labels: list[dict], settings: dict, created_at: Any) -> ProjectInfo:
    settings = settings or {}
    return ProjectInfo(
        id=int(pid),
        name=name,
        labels=tuple(
            LabelDef(d["name"], d.get("description", ""), tuple(d.get("examples", ())))
            for d in labels
            if not d.get("retired")
        ),
        retired_labels=tuple(d["name"] for d in labels if d.get("retired")),
        answers_per_record=int(settings.get("answers_per_record", 1)),
        strategy=str(settings.get("strategy", "margin-kmeans")),
        created_at=created_at,
        extra_answer_on_disagreement=bool(settings.get("extra_answer_on_disagreement", False)),
        # New projects store their rate; one made before gold questions keeps working as it did: its
        # admins' past review decisions are not handed to labelers until someone sets a rate.
        gold_rate=float(settings.get("gold_rate", 0.0)),
        multi_label=bool(settings.get("multi_label", False)),
    )
