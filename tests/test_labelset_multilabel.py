"""Editing the label set of a multi-label project (issue 13): rename, merge and retire rewrite or read
the stored sets (core.labelset), through the facade and, for a rename, from Slack."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from bot import ids
from core.errors import LabelbotError
from core.io import ImportRow
from core.models import QueueItem
from core.service import LabelingService
from core.store import reading, writing
from core.types import LabelDef
from tests.conftest import use_cli_environment
from tests.slack_harness import ADMIN, ALICE, BOB, SlackHarness, start_harness
from tests.test_bot import annotations, first_card, texts_of
from tests.test_cli import run
from tests.test_labelset import _export, _record, _retrains
from tests.test_labelset import _labels_of as _sets_of
from tests.test_multilabel_bot import TEXTS, tick_and_press

LABELS = [LabelDef("billing", "Charges and invoices"), "urgent", "refund", "other"]


def _project(
    service: LabelingService, answers: dict[str, list[tuple[str, set[str]]]], k: int = 1
) -> dict[str, int]:
    """Multi-label project p with records ``answers`` {external id: [(annotator, set)]}; external id -> id."""
    service.create_project("p", LABELS, answers_per_record=k, multi_label=True)
    service.import_rows("p", [ImportRow(i + 2, eid, f"text {eid}") for i, eid in enumerate(sorted(answers))])
    found = {}
    for eid, given in answers.items():
        found[eid] = service.find_record("p", eid).record_id
        for who, names in given:
            service.record_answer("p", found[eid], who, names, source="cli")
    return found


def _guess(service: LabelingService, rid: int, text: str | None = None) -> str | None:
    """Set (when ``text`` is given) and read the queue guess of ``rid``."""
    with writing(service.engine) as conn:
        if text is not None:
            project_id = service.get_project("p").id
            conn.execute(insert(QueueItem).values(project_id=project_id, position=rid, record_id=rid,
                                                  predicted_label=text, confidence=0.9))
        return conn.execute(select(QueueItem.predicted_label).where(QueueItem.record_id == rid)).scalar()


def test_rename_rewrites_the_name_inside_every_set(
    service: LabelingService, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    found = _project(service, {"r0": [("a", {"billing", "urgent"})], "r1": [("a", {"refund"})],
                               "r2": [("a", set())]})
    service.record_answer("p", found["r1"], "admin", {"billing", "refund"}, source="review")
    _guess(service, found["r0"], "billing|urgent")
    service.add_rule("p", "invoice -> billing", "admin")
    asked = _retrains(service, monkeypatch)
    done = service.edit_labels("p", "rename", "billing", "payments")
    assert (done.answers_moved, done.renamed) == (2, {"billing": "payments"})
    info = service.get_project("p")
    assert info.label_names == ("payments", "urgent", "refund", "other")
    assert info.labels[0] == LabelDef("payments", "Charges and invoices")  # the guideline follows
    assert _sets_of(service, found["r0"]) == ["payments|urgent"]
    assert _sets_of(service, found["r1"]) == ["payments|refund", "refund"]  # the gold set too
    assert _sets_of(service, found["r2"]) == [""]
    assert _guess(service, found["r0"]) == "payments|urgent"
    assert service.final_labels("p") == {"r0": "payments|urgent", "r1": "payments|refund", "r2": ""}
    assert _export(service, tmp_path)["r0"]["label"] == "payments|urgent"
    assert [rule.label for rule in service.list_rules("p")] == ["payments"]  # rules follow
    assert asked == ["p"]
    # Answers in the new names are the same sets as the rewritten ones.
    service.record_answer("p", found["r0"], "a", ["urgent", "payments"], source="cli")
    assert _sets_of(service, found["r0"]) == ["payments|urgent"]


def test_a_name_with_the_separator_is_refused_in_one_line(service: LabelingService) -> None:
    found = _project(service, {"r0": [("a", {"billing"})]})
    with pytest.raises(LabelbotError) as caught:
        service.edit_labels("p", "rename", "billing", "bill|ing")
    assert "may not contain '|'" in str(caught.value) and "\n" not in str(caught.value)
    assert service.get_project("p").label_names[0] == "billing"
    assert _sets_of(service, found["r0"]) == ["billing"]


def test_merge_replaces_the_name_inside_sets_and_settles_ties(
    service: LabelingService, monkeypatch: pytest.MonkeyPatch
) -> None:
    # k = 2 with an extra answer on a tie: r0 is split on urgent and on refund until they are one label.
    found = _project(service, {"r0": [("a", {"billing", "urgent"}), ("b", {"billing", "refund"})],
                               "r1": [("a", {"refund", "urgent"}), ("b", {"refund"})],
                               "r2": [("a", {"other", "refund"})]}, k=2)
    service.configure_project("p", extra_answer_on_disagreement=True)
    assert _record(service, found["r0"])[1] is False and _record(service, found["r1"])[1] is False
    asked = _retrains(service, monkeypatch)
    done = service.edit_labels("p", "merge", "refund", "urgent")
    assert (done.answers_moved, done.renamed) == (4, {"refund": "urgent"})
    assert service.get_project("p").label_names == ("billing", "urgent", "other")
    assert _sets_of(service, found["r0"]) == ["billing|urgent", "billing|urgent"]
    assert _sets_of(service, found["r1"]) == ["urgent", "urgent"]  # {refund, urgent} is {urgent}
    assert _sets_of(service, found["r2"]) == ["urgent|other"]  # canonical order
    assert _record(service, found["r0"]) == (2, True) and _record(service, found["r1"]) == (2, True)
    assert service.final_labels("p") == {"r0": "billing|urgent", "r1": "urgent"}
    assert asked == ["p"]


def test_retire_keeps_sets_and_drops_the_label_wherever_sets_count(
    service: LabelingService, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    found = _project(service, {"r0": [("a", {"other"})], "r1": [("a", {"billing", "other"})],
                               "r2": [("a", set())], "r3": []})
    _guess(service, found["r3"], "urgent|other")
    asked = _retrains(service, monkeypatch)
    done = service.edit_labels("p", "retire", "other")
    assert (done.retired, done.reopened) == (("other",), 1)
    info = service.get_project("p")
    assert info.label_names == ("billing", "urgent", "refund") and info.retired_labels == ("other",)
    # The history is unchanged.
    assert (_sets_of(service, found["r0"]), _sets_of(service, found["r1"])) == (["other"], ["billing|other"])
    # An answer of only the retired label counts for nothing; a larger set counts without it.
    assert _record(service, found["r0"]) == (0, False)
    assert _record(service, found["r1"]) == (1, True)
    assert service.final_labels("p") == {"r1": "billing", "r2": ""}
    assert _guess(service, found["r3"]) == "urgent"
    rows = _export(service, tmp_path)
    assert (rows["r0"]["label"], rows["r0"]["retired_answers"]) == ("", '["a: other"]')
    assert (rows["r1"]["label"], rows["r1"]["retired_answers"]) == ("billing", '["a: other"]')
    assert rows["r2"]["retired_answers"] == ""
    assert asked == ["p"]
    assert found["r0"] in {v.record_id for v in service.next_records("p", "b", 4)}
    # Brought back, it comes last in the set's order and the sets naming it follow.
    service.edit_labels("p", "add", "other")
    assert service.get_project("p").label_names == ("billing", "urgent", "refund", "other")
    assert _sets_of(service, found["r1"]) == ["billing|other"] and _record(service, found["r0"]) == (1, True)
    assert service.final_labels("p")["r0"] == "other"


def test_a_set_of_retired_labels_only_counts_for_nothing_whatever_order_they_were_retired_in(
    service: LabelingService, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = _project(service, {"r0": [("a", {"refund", "other"})], "r1": [("a", {"billing", "other"})],
                               "r2": [("a", {"refund"})]})
    _retrains(service, monkeypatch)
    service.edit_labels("p", "retire", "other")  # retired in the reverse of the set's order
    service.edit_labels("p", "retire", "refund")
    assert _sets_of(service, found["r0"]) == ["refund|other"]  # the history is unchanged
    assert _record(service, found["r0"]) == (0, False) and _record(service, found["r2"]) == (0, False)
    assert _record(service, found["r1"]) == (1, True)
    assert service.final_labels("p") == {"r1": "billing"}  # r0 is no "none of these"
    service.undo("p", "a", found["r0"])  # undoing an answer that counted for nothing keeps the count at 0
    assert _record(service, found["r0"]) == (0, False)


def test_retire_then_add_back_puts_the_name_in_its_new_place(
    service: LabelingService, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = _project(service, {"r0": [("a", {"billing", "urgent"})]})
    _retrains(service, monkeypatch)
    service.edit_labels("p", "retire", "billing")
    assert service.final_labels("p") == {"r0": "urgent"}
    service.edit_labels("p", "add", "billing")
    assert _sets_of(service, found["r0"]) == ["urgent|billing"]
    service.record_answer("p", found["r0"], "a", {"billing", "urgent"}, source="cli")
    assert _sets_of(service, found["r0"]) == ["urgent|billing"]
    assert service.final_labels("p") == {"r0": "urgent|billing"}


def test_retrain_after_edits_trains_on_the_active_labels(service: LabelingService) -> None:
    sets = [{"billing"}, {"urgent"}, {"billing", "other"}, {"refund"}, {"other"}, set()]
    _project(service, {f"r{i}": [("a", sets[i % len(sets)])] for i in range(24)})
    service.edit_labels("p", "merge", "refund", "billing")
    service.edit_labels("p", "retire", "other")
    service.retrain("p")
    with reading(service.engine) as conn:
        guesses = conn.execute(select(QueueItem.predicted_label)).scalars().all()
    named = {name for text in guesses if text for name in text.split("|")}
    assert guesses and named <= {"billing", "urgent"}


# ---------------------------------------------------------------------------- from Slack


@pytest.fixture
def h(tmp_path: Path) -> Iterator[SlackHarness]:
    harness = start_harness(tmp_path, project="")
    harness.service.create_project("tickets", ["billing", "urgent", "bug", "praise"], multi_label=True)
    harness.service.import_rows("tickets", [ImportRow(line=i + 2, external_id=str(i), text=t)
                                            for i, t in enumerate(TEXTS)])
    yield harness
    harness.close()


def test_a_multi_label_rename_from_slack(h: SlackHarness) -> None:
    card = first_card(h)
    assert tick_and_press(h, ALICE, card, ["urgent", "billing"], ids.ACTION_MULTI_SUBMIT) == 200
    h.standin.wait_until(lambda: len(annotations(h)) == 1)
    stale_card = first_card(h, BOB)
    h.command("labels rename billing payments", user=ADMIN)

    def replies() -> list[str]:
        return [texts_of(r["payload"]) for r in h.standin.responses if "Renamed" in texts_of(r["payload"])]

    h.standin.wait_until(lambda: bool(replies()))
    [reply] = replies()
    assert "Renamed 'billing' to 'payments' in tickets (1 answer moved)" in reply
    assert "\n" not in reply.strip()
    assert annotations(h)[0][1:3] == (ALICE, "payments|urgent")
    # A card sent before the rename is stale and stores nothing; a fresh one takes the new name.
    assert tick_and_press(h, BOB, stale_card, ["billing"], ids.ACTION_MULTI_SUBMIT) == 200
    h.standin.wait_until(lambda: any("label set changed" in texts_of(m) for m in h.dm_messages(BOB)))
    assert len(annotations(h)) == 1
    fresh = first_card(h, BOB)
    assert tick_and_press(h, BOB, fresh, ["payments"], ids.ACTION_MULTI_SUBMIT) == 200
    h.standin.wait_until(lambda: len(annotations(h)) == 2)
    assert sorted(a[2] for a in annotations(h)) == ["payments", "payments|urgent"]


def test_multi_label_edits_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_cli_environment(tmp_path, monkeypatch)
    run("init", "t", "--labels", "billing,urgent,refund", "--multi-label")
    rows = tmp_path / "rows.csv"
    rows.write_text("id,text,label\nx,first,urgent|billing\ny,second,refund|urgent\nz,third,refund\n")
    run("import", "t", str(rows), "--label-column", "label")
    merged = run("labels", "t", "merge", "refund", "urgent")
    assert "Merged 'refund' into 'urgent' in t (2 answers moved)" in merged
    assert "Renamed 'billing' to 'payments' in t (1 answer moved)" in run(
        "labels", "t", "rename", "billing", "payments"
    )
    run("export", "t", "--output", str(tmp_path / "out.csv"))
    with open(tmp_path / "out.csv", encoding="utf-8") as handle:
        exported = {row["id"]: row["label"] for row in csv.DictReader(handle)}
    assert exported == {"x": "payments|urgent", "y": "urgent", "z": "urgent"}
