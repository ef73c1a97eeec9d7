"""A retrain over a pool in one pass of blocks: its training rows, queue guesses and guess table agree
with the classifier it stored (the maths behind them is tested in test_learner/test_strategies)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
from sqlalchemy import select

from core import aggregate as agg
from core.models import Embedding, Record
from core.service import LabelingService
from core.store import reading
from core.training import training_rows
from tests.conftest import write_csv

LABELS = ["positive", "negative", "neutral"]


def final(label: str | None) -> agg.AggregateLabel:
    return agg.AggregateLabel(label, 1.0, 1, label is None, 1.0)


def test_training_rows_match_a_row_by_row_reading():
    ids = np.array([11, 3, 7, 20, 5, 14, 2], dtype=np.int64)  # pool order is not id order
    pool = SimpleNamespace(ids=ids)
    complete = {3, 20, 5, 2, 99}  # 99 is not in the pool
    finals = {3: final("a"), 20: final(None), 2: final("b"), 11: final("a")}
    rows, y, candidates = training_rows(pool, finals, complete)  # type: ignore[arg-type]
    expected_rows = [r for r, rid in enumerate(ids) if rid in complete and finals.get(rid)
                     and finals[rid].label is not None]
    assert rows.tolist() == expected_rows == [1, 6]
    assert y.tolist() == ["a", "b"]
    assert candidates.tolist() == [r for r, rid in enumerate(ids) if rid not in complete] == [0, 2, 5]


def test_queue_and_guess_table_come_from_the_stored_classifier(service: LabelingService, tmp_path: Path):
    service.create_project("p", LABELS)
    words = ["great lovely good", "awful bad terrible", "table chair window"]
    rng = np.random.default_rng(0)
    rows = [{"id": f"r{i}", "text": f"{words[i % 3]} {' '.join(rng.choice(['x', 'y', 'z', 'w'], 3))} {i}"}
            for i in range(150)]
    service.import_file("p", write_csv(tmp_path / "p.csv", rows))
    for record in service.next_records("p", "alice", 24):
        service.record_answer("p", record.record_id, "alice", LABELS[int(record.external_id[1:]) % 3])
    trained = service.retrain_with_guesses("p")
    assert trained.run is not None and trained.guesses is not None
    classifier = service.latest_classifier("p")
    assert classifier is not None
    with reading(service.engine) as conn:
        stored = conn.execute(
            select(Embedding.record_id, Embedding.vector).join(Record, Record.id == Embedding.record_id)
            .where(Record.project_id == service.get_project("p").id).order_by(Embedding.record_id)
        ).all()
    ids = np.array([r[0] for r in stored])
    vectors = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in stored])
    proba = classifier.predict_proba(vectors)
    # The pool may hold the vectors in float16 (rounding moves probabilities by ~1e-4): the best class
    # must agree wherever the top two are not within that of each other.
    top2 = np.sort(proba, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 0.01
    _, _, table, classes = trained.guesses
    assert len(table) == len(ids) and list(classes) == list(classifier.classes_)
    np.testing.assert_array_equal(table[clear, 0], proba[clear].argmax(axis=1))
    np.testing.assert_allclose(table[:, 1], proba.max(axis=1), atol=2e-3)
    cards = service.next_records("p", "bob", 5)
    assert len(cards) == 5
    for card in cards:
        row = int(np.searchsorted(ids, card.record_id))
        assert card.predicted_label == classifier.classes_[int(table[row, 0])]
        assert abs(card.confidence - table[row, 1]) < 1e-6
        assert abs(card.confidence - proba[row].max()) < 2e-3
