"""The bad-input table (issue 12): files, settings, commands and Slack payloads a user can get wrong.

Each row is one case; each gets one clear line (stderr for the CLI, an ephemeral reply or the clicked
card for Slack), never a traceback, and nothing stored changes. tests/test_cli_errors.py (database and
export paths, counts below one) and tests/test_endpoint_hardening.py (unsigned, forged and malformed
HTTP requests) hold the cases not repeated here; docs list this table by the rows' ids.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from bot import ids
from bot.cli import app
from core.models import Annotation, Project, Record, Skip
from tests.conftest import use_cli_environment
from tests.slack_harness import ADMIN, ALICE, BOB, SlackHarness, start_harness

runner = CliRunner()

# ------------------------------------------------------------------------------------ what is stored

STORED_TABLES = (Project, Record, Annotation, Skip)


def stored(engine: sa.Engine) -> dict[str, list[tuple]]:
    """Every row of the tables a bad input must not touch (projects, records, answers, skips)."""
    with engine.connect() as conn:
        return {
            model.__tablename__: sorted(  # type: ignore[attr-defined]
                (tuple(row) for row in conn.execute(sa.select(model.__table__))),  # type: ignore[attr-defined]
                key=repr,
            )
            for model in STORED_TABLES
        }


def one_line(text: str) -> str:
    """The single non-empty line of ``text`` (no traceback)."""
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


# --------------------------------------------------------------------------------------- the CLI table

BAD_FILES: dict[str, bytes] = {
    "picture.csv": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\xff\xfe",
    "latin1.csv": "id,text\nz1,caf\u00e9 cr\u00e8me\n".encode("latin-1"),
    "utf16.csv": "id,text\nz1,hello\n".encode("utf-16"),
    "empty.csv": b"",
    "header_only.csv": b"id,text\n",
    "no_text_column.csv": b"id,body\nz1,hello\n",
    "duplicate_ids.csv": b"id,text\nz1,hello\nz1,again\n",
    "broken.jsonl": b'{"id": "z1", "text": "fine"}\n{"id": "z2", "text": \n',
    "list_line.jsonl": b'{"id": "z1", "text": "fine"}\n["z2", "a list"]\n',
    "unknown_label.csv": b"id,text,label\nz1,hello,maybe\n",
    "bad.yaml": b"- spam\n- [ham\n",
    "duplicate_labels.yaml": b"- spam\n- ham\n- spam\n",
    "no_labels.yaml": b"[]\n",
    "yes_no.yaml": b"- yes\n- no\n",
    "labels.json": b'["spam", "ham"',
}

NOT_INSTALLED = "labelbot-tests/not-installed-model"
SLACK = {"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": "test-secret"}

CLI_CASES = [
    # ---------------------------------------------------------------------------------------- files
    pytest.param([], ["import", "P", "missing.csv"], {}, "missing.csv: file not found",
                 id="import: a file that does not exist"),
    pytest.param([], ["import", "P", "adir"], {}, "adir: is a directory, not a file",
                 id="import: a directory"),
    pytest.param([], ["import", "P", "picture.csv"], {}, "not valid UTF-8",
                 id="import: a binary file"),
    pytest.param([], ["import", "P", "latin1.csv"], {}, "latin1.csv, line 2: not valid UTF-8",
                 id="import: a Latin-1 (not UTF-8) file"),
    pytest.param([], ["import", "P", "utf16.csv"], {}, "the file is UTF-16; save it as UTF-8",
                 id="import: a UTF-16 file"),
    pytest.param([], ["import", "P", "empty.csv"], {}, "empty.csv: the file is empty",
                 id="import: an empty file"),
    pytest.param([], ["import", "P", "header_only.csv"], {}, "no data rows",
                 id="import: a CSV with a header and no rows"),
    pytest.param([], ["import", "P", "no_text_column.csv"], {}, "no text column 'text'; the columns are",
                 id="import: CSV without a text column"),
    pytest.param([], ["import", "P", "duplicate_ids.csv"], {}, "line 3: duplicate id 'z1'",
                 id="import: the same id twice"),
    pytest.param([], ["import", "P", "broken.jsonl"], {}, "broken.jsonl, line 2: invalid JSON",
                 id="import: JSONL with a broken line (the good line is not imported either)"),
    pytest.param([], ["import", "P", "list_line.jsonl"], {}, "line 2: expected a JSON object",
                 id="import: JSONL with a line that is not an object"),
    pytest.param([], ["import", "P", "unknown_label.csv", "--label-column", "label"], {},
                 "line 2: unknown label 'maybe'", id="import: a label that is not in the project"),
    pytest.param([], ["import", "P", "no_text_column.csv", "--format", "xml"], {}, "unknown format 'xml'",
                 id="import: --format that does not exist"),
    pytest.param([], ["init", "Q", "--labels-file", "bad.yaml"], {}, "bad.yaml, line 3: invalid YAML",
                 id="init: labels file with bad YAML"),
    pytest.param([], ["init", "Q", "--labels-file", "labels.json"], {}, "labels.json, line 1: invalid JSON",
                 id="init: labels file with bad JSON"),
    pytest.param([], ["init", "Q", "--labels-file", "duplicate_labels.yaml"], {}, "'spam' appears twice",
                 id="init: labels file with a label twice"),
    pytest.param([], ["init", "Q", "--labels-file", "no_labels.yaml"], {}, "no labels given",
                 id="init: labels file with no labels"),
    pytest.param([], ["init", "Q", "--labels-file", "yes_no.yaml"], {}, "put the name in quotes",
                 id="init: labels file where YAML reads yes/no as true/false"),
    pytest.param([], ["init", "Q", "--labels-file", "missing.yaml"], {}, "missing.yaml: file not found",
                 id="init: labels file that does not exist"),
    pytest.param([], ["export", "P", "-o", "labels.xlsx"], {}, "Unknown export format 'xlsx'",
                 id="export: a format that does not exist"),
    pytest.param([], ["simulate", "missing.csv"], {}, "missing.csv: file not found",
                 id="simulate: a file that does not exist"),
    # ------------------------------------------------------------------------------------- settings
    pytest.param([], ["projects"], {"LABELBOT_QUEUE_SIZE": "lots"}, "LABELBOT_QUEUE_SIZE='lots'",
                 id="settings: a number setting that is not a number"),
    pytest.param([], ["next", "P"], {"LABELBOT_RETRAIN_COOLDOWN": "1,5"}, "LABELBOT_RETRAIN_COOLDOWN='1,5'",
                 id="settings: a decimal comma"),
    pytest.param([], ["next", "P"], {"LABELBOT_QUEUE_SIZE": "0"},
                 "LABELBOT_QUEUE_SIZE='0': Input should be greater than or equal to 1",
                 id="settings: a queue of no records (it would read as nothing left to label)"),
    pytest.param([], ["next", "P"], {"LABELBOT_LEASE_SECONDS": "-60"}, "LABELBOT_LEASE_SECONDS='-60'",
                 id="settings: a negative lease"),
    pytest.param([], ["retrain", "P"], {"LABELBOT_LABEL_NAME_WEIGHT": "nan"},
                 "LABELBOT_LABEL_NAME_WEIGHT='nan'", id="settings: a weight that is not a number (nan)"),
    pytest.param([], ["embed", "P"], {"LABELBOT_EMBEDDING_BATCH_SIZE": "0"},
                 "LABELBOT_EMBEDDING_BATCH_SIZE='0'", id="settings: batches of no texts"),
    pytest.param([], ["schedule", "P", "list"], {"LABELBOT_SCHEDULE_POLL_SECONDS": "-1"},
                 "LABELBOT_SCHEDULE_POLL_SECONDS='-1': Input should be greater than or equal to 0",
                 id="settings: a scheduler setting out of range"),
    pytest.param([], ["serve"], {**SLACK, "LABELBOT_PORT": "http"}, "LABELBOT_PORT='http'",
                 id="settings: LABELBOT_PORT that is not a number"),
    pytest.param([], ["serve"], {**SLACK, "LABELBOT_AFTER_ACK_WORKERS": "0"},
                 "LABELBOT_AFTER_ACK_WORKERS='0': Input should be greater than or equal to 1",
                 id="settings: a bot setting out of range"),
    pytest.param([], ["init", "Q", "--labels", "a,b"], {"LABELBOT_GOLD_RATE": "2"},
                 "gold_rate must be between 0 and 0.5", id="settings: LABELBOT_GOLD_RATE out of range"),
    pytest.param([], ["init", "Q", "--labels", "a,b"], {"LABELBOT_STRATEGY": "smartest"},
                 "Unknown strategy 'smartest'", id="settings: LABELBOT_STRATEGY that does not exist"),
    pytest.param([], ["projects"], {"LABELBOT_DATABASE_URL": "mysql://u@localhost/labels"},
                 "Cannot open the database at mysql://u@localhost/labels: no driver for it",
                 id="settings: a database whose driver is not installed"),
    pytest.param([["init", "Q", "--labels", "a,b"], ["import", "Q", "extra.csv", "--no-embed"]],
                 ["embed", "Q"], {"LABELBOT_EMBEDDING_MODEL": NOT_INSTALLED},
                 f"Could not load the embedding model '{NOT_INSTALLED}'",
                 id="settings: an embedding model that is not installed (nothing is downloaded)"),
    pytest.param([], ["serve"], {}, "SLACK_BOT_TOKEN (the Bot User OAuth Token, xoxb-...) is not set",
                 id="settings: serve without a Slack token"),
    pytest.param([], ["serve"], {"SLACK_BOT_TOKEN": "xoxp-user-token", "SLACK_SIGNING_SECRET": "s"},
                 "SLACK_BOT_TOKEN must be a bot token starting with xoxb-",
                 id="settings: serve with a user token instead of a bot token"),
    pytest.param([], ["serve"], {"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_APP_TOKEN": "xoxb-wrong"},
                 "SLACK_APP_TOKEN must be an app-level token starting with xapp-",
                 id="settings: Socket Mode with an app token that is not one"),
    pytest.param([], ["serve"], {"SLACK_BOT_TOKEN": "xoxb-test"}, "SLACK_SIGNING_SECRET is not set",
                 id="settings: HTTP without a signing secret"),
    # ------------------------------------------------------------------------------------- commands
    pytest.param([], ["status", "Nope"], {}, "No project named 'Nope'",
                 id="command: a project that does not exist"),
    pytest.param([], ["init", "P", "--labels", "a,b"], {}, "A project named 'P' already exists",
                 id="command: init a project that exists"),
    pytest.param([], ["init", "Q"], {}, "exactly one of --labels or --labels-file",
                 id="command: init without labels"),
    pytest.param([], ["init", "Q", "--labels", "a,,b"], {}, "label 2 has an empty name",
                 id="command: init with an empty label"),
    pytest.param([], ["answer", "P", "r1", "maybe"], {}, "'maybe' is not a label of project 'P'",
                 id="command: answer with a label not in the project"),
    pytest.param([], ["answer", "P", "r9", "spam"], {}, "Project 'P' has no record with id 'r9'",
                 id="command: answer a record that does not exist"),
    pytest.param([], ["undo", "P", "--user", "nobody"], {}, "There is no answer of yours to undo",
                 id="command: undo with nothing to undo"),
    pytest.param([], ["configure", "P", "--gold-rate", "0.9"], {}, "gold_rate must be between 0 and 0.5",
                 id="command: configure a rate out of range"),
    pytest.param([], ["schedule", "P", "add", "-c", "C1", "--when", "sometimes"], {},
                 "I don't understand 'sometimes'", id="command: a schedule that does not parse"),
    pytest.param([], ["schedule", "P", "add", "-c", "C1", "--when", "daily 10:00", "--tz", "Mars/Base"], {},
                 "Unknown time zone 'Mars/Base'", id="command: a time zone that does not exist"),
    pytest.param([], ["schedule", "P", "remove", "s-nope"], {}, "No schedule with id 's-nope'",
                 id="command: remove a schedule that does not exist"),
    pytest.param([], ["embed", "P", "--model", NOT_INSTALLED], {},
                 f"Could not load the embedding model '{NOT_INSTALLED}'",
                 id="command: embed --model that is not installed (the project does not move to it)"),
]


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Project P (spam, ham) with records r1 and r2, one answer and one skip; the bad files beside it."""
    use_cli_environment(tmp_path, monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # an unknown model name must fail, never download
    (tmp_path / "data.csv").write_text("id,text\nr1,hello there\nr2,buy cheap pills now\n", encoding="utf-8")
    (tmp_path / "extra.csv").write_text("id,text\nx1,one more\n", encoding="utf-8")
    (tmp_path / "adir").mkdir()
    for name, content in BAD_FILES.items():
        (tmp_path / name).write_bytes(content)
    for command in (["init", "P", "--labels", "spam,ham"], ["import", "P", "data.csv"],
                    ["answer", "P", "r1", "spam", "--user", "ann"], ["skip", "P", "r2", "--user", "ann"]):
        assert runner.invoke(app, command).exit_code == 0, command
    yield tmp_path


def files_of(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
            and p.suffix != ".db"}


USAGE_CASES = [
    pytest.param(["answer", "P", "r1"], "Missing argument 'label'. (see `labelbot answer --help`)",
                 id="usage: a missing argument"),
    pytest.param(["next", "P", "--bogus"], "No such option: --bogus",
                 id="usage: an option that does not exist"),
    pytest.param(["next", "P", "-n", "lots"], "Invalid value for '-n'",
                 id="usage: a word where a number goes"),
    pytest.param(["lable", "P"], "No such command 'lable'", id="usage: a command that does not exist"),
    pytest.param(["schedule", "P", "add", "--when", "daily 10:00"], "Missing option '--channel'",
                 id="usage: a missing required option of a subcommand"),
]


@pytest.mark.parametrize(("command", "expected"), USAGE_CASES)
def test_cli_usage_errors_are_one_line_with_where_the_help_is(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, command: list[str], expected: str
) -> None:
    test_cli_bad_input_is_one_line_and_changes_nothing(workspace, monkeypatch, [], command, {}, expected,
                                                       exit_code=2)


@pytest.mark.parametrize(("setup", "command", "env", "expected"), CLI_CASES)
def test_cli_bad_input_is_one_line_and_changes_nothing(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, setup: list[list[str]], command: list[str],
    env: dict[str, str], expected: str, exit_code: int = 1,
) -> None:
    engine = sa.create_engine(os.environ["LABELBOT_DATABASE_URL"])  # the workspace's, whatever env says
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for step in setup:
        assert runner.invoke(app, step).exit_code == 0, step
    try:
        before, files_before = stored(engine), files_of(workspace)
        result = runner.invoke(app, command, prog_name="labelbot")
        assert result.exit_code == exit_code, result.output
        line = one_line(result.stderr)
        assert line.startswith("error: ") and expected in line, line
        assert stored(engine) == before
        assert files_of(workspace) == files_before  # nothing written, no input file touched
    finally:
        engine.dispose()


# --------------------------------------------------------------------------------- slash commands


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[SlackHarness]:
    h = start_harness(tmp_path, texts=["win a free prize now", "see you at lunch", "cheap pills", "hi mum"])
    h.service.create_project("other", ["a", "b"])
    h.service.bind_context("CGENERAL", "demo")
    record = h.service.next_records("demo", BOB, 1)[0]
    h.service.record_answer("demo", record.record_id, BOB, "spam")
    try:
        yield h
    finally:
        h.close()


SLASH_CASES = [
    pytest.param("next lots", ALICE, "takes a number of cards", id="/label: next with a word for the count"),
    pytest.param("next 500", ALICE, "between 1 and 20 cards", id="/label: next with too many cards"),
    pytest.param("review 5", BOB, "`/label review` is for labelbot admins",
                 id="/label: review by someone who is not an admin"),
    pytest.param("schedule list", BOB, "`/label schedule` is for labelbot admins",
                 id="/label: schedule by someone who is not an admin"),
    pytest.param("project nosuch", ADMIN, "No project named 'nosuch'",
                 id="/label: project that does not exist"),
    pytest.param("project", ADMIN, "Name the project to bind this channel to",
                 id="/label: project without a name"),
    pytest.param("search", ALICE, "Tell me what to search for", id="/label: search without words"),
]


@pytest.mark.parametrize(("text", "user", "expected"), SLASH_CASES)
def test_slash_command_bad_input_gets_one_ephemeral_line(
    harness: SlackHarness, text: str, user: str, expected: str
) -> None:
    before = stored(harness.service.engine)
    response = harness.command(text, user=user)
    assert response.status == 200
    harness.standin.wait_for("response_url")
    [reply] = harness.standin.responses
    assert reply["action"] == "ephemeral"
    line = one_line(reply["payload"]["text"])
    assert expected in line, line
    assert stored(harness.service.engine) == before
    assert harness.service.default_project("CGENERAL") == "demo"


# --------------------------------------------------------------------------------------- payloads


def card_of(h: SlackHarness) -> dict:
    assert h.command("next 1").status == 200
    return h.wait_for_cards(ALICE, 1)[0]


def label_value(card: dict) -> str:
    for block in card["blocks"]:
        for element in block.get("elements", []) if block["type"] == "actions" else []:
            if element.get("action_id", "").startswith(ids.ACTION_LABEL_CHOICE):
                return element["value"]
    raise LookupError("no label button on the card")


def record_value(card: dict) -> str:
    for block in card["blocks"]:
        for element in block.get("elements", []) if block["type"] == "actions" else []:
            if element.get("action_id") == ids.ACTION_SKIP:
                return element["value"]
    raise LookupError("no skip button on the card")


def forged_label_value(h: SlackHarness, card: dict, how: str) -> tuple[str, str]:
    """(action id, value) of a forged click on ``card``."""
    value = label_value(card)
    version, project_id, project_digest, record_id, index, label_digest = value.split(":")
    if how == "garbage":
        return f"{ids.ACTION_LABEL_CHOICE}:0", "l1:not:a:value"
    if how == "no record":
        return f"{ids.ACTION_LABEL_CHOICE}:0", ":".join(
            [version, project_id, project_digest, "987654321", index, label_digest])
    if how == "deleted project":
        h.service.delete_project("demo")
        return f"{ids.ACTION_LABEL_CHOICE}:0", value
    if how == "other project's id":
        other = h.service.get_project("other").id
        return f"{ids.ACTION_LABEL_CHOICE}:0", ":".join(
            [version, str(other), project_digest, record_id, index, label_digest])
    if how == "skip garbage":
        return ids.ACTION_SKIP, "r1:" + "9" * 40
    if how == "undo garbage":
        return ids.ACTION_UNDO, record_value(card) + ":extra"
    raise AssertionError(how)


CLICK_CASES = [
    pytest.param("garbage", "This card is out of date",
                 id="payload: a label button value that does not parse"),
    pytest.param("no record", "Record 987654321 is not in project 'demo'",
                 id="payload: a record id that does not exist"),
    pytest.param("deleted project", "This project no longer exists",
                 id="payload: a click on a deleted project"),
    pytest.param("other project's id", "This project no longer exists",
                 id="payload: another project's id under this project's name"),
    pytest.param("skip garbage", "This card is out of date", id="payload: a skip value out of range"),
    pytest.param("undo garbage", "This card is out of date", id="payload: an undo value with extra parts"),
]


@pytest.mark.parametrize(("how", "expected"), CLICK_CASES)
def test_a_forged_or_stale_click_marks_the_card_with_one_line_and_stores_nothing(
    harness: SlackHarness, how: str, expected: str
) -> None:
    card = card_of(harness)
    action_id, value = forged_label_value(harness, card, how)
    before = stored(harness.service.engine)
    action = {"action_id": action_id, "block_id": "card.lbl.x", "type": "button", "value": value,
              "action_ts": f"{time.time():.6f}"}
    response = harness.sender.block_actions(ALICE, [action], channel_id=harness.dm(ALICE), message=card)
    assert response.status == 200
    [update] = harness.standin.wait_for("chat.update")
    shown = update.params["text"]
    assert expected.lower() in one_line(shown).lower(), shown
    assert stored(harness.service.engine) == before


def test_an_unknown_action_id_gets_200_one_log_line_and_changes_nothing(
    harness: SlackHarness, caplog: pytest.LogCaptureFixture
) -> None:
    card = card_of(harness)
    before = stored(harness.service.engine)
    caplog.set_level(logging.INFO)
    caplog.clear()
    action = {"action_id": "label_everything", "block_id": "x", "type": "button", "value": "1",
              "action_ts": f"{time.time():.6f}"}
    response = harness.sender.block_actions(ALICE, [action], channel_id=harness.dm(ALICE), message=card)
    assert stored(harness.service.engine) == before
    assert not harness.standin.calls_to("chat.update")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "Traceback" not in caplog.text
    assert len(warnings) <= 1 and all("\n" not in w for w in warnings), warnings
    assert response.status == 200


def submit(h: SlackHarness, view: dict) -> str:
    """Send a search-modal submission as Slack would (``view`` as given: no state added) and return the
    one error line shown under the form."""
    payload = {"type": "view_submission", "user": {"id": ALICE, "username": "alice", "team_id": "T1"},
               "team": {"id": "T1", "domain": "t"}, "api_app_id": "A1", "token": "t",
               "trigger_id": h.sender.trigger_id(ALICE), "view": view, "response_urls": []}
    response = h.sender.send_payload(payload)
    assert response.status == 200
    body: dict[str, Any] = response.body if isinstance(response.body, dict) else json.loads(response.body)
    assert body["response_action"] == "errors"
    [message] = body["errors"].values()
    return one_line(message)


VIEW_CASES = [
    pytest.param("forged metadata", id="payload: a form whose private metadata does not parse"),
    pytest.param("no state", id="payload: a form submitted without its state"),
    pytest.param("deleted project", id="payload: a form of a project deleted since it opened"),
]


@pytest.mark.parametrize("how", VIEW_CASES)
def test_a_broken_form_submission_asks_to_reopen_it_and_stores_nothing(
    harness: SlackHarness, how: str
) -> None:
    demo = harness.service.get_project("demo")
    view = {"id": "V1", "team_id": "T1", "type": "modal", "callback_id": ids.CALLBACK_SEARCH_MODAL,
            "private_metadata": ids.encode_modal_metadata(demo.id, demo.name), "hash": "1",
            "state": {"values": {}}}
    if how == "forged metadata":
        view["private_metadata"] = '{"v": 1, "p": "1; drop table"}'
    elif how == "no state":
        del view["state"]
    else:
        harness.service.delete_project("demo")
    before = stored(harness.service.engine)
    assert "out of date" in submit(harness, view)
    assert stored(harness.service.engine) == before

