"""Ties keep a label (issue 11): a record whose answers split evenly is complete, labeled with the aggregate's
choice, trained on, exported with ``tie`` true, and in the review queue until an admin's gold label."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.embeddings import HashingEmbedder
from core.io import ImportRow
from core.service import LabelingService
from tests.conftest import make_settings, write_csv
from tests.test_crowd import TEXTS, TRUTH
from tests.test_crowd_import import cli_runner, read_export

N = len(TEXTS)


def test_a_tie_from_clicks_is_labeled_and_trained_on(tmp_path: Path) -> None:
    svc = LabelingService(make_settings(tmp_path), embedder=HashingEmbedder(64))
    try:
        svc.create_project("p", ["spam", "ham"], answers_per_record=2)
        svc.import_rows("p", [ImportRow(line=i + 2, external_id=str(i), text=t) for i, t in enumerate(TEXTS)])
        picked = [0, 1, 2, 12, 13, 14]
        for i in picked:
            rid = svc.find_record("p", str(i)).record_id
            svc.record_answer("p", rid, "alice", TRUTH[i])
            svc.record_answer("p", rid, "bob", "spam" if i == 13 else TRUTH[i])  # 13 is ham: a tie
        status = svc.status("p")
        assert (status.labeled, status.ties, status.remaining) == (6, 1, N - 6)
        assert svc.final_labels("p")["13"] in ("spam", "ham")
        assert svc.retrain("p").n_labels == 6
        [item] = [item for item in svc.review_queue("p") if item.kind == "tie"]
        assert item.external_id == "13" and item.label == svc.final_labels("p")["13"]
        svc.record_answer("p", item.record_id, "admin", "ham", source="review")
        assert svc.status("p").ties == 0 and svc.final_labels("p")["13"] == "ham"
        assert all(i.external_id != "13" for i in svc.review_queue("p"))
    finally:
        svc.close()


def test_a_tie_is_labeled_exported_trained_in_review_until_gold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = cli_runner(tmp_path, monkeypatch)
    run("init", "p", "--labels", "spam,ham", "--answers-per-record", "2")
    rows = []
    for i, text in enumerate(TEXTS):
        rows.append({"id": f"r{i}", "text": text, "worker": "alice", "label": TRUTH[i]})
        rows.append({"id": f"r{i}", "text": text, "worker": "bob", "label": "spam" if i == 20 else TRUTH[i]})
    out = run("import", "p", str(write_csv(tmp_path / "long.csv", rows)), "--annotator-column", "worker",
              "--label-column", "label")
    assert "Trained on 24 labels" in out  # the tie r20 (ham vs spam) trains with the aggregate's label
    assert "1 tie decided by annotator quality" in run("status", "p")

    run("export", "p", "-o", str(tmp_path / "out.csv"))
    exported = read_export(tmp_path / "out.csv")
    tie = exported["r20"]
    assert tie["label"] in ("spam", "ham") and tie["tie"] == "true" and tie["agreement"] == "0.5"
    assert all(row["tie"] == "false" and row["label"] for eid, row in exported.items() if eid != "r20")
    run("export", "p", "-o", str(tmp_path / "out.jsonl"))
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [row["id"] for row in lines if row["tie"] is True] == ["r20"]

    svc = LabelingService(make_settings(tmp_path), embedder=HashingEmbedder(64))
    try:
        status = svc.status("p")
        assert (status.labeled, status.ties, status.remaining) == (N, 1, 0)
        assert svc.final_labels("p")["r20"] == tie["label"]
        first = svc.review_queue("p")[0]
        assert (first.external_id, first.kind, first.label) == ("r20", "tie", tie["label"])
        assert "split" in first.reason and tie["label"] in first.reason

        other = "ham" if tie["label"] == "spam" else "spam"
        assert f"gold label {other}" in run("gold", "p", "r20", other, "-u", "admin")
        assert "r20" not in [item.external_id for item in svc.review_queue("p")]
        assert svc.status("p").ties == 0
    finally:
        svc.close()
    run("export", "p", "-o", str(tmp_path / "after.csv"))
    decided = read_export(tmp_path / "after.csv")["r20"]
    assert (decided["label"], decided["tie"]) == (other, "false")
    assert "decided by annotator quality" not in run("status", "p")
