"""Multi-label projects from the CLI: `init --multi-label` or the labels file, answers as "|"-joined sets,
status and export."""

from __future__ import annotations

import csv
from pathlib import Path

from tests.conftest import write_csv

# The CLI tests' environment (autouse), run and fail.
from tests.test_cli import environment, fail, run  # noqa: F401


def _records(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "records.csv", [{"id": f"r{i}", "text": f"text {i}"} for i in range(3)])


def test_init_multi_label_answer_status_export(tmp_path: Path) -> None:
    assert "(multi-label)" in run("init", "p", "--labels", "billing,urgent,refund", "--multi-label")
    assert "(multi-label)" in run("projects")
    run("import", "p", str(_records(tmp_path)))
    assert "r0: billing|urgent (saved)" in run("answer", "p", "r0", "urgent|billing", "--user", "u")
    assert "r1: (none of these) (saved)" in run("answer", "p", "r1", "", "--user", "u")
    assert "spam" in fail("answer", "p", "r2", "billing|spam", "--user", "u")
    status = run("status", "p")
    assert "p (multi-label): 2/3 labeled" in status
    run("export", "p", "-o", str(tmp_path / "out.csv"))
    with open(tmp_path / "out.csv", encoding="utf-8", newline="") as handle:
        labels = {row["id"]: row["label"] for row in csv.DictReader(handle)}
    assert labels == {"r0": "billing|urgent", "r1": "", "r2": ""}


def test_labels_file_says_multi_label(tmp_path: Path) -> None:
    labels = tmp_path / "labels.yml"
    labels.write_text("multi_label: true\nlabels:\n  toxic: Rude or hateful\n  insult: Aimed at a person\n")
    assert "(multi-label)" in run("init", "p", "--labels-file", str(labels))
    single = tmp_path / "single.yml"
    single.write_text("multi_label: false\nlabels: [spam, ham]\n")
    assert "(multi-label)" not in run("init", "q", "--labels-file", str(single))
    bad = tmp_path / "bad.yml"
    bad.write_text("multi_label: perhaps\nlabels: [spam, ham]\n")
    assert "multi_label must be true or false" in fail("init", "r", "--labels-file", str(bad))


def test_a_separator_in_a_label_name_is_one_line(tmp_path: Path) -> None:
    assert "may not contain '|'" in fail("init", "p", "--labels", "a|b,c", "--multi-label")
