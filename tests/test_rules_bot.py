"""Rules from Slack and the CLI: an admin adds one, status shows its coverage, a card names it, a
non-admin is refused, the export has the rule column beside the unchanged human answers."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot import blocks
from bot.cli import app
from tests.conftest import use_cli_environment, write_csv
from tests.slack_harness import ADMIN, ALICE, BOB, SlackHarness, start_harness
from tests.test_bot import TEXTS, texts_of

SPAM_RULE = "free, prize -> spam"  # TEXTS 0, 2, 4 and 6: free (0, 4, 6), prize (0, 2)
SPAM = {0, 2, 4, 6}


@pytest.fixture
def h(tmp_path: Path) -> Iterator[SlackHarness]:
    harness = start_harness(tmp_path, texts=TEXTS)
    yield harness
    harness.close()


def _reply(h: SlackHarness, *, count: int) -> str:
    h.standin.wait_until(lambda: len(h.standin.responses) >= count)
    return texts_of(h.standin.responses[count - 1]["payload"])


def _reply_with(h: SlackHarness, header: str) -> str:
    """The text of the first response_url answer containing ``header``, once it arrived."""
    h.standin.wait_until(lambda: any(header in texts_of(r["payload"]) for r in h.standin.responses))
    return next(texts_of(r["payload"]) for r in h.standin.responses if header in texts_of(r["payload"]))


def test_an_admin_adds_a_rule_status_and_cards_show_it(h: SlackHarness) -> None:
    h.command(f"rule add {SPAM_RULE}", user=ADMIN)
    assert "Added rule #1: free, prize → spam. It matches 4 of 8 records." in _reply(h, count=1)
    h.command("status")
    status = _reply_with(h, "Status: demo")
    assert "#1 `free, prize` → *spam* — covers 50.0% (4 of 8) · precision n/a (0 labeled)" in status
    h.command("next 8")
    cards = h.wait_for_cards(ALICE, 8)
    for card in cards:
        i = next(i for i, text in enumerate(TEXTS) if text in texts_of(card))
        assert ("Rules: free, prize → spam" in texts_of(card)) == (i in SPAM)
        assert blocks.message_problems(card) == []
    h.command("rule list", user=BOB)  # anyone may list them
    listed = _reply_with(h, "Rules: demo")
    assert "#1 `free, prize` → *spam*" in listed


@pytest.mark.parametrize("sub", [f"rule add {SPAM_RULE}", "rule remove 1"])
def test_a_non_admin_cannot_add_or_remove_rules(h: SlackHarness, sub: str) -> None:
    h.service.add_rule("demo", "lunch -> ham", ADMIN)
    h.command(sub, user=BOB)
    assert "is for labelbot admins" in _reply(h, count=1)
    assert [r.pattern for r in h.service.list_rules("demo")] == ["lunch"]


@pytest.mark.parametrize(
    ("sub", "says"),
    [
        ("rule add /(free/ -> spam", "Not a valid regex"),
        ("rule add free -> eggs", "'eggs' is not a label"),
        ("rule add -> spam", "no keywords or pattern"),
        ("rule remove seven", "Name the rule to remove by its id"),
        ("rule remove 7", "There is no rule 7"),
        ("rule frobnicate", "Use `/label rule add"),
    ],
)
def test_a_bad_rule_command_gets_one_line(h: SlackHarness, sub: str, says: str) -> None:
    h.command(sub, user=ADMIN)
    assert says in _reply(h, count=1)
    assert h.service.list_rules("demo") == []


def test_export_from_slack_has_the_rule_column_and_the_human_answers(h: SlackHarness) -> None:
    h.command(f"rule add {SPAM_RULE}", user=ADMIN)
    _reply(h, count=1)
    record = h.service.find_record("demo", "0")  # "win a free prize now": the rule says spam
    h.service.record_answer("demo", record.record_id, ALICE, "ham")
    h.command("export", user=ADMIN)
    h.standin.wait_for("files.completeUploadExternal")
    [uploaded] = h.standin.files()
    rows = list(csv.DictReader(io.StringIO(h.standin.file_content(uploaded["id"]).decode("utf-8"))))
    by_id = {row["id"]: row for row in rows}
    assert (by_id["0"]["label"], by_id["0"]["rule_labels"]) == ("ham", "spam")
    assert {i for i in range(len(TEXTS)) if by_id[str(i)]["rule_labels"] == "spam"} == SPAM
    assert [r["label"] for r in rows if r["label"]] == ["ham"]


# ---------------------------------------------------------------- the CLI

runner = CliRunner()


def test_the_rule_commands_of_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_cli_environment(tmp_path, monkeypatch)

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, result.output
        assert "Traceback" not in result.output
        return result.output

    run("init", "demo", "--labels", "spam,ham")
    data = write_csv(tmp_path / "d.csv", [{"id": i, "text": t} for i, t in enumerate(TEXTS)])
    run("import", "demo", str(data))
    added = run("rule", "add", "demo", SPAM_RULE, "--user", "admin")
    assert "#1" in added and "50.0% (4/8)" in added and "n/a (0 labeled)" in added
    assert "is not a label" in run("rule", "add", "demo", "free -> eggs", code=1)
    assert "Not a valid regex" in run("rule", "add", "demo", "/(/ -> spam", code=1)
    run("rule", "add", "demo", "/lunch|dinner/i -> ham")
    [spam, ham] = json.loads(run("rule", "list", "demo", "--json"))
    assert (spam["matched"], spam["overlap"], spam["created_by"]) == (4, 0, "admin")
    assert (ham["kind"], ham["pattern"], ham["matched"]) == ("regex", "/lunch|dinner/i", 2)
    status = json.loads(run("status", "demo", "--json"))
    assert [r["id"] for r in status["rules"]] == [1, 2]
    assert "#2" in run("status", "demo")
    assert "Removed rule #1: free, prize → spam" in run("rule", "remove", "demo", "1")
    assert "There is no rule 1" in run("rule", "remove", "demo", "1", code=1)
    assert [r["id"] for r in json.loads(run("rule", "list", "demo", "--json"))] == [2]
