"""Multi-label projects (issue 13) through the facade: sets as answers, per-label aggregation, status,
export and import, the one-vs-rest learner and its strategy."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from core import multilabel
from core.errors import LabelbotError, StaleRecord, UnknownLabel
from core.io import ImportRow
from core.multilabel_learner import (
    MultiLabelClassifier,
    MultiLabelScores,
    SetNames,
    decide_sets,
    multilabel_cv_metrics,
)
from core.service import LabelingService
from core.strategies import get_strategy

LABELS = ["billing", "urgent", "refund"]


def _project(service: LabelingService, n: int = 4, k: int = 1, **kwargs: object) -> dict[str, int]:
    """A multi-label project "p" with records r0..r{n-1}; returns external id -> record id."""
    service.create_project("p", LABELS, answers_per_record=k, multi_label=True, **kwargs)  # type: ignore[arg-type]
    service.import_rows("p", [ImportRow(i + 2, f"r{i}", f"text number {i}") for i in range(n)])
    return {f"r{i}": service.find_record("p", f"r{i}").record_id for i in range(n)}


def test_join_and_split_keep_the_project_order(service: LabelingService) -> None:
    info = service.create_project("p", LABELS, multi_label=True)
    assert multilabel.join(info, ["refund", "billing"]) == "billing|refund"
    assert multilabel.join(info, []) == ""
    assert multilabel.split("billing|refund") == ("billing", "refund")
    assert multilabel.split("") == ()
    with pytest.raises(UnknownLabel, match="'nope' is not a label"):
        multilabel.join(info, ["billing", "nope"])


def test_a_multi_label_project_is_marked_and_gets_its_strategy(service: LabelingService) -> None:
    info = service.create_project("p", LABELS, multi_label=True)
    assert info.multi_label and service.get_project("p").multi_label
    assert info.strategy == multilabel.DEFAULT_STRATEGY
    assert not service.create_project("q", LABELS).multi_label  # the default is unchanged
    with pytest.raises(LabelbotError, match="may not contain"):
        service.create_project("r", ["a|b", "c"], multi_label=True)


def test_answers_are_sets_stored_as_canonical_text(service: LabelingService) -> None:
    ids = _project(service)
    result = service.record_answer("p", ids["r0"], "ann", frozenset({"refund", "billing"}))
    assert result.label == "billing|refund" and result.complete
    # The card listener's callable, resolved against the project as the transaction reads it.
    again = service.record_answer("p", ids["r0"], "ann", lambda info: ("refund", "billing"))
    assert not again.changed  # the same set, in another order, is the same answer
    none = service.record_answer("p", ids["r1"], "ann", ())
    assert none.label == "" and none.complete  # "none of these"
    with pytest.raises(UnknownLabel):
        service.record_answer("p", ids["r2"], "ann", {"billing", "spam"})
    status = service.status("p")
    assert status.multi_label
    assert status.labeled == 2
    assert status.label_counts == {"billing": 1, "urgent": 0, "refund": 1}
    undone = service.undo("p", "ann")
    assert undone.record_id == ids["r1"]
    assert service.status("p").labeled == 1


def test_bulk_label_applies_one_set(service: LabelingService) -> None:
    ids = _project(service)
    results = service.bulk_label("p", [ids["r0"], ids["r1"]], "ann", ("urgent", "billing"))
    assert [r.label for r in results] == ["billing|urgent", "billing|urgent"]
    assert service.status("p").label_counts == {"billing": 2, "urgent": 2, "refund": 0}


def test_k_answers_aggregate_per_label(service: LabelingService) -> None:
    ids = _project(service, k=3)
    for who, chosen in [("a", {"billing", "urgent"}), ("b", {"billing"}), ("c", {"billing", "refund"})]:
        result = service.record_answer("p", ids["r0"], who, chosen)
    assert result.complete
    with pytest.raises(StaleRecord):
        service.record_answer("p", ids["r0"], "d", {"billing"})
    final = service.final_labels("p")
    # billing: 3 yes; urgent and refund: 1 yes, 2 no each.
    assert final == {"r0": "billing"}
    assert service.status("p").label_counts == {"billing": 1, "urgent": 0, "refund": 0}


def test_a_tie_on_one_label_asks_one_more_answer(service: LabelingService) -> None:
    ids = _project(service, k=2)
    service.configure_project("p", extra_answer_on_disagreement=True)
    service.record_answer("p", ids["r0"], "a", {"billing", "urgent"})
    tied = service.record_answer("p", ids["r0"], "b", {"billing"})
    assert not tied.complete  # urgent: one yes, one no
    service.record_answer("p", ids["r1"], "a", {"refund"})
    agreed = service.record_answer("p", ids["r1"], "b", {"refund"})
    assert agreed.complete
    assert service.record_answer("p", ids["r0"], "c", {"billing", "urgent"}).complete
    assert service.final_labels("p") == {"r0": "billing|urgent", "r1": "refund"}


def test_export_csv_joins_and_jsonl_lists(service: LabelingService, tmp_path: Path) -> None:
    ids = _project(service)
    service.record_answer("p", ids["r0"], "ann", {"urgent", "billing"})
    service.record_answer("p", ids["r1"], "ann", set())
    service.export("p", tmp_path / "out.csv")
    with open(tmp_path / "out.csv", encoding="utf-8", newline="") as handle:
        rows = {row["id"]: row for row in csv.DictReader(handle)}
    assert rows["r0"]["label"] == "billing|urgent"
    assert rows["r1"]["label"] == "" and rows["r1"]["n_annotations"] == "1"
    service.export("p", tmp_path / "out.jsonl")
    lines = {r["id"]: r for r in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())}
    assert lines["r0"]["label"] == ["billing", "urgent"]
    assert lines["r1"]["label"] == []
    assert lines["r2"]["label"] is None  # not answered


def test_import_reads_joined_sets(service: LabelingService, tmp_path: Path) -> None:
    service.create_project("p", LABELS, multi_label=True)
    path = tmp_path / "in.csv"
    path.write_text("id,text,label\nx,first,urgent|billing\ny,second,refund\nz,third,\n")
    result = service.import_file("p", path, label_column="label")
    assert result.annotations == 2
    assert service.final_labels("p") == {"x": "billing|urgent", "y": "refund"}
    bad = tmp_path / "bad.csv"
    bad.write_text("id,text,label\nu,first,billing|spam\n")
    with pytest.raises(UnknownLabel, match=r"bad.csv, line 2: 'spam' is not a label"):
        service.import_file("p", bad, label_column="label")
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text(json.dumps({"id": "w", "text": "fourth", "label": ["refund", "urgent"]}) + "\n")
    service.import_file("p", jsonl, label_column="label")
    assert service.final_labels("p")["w"] == "urgent|refund"


def test_label_edits_keep_names_without_the_separator(service: LabelingService) -> None:
    # Rename, merge and retire in multi-label projects: tests/test_labelset_multilabel.py.
    service.create_project("p", LABELS, multi_label=True)
    with pytest.raises(LabelbotError, match="may not contain"):
        service.edit_labels("p", "rename", "billing", "in|voice")
    with pytest.raises(LabelbotError, match="may not contain"):
        service.edit_labels("p", "add", "a|b")
    assert service.edit_labels("p", "add", "spam").info.label_names == (*LABELS, "spam")


def test_retrain_trains_one_vs_rest_and_guesses_sets(service: LabelingService) -> None:
    service.create_project("p", LABELS, multi_label=True)
    texts = {
        "billing": "invoice charge billed payment",
        "urgent": "urgent asap immediately now",
        "refund": "refund money back return",
    }
    rows, given = [], {}
    for i in range(40):
        chosen = [name for j, name in enumerate(LABELS) if (i >> j) & 1] or ["billing"]
        rows.append(ImportRow(i + 2, f"r{i}", " ".join(texts[name] for name in chosen) + f" {i}"))
        given[f"r{i}"] = chosen
    for i in range(40, 60):
        rows.append(ImportRow(i + 2, f"r{i}", f"{texts[LABELS[i % 3]]} unlabeled {i}"))
    service.import_rows("p", rows)
    for eid, chosen in given.items():
        service.record_answer("p", service.find_record("p", eid).record_id, "ann", chosen)
    run = service.retrain("p")
    assert run is not None
    assert set(run.metrics) >= {"cv_micro_f1", "cv_macro_f1", "cv_subset_accuracy"}
    assert run.metrics["cv_subset_accuracy"] >= 0.9  # the texts say their labels' words
    assert run.label_counts == {name: sum(name in c for c in given.values()) for name in LABELS}
    assert isinstance(service.latest_classifier("p"), MultiLabelClassifier)
    cards = service.next_records("p", "someone", 5)
    assert cards
    for card in cards:
        assert card.predicted_label and set(multilabel.split(card.predicted_label)) <= set(LABELS)
        assert card.reason.startswith("unsure whether it is ")
        assert card.confidence is not None and card.confidence > 0.0
    guessed = service.get_record("p", service.find_record("p", "r45").record_id)
    assert guessed.predicted_label is not None
    assert set(multilabel.split(guessed.predicted_label)) <= set(LABELS)


def test_learner_fits_an_indicator_matrix_and_decides_at_least_one() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 6)).astype(np.float32)
    Y = np.stack([X[:, 0] > 0, X[:, 1] > 0, np.zeros(60, dtype=bool)], axis=1).astype(np.int8)
    model = MultiLabelClassifier(labels=("a", "b", "c")).fit(X, Y)
    P = model.predict_proba(X)
    assert P.shape == (60, 3)
    assert np.all(P[:, 2] < 0.01)  # a label never present stays absent
    assert np.mean((P[:, 0] >= 0.5) == Y[:, 0].astype(bool)) > 0.8
    chosen = decide_sets(np.array([[0.2, 0.4, 0.1], [0.7, 0.9, 0.1]]))
    assert chosen.tolist() == [[False, True, False], [True, True, False]]
    scores = model.score_pool(X)
    names = SetNames(("a", "b", "c"))
    assert list(model.predict(X[:5])) == [names[m] for m in scores.best[:5]]
    metrics = multilabel_cv_metrics(
        X, Y, estimator_factory=lambda: MultiLabelClassifier(labels=("a", "b", "c"))
    )
    assert metrics["cv_micro_f1"] > 0.5


def test_max_uncertainty_kmeans_picks_records_near_half() -> None:
    P = np.array([[0.99, 0.01], [0.5, 0.02], [0.97, 0.55], [0.02, 0.03], [0.9, 0.1]], dtype=np.float32)
    scores = MultiLabelScores.from_label_proba(P)
    X = np.eye(5, dtype=np.float32)
    picks = get_strategy("max-uncertainty-kmeans", factor=1).query(  # a band of the 2 most uncertain
        proba=None, scores=scores, embeddings=X, candidates=np.arange(5), classes=SetNames(("a", "b")),
        n=2, rng=np.random.default_rng(0), batch_size=2,
    )
    assert [p.index for p in picks] == [1, 2]
    assert picks[0].reason == "unsure whether it is a (0.50)"


def test_strategies_that_compare_two_labels_are_refused_for_sets(service: LabelingService) -> None:
    with pytest.raises(LabelbotError, match=r"do not have; choose one of .*max-uncertainty-kmeans"):
        service.create_project("p", LABELS, multi_label=True, strategy="margin-kmeans")
    assert service.list_projects() == []
    service.create_project("p", LABELS, multi_label=True)
    with pytest.raises(LabelbotError, match="multi-label project"):
        service.configure_project("p", strategy="margin")
    assert service.get_project("p").strategy == "max-uncertainty-kmeans"
    assert service.configure_project("p", strategy="entropy").strategy == "entropy"
    service.create_project("s", ["a", "b"], strategy="margin")  # single-label: any strategy
