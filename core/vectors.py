"""Vectors: the database holds every record's vector per embedding model (the truth, float32); each
machine keeps a float16 copy of a project's vectors in memory-mapped files that its processes share.

Why float16 files: at 1M records × 384 dims a float32 copy is 1.5 GB per process; the bot and its
training worker mapping one float16 file hold 0.77 GB between them, in the page cache
(docs/benchmarks.md: the effect on accuracy and neighbour recall). The files grow by appending the
rows of newer batches (``Embedding.batch``), so a process catching up with the embedding job reads
only what is new, and rows already mapped never move.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import Connection, Engine, bindparam, exists, func, select, update
from sqlalchemy.engine import make_url

from core.models import Embedding, LabelVector, Project, Record
from core.store import reading, upsert

# ---------------------------------------------------------------- the database side


def _missing_condition(project_id: int, model: str):  # type: ignore[no-untyped-def]
    has = exists().where(Embedding.record_id == Record.id, Embedding.model == model)
    return (Record.project_id == project_id) & ~has


def missing(
    conn: Connection, project_id: int, model: str, *, after_id: int, limit: int
) -> list[tuple[int, str]]:
    """Up to ``limit`` (record id, text) without a ``model`` vector, ids above ``after_id``, in id order."""
    rows = conn.execute(
        select(Record.id, Record.text)
        .where(_missing_condition(project_id, model), Record.id > after_id)
        .order_by(Record.id)
        .limit(limit)
    ).all()
    return [(int(r[0]), str(r[1])) for r in rows]


def count_missing(conn: Connection, project_id: int, model: str) -> int:
    return int(
        conn.execute(select(func.count(Record.id)).where(_missing_condition(project_id, model))).scalar_one()
    )


def count(conn: Connection, project_id: int, model: str) -> int:
    return int(
        conn.execute(
            select(func.count()).where(Embedding.project_id == project_id, Embedding.model == model)
        ).scalar_one()
    )


def write_batch(
    conn: Connection, project_id: int, model: str, record_ids: Sequence[int], vectors: np.ndarray
) -> int:
    """Store one batch of vectors; returns the project's new data version (the rows' ``batch``).

    Bumping the version first takes the project row's lock, so batches commit in version order.
    A vector already there (another process embedded the record meanwhile) is left as it is.
    """
    version = int(
        conn.execute(
            update(Project)
            .where(Project.id == project_id)
            .values(data_version=Project.data_version + 1)
            .returning(Project.data_version)
        ).scalar_one()
    )
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    rows = [
        {
            "record_id": int(rid),
            "project_id": project_id,
            "model": model,
            "vector": vectors[i].tobytes(),
            "batch": version,
        }
        for i, rid in enumerate(record_ids)
    ]
    if rows:
        conn.execute(upsert(conn, Embedding).on_conflict_do_nothing(), rows)
    return version


def set_target(conn: Connection, project_id: int, model: str | None) -> None:
    conn.execute(update(Project).where(Project.id == project_id).values(embedding_target=model))


def switch_model(conn: Connection, project_id: int, model: str) -> None:
    """Make ``model`` the project's model, in one statement: pools, guesses and the queue follow it."""
    conn.execute(
        update(Project)
        .where(Project.id == project_id)
        .values(
            embedding_model=model,
            embedding_target=None,
            data_version=Project.data_version + 1,
            version=Project.version + 1,
        )
    )


def models_of(conn: Connection, project_id: int) -> tuple[str | None, str | None]:
    """(the project's model, the model it is moving to)."""
    row = conn.execute(
        select(Project.embedding_model, Project.embedding_target).where(Project.id == project_id)
    ).one()
    return row[0], row[1]


def label_vectors(conn: Connection, project_id: int, model: str) -> dict[str, tuple[str, np.ndarray]]:
    """label -> (the text embedded for it, its vector) of ``model``."""
    rows = conn.execute(
        select(LabelVector.label, LabelVector.text, LabelVector.vector).where(
            LabelVector.project_id == project_id, LabelVector.model == model
        )
    ).all()
    return {str(r[0]): (str(r[1]), np.frombuffer(r[2], dtype=np.float32)) for r in rows}


def write_label_vectors(
    conn: Connection, project_id: int, model: str, texts: dict[str, str], vectors: np.ndarray
) -> None:
    """Store (or replace) the vectors of ``texts`` (label -> text embedded), one row per label."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    rows = [
        {"project_id": project_id, "model": model, "label": label, "text": text, "vector": vector.tobytes()}
        for (label, text), vector in zip(texts.items(), vectors, strict=True)
    ]
    if rows:
        stmt = upsert(conn, LabelVector)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["project_id", "model", "label"],
                set_={"text": stmt.excluded.text, "vector": stmt.excluded.vector},
            ),
            rows,
        )


_SINCE = (
    select(Embedding.record_id, Embedding.vector, Embedding.batch)
    .where(
        Embedding.project_id == bindparam("project_id"),
        Embedding.model == bindparam("model"),
        Embedding.batch > bindparam("after"),
    )
    .order_by(Embedding.batch, Embedding.record_id)
)


def _read_since(engine: Engine, project_id: int, model: str, after: int) -> tuple[int, Iterator[tuple]]:
    """(the project's data version, the (id, vector, batch) rows of batches after ``after``).

    Under PostgreSQL's READ COMMITTED the two statements may see different moments: the caller takes
    the larger of the version and the last row's batch (batches commit in order, so none below it
    can come later)."""
    conn_cm = reading(engine)
    conn = conn_cm.__enter__()
    try:
        version = int(conn.execute(select(Project.data_version).where(Project.id == project_id)).scalar_one())
        result = conn.execution_options(yield_per=20_000).execute(
            _SINCE, {"project_id": project_id, "model": model, "after": after}
        )
    except BaseException:
        conn_cm.__exit__(None, None, None)
        raise

    def rows() -> Iterator[tuple]:
        try:
            yield from result
        finally:
            conn_cm.__exit__(None, None, None)

    return version, rows()


# ---------------------------------------------------------------- the float16 files


@dataclass(frozen=True)
class VectorSet:
    """A project's vectors for one model as mapped now: rows ``[0, n)`` of the files."""

    ids: np.ndarray  # int64, in the order the rows were appended (not sorted)
    vectors: np.ndarray  # float16 memmap, L2-normalized rows
    loaded_version: int  # data version the rows are complete up to
    lineage: str  # changes when the files are rebuilt from scratch: rows of another lineage differ
    index_dir: Path | None = None  # where the approximate index of these vectors is kept


def default_vector_dir(database_url: str) -> str:
    """Beside a SQLite file (``labelbot.db`` → ``labelbot.db.vectors``); else the user's cache."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return f"{url.database}.vectors"
    if url.get_backend_name() == "sqlite":  # in memory: nothing to share, gone with the process
        directory = tempfile.mkdtemp(prefix="labelbot-vectors-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        return directory
    return str(Path("~/.cache/labelbot/vectors").expanduser())


def _slug(model: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", model)[-40:]
    return f"{readable}-{hashlib.sha1(model.encode()).hexdigest()[:8]}"


class VectorFiles:
    """The float16 files of every project under one directory, shared by the processes of a machine.

    Per (project, model): ``.json`` (rows, capacity, dim, version, lineage and the current file
    names), ``.ids`` (int64) and ``.f16`` (rows × dim). Writers append under an ``flock``; readers map
    the files read-only and use the first ``rows`` rows, which never change once written.
    """

    def __init__(self, directory: str | Path, database_url: str) -> None:
        # One subdirectory per database, so two databases on a machine never share files.
        key = hashlib.sha1(database_url.encode()).hexdigest()[:12]
        self.root = Path(directory).expanduser() / key

    def _stem(self, project_id: int, created_at: object, model: str) -> Path:
        created = hashlib.sha1(str(created_at).encode()).hexdigest()[:8]
        return self.root / f"project-{project_id}-{created}" / _slug(model)

    def load(
        self,
        engine: Engine,
        project_id: int,
        created_at: object,
        model: str,
        *,
        known: VectorSet | None = None,
    ) -> VectorSet:
        """The project's vectors as of now: the files, caught up with the database first if behind."""
        stem = self._stem(project_id, created_at, model)
        stem.parent.mkdir(parents=True, exist_ok=True)
        with _locked(stem.with_suffix(".lock")):
            meta = _read_meta(stem)
            with reading(engine) as conn:
                now = conn.execute(select(Project.data_version).where(Project.id == project_id)).scalar_one()
            if meta is not None and meta["version"] > now:  # files of a database restored from a backup
                meta = None
            version, rows = _read_since(engine, project_id, model, meta["version"] if meta else -1)
            last_batch = -1
            for new_ids, new_vectors, batch in _chunks(rows, 65_536):
                if meta is None or (meta["rows"] == 0 and meta["dim"] != new_vectors.shape[1]):
                    with reading(engine) as conn:
                        meta = _create(stem, count(conn, project_id, model), new_vectors.shape[1])
                meta = _append(stem, meta, new_ids, new_vectors)
                last_batch = batch
            if meta is None:
                meta = _create(stem, 0, 0)
            version = max(version, last_batch)
            if version != meta["version"]:
                meta["version"] = version
                _write_meta(stem, meta)
        index_dir = stem.with_name(stem.name + ".index")
        if known is not None and known.lineage == meta["lineage"] and len(known.ids) == meta["rows"]:
            return VectorSet(known.ids, known.vectors, meta["version"], meta["lineage"], index_dir)
        ids, mapped = _map(stem, meta)
        return VectorSet(ids, mapped, meta["version"], meta["lineage"], index_dir)

    def forget(self, project_id: int, created_at: object) -> None:
        """Remove a deleted project's files (processes that mapped them keep their mappings)."""
        folder = self._stem(project_id, created_at, "x").parent
        for path in folder.glob("*"):
            with contextlib.suppress(OSError):
                path.unlink()
        with contextlib.suppress(OSError):
            folder.rmdir()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _chunks(rows: Iterator[tuple], size: int) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """(ids, float16 vectors, last batch) of at most ``size`` rows at a time: a 1M-row load never
    holds it all."""
    ids: list[int] = []
    blobs: list[bytes] = []
    batch = -1
    for rid, blob, batch in rows:
        ids.append(rid)
        blobs.append(blob)
        if len(ids) == size:
            yield (*_convert(ids, blobs), batch)
            ids, blobs = [], []
    if ids:
        yield (*_convert(ids, blobs), batch)


def _convert(ids: list[int], blobs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    vectors = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(ids), -1)
    return np.asarray(ids, dtype=np.int64), vectors.astype(np.float16)


def _read_meta(stem: Path) -> dict | None:
    try:
        meta = json.loads(stem.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    files_there = (stem.parent / meta.get("ids", "")).is_file() and (
        stem.parent / meta.get("f16", "")
    ).is_file()
    return meta if files_there else None


def _write_meta(stem: Path, meta: dict) -> None:
    tmp = stem.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, stem.with_suffix(".json"))  # readers see the old or the new, never half


def _create(stem: Path, rows: int, dim: int) -> dict:
    """Empty files with room for ``rows`` rows (a new lineage: mappings of older files are not reused)."""
    lineage = os.urandom(6).hex()
    meta = {"rows": 0, "capacity": 0, "dim": dim, "version": -1, "lineage": lineage, "ids": "", "f16": ""}
    return _grow(stem, meta, max(rows, 1024))


def _grow(stem: Path, meta: dict, capacity: int) -> dict:
    """New files of ``capacity`` rows holding the current rows (old files stay for their mappings)."""
    name = f"{stem.name}.{meta['lineage']}.{capacity}"
    ids_path, f16_path = stem.parent / f"{name}.ids", stem.parent / f"{name}.f16"
    dim = max(meta["dim"], 1)
    ids = np.lib.format.open_memmap(ids_path, mode="w+", dtype=np.int64, shape=(capacity,))
    vectors = np.lib.format.open_memmap(f16_path, mode="w+", dtype=np.float16, shape=(capacity, dim))
    if meta["rows"]:
        old_ids, old_vectors = _open(stem, meta, mode="r")
        for start in range(0, meta["rows"], 65_536):
            stop = min(start + 65_536, meta["rows"])
            ids[start:stop] = old_ids[start:stop]
            vectors[start:stop] = old_vectors[start:stop]
    ids.flush()
    vectors.flush()
    old = [meta["ids"], meta["f16"]]
    meta = {**meta, "capacity": capacity, "ids": ids_path.name, "f16": f16_path.name}
    _write_meta(stem, meta)
    for stale in old:
        if stale:
            with contextlib.suppress(OSError):
                (stem.parent / stale).unlink()
    return meta


def _open(stem: Path, meta: dict, *, mode: str) -> tuple[np.ndarray, np.ndarray]:
    ids = np.load(stem.parent / meta["ids"], mmap_mode=mode)
    vectors = np.load(stem.parent / meta["f16"], mmap_mode=mode)
    return ids, vectors


def _append(stem: Path, meta: dict, new_ids: np.ndarray, new_vectors: np.ndarray) -> dict:
    needed = meta["rows"] + len(new_ids)
    if needed > meta["capacity"]:
        # Doubling keeps the copies to about one file's worth in all; at most a quarter above 1M rows.
        meta = _grow(
            stem,
            meta,
            max(needed, meta["capacity"] * 2 if meta["capacity"] < 1 << 20 else int(meta["capacity"] * 1.25)),
        )
    ids, vectors = _open(stem, meta, mode="r+")
    start = meta["rows"]
    ids[start:needed] = new_ids
    vectors[start:needed] = new_vectors
    ids.flush()
    vectors.flush()
    meta = {**meta, "rows": needed}
    _write_meta(stem, meta)
    return meta


def _map(stem: Path, meta: dict) -> tuple[np.ndarray, np.ndarray]:
    rows = meta["rows"]
    if rows == 0:
        return np.zeros(0, dtype=np.int64), np.zeros((0, max(meta["dim"], 1)), dtype=np.float16)
    ids, vectors = _open(stem, meta, mode="r")
    return np.asarray(ids[:rows]), vectors[:rows]
