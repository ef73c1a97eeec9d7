"""The `labelbot` command end to end: init → import → next → answer → retrain → status → export."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from tests.conftest import banking_labels, banking_rows, use_cli_environment, write_csv

runner = CliRunner()


@pytest.fixture(autouse=True)
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_cli_environment(tmp_path, monkeypatch)


def run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def fail(*args: str, code: int = 1) -> str:
    """The output of a command that fails with ``code`` (1: refused; 2: a usage error), no traceback."""
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output


def test_full_cli_workflow(tmp_path: Path) -> None:
    rows = banking_rows(300)
    labels = banking_labels()
    (tmp_path / "labels.json").write_text(json.dumps(labels), encoding="utf-8")
    data = write_csv(
        tmp_path / "data.csv",
        [{"id": f"b{i}", "text": r["text"], "gold": r["category"]} for i, r in enumerate(rows)],
    )
    assert "77 labels" in run("init", "bank", "--labels-file", str(tmp_path / "labels.json"))
    assert "300 new records" in run("import", "bank", str(data))
    assert "0 new records, 300 already known" in run("import", "bank", str(data))
    gold = {f"b{i}": r["category"] for i, r in enumerate(rows)}
    for _ in range(4):
        listed = [
            json.loads(line) for line in run("next", "bank", "-n", "10", "--json", "-u", "ann").splitlines()
        ]
        assert len(listed) == 10
        for item in listed:
            assert item["id"] in gold and item["reason"]
            assert "saved" in run("answer", "bank", item["id"], gold[item["id"]], "-u", "ann")
    assert "unchanged" in run("answer", "bank", listed[0]["id"], gold[listed[0]["id"]], "-u", "ann")
    trained = run("retrain", "bank")
    assert "Trained on 40 labels" in trained and "Learner: logistic regression, C=30" in trained
    assert "label_name_agreement" not in trained  # the learner's own figures are said in words
    status = json.loads(run("status", "bank", "--json"))
    assert "label_names_used" in status["latest_run"]["metrics"]
    assert "Learner: logistic regression" in run("status", "bank")
    assert status["labeled"] == 40 and status["total"] == 300
    assert status["annotators"][0]["user"] == "ann" and status["annotators"][0]["answers"] == 40
    assert status["latest_run"]["n_labels"] == 40
    assert "40/300 labeled" in run("status", "bank")
    assert "Removed your answer" in run("undo", "bank", "-u", "ann")
    similar = run("similar", "bank", "my card has not arrived yet", "-k", "3")
    assert "score" in similar
    run("export", "bank", "-o", str(tmp_path / "out.csv"))
    with open(tmp_path / "out.csv", encoding="utf-8") as handle:
        exported = list(csv.DictReader(handle))
    assert len(exported) == 300
    assert sum(1 for r in exported if r["label"]) == 39
    assert all(r["label"] == gold[r["id"]] for r in exported if r["label"])
    assert all(r["predicted_label"] in labels for r in exported)


def test_import_with_label_column_and_skip(tmp_path: Path) -> None:
    run("init", "spam", "--labels", "spam,ham")
    data = write_csv(
        tmp_path / "d.csv",
        [
            {"id": 1, "text": "win cash", "label": "spam"},
            {"id": 2, "text": "see you soon", "label": ""},
            {"id": 3, "text": "lunch?", "label": "ham"},
        ],
    )
    assert "2 answers" in run("import", "spam", str(data), "--label-column", "label")
    assert "Skipped 2" in run("skip", "spam", "2", "-u", "me")
    assert "Nothing left" in run("next", "spam", "-u", "me")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        (b"", "empty"),
        (b"id,text\n1,hello\n1,again\n", "duplicate"),
        (b"id,text\n1,\n", "empty"),
        (b"id,body\n1,hello\n", "text"),
        (b"id,text\n1,caf\xe9\n", "UTF-8"),
    ],
)
def test_bad_input_gets_one_clear_message_and_writes_nothing(tmp_path: Path, content, message: str) -> None:
    run("init", "p", "--labels", "a,b")
    path = tmp_path / "bad.csv"
    if content is not None:
        path.write_bytes(content)
    output = fail("import", "p", str(path))
    assert "bad.csv" in output and message.lower() in output.lower()
    assert "0/0 labeled" in run("status", "p")


def test_unknown_label_names_the_line(tmp_path: Path) -> None:
    run("init", "p", "--labels", "a,b")
    path = write_csv(
        tmp_path / "l.csv", [{"id": 1, "text": "x", "label": "a"}, {"id": 2, "text": "y", "label": "zz"}]
    )
    output = fail("import", "p", str(path), "--label-column", "label")
    assert "line 3" in output and "zz" in output


def test_errors_are_messages_not_tracebacks() -> None:
    assert "No project named 'ghost'" in fail("status", "ghost")
    assert "exactly one of" in fail("init", "p")
    run("init", "p", "--labels", "a,b")
    assert "already exists" in fail("init", "p", "--labels", "a,b")


def test_serve_without_credentials_says_what_to_set() -> None:
    output = fail("serve", "--http")
    assert "SLACK_BOT_TOKEN" in output and "SLACK_SIGNING_SECRET" in output


def test_simulate_command_writes_json_and_plot(tmp_path: Path) -> None:
    rows = banking_rows(400)
    data = write_csv(tmp_path / "train.csv", [{"text": r["text"], "label": r["category"]} for r in rows])
    output = run(
        "simulate",
        str(data),
        "--budget",
        "30",
        "--seeds",
        "1",
        "--json",
        str(tmp_path / "s.json"),
        "--plot",
        str(tmp_path / "s.png"),
    )
    assert "margin-kmeans" in output and "random" in output
    result = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))
    assert [p["labels"] for p in result["runs"]["random"]] == [10, 20, 30]
    assert set(result["labels_to"]) == {"margin-kmeans", "random"}
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Unknown" in fail("simulate", str(data), "--strategy", "nope")


def test_import_without_embedding_then_embed_and_change_the_model(tmp_path: Path) -> None:
    rows = banking_rows(40)
    data = write_csv(tmp_path / "data.csv", [{"id": f"b{i}", "text": r["text"]} for i, r in enumerate(rows)])
    run("init", "bank", "--labels", "a,b")
    out = run("import", "bank", str(data), "--no-embed")
    assert "40 new records" in out and "40 records need a vector" in out and "labelbot embed bank" in out
    assert "40 records still need a vector" in run("status", "bank")
    assert "40 records are waiting for their vectors" in run("next", "bank", "-n", "5", "-u", "ann")
    assert "40 records with vectors for hashing-64, 0 missing" in run("embed", "bank")
    assert "still need a vector" not in run("status", "bank")
    assert len(run("next", "bank", "-n", "5", "--json", "-u", "ann").splitlines()) == 5
    out = run("embed", "bank", "--model", "hashing-32")
    assert "bank now uses hashing-32" in out and "40 records with vectors for hashing-32" in out
    assert len(run("similar", "bank", rows[0]["text"], "-k", "3").strip().splitlines()) >= 3
    assert "Could not load the embedding model" in fail("embed", "bank", "--model", "/no/such/model")
