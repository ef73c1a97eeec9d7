"""The LabelingService facade: storage, hand-out, answers, undo, similarity, retrain, status, export."""

from __future__ import annotations

import csv
import json
import threading
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from sqlalchemy import func, select, text

from core.errors import (
    InputFileError,
    LabelbotError,
    NothingToUndo,
    ProjectExists,
    ProjectNotFound,
    RecordNotFound,
    StaleRecord,
    UnknownLabel,
)
from core.io import ImportRow
from core.models import Annotation, Embedding, Record
from core.service import LabelingService
from core.store import read_session
from core.types import LabelDef
from tests.conftest import banking_labels, banking_rows, make_settings, sqlite_only, write_csv

LABELS = ["positive", "negative", "neutral"]


def _small_project(service: LabelingService, tmp_path: Path, n: int = 30, name: str = "p") -> Path:
    service.create_project(name, LABELS)
    words = ["great lovely good", "awful bad terrible", "table chair window"]
    rows = [{"id": f"r{i}", "text": f"{words[i % 3]} item {i}"} for i in range(n)]
    path = write_csv(tmp_path / "small.csv", rows)
    service.import_file(name, path)
    return path


def _count(service: LabelingService, model: type) -> int:
    with read_session(service.engine) as session:
        return session.execute(select(func.count()).select_from(model)).scalar_one()


@sqlite_only
def test_sqlite_runs_in_wal_with_foreign_keys(service: LabelingService) -> None:
    with service.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 1000


def test_create_project_validates_and_keeps_label_order(service: LabelingService) -> None:
    info = service.create_project("p", [LabelDef("b", "the b"), "a", "c"])
    assert info.label_names == ("b", "a", "c")
    assert info.labels[0].description == "the b"
    assert service.get_project("p") == info
    with pytest.raises(ProjectExists):
        service.create_project("p", ["x", "y"])
    with pytest.raises(LabelbotError, match="Duplicate"):
        service.create_project("q", ["x", "x"])
    with pytest.raises(LabelbotError, match="at least two"):
        service.create_project("q", ["x"])
    with pytest.raises(ProjectNotFound, match="labelbot init"):
        service.get_project("nope")


def test_import_stores_records_embeddings_and_is_idempotent(service: LabelingService, tmp_path: Path) -> None:
    path = _small_project(service, tmp_path)
    assert _count(service, Record) == 30
    assert _count(service, Embedding) == 30
    again = service.import_file("p", path)
    assert (again.new_records, again.existing_records, again.embedded, again.annotations) == (0, 30, 0, 0)
    assert _count(service, Record) == 30
    assert _count(service, Embedding) == 30


def test_import_with_labels_creates_import_annotations_once(service: LabelingService, tmp_path: Path) -> None:
    service.create_project("p", LABELS)
    rows = [{"id": i, "text": f"text {i}", "label": LABELS[i % 3] if i < 6 else ""} for i in range(10)]
    path = write_csv(tmp_path / "l.csv", rows)
    first = service.import_file("p", path, label_column="label")
    second = service.import_file("p", path, label_column="label")
    assert first.annotations == 6 and second.annotations == 0
    with read_session(service.engine) as session:
        sources = session.execute(select(Annotation.source)).scalars().all()
    assert sources == ["import"] * 6
    assert service.status("p").labeled == 6


def test_bad_import_writes_nothing(service: LabelingService, tmp_path: Path) -> None:
    service.create_project("p", LABELS)
    good = write_csv(tmp_path / "good.csv", [{"id": 1, "text": "fine", "label": "positive"}])
    service.import_file("p", good, label_column="label")
    bad = write_csv(
        tmp_path / "bad.csv",
        [{"id": 2, "text": "ok", "label": "positive"}, {"id": 3, "text": "x", "label": "nonsense"}],
    )
    with pytest.raises(InputFileError, match=r"bad\.csv, line 3.*nonsense"):
        service.import_file("p", bad, label_column="label")
    assert _count(service, Record) == 1
    assert _count(service, Annotation) == 1


def test_next_records_never_repeats_for_a_user(service: LabelingService, tmp_path: Path) -> None:
    _small_project(service, tmp_path, n=12)
    seen: list[int] = []
    for _ in range(6):
        batch = service.next_records("p", "alice", 2)
        seen += [r.record_id for r in batch]
        for r in batch:
            service.record_answer("p", r.record_id, "alice", "neutral")
    assert len(seen) == len(set(seen)) == 12
    assert service.next_records("p", "alice", 5) == []


def test_skipped_and_leased_records_are_not_handed_out_again(
    service: LabelingService, tmp_path: Path
) -> None:
    _small_project(service, tmp_path, n=5)
    first = service.next_records("p", "alice", 1)[0]
    service.skip("p", first.record_id, "alice")
    rest = [r.record_id for r in service.next_records("p", "alice", 10)]
    assert first.record_id not in rest and len(rest) == 4
    # bob is not blocked by alice's skip, but alice's 4 leases keep those records from him (k = 1).
    assert [r.record_id for r in service.next_records("p", "bob", 10)] == [first.record_id]


def test_record_answer_is_idempotent_and_changes_in_place(service: LabelingService, tmp_path: Path) -> None:
    _small_project(service, tmp_path, n=3)
    record = service.next_records("p", "alice", 1)[0]
    first = service.record_answer("p", record.record_id, "alice", "positive")
    repeat = service.record_answer("p", record.record_id, "alice", "positive")
    changed = service.record_answer("p", record.record_id, "alice", "negative")
    assert first.changed and not repeat.changed and changed.changed
    with read_session(service.engine) as session:
        rows = session.execute(select(Annotation.label)).scalars().all()
    assert rows == ["negative"]
    assert first.complete


def test_answers_are_validated(service: LabelingService, tmp_path: Path) -> None:
    _small_project(service, tmp_path, n=3)
    record = service.next_records("p", "alice", 1)[0]
    with pytest.raises(UnknownLabel):
        service.record_answer("p", record.record_id, "alice", "bogus")
    with pytest.raises(RecordNotFound):
        service.record_answer("p", 10_000, "alice", "positive")
    service.record_answer("p", record.record_id, "alice", "positive")
    with pytest.raises(StaleRecord):
        service.record_answer("p", record.record_id, "bob", "positive")
    assert _count(service, Annotation) == 1


def test_undo_reverts_the_latest_answer(service: LabelingService, tmp_path: Path) -> None:
    _small_project(service, tmp_path, n=4)
    a, b = service.next_records("p", "alice", 2)
    service.record_answer("p", a.record_id, "alice", "positive")
    service.record_answer("p", b.record_id, "alice", "negative")
    undone = service.undo("p", "alice")
    assert (undone.record_id, undone.label) == (b.record_id, "negative")
    assert service.status("p").labeled == 1
    # The record is open again (and reserved for alice, who is about to answer it again).
    service.record_answer("p", b.record_id, "alice", "neutral")
    service.undo("p", "alice", record_id=a.record_id)
    service.undo("p", "alice")
    with pytest.raises(NothingToUndo):
        service.undo("p", "alice")
    assert _count(service, Annotation) == 0


def test_similar_matches_brute_force(service: LabelingService, tmp_path: Path) -> None:
    _small_project(service, tmp_path, n=30)
    with read_session(service.engine) as session:
        rows = session.execute(
            select(Embedding.record_id, Embedding.vector).order_by(Embedding.record_id)
        ).all()
    ids = np.array([r[0] for r in rows])
    vectors = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
    target = int(ids[7])
    hits = service.similar("p", record_id=target, k=5)
    scores = vectors @ vectors[7]
    scores[7] = -np.inf
    expected = np.sort(scores)[::-1][:5]
    assert target not in [h.record_id for h in hits]
    # The pool holds float16 copies of the vectors: scores agree to about 1e-3.
    np.testing.assert_allclose([h.score for h in hits], expected, atol=2e-3)
    assert all(scores[list(ids).index(h.record_id)] == pytest.approx(h.score, abs=2e-3) for h in hits)
    by_text = service.similar("p", text="awful bad terrible", k=3)
    assert all("awful" in h.text for h in by_text)


def test_retrain_with_zero_and_one_class_falls_back_to_cold_start(
    service: LabelingService, tmp_path: Path
) -> None:
    _small_project(service, tmp_path, n=20)
    assert service.retrain("p") is None
    record = service.next_records("p", "alice", 1)[0]
    assert "cluster" in record.reason
    service.record_answer("p", record.record_id, "alice", "positive")
    assert service.retrain("p") is None
    assert service.next_records("p", "alice", 1)


def test_retrain_records_metrics_and_guesses(service: LabelingService, tmp_path: Path) -> None:
    service.create_project("b", banking_labels())
    rows = banking_rows(600)
    path = write_csv(tmp_path / "b.csv", [{"id": i, "text": r["text"]} for i, r in enumerate(rows)])
    service.import_file("b", path)
    for record in service.next_records("b", "oracle", 120):
        service.record_answer("b", record.record_id, "oracle", rows[int(record.external_id)]["category"])
    run = service.retrain("b")
    assert run is not None and run.n_labels == 120
    assert 0.0 < run.metrics["cv_accuracy"] <= 1.0 and 0.0 < run.metrics["cv_macro_f1"] <= 1.0
    assert sum(run.label_counts.values()) == 120
    cards = service.next_records("b", "oracle", 3)
    assert all(card.predicted_label in banking_labels() and 0 < card.confidence <= 1 for card in cards)
    assert all("uncertain" in card.reason for card in cards)
    assert service.run_history("b")[-1].id == run.id


def test_queue_swap_keeps_handing_out_during_retrain(service: LabelingService, tmp_path: Path) -> None:
    _small_project(service, tmp_path, n=60)
    for record in service.next_records("p", "alice", 9):
        service.record_answer("p", record.record_id, "alice", LABELS[int(record.external_id[1:]) % 3])
    results: list[int] = []
    trainer = threading.Thread(target=lambda: [service.retrain("p") for _ in range(3)])
    trainer.start()
    for _ in range(10):
        results += [r.record_id for r in service.next_records("p", "bob", 1)]
    trainer.join()
    assert len(results) == len(set(results)) == 10


def test_status_counts_and_leaderboard(service: LabelingService, tmp_path: Path) -> None:
    _small_project(service, tmp_path, n=10)
    for user, n in (("alice", 3), ("bob", 1)):
        for record in service.next_records("p", user, n):
            service.record_answer("p", record.record_id, user, "positive")
    status = service.status("p")
    assert (status.total, status.labeled, status.annotations, status.remaining) == (10, 4, 4, 6)
    assert status.label_counts == {"positive": 4, "negative": 0, "neutral": 0}
    assert [(a.user, a.answers) for a in status.annotators] == [("alice", 3), ("bob", 1)]
    assert status.progress == pytest.approx(0.4)


def test_export_has_one_row_per_record(service: LabelingService, tmp_path: Path) -> None:
    _small_project(service, tmp_path, n=12)
    for record in service.next_records("p", "alice", 6):
        service.record_answer("p", record.record_id, "alice", LABELS[int(record.external_id[1:]) % 3])
    service.retrain("p")
    out = service.export("p", tmp_path / "out.csv")
    with open(out.path, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12 == out.rows
    assert set(rows[0]) == {
        "id",
        "text",
        "label",
        "n_annotations",
        "agreement",
        "tie",
        "predicted_label",
        "probability",
        "rule_labels",
    }
    labeled = [r for r in rows if r["label"]]
    assert len(labeled) == 6 and all(r["n_annotations"] == "1" for r in labeled)
    assert all(r["tie"] == "false" for r in labeled) and all(r["tie"] == "" for r in rows if not r["label"])
    assert all(r["predicted_label"] in LABELS and 0 < float(r["probability"]) <= 1 for r in rows)
    jsonl = service.export("p", tmp_path / "out.jsonl")
    lines = (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()
    assert jsonl.rows == len(lines) == 12 and json.loads(lines[0])["id"] == "r0"


def test_restart_reuses_stored_embeddings(settings, tmp_path: Path) -> None:
    from core.embeddings import HashingEmbedder

    class CountingEmbedder(HashingEmbedder):
        texts: ClassVar[list[str]] = []

        def encode(self, texts, *, progress=None):  # type: ignore[no-untyped-def]
            CountingEmbedder.texts += list(texts)
            return super().encode(texts, progress=progress)

    first = LabelingService(settings, embedder=CountingEmbedder(64))
    path = _small_project(first, tmp_path, n=15)
    first.retrain("p")  # also embeds the label names once, for the label-name prior
    first.close()
    embedded = list(CountingEmbedder.texts)
    assert len(embedded) == 15 + len(LABELS)
    second = LabelingService(settings, embedder=CountingEmbedder(64))
    second.import_file("p", path)
    assert len(second.similar("p", record_id=second.find_record("p", "r1").record_id, k=3)) == 3
    second.retrain("p")
    assert CountingEmbedder.texts == embedded
    second.close()


def test_context_binding_and_default_project(service: LabelingService) -> None:
    assert service.default_project("C1") is None
    service.create_project("only", LABELS)
    assert service.default_project("C1") == "only"
    service.create_project("other", LABELS)
    assert service.default_project("C1") is None
    service.bind_context("C1", "other")
    assert service.default_project("C1") == "other"
    assert service.default_project("C2") is None


def _named_project(service: LabelingService, labels: list[str], n: int = 24) -> list[int]:
    """Records whose words are their label's name (so a hashing embedder puts them near the name)."""
    service.create_project("named", labels)
    rows = [ImportRow(line=i + 2, external_id=f"r{i}", text=f"{labels[i % len(labels)]} note {i}")
            for i in range(n)]
    service.import_rows("named", rows)
    return [service.find_record("named", f"r{i}").record_id for i in range(n)]


def test_a_retrain_uses_label_names_that_fit_and_says_so(service: LabelingService) -> None:
    labels = ["weather", "money", "sport"]
    ids = _named_project(service, labels)
    for i, rid in enumerate(ids[:12]):
        service.record_answer("named", rid, "u1", labels[i % 3])
    run = service.retrain("named")
    assert run is not None
    assert run.metrics["label_names_used"] == 1.0 and run.metrics["label_name_agreement"] > 1 / 3
    assert run.metrics["c"] == run.metrics["next_c"] == 30.0  # fewer labels than choose_c needs
    assert "with the label names as examples" in run.learner and "C=30" in run.learner
    classifier = service.latest_classifier("named")
    assert classifier is not None and classifier.label_names_used_
    assert list(classifier.classes_) == sorted(labels)
    assert [r.learner for r in service.run_history("named")] == [run.learner]


def test_label_names_that_contradict_the_labels_are_not_used(service: LabelingService) -> None:
    labels = ["weather", "money", "sport"]
    ids = _named_project(service, labels)
    for i, rid in enumerate(ids[:12]):
        service.record_answer("named", rid, "u1", labels[(i + 1) % 3])  # every answer is another name
    run = service.retrain("named")
    assert run is not None
    assert run.metrics["label_names_used"] == 0.0 and run.metrics["label_name_agreement"] < 1 / 3
    assert "label names not used" in run.learner


def test_the_settings_can_turn_the_label_name_prior_off(tmp_path: Path) -> None:
    from core.embeddings import HashingEmbedder

    svc = LabelingService(make_settings(tmp_path, label_name_weight=0.0), embedder=HashingEmbedder(64))
    try:
        labels = ["weather", "money", "sport"]
        ids = _named_project(svc, labels)
        for i, rid in enumerate(ids[:12]):
            svc.record_answer("named", rid, "u1", labels[i % 3])
        run = svc.retrain("named")
        assert run is not None and "label_names_used" not in run.metrics
        assert run.learner == "logistic regression, C=30"
    finally:
        svc.close()
