"""Ingest: new records, their embeddings and imported answers, through SQLAlchemy Core bulk inserts.

Embedding happens before any write (it is slow and needs no lock); bad input has been rejected by
``core.io`` before anything is written. The facade writes records in batches of bounded transactions,
so a large import never holds SQLite's write lock for long (a click waits for it before its ack).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import Connection, func, insert, select

from core import answers, io
from core.models import Embedding, Record, utcnow
from core.types import ProjectInfo

_CHUNK = 5_000


def known_ids(conn: Connection, project_id: int) -> dict[str, int]:
    return dict(
        conn.execute(select(Record.external_id, Record.id).where(Record.project_id == project_id)).all()
    )


def new_texts(rows: Sequence[io.ImportRow], known: dict[str, int]) -> dict[str, str]:
    """External id -> text of the records not in the project yet (the first row wins)."""
    texts: dict[str, str] = {}
    for row in rows:
        if row.external_id not in known and row.external_id not in texts:
            texts[row.external_id] = row.text
    return texts


def add_records(
    conn: Connection,
    info: ProjectInfo,
    texts: list[tuple[str, str]],
    metas: dict[str, dict],
    vectors: np.ndarray,
    model: str,
) -> None:
    """Insert new records (external id, text) and their vectors (row i for texts[i])."""
    now = utcnow()
    values = [
        {
            "project_id": info.id,
            "external_id": eid,
            "text": text,
            "meta": metas.get(eid, {}),
            "n_answers": 0,
            "complete": False,
            "created_at": now,
        }
        for eid, text in texts
    ]
    for start in range(0, len(values), _CHUNK):
        conn.execute(insert(Record), values[start : start + _CHUNK])
    ids = dict(
        conn.execute(
            select(Record.external_id, Record.id).where(
                Record.project_id == info.id, Record.external_id.in_([eid for eid, _ in texts])
            )
        ).all()
    )
    emb_rows = [
        {"record_id": ids[eid], "project_id": info.id, "model": model, "vector": vectors[i].tobytes()}
        for i, (eid, _) in enumerate(texts)
    ]
    for start in range(0, len(emb_rows), _CHUNK):
        conn.execute(insert(Embedding), emb_rows[start : start + _CHUNK])


def add_answers(conn: Connection, info: ProjectInfo, rows: Sequence[io.ImportRow], source: str) -> int:
    """The rows' labels as answers (once per record and annotator), and the touched records' counts."""
    if not any(row.label is not None for row in rows):
        return 0
    known = known_ids(conn, info.id)
    answered = answers.answered_pairs(conn, info.id)
    new_answers = []
    now = utcnow()
    for row in rows:
        if row.label is None:
            continue
        key = (known[row.external_id], row.annotator or "import")
        if key in answered:
            continue
        answered.add(key)
        new_answers.append(
            {
                "record_id": key[0],
                "project_id": info.id,
                "annotator": key[1],
                "label": row.label,
                "source": source,
                "created_at": now,
            }
        )
    answers.insert_imported(conn, new_answers)
    if new_answers:
        answers.recompute_completeness(conn, info, record_ids=sorted({a["record_id"] for a in new_answers}))
    return len(new_answers)


def missing_vectors(conn: Connection, project_id: int, model: str) -> list[tuple[int, str]]:
    """(record id, text) of records without a vector for ``model``."""
    have = select(Embedding.record_id).where(Embedding.project_id == project_id, Embedding.model == model)
    return [
        tuple(r)
        for r in conn.execute(  # type: ignore[misc]
            select(Record.id, Record.text).where(Record.project_id == project_id, Record.id.not_in(have))
        ).all()
    ]


def write_vectors(
    conn: Connection, project_id: int, model: str, record_ids: Sequence[int], vectors: np.ndarray
) -> None:
    rows = [
        {"record_id": rid, "project_id": project_id, "model": model, "vector": vectors[i].tobytes()}
        for i, rid in enumerate(record_ids)
    ]
    for start in range(0, len(rows), _CHUNK):
        conn.execute(insert(Embedding), rows[start : start + _CHUNK])


def records_for_export(conn: Connection, project_id: int) -> list[tuple]:
    return [
        tuple(r)
        for r in conn.execute(
            select(Record.id, Record.external_id, Record.text, Record.n_answers, Record.complete)
            .where(Record.project_id == project_id)
            .order_by(Record.id)
        ).all()
    ]


def counts(conn: Connection, project_id: int) -> tuple[int, int]:
    """(records, records still needing an answer)."""
    total, remaining = conn.execute(
        select(func.count(Record.id), func.count(Record.id).filter(Record.complete.is_(False))).where(
            Record.project_id == project_id
        )
    ).one()
    return int(total), int(remaining)


def complete_external_ids(conn: Connection, project_id: int) -> dict[int, str]:
    return dict(
        conn.execute(
            select(Record.id, Record.external_id).where(
                Record.project_id == project_id, Record.complete.is_(True)
            )
        ).all()
    )
