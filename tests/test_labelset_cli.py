"""`labelbot guide` and `labelbot labels PROJECT add|rename|merge|retire` end to end."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.conftest import write_csv

# The CLI tests' environment (autouse), run and fail.
from tests.test_cli import environment, fail, run  # noqa: F401


def _project(tmp_path: Path) -> None:
    labels = tmp_path / "labels.yml"
    labels.write_text(
        "billing:\n  description: Charges and invoices\n  examples: [I was charged twice]\n"
        "refund: Money back\nother: Anything else\n"
    )
    run("init", "p", "--labels-file", str(labels))
    rows = [
        {"id": f"r{i}", "text": f"text {i}", "label": ["billing", "refund", "other"][i % 3]} for i in range(6)
    ]
    run("import", "p", str(write_csv(tmp_path / "rows.csv", rows)), "--label-column", "label")


def _export(tmp_path: Path) -> dict[str, dict[str, str]]:
    run("export", "p", "--output", str(tmp_path / "out.csv"))
    with open(tmp_path / "out.csv", encoding="utf-8") as handle:
        return {row["id"]: row for row in csv.DictReader(handle)}


def test_guide_shows_and_sets_guidelines(tmp_path: Path) -> None:
    _project(tmp_path)
    shown = run("guide", "p")
    assert "billing: Charges and invoices" in shown and "e.g. I was charged twice" in shown
    run("guide", "p", "refund", "Money back for an order", "-e", "I want my money back", "-e", "refund me")
    one = run("guide", "p", "refund")
    assert one.splitlines() == [
        "refund: Money back for an order",
        "  e.g. I want my money back",
        "  e.g. refund me",
    ]
    assert "at most 3 examples" in fail(
        "guide", "p", "refund", "x", "-e", "1", "-e", "2", "-e", "3", "-e", "4"
    )
    assert "'nope' is not a label" in fail("guide", "p", "nope")
    run("guide", "p", "refund", "-e", "where is my refund")  # examples alone keep the description
    shown = run("guide", "p", "refund").splitlines()
    assert shown == ["refund: Money back for an order", "  e.g. where is my refund"]


def test_input_that_looks_like_markup_is_one_plain_line(tmp_path: Path) -> None:
    _project(tmp_path)
    assert "'[/zz]' is not a label" in fail("labels", "p", "rename", "[/zz]", "c")
    assert "'[/b]' is not a label" in fail("rule", "add", "p", "x -> [/b]")


def test_labels_add_rename_merge_retire(tmp_path: Path) -> None:
    _project(tmp_path)
    assert run("labels", "p").split() == ["billing", "refund", "other"]
    assert "Added label 'urgent'" in run("labels", "p", "add", "urgent", "--description", "Today")
    assert "urgent: Today" in run("guide", "p", "urgent")
    out = run("labels", "p", "rename", "billing", "payments")
    assert "Renamed 'billing' to 'payments' in p (2 answers moved)" in out
    assert "payments: Charges and invoices" in run("guide", "p", "payments")
    assert {row["label"] for row in _export(tmp_path).values()} == {"payments", "refund", "other"}
    assert "Merged 'refund' into 'payments' in p (2 answers moved)" in run(
        "labels", "p", "merge", "refund", "payments"
    )
    out = run("labels", "p", "retire", "other")
    assert "Retired 'other' in p" in out and "2 records answered only with it need answers again" in out
    assert run("labels", "p").split() == ["payments", "urgent", "retired:", "other"]
    rows = _export(tmp_path)
    assert [rows[f"r{i}"]["label"] for i in range(6)] == [
        "payments",
        "payments",
        "",
        "payments",
        "payments",
        "",
    ]
    assert rows["r2"]["retired_answers"] == '["import: other"]'


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (("rename", "billing", "refund"), "already has a label 'refund'", 1),
        (("merge", "billing", "billing"), "Cannot merge 'billing' into itself", 1),
        (("retire", "nope"), "'nope' is not a label", 1),
        (("rename", "billing"), "Missing argument", 2),
    ],
)
def test_bad_label_edits_are_one_line(tmp_path: Path, args: tuple[str, ...], message: str, code: int) -> None:
    _project(tmp_path)
    out = fail("labels", "p", *args, code=code)
    assert message in out
    assert run("labels", "p").split() == ["billing", "refund", "other"]


def test_retiring_down_to_one_label_is_refused(tmp_path: Path) -> None:
    _project(tmp_path)
    run("labels", "p", "retire", "other")
    assert "needs at least 2 active labels" in fail("labels", "p", "retire", "refund")
