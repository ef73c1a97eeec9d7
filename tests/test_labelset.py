"""Guidelines and editing the label set (core.labelset through the facade): add, rename, merge, retire."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from core.errors import InputFileError, LabelbotError, UnknownLabel
from core.io import ImportRow, read_label_set
from core.models import Annotation, LabelVector, Record
from core.service import LabelingService
from core.store import reading
from core.types import LabelDef

LABELS = ["billing", "refund", "other"]


def _project(
    service: LabelingService, answers: dict[str, list[tuple[str, str]]], k: int = 1
) -> dict[str, int]:
    """Records r0..rN with ``answers`` {external id: [(annotator, label)]}; returns external id -> id."""
    service.create_project(
        "p",
        [LabelDef("billing", "Charges and invoices", ("I was charged twice",)), "refund", "other"],
        answers_per_record=k,
    )
    rows = [ImportRow(i + 2, eid, f"text {eid}") for i, eid in enumerate(sorted(answers))]
    service.import_rows("p", rows)
    ids = {}
    for eid, given in answers.items():
        rid = service.find_record("p", eid).record_id
        ids[eid] = rid
        for who, label in given:
            service.record_answer("p", rid, who, label, source="cli")
    return ids


def _labels_of(service: LabelingService, rid: int) -> list[str]:
    with reading(service.engine) as conn:
        return sorted(conn.execute(select(Annotation.label).where(Annotation.record_id == rid)).scalars())


def _record(service: LabelingService, rid: int) -> tuple[int, bool]:
    with reading(service.engine) as conn:
        n, done = conn.execute(select(Record.n_answers, Record.complete).where(Record.id == rid)).one()
    return int(n), bool(done)


def _retrains(service: LabelingService, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    asked: list[str] = []
    monkeypatch.setattr(service, "request_retrain", lambda project: asked.append(project) or True)
    return asked


def _export(service: LabelingService, tmp_path: Path) -> dict[str, dict[str, str]]:
    out = service.export("p", tmp_path / "out.csv")
    with open(out.path, encoding="utf-8") as handle:
        return {row["id"]: row for row in csv.DictReader(handle)}


def test_guidelines_are_stored_shown_and_keep_names(service: LabelingService) -> None:
    info = service.create_project("p", LABELS)
    updated = service.set_guideline(
        "p", "refund", "  Money back\n for an order ", ["I want my money back", "refund"]
    )
    assert updated.labels[1] == LabelDef(
        "refund", "Money back for an order", ("I want my money back", "refund")
    )
    assert updated.label_names == info.label_names
    # Examples left out keep those there are; a new description replaces the old.
    again = service.set_guideline("p", "refund", "Money back")
    assert again.labels[1].examples == ("I want my money back", "refund")
    assert service.get_project("p").labels[1].description == "Money back"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nope", "x"), "'nope' is not a label"),
        (("refund", "x", ["a", "b", "c", "d"]), "at most 3 examples"),
        (("refund", "x" * 501), "at most 500 characters"),
        (("refund", "x", [" "]), "must not be empty"),
    ],
)
def test_bad_guidelines_are_one_line(service: LabelingService, args: tuple, message: str) -> None:
    service.create_project("p", LABELS)
    with pytest.raises(LabelbotError) as caught:
        service.set_guideline("p", *args)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert service.get_project("p").labels[1] == LabelDef("refund")


def test_labels_file_reads_descriptions_and_examples(tmp_path: Path) -> None:
    path = tmp_path / "labels.yml"
    path.write_text(
        "refund:\n  description: Money back\n  examples: [I want my money back, refund please]\n"
        "billing: Charges\n"
    )
    assert read_label_set(path) == [
        LabelDef("refund", "Money back", ("I want my money back", "refund please")),
        LabelDef("billing", "Charges"),
    ]
    listed = tmp_path / "labels.json"
    listed.write_text(json.dumps([{"name": "a", "examples": ["x"]}, {"name": "b"}]))
    assert read_label_set(listed) == [LabelDef("a", "", ("x",)), LabelDef("b")]
    listed.write_text(json.dumps([{"name": "a", "examples": ["1", "2", "3", "4"]}, {"name": "b"}]))
    with pytest.raises(InputFileError, match="label 'a': A label has at most 3 examples"):
        read_label_set(listed)


def test_add_label(service: LabelingService, monkeypatch: pytest.MonkeyPatch) -> None:
    _project(service, {"r0": [("ann", "billing")]})
    asked = _retrains(service, monkeypatch)
    done = service.edit_labels("p", "add", "urgent", description="Needs an answer today")
    assert done.info is not None and done.info.label_names == (*LABELS, "urgent")
    assert service.get_project("p").labels[-1] == LabelDef("urgent", "Needs an answer today")
    assert asked == ["p"]
    with pytest.raises(LabelbotError, match="already a label"):
        service.edit_labels("p", "add", "urgent")


def test_rename_moves_answers_guidelines_and_label_vectors(
    service: LabelingService, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ids = _project(service, {"r0": [("ann", "billing")], "r1": [("ann", "refund")]})
    service.record_answer("p", ids["r1"], "admin", "billing", source="review")
    service.retrain("p")  # embeds the label vectors of the label-name prior
    with reading(service.engine) as conn:
        before = set(conn.execute(select(LabelVector.label)).scalars())
    asked = _retrains(service, monkeypatch)
    version = service.labels_changed_since_retrain("p")
    done = service.edit_labels("p", "rename", "billing", "payments")
    assert (done.answers_moved, done.renamed, done.retired) == (2, {"billing": "payments"}, ())
    info = service.get_project("p")
    assert info.label_names == ("payments", "refund", "other")
    assert info.labels[0] == LabelDef("payments", "Charges and invoices", ("I was charged twice",))
    assert _labels_of(service, ids["r0"]) == ["payments"]
    assert _labels_of(service, ids["r1"]) == ["payments", "refund"]  # the review answer too
    assert service.final_labels("p")["r1"] == "payments"
    with reading(service.engine) as conn:
        after = set(conn.execute(select(LabelVector.label)).scalars())
    assert "billing" in before and "billing" not in after
    assert asked == ["p"]
    assert not version and service.labels_changed_since_retrain("p")  # the fingerprint moved
    assert _export(service, tmp_path)["r0"]["label"] == "payments"


@pytest.mark.parametrize(
    ("edit", "label", "target", "message"),
    [
        ("rename", "billing", "refund", "already has a label 'refund'"),
        ("rename", "nope", "x", "'nope' is not a label"),
        ("rename", "billing", "", "needs the label's new name"),
        ("merge", "billing", "billing", "into itself"),
        ("merge", "billing", "nope", "'nope' is not a label"),
        ("retire", "nope", None, "'nope' is not a label"),
        ("split", "billing", None, "Unknown label edit"),
    ],
)
def test_bad_edits_are_refused_in_one_line(
    service: LabelingService,
    monkeypatch: pytest.MonkeyPatch,
    edit: str,
    label: str,
    target: str | None,
    message: str,
) -> None:
    ids = _project(service, {"r0": [("ann", "billing")]})
    asked = _retrains(service, monkeypatch)
    with pytest.raises(LabelbotError) as caught:
        service.edit_labels("p", edit, label, target)  # type: ignore[arg-type]
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert service.get_project("p").label_names == tuple(LABELS)
    assert _labels_of(service, ids["r0"]) == ["billing"] and asked == []


def test_merge_moves_answers_and_recomputes_completeness(
    service: LabelingService, monkeypatch: pytest.MonkeyPatch
) -> None:
    # k=2 with an extra answer on a tie: r0's billing/refund tie is open for a third labeler until
    # billing and refund are one label.
    ids = _project(service, {"r0": [("a", "billing"), ("b", "refund")], "r1": [("a", "other")]}, k=2)
    service.configure_project("p", extra_answer_on_disagreement=True)
    assert _record(service, ids["r0"]) == (2, False)
    asked = _retrains(service, monkeypatch)
    done = service.edit_labels("p", "merge", "refund", "billing")
    assert (done.answers_moved, done.renamed) == (1, {"refund": "billing"})
    assert service.get_project("p").label_names == ("billing", "other")
    assert _labels_of(service, ids["r0"]) == ["billing", "billing"]
    assert _record(service, ids["r0"]) == (2, True)
    assert service.final_labels("p") == {"r0": "billing"}
    assert asked == ["p"]
    with pytest.raises(LabelbotError, match="at least 2 labels"):
        service.edit_labels("p", "merge", "other", "billing")


def test_retire_keeps_answers_marked_and_reopens_records(
    service: LabelingService, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ids = _project(service, {"r0": [("a", "other")], "r1": [("a", "billing")], "r2": [], "r3": []})
    service.record_answer("p", ids["r3"], "admin", "other", source="review")  # a gold label, retired too
    assert "retired_answers" not in _export(service, tmp_path)["r0"]
    asked = _retrains(service, monkeypatch)
    done = service.edit_labels("p", "retire", "other")
    assert (done.retired, done.reopened, done.renamed) == (("other",), 2, {})
    assert _record(service, ids["r3"]) == (0, False)
    info = service.get_project("p")
    assert info.label_names == ("billing", "refund") and info.retired_labels == ("other",)
    assert _labels_of(service, ids["r0"]) == ["other"]  # kept in the history
    assert _record(service, ids["r0"]) == (0, False) and _record(service, ids["r1"]) == (1, True)
    rows = _export(service, tmp_path)
    assert (rows["r0"]["label"], rows["r0"]["retired_answers"]) == ("", '["a: other"]')
    assert (rows["r1"]["label"], rows["r1"]["retired_answers"]) == ("billing", "")
    assert asked == ["p"]
    # Back in the queue for someone who has not answered it; its old labeler is not asked again.
    assert ids["r0"] in {v.record_id for v in service.next_records("p", "b", 3)}
    assert ids["r0"] not in {v.record_id for v in service.next_records("p", "a", 3)}
    # Its labeler changing the retired answer makes it count again.
    service.record_answer("p", ids["r0"], "a", "refund", source="cli")
    assert _record(service, ids["r0"]) == (1, True)
    with pytest.raises(LabelbotError, match="at least 2 active labels"):
        service.edit_labels("p", "retire", "refund")
    with pytest.raises(UnknownLabel, match="'other' is not a label"):
        service.record_answer("p", ids["r2"], "a", "other")


def test_retired_label_comes_back_with_its_answers(
    service: LabelingService, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _project(service, {"r0": [("a", "other")]})
    _retrains(service, monkeypatch)
    service.edit_labels("p", "retire", "other")
    assert service.final_labels("p") == {}
    with pytest.raises(LabelbotError, match="already has a label 'other' \\(retired\\)"):
        service.edit_labels("p", "rename", "refund", "other")
    service.edit_labels("p", "add", "other")
    info = service.get_project("p")
    assert info.label_names == ("billing", "refund", "other") and info.retired_labels == ()
    assert _record(service, ids["r0"]) == (1, True)
    assert service.final_labels("p") == {"r0": "other"}


def test_status_and_review_leave_retired_answers_out(
    service: LabelingService, monkeypatch: pytest.MonkeyPatch
) -> None:
    # k=3 estimates annotator accuracy over every answer, which knows only the active labels.
    crowd = {
        f"r{i}": [(u, ["billing", "refund", "other"][(i + (u == "z")) % 3]) for u in "xyz"] for i in range(6)
    }
    ids = _project(service, crowd, k=3)
    service.record_answer("p", ids["r0"], "admin", "other", source="review")
    _retrains(service, monkeypatch)
    service.edit_labels("p", "retire", "other")
    status = service.status("p")
    assert set(status.label_counts) == {"billing", "refund"}
    assert sum(status.label_counts.values()) == status.labeled
    assert {a.user: a.answers for a in status.annotators}["z"] == 4  # its 2 answers of 'other' left out
    for item in service.review_queue("p", 10):
        assert "other" not in {label for _, label in item.answers}


def test_retiring_a_label_can_leave_a_tie_that_asks_for_one_more_answer(
    service: LabelingService, monkeypatch: pytest.MonkeyPatch
) -> None:
    # k=2 with an extra answer on a tie: billing/other tied, a third labeler said refund. With 'other'
    # retired, billing/refund is a tie among exactly 2 answers: the record is open for one more.
    ids = _project(service, {"r0": []}, k=2)
    service.configure_project("p", extra_answer_on_disagreement=True)
    for who, label in (("x", "billing"), ("y", "other"), ("z", "refund")):
        service.record_answer("p", ids["r0"], who, label, source="cli")
    assert _record(service, ids["r0"]) == (3, True)
    _retrains(service, monkeypatch)
    service.edit_labels("p", "retire", "other")
    assert _record(service, ids["r0"]) == (2, False)
    service.record_answer("p", ids["r0"], "w", "billing", source="cli")
    assert _record(service, ids["r0"]) == (3, True)
    assert service.final_labels("p") == {"r0": "billing"}
