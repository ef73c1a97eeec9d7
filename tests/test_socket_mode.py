"""Socket Mode end to end over a real WebSocket, offline.

``start_harness(transport="socket")`` connects bolt's ``SocketModeHandler`` (built as ``labelbot serve``
builds it) to the stand-in's WebSocket server (bot/standin/socket_mode.py): ``apps.connections.open`` on the
stand-in's Web API, then ``hello``, envelopes and acks on the socket. The main scenarios run over both
transports; the rest is Socket Mode's own: the ack leaves only once the answer is committed, the bot
reconnects when Slack asks it to (``disconnect``) and when the connection drops, and no answer is lost or
stored twice doing so. The last test runs the real ``labelbot serve`` in Socket Mode.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from slack_bolt.adapter.socket_mode import SocketModeHandler
from sqlalchemy import select

from bot import ids
from bot.app import create_app, make_client
from bot.settings import BotSettings
from bot.standin import Ack, SlackStandIn, SocketModeSender, SocketModeStandIn, action_from_blocks
from core.embeddings import HashingEmbedder
from core.io import ImportRow
from core.models import Annotation
from core.service import LabelingService
from core.store import read_session
from tests.conftest import make_settings, serve_env
from tests.slack_harness import ALICE, APP_TOKEN, BOT_TOKEN, CHANNEL, SlackHarness, start_harness
from tests.test_bot import TEXTS, _submit_modal, texts_of
from tests.test_serve_lifecycle import GIVE_UP, Reaped

WAIT = 60.0  # seconds before a wait is a failure: generous, the CPU is shared
# The Socket Mode client notices a connection that ended without a close frame only when its pings
# fail, five in a row (about 5 ping intervals; ~50 s with serve's 10 s). The drop tests ping every second.
FAST_PING = 1.0

Row = tuple[int, str, str, str]


def annotations(service: LabelingService) -> list[Row]:
    """(record_id, annotator, label, source) of every stored answer, read on a connection of its own."""
    with read_session(service.engine) as session:
        rows = session.execute(
            select(Annotation.record_id, Annotation.annotator, Annotation.label, Annotation.source)
        ).all()
    return sorted(tuple(row) for row in rows)  # type: ignore[misc]


def rows_of(texts: list[str]) -> list[ImportRow]:
    return [ImportRow(line=i + 2, external_id=str(i), text=t) for i, t in enumerate(texts)]


def record_of(card: dict) -> int:
    button = next(
        e for b in card["blocks"] if b["type"] == "actions" for e in b["elements"] if e["type"] == "button"
        and e.get("value") and e["action_id"] not in (ids.ACTION_SKIP, ids.ACTION_SHOW_SIMILAR)
    )
    return ids.parse_label_value(button["value"]).record_id


@pytest.fixture(params=["http", "socket"])
def h(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SlackHarness]:
    harness = start_harness(tmp_path, texts=TEXTS, transport=request.param)
    yield harness
    harness.close()


@pytest.fixture(params=[10.0, FAST_PING], ids=["serve-ping", "fast-ping"])
def sock(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SlackHarness]:
    """Socket Mode only: serve's ping interval, or a fast one where a test drops the connection."""
    harness = start_harness(tmp_path, texts=TEXTS, transport="socket", ping_interval=request.param)
    yield harness
    harness.close()


def socket_of(h: SlackHarness) -> SocketModeStandIn:
    assert h.socket_mode is not None
    return h.socket_mode


# ---------------------------------------------------------------- the stand-in's side


def test_connections_open_takes_the_app_token_and_each_url_opens_one_connection() -> None:
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with SlackStandIn(bot_token=BOT_TOKEN) as standin, SocketModeStandIn(standin, app_token=APP_TOKEN):
        client = WebClient(base_url=standin.base_url)
        for token, error in ((BOT_TOKEN, "not_allowed_token_type"), ("xapp-1-other", "invalid_auth")):
            with pytest.raises(SlackApiError) as refused:
                client.apps_connections_open(app_token=token)
            assert refused.value.response["error"] == error
        url = client.apps_connections_open(app_token=APP_TOKEN)["url"]
        assert url.startswith("ws://127.0.0.1:")
        with connect(url) as ws:
            assert json.loads(ws.recv(timeout=WAIT))["type"] == "hello"
        with pytest.raises(InvalidStatus) as used:
            connect(url)  # a URL is good for one connection, as Slack's
        assert used.value.response.status_code == 401


# ---------------------------------------------------------------- the main scenarios, both transports


def test_label_next_delivers_a_card(h: SlackHarness) -> None:
    response = h.command("next")
    assert (response.status, response.body) == (200, "")  # acked empty: the answer goes to response_url
    [card] = h.wait_for_cards(ALICE, 1)
    assert any(t in texts_of(card) for t in TEXTS)
    h.standin.wait_for("response_url", timeout=WAIT)
    assert "Sent you 1 card" in texts_of(h.standin.responses[-1]["payload"])
    if h.socket_mode is not None:  # one envelope, acked once, on the one connection
        [ack] = h.socket_mode.acks()
        assert (ack.payload, ack.connection) == (None, 1)
        assert [c.number for c in h.socket_mode.open_connections()] == [1]
    assert h.standin.errors() == []


def test_label_click_stores_the_answer_updates_the_card_and_sends_the_next(h: SlackHarness) -> None:
    assert h.command("next").status == 200
    [card] = h.wait_for_cards(ALICE, 1)
    assert h.click_label(ALICE, card, "spam").status == 200
    assert annotations(h.service) == [(record_of(card), ALICE, "spam", "slack")]  # stored before the ack
    h.standin.wait_for("chat.update", timeout=WAIT)
    updated = h.standin.message(h.dm(ALICE), card["ts"])
    assert updated is not None and "spam" in texts_of(updated) and f"<@{ALICE}>" in texts_of(updated)
    h.standin.wait_until(lambda: any(c["ts"] != card["ts"] for c in h.cards(ALICE)), timeout=WAIT)
    [next_card] = h.cards(ALICE)
    assert record_of(next_card) != record_of(card)
    assert h.standin.errors() == []


def test_show_similar_modal_submission_answers_errors_in_the_ack_then_labels(h: SlackHarness) -> None:
    assert h.command("next").status == 200
    [card] = h.wait_for_cards(ALICE, 1)
    h.click(ALICE, card, ids.ACTION_SHOW_SIMILAR)
    h.standin.wait_for("views.open", timeout=WAIT)
    view = h.standin.modal_stack(ALICE)[-1]
    assert view["callback_id"] == ids.CALLBACK_SIMILAR_MODAL
    listed = [
        ids.parse_record_option(o["value"])
        for b in view["blocks"]
        if (b.get("element") or {}).get("type") == "checkboxes"
        for o in b["element"]["options"]
    ]
    # No label chosen: the inline errors travel back in the response (over Socket Mode, the ack's payload).
    response = _submit_modal(h, ALICE, view, listed[:2], None)
    assert response.body["response_action"] == "errors"
    assert ids.BLOCK_SIMILAR_LABEL in response.body["errors"]
    assert annotations(h.service) == []
    response = _submit_modal(h, ALICE, view, listed[:3], "spam")
    assert (response.status, response.body) == (200, "")
    h.standin.wait_until(lambda: len(annotations(h.service)) == 3, timeout=WAIT)
    assert sorted(a[0] for a in annotations(h.service)) == sorted(listed[:3])
    if h.socket_mode is not None:
        payloads = [a.payload for a in h.socket_mode.acks()]
        assert payloads.count(None) == len(payloads) - 1  # only the refused submission's ack has one
        assert {"response_action": "errors"}.items() <= next(p for p in payloads if p).items()


# ---------------------------------------------------------------- the ack leaves after the commit


class AfterAckPool(ThreadPoolExecutor):
    """The App's listener pool, each task held until the stand-in has received the ack in flight.

    ``create_app`` runs what listeners leave for after their ack here. Holding it makes "after the ack"
    certain: a listener that stored its answer on the pool instead of before its ack would be caught
    every time by the snapshot taken when the ack arrives, not only when the pool loses the race.
    """

    def __init__(self) -> None:
        super().__init__(max_workers=8, thread_name_prefix="socket-mode-listener")
        self.acked = threading.Event()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        def after_ack() -> Any:
            if not self.acked.wait(WAIT):
                raise TimeoutError("the envelope was never acknowledged")
            return fn(*args, **kwargs)

        return super().submit(after_ack)


def test_a_click_is_acked_only_once_its_answer_is_committed(tmp_path: Path) -> None:
    standin = SlackStandIn(bot_token=BOT_TOKEN).start()
    standin.add_user(ALICE, "alice")
    standin.add_channel(CHANNEL, "general")
    socket_mode = SocketModeStandIn(standin, app_token=APP_TOKEN).start()
    service = LabelingService(make_settings(tmp_path), embedder=HashingEmbedder(64), background=True)
    service.create_project("demo", ["spam", "ham"])
    service.import_rows("demo", rows_of(TEXTS))
    settings = BotSettings(
        _env_file=None,  # type: ignore[call-arg]
        slack_bot_token=BOT_TOKEN, slack_app_token=APP_TOKEN, slack_api_url=standin.base_url,
    )
    pool = AfterAckPool()
    app = create_app(settings, service, client=make_client(settings), pool=pool)
    handler = SocketModeHandler(app, APP_TOKEN)
    stored_at_ack: dict[str, list[Row]] = {}

    def snapshot(ack: Ack) -> None:  # runs when the ack reaches the stand-in, before it is recorded
        stored_at_ack[ack.envelope_id] = annotations(service)
        pool.acked.set()

    socket_mode.on_ack = snapshot
    sender = SocketModeSender(socket_mode, standin)
    try:
        handler.connect()
        assert sender.slash_command("/label", "next", user_id=ALICE, channel_id=CHANNEL).status == 200
        standin.wait_until(lambda: len(standin.messages(standin.dm_channel(ALICE))) == 1, timeout=WAIT)
        [card] = standin.messages(standin.dm_channel(ALICE))
        assert annotations(service) == []
        pool.acked.clear()
        button = next(
            e for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]
            if e.get("text", {}).get("text") == "spam"
        )
        action = action_from_blocks(card, button["action_id"], value=button["value"])
        response = sender.block_actions(ALICE, [action], channel_id=standin.dm_channel(ALICE), message=card)
        assert (response.status, response.body) == (200, "")
        click = socket_mode.acks()[-1]
        # The database held the answer when the ack reached Slack.
        assert stored_at_ack[click.envelope_id] == [(record_of(card), ALICE, "spam", "slack")]
        standin.wait_for("chat.update", timeout=WAIT)  # the after-ack work ran, after
        assert [d.envelope["retry_attempt"] for d in socket_mode.deliveries(click.envelope_id)] == [0]
    finally:
        handler.close()
        pool.shutdown(wait=True)
        socket_mode.stop()
        standin.stop()
        service.close()


# ---------------------------------------------------------------- reconnecting


@pytest.mark.parametrize("sock", [10.0], indirect=True, ids=["serve-ping"])
def test_refresh_requested_reconnects_and_clicks_keep_working(sock: SlackHarness) -> None:
    h = sock
    assert h.command("next").status == 200
    [card] = h.wait_for_cards(ALICE, 1)
    socket_mode = socket_of(h)
    socket_mode.request_refresh()
    # The client opens a new connection (a fresh apps.connections.open) and closes the old one itself.
    # slack_sdk's websocket-client adapter may ask for a URL more than once (it asked 4 times, for 2
    # connections, in our runs) and replace a new connection as the old one's close reaches it: wait
    # until one connection stays.
    settled = _settled_connection(socket_mode)
    assert settled.number >= 2 and len(h.standin.calls_to("apps.connections.open")) >= settled.number
    assert h.click_label(ALICE, card, "ham").status == 200
    assert socket_mode.acks()[-1].connection == settled.number
    assert annotations(h.service) == [(record_of(card), ALICE, "ham", "slack")]
    h.standin.wait_until(lambda: any(c["ts"] != card["ts"] for c in h.cards(ALICE)), timeout=WAIT)
    assert socket_mode.unacked() == []


def _settled_connection(socket_mode: SocketModeStandIn, quiet: float = 1.0) -> Any:
    """The one open connection once no new one has been opened for ``quiet`` seconds."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        before = [c.number for c in socket_mode.open_connections()]
        time.sleep(quiet)
        after = socket_mode.open_connections()
        if len(after) == 1 and [c.number for c in after] == before:
            return after[0]
    raise TimeoutError(f"connections did not settle: {[c.number for c in socket_mode.open_connections()]}")


@pytest.mark.parametrize("sock", [FAST_PING], indirect=True, ids=["fast-ping"])
def test_an_envelope_sent_while_the_connection_is_down_arrives_after_reconnecting(sock: SlackHarness) -> None:
    socket_mode = socket_of(sock)
    socket_mode.drop()  # no close frame: the client finds out when its pings fail
    envelope_id = socket_mode.deliver(
        "slash_commands", {"command": "/label", "text": "next", "user_id": ALICE, "channel_id": CHANNEL,
                           "response_url": sock.standin.new_response_url(CHANNEL, ALICE),
                           "trigger_id": sock.standin.new_trigger_id(ALICE), "team_id": "T0001"},
    )
    ack = socket_mode.wait_for_ack(envelope_id, WAIT)
    assert ack.connection == 2 and socket_mode.connections[0].dropped
    sock.wait_for_cards(ALICE, 1)
    assert len(sock.dm_messages(ALICE)) == 1


@pytest.mark.parametrize("sock", [FAST_PING], indirect=True, ids=["fast-ping"])
def test_acked_answer_survives_a_drop_and_an_unacked_click_is_redelivered_and_stored_once(
    sock: SlackHarness,
) -> None:
    socket_mode = socket_of(sock)
    assert sock.command("next 2").status == 200
    first, second = sock.wait_for_cards(ALICE, 2)
    assert sock.click_label(ALICE, first, "spam").status == 200  # acked on connection 1
    # The second click's ack is lost on the way: the connection breaks as it arrives. Slack re-sends the
    # envelope on the next connection; the bot handles the click again and must not store it twice.
    socket_mode.lose_ack(click_id := "lost-ack-click")
    action = next(
        e for b in second["blocks"] if b["type"] == "actions" for e in b["elements"]
        if e.get("text", {}).get("text") == "ham"
    )
    payload = _block_actions_payload(sock, second, action)
    socket_mode.deliver("interactive", payload, envelope_id=click_id)
    ack = socket_mode.wait_for_ack(click_id, WAIT)
    deliveries = socket_mode.deliveries(click_id)
    assert [(d.connection, d.envelope["retry_attempt"]) for d in deliveries] == [(1, 0), (2, 1)]
    assert ack.connection == 2 and len(socket_mode.lost_acks()) == 1
    assert annotations(sock.service) == sorted(
        [(record_of(first), ALICE, "spam", "slack"), (record_of(second), ALICE, "ham", "slack")]
    )
    assert socket_mode.unacked() == []
    # Both cards show their answer (neither carries label controls any more).
    sock.standin.wait_until(
        lambda: not {first["ts"], second["ts"]} & {c["ts"] for c in sock.cards(ALICE)}, timeout=WAIT
    )
    assert len(annotations(sock.service)) == 2


def _block_actions_payload(h: SlackHarness, card: dict, element: dict) -> dict:
    """The block_actions payload a click on ``element`` of ``card`` makes (what the sender would send)."""
    captured: list[dict] = []

    class Capture(SocketModeSender):
        def _deliver_and_wait(self, kind: str, payload: dict) -> Any:
            captured.append(payload)

    capture = Capture(socket_of(h), h.standin)
    action = action_from_blocks(card, element["action_id"], value=element["value"])
    capture.block_actions(ALICE, [action], channel_id=h.dm(ALICE), message=card)
    return captured[0]


# ---------------------------------------------------------------- the real serve


def test_serve_in_socket_mode_connects_answers_a_command_and_stops_on_sigterm(tmp_path: Path) -> None:
    standin = SlackStandIn(bot_token=BOT_TOKEN).start()
    standin.add_user(ALICE, "alice")
    standin.add_channel(CHANNEL, "general")
    socket_mode = SocketModeStandIn(standin, app_token=APP_TOKEN).start()
    settings = make_settings(tmp_path)
    svc = LabelingService(settings, embedder=HashingEmbedder(64))
    svc.create_project("demo", ["spam", "ham"])
    svc.import_rows("demo", rows_of(TEXTS))
    env = serve_env(settings, SLACK_API_URL=standin.base_url, SLACK_APP_TOKEN=APP_TOKEN)
    serve = Reaped([sys.executable, "-c", "from bot.cli import app; app()", "serve"], env,
                   tmp_path / "serve.log", tmp_path)
    try:
        socket_mode.wait_for_connections(1, GIVE_UP)
        sender = SocketModeSender(socket_mode, standin, ack_timeout=GIVE_UP)
        response = sender.slash_command("/label", "next", user_id=ALICE, channel_id=CHANNEL)
        assert (response.status, response.body) == (200, ""), serve.output()
        standin.wait_until(lambda: len(standin.messages(standin.dm_channel(ALICE))) == 1, timeout=GIVE_UP)
        assert any(t in texts_of(standin.messages(standin.dm_channel(ALICE))[0]) for t in TEXTS)
        os.kill(serve.pid, signal.SIGTERM)
        report = serve.finish()
        assert report == {"rc": 0, "left": []}, serve.output()
        assert "labelbot stopped." in serve.output() and "Traceback" not in serve.output()
        socket_mode.wait_until(lambda: not socket_mode.open_connections(), GIVE_UP, "the socket closed")
    finally:
        serve.kill()
        socket_mode.stop()
        standin.stop()
        svc.close()
