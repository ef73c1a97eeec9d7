"""The playground without a browser: its HTTP API, the modal state it builds, the demo data and command.

The browser tests are in test_playground.py.
"""

from __future__ import annotations

import csv
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot import cli, ids
from bot.data import make_sample
from bot.playground import (
    CHANNEL_ID,
    DEMO_PROJECT,
    Playground,
    PlaygroundError,
    build_state_values,
    ensure_demo_project,
)
from bot.playground.demo import data_path, demo_settings
from bot.playground.workspace import REQUIRED_MESSAGE, missing_required
from core import io
from core.config import Settings
from core.embeddings import HashingEmbedder
from core.service import LabelingService
from tests.conftest import BANKING77, make_settings

ALICE, BOB = "UALICE", "UBOB"


class CountingEmbedder(HashingEmbedder):
    """Counts the texts it embeds, to prove a second demo run embeds nothing."""

    def __init__(self) -> None:
        super().__init__(64)
        self.texts = 0

    def encode(self, texts, *, progress=None):  # type: ignore[no-untyped-def]
        self.texts += len(texts)
        return super().encode(texts, progress=progress)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[LabelingService]:
    svc = LabelingService(make_settings(tmp_path), embedder=HashingEmbedder(64), background=True)
    yield svc
    svc.close()


@pytest.fixture
def pg(service: LabelingService) -> Iterator[Playground]:
    service.create_project("tiny", ["spam", "ham"])
    service.import_rows("tiny", [io.ImportRow(line=i + 2, external_id=str(i), text=t)
                                 for i, t in enumerate(["free prize now", "lunch tomorrow?", "win cash"])])
    with Playground(service, port=0, project="tiny") as playground:
        yield playground


def request(pg: Playground, path: str, body: object = None, *, headers: dict | None = None,
            raw: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    all_headers = {"Content-Type": "application/json"} if data is not None else {}
    all_headers.update(headers or {})
    req = urllib.request.Request(pg.server.url + path, data=data, headers=all_headers,
                                 method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


# ------------------------------------------------------------------------------------------ demo data


def test_bundled_sample_is_what_make_sample_builds(tmp_path: Path) -> None:
    if not (BANKING77 / "train.csv").exists():
        pytest.skip("Banking77 is not in ../shared")
    rows = make_sample.sample_rows(BANKING77 / "train.csv")
    with open(data_path("banking77_sample.csv"), encoding="utf-8", newline="") as handle:
        bundled = list(csv.DictReader(handle))
    assert bundled == rows
    with open(BANKING77 / "train.csv", encoding="utf-8", newline="") as handle:
        original = list(csv.DictReader(handle))
    for row in bundled:  # ids point at the original rows
        source = original[int(row["id"].split("-")[1])]
        assert (source["text"].strip(), source["category"]) == (row["text"], row["category"])


def test_sample_has_400_rows_over_the_label_set() -> None:
    with open(data_path("banking77_sample.csv"), encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    labels = [d.name for d in io.read_label_set(data_path("banking77_labels.yml"))]
    assert len(rows) == 400 and len({r["id"] for r in rows}) == 400
    assert sorted({r["category"] for r in rows}) == sorted(labels) and len(labels) == 12
    counts = {label: sum(r["category"] == label for r in rows) for label in labels}
    assert min(counts.values()) >= 33 and max(counts.values()) <= 34
    assert (data_path("README.md")).read_text(encoding="utf-8").count("CC BY 4.0") >= 1


def test_ensure_demo_project_is_idempotent(tmp_path: Path) -> None:
    embedder = CountingEmbedder()
    service = LabelingService(make_settings(tmp_path), embedder=embedder)
    try:
        first = ensure_demo_project(service)
        assert (first.created, first.new_records, first.total_records) == (True, 400, 400)
        project = service.get_project(DEMO_PROJECT)
        assert len(project.labels) == 12 and all(label.description for label in project.labels)
        embedded = embedder.texts
        assert embedded == 400 + 12  # the records, and the labels once for the label-name prior
        second = ensure_demo_project(service)
        assert (second.created, second.new_records, second.total_records) == (False, 0, 400)
        assert embedder.texts == embedded  # nothing embedded again
    finally:
        service.close()


def test_demo_settings_use_the_demo_database_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABELBOT_DATABASE_URL", raising=False)
    assert demo_settings(Settings(_env_file=None)).database_url == "sqlite:///labelbot-demo.db"  # type: ignore[call-arg]
    monkeypatch.setenv("LABELBOT_DATABASE_URL", "sqlite:///mine.db")
    assert demo_settings(Settings(_env_file=None)).database_url == "sqlite:///mine.db"  # type: ignore[call-arg]


# ------------------------------------------------------------------------------------------ CLI


@pytest.fixture
def demo_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("LABELBOT_DATABASE_URL", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LABELBOT_EMBEDDING_MODEL", "hashing-64")
    return tmp_path


def test_demo_command_creates_the_project_once_and_serves_the_playground(
    demo_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[dict] = []

    def fake_serve(service: LabelingService, **kwargs: object) -> None:
        served.append({"projects": [p.name for p in service.list_projects()], **kwargs})
        kwargs["announce"]("http://127.0.0.1:3000/playground")  # type: ignore[operator]

    monkeypatch.setattr("bot.playground.demo.serve_playground", fake_serve)
    runner = CliRunner()
    first = runner.invoke(cli.app, ["demo", "--port", "3999"])
    assert first.exit_code == 0, first.output
    assert "Created the demo project" in first.output and "400" in first.output
    assert "http://127.0.0.1:3000/playground" in first.output
    assert (demo_env / "labelbot-demo.db").exists()
    second = runner.invoke(cli.app, ["demo"])
    assert second.exit_code == 0, second.output
    assert "Using the demo project" in second.output
    assert [s["projects"] for s in served] == [[DEMO_PROJECT], [DEMO_PROJECT]]
    assert served[0]["port"] == 3999 and served[0]["host"] == "127.0.0.1" and served[1]["port"] == 3000
    assert served[0]["project"] == DEMO_PROJECT


def test_demo_command_with_slack_credentials_runs_serve_on_the_demo_database(
    demo_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-real")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-real")
    calls: list[dict] = []

    def fake_serve(**kwargs: object) -> None:
        import os

        calls.append({**kwargs, "db": os.environ.get("LABELBOT_DATABASE_URL")})

    monkeypatch.setattr("bot.playground.demo.serve_playground", lambda *a, **k: pytest.fail("no playground"))
    monkeypatch.setattr(cli, "serve", fake_serve)
    result = CliRunner().invoke(cli.app, ["demo"])
    assert result.exit_code == 0, result.output
    assert calls == [{"http": False, "port": None, "host": None, "playground": False,
                      "db": "sqlite:///labelbot-demo.db"}]
    assert (demo_env / "labelbot-demo.db").exists()


def test_serve_playground_flag_needs_no_slack_credentials(
    demo_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[dict] = []
    monkeypatch.setattr("bot.playground.demo.serve_playground", lambda service, **kw: served.append(kw))
    result = CliRunner().invoke(cli.app, ["serve", "--playground", "--port", "0"])
    assert result.exit_code == 0, result.output
    assert served and served[0]["port"] == 0 and served[0]["project"] is None


# ------------------------------------------------------------------------------------------ the API


def test_page_and_static_files_are_served_with_a_strict_policy(pg: Playground) -> None:
    status, headers, body = request(pg, "/playground")
    assert status == 200 and b'<script src="/playground/static/app.js">' in body
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    status, headers, body = request(pg, "/playground/static/mrkdwn.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript") and b"Mrkdwn" in body
    for path in ("/playground/static/../workspace.py", "/playground/static/%2e%2e%2fworkspace.py",
                 "/playground/static/nope.js", "/playground/static/"):
        assert request(pg, path)[0] == 404, path
    status, headers, _ = request(pg, "/")
    assert status == 200  # urllib follows the redirect to the page
    assert request(pg, "/elsewhere")[0] == 404  # not ours: the server's own 404


def test_posts_must_be_same_origin_json(pg: Playground) -> None:
    body = {"user": ALICE, "channel": CHANNEL_ID, "text": "/label help"}
    form = json.dumps(body).encode()
    assert request(pg, "/playground/api/command", raw=form,
                   headers={"Content-Type": "application/x-www-form-urlencoded"})[0] == 415
    assert request(pg, "/playground/api/command", body, headers={"Origin": "http://evil.example"})[0] == 403
    # DNS rebinding: another name for 127.0.0.1, with a matching Origin.
    rebound = {"Host": f"evil.example:{pg.server.port}", "Origin": f"http://evil.example:{pg.server.port}"}
    assert request(pg, "/playground/api/command", body, headers=rebound)[0] == 403
    assert request(pg, "/playground/api/state", headers=rebound)[0] == 403
    assert pg.standin.calls_to("response_url") == []  # neither reached the bot
    status, _, answer = request(pg, "/playground/api/command", body,
                                headers={"Origin": pg.server.url})
    assert status == 200 and json.loads(answer) == {"ok": True}
    pg.standin.wait_for("response_url")


def test_command_reaches_the_bot_as_a_signed_slash_command(pg: Playground) -> None:
    calls = []
    original = pg.sender.send_form

    def spy(fields: dict, **kwargs: object):  # type: ignore[no-untyped-def]
        calls.append(fields)
        return original(fields, **kwargs)

    pg.sender.send_form = spy  # type: ignore[method-assign]
    pg.command(BOB, "D" + BOB, "/label next 2")
    pg.standin.wait_until(lambda: len(pg.standin.messages("D" + BOB)) >= 2)
    assert calls[0]["command"] == "/label" and calls[0]["text"] == "next 2"
    assert calls[0]["channel_name"] == "directmessage" and calls[0]["user_name"] == "bob"
    state = pg.state(BOB)
    assert len(state["messages"]["D" + BOB]) >= 2
    assert state["messages"].get("D" + ALICE) is None  # alice's DM is not bob's business
    with pytest.raises(PlaygroundError, match="not a valid command"):
        pg.command(BOB, CHANNEL_ID, "/giphy cats")
    with pytest.raises(PlaygroundError, match="unknown user"):
        pg.command("UMALLORY", CHANNEL_ID, "/label help")


def test_ephemeral_replies_show_only_for_the_user_who_asked(pg: Playground) -> None:
    pg.command(ALICE, CHANNEL_ID, "/label help")
    pg.standin.wait_for("response_url")
    mine = pg.state(ALICE)["messages"][CHANNEL_ID]
    assert [m.get("ephemeral") for m in mine] == [True]
    assert "labelbot commands" in json.dumps(mine[0]["blocks"])
    assert pg.state(BOB)["messages"][CHANNEL_ID] == []


def test_typed_messages_are_stored_escaped_like_slack(pg: Playground) -> None:
    pg.message(ALICE, CHANNEL_ID, "a <b> & c")
    message = pg.state(BOB)["messages"][CHANNEL_ID][0]
    assert message["text"] == "a &lt;b&gt; &amp; c" and message["user"] == ALICE


def test_long_poll_returns_when_something_changes(pg: Playground) -> None:
    version = pg.state(ALICE)["version"]
    results: list[dict] = []
    waiter = threading.Thread(target=lambda: results.append(pg.state(ALICE, since=version, timeout=60)))
    waiter.start()
    pg.message(ALICE, CHANNEL_ID, "hello")
    waiter.join(timeout=60)
    assert not waiter.is_alive()
    assert results[0]["version"] > version
    assert [m["text"] for m in results[0]["messages"][CHANNEL_ID]] == ["hello"]


def test_actions_on_someone_elses_dm_are_refused(pg: Playground) -> None:
    pg.command(ALICE, CHANNEL_ID, "/label next")
    pg.standin.wait_until(lambda: len(pg.standin.messages("D" + ALICE)) >= 1)
    card = pg.standin.messages("D" + ALICE)[0]
    skip = next(e for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]
                if e.get("action_id") == ids.ACTION_SKIP)
    block_id = next(b["block_id"] for b in card["blocks"] if skip in b.get("elements", []))
    with pytest.raises(PlaygroundError, match="someone else"):
        pg.action(BOB, block_id=block_id, action_id=ids.ACTION_SKIP, channel_id="D" + ALICE, ts=card["ts"],
                  value=skip["value"])
    with pytest.raises(PlaygroundError, match="no longer there"):
        pg.action(ALICE, block_id=block_id, action_id="nope", channel_id="D" + ALICE, ts=card["ts"])


# ------------------------------------------------------------------------------------------ modal state


VIEW = {
    "type": "modal",
    "blocks": [
        {"type": "section", "block_id": "intro", "text": {"type": "mrkdwn", "text": "hi"}},
        {"type": "input", "block_id": "recs", "optional": True, "label": {"type": "plain_text", "text": "R"},
         "element": {"type": "checkboxes", "action_id": "pick", "options": [
             {"text": {"type": "plain_text", "text": "one"}, "value": "1"},
             {"text": {"type": "plain_text", "text": "two"}, "value": "2"}]}},
        {"type": "input", "block_id": "label", "label": {"type": "plain_text", "text": "L"},
         "element": {"type": "static_select", "action_id": "choose", "option_groups": [
             {"label": {"type": "plain_text", "text": "g"},
              "options": [{"text": {"type": "plain_text", "text": "spam"}, "value": "s"}]}]}},
        {"type": "input", "block_id": "note", "optional": True, "label": {"type": "plain_text", "text": "N"},
         "element": {"type": "plain_text_input", "action_id": "text"}},
    ],
}


def test_state_values_are_slack_shaped_with_options_from_the_view() -> None:
    state = build_state_values(VIEW, {"recs": {"pick": ["2", "9"]}, "label": {"choose": "s"},
                                      "note": {"text": "x"}})
    two = VIEW["blocks"][1]["element"]["options"][1]
    assert state == {
        "recs": {"pick": {"type": "checkboxes", "selected_options": [two]}},
        "label": {"choose": {"type": "static_select", "selected_option":
                             VIEW["blocks"][2]["element"]["option_groups"][0]["options"][0]}},
        "note": {"text": {"type": "plain_text_input", "value": "x"}},
    }
    empty = build_state_values(VIEW, {})
    assert empty["recs"]["pick"]["selected_options"] == []
    assert empty["label"]["choose"]["selected_option"] is None
    assert empty["note"]["text"]["value"] is None
    assert missing_required(VIEW, empty) == {"label": REQUIRED_MESSAGE}
    assert missing_required(VIEW, state) == {}
