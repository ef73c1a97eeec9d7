"""Ingest: new records and imported answers, in bulk (the driver's executemany, PostgreSQL's COPY).

Vectors come later, from the embedding job (``core.embedding_job``); bad input has been rejected by
``core.io`` before anything is written. The facade writes records in batches of bounded transactions,
so a large import never holds SQLite's write lock for long (a click waits for it before its ack).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, func, select

from core import answers, io
from core.models import Annotation, Record, utcnow
from core.types import ProjectInfo


def known_ids(conn: Connection, project_id: int) -> dict[str, int]:
    return dict(
        conn.execute(select(Record.external_id, Record.id).where(Record.project_id == project_id)).all()
    )


def ids_of(conn: Connection, project_id: int, external_ids: Sequence[str]) -> dict[str, int]:
    """External id -> record id of those ids (the labeled rows of a large import, say)."""
    found: dict[str, int] = {}
    for start in range(0, len(external_ids), 5_000):
        chunk = external_ids[start : start + 5_000]
        found.update(
            conn.execute(
                select(Record.external_id, Record.id).where(
                    Record.project_id == project_id, Record.external_id.in_(chunk)
                )
            ).all()
        )
    return found


def new_texts(rows: Sequence[io.ImportRow], known: dict[str, int]) -> dict[str, str]:
    """External id -> text of the records not in the project yet (the first row wins)."""
    texts: dict[str, str] = {}
    for row in rows:
        if row.external_id not in known and row.external_id not in texts:
            texts[row.external_id] = row.text
    return texts


def add_records(
    conn: Connection, project_id: int, texts: list[tuple[str, str]], metas: dict[str, dict]
) -> None:
    """Insert new records (external id, text); their vectors come from the embedding job.

    Straight to the driver: SQLAlchemy's per-row parameter processing took two thirds of a 1M-row
    import (bench/scale.py). Values are converted once with the columns' own bind processors, so
    they are stored exactly as an ORM insert stores them; PostgreSQL gets COPY.
    """
    now = utcnow()
    if conn.dialect.name == "postgresql":
        _copy_records(conn, project_id, texts, metas, now)
        return
    columns = Record.__table__.c
    to_json = columns.meta.type.bind_processor(conn.dialect) or (lambda value: value)
    stamp = (columns.created_at.type.bind_processor(conn.dialect) or (lambda value: value))(now)
    if isinstance(stamp, datetime):
        stamp = stamp.isoformat(" ")  # what sqlite3's datetime adapter would store, made once, not per row
    empty = to_json({})
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    cursor.executemany(
        "INSERT INTO record (project_id, external_id, text, meta, n_answers, complete, created_at)"
        " VALUES (?, ?, ?, ?, 0, 0, ?)",
        [
            (project_id, eid, text, to_json(metas[eid]) if metas.get(eid) else empty, stamp)
            for eid, text in texts
        ],
    )


def _copy_records(
    conn: Connection, project_id: int, texts: list[tuple[str, str]], metas: dict[str, dict], now: object
) -> None:
    """PostgreSQL's COPY, the bulk path of its protocol."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    columns = "project_id, external_id, text, meta, n_answers, complete, created_at"
    with cursor.copy(f"COPY record ({columns}) FROM STDIN") as copy:
        for eid, text in texts:
            copy.write_row((project_id, eid, text, json.dumps(metas.get(eid, {})), 0, False, now))


def add_answers(conn: Connection, info: ProjectInfo, rows: Sequence[io.ImportRow], source: str) -> int:
    """The rows' labels as answers (once per record and annotator), and the touched records' counts."""
    labeled = [row for row in rows if row.label is not None]
    if not labeled:
        return 0
    known = ids_of(conn, info.id, sorted({row.external_id for row in labeled}))
    answered = answers.answered_pairs(conn, info.id)
    new_answers = []
    now = utcnow()
    for row in labeled:
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


def answers_per_record_of(rows: Sequence[io.ImportRow]) -> Counter[int]:
    """How many records of the import carry how many answers (distinct annotators per labeled record)."""
    annotators: dict[str, set[str]] = {}
    for row in rows:
        if row.label is not None:
            annotators.setdefault(row.external_id, set()).add(row.annotator or "import")
    return Counter(len(who) for who in annotators.values())


def k_from_data(per_record: Counter[int]) -> int | None:
    """The most common number of answers per record of a multi-answer import (the smaller one of equally
    common numbers: fewer records then wait for more answers); None when no record has several."""
    if not per_record or max(per_record) < 2:
        return None
    return min(per_record, key=lambda n: (-per_record[n], n))


def has_answers(conn: Connection, project_id: int) -> bool:
    found = conn.execute(select(Annotation.id).where(Annotation.project_id == project_id).limit(1)).first()
    return found is not None


def answer_counts(conn: Connection, project_id: int, rows: Sequence[io.ImportRow]) -> list[int]:
    """Answers each labeled record of the import has now (its earlier answers included)."""
    labeled = sorted({row.external_id for row in rows if row.label is not None})
    counts: list[int] = []
    for start in range(0, len(labeled), 5_000):
        counts += conn.execute(
            select(Record.n_answers).where(
                Record.project_id == project_id, Record.external_id.in_(labeled[start : start + 5_000])
            )
        ).scalars()
    return counts


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
