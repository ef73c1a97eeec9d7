"""Socket Mode end to end, without a websocket: bolt's own adapter in front of the real App.

``labelbot serve`` with SLACK_APP_TOKEN set runs ``SocketModeHandler(app, app_token)``: ``connect()``, then it
waits for SIGTERM or Ctrl+C and ``close()``s (what ``start()`` does, but stoppable). These tests
build that handler the same way (its constructor opens no connection) and hand its real ``SocketModeClient``
Socket Mode envelopes as JSON strings through ``enqueue_message`` — where the client's websocket puts every
message it receives. From there the real code runs: the client's queue and worker threads,
``SocketModeRequest.from_dict``, the handler's ``handle`` (bolt's ``run_bolt_app`` and ``send_response``) and
the client's ``send_socket_mode_response``. Only the client's ``send_message`` — the write to the socket — is
replaced, by :class:`Wire`, which records each acknowledgement and what the database held when it left.
The listener pool (:class:`AfterAckPool`) starts nothing before the envelope in flight is acknowledged, so
work a listener leaves for after its ack always runs after it, and the order the tests check is certain.

The Web API is the Slack stand-in, as in tests/slack_harness.py; the payloads are the ones
``SlackRequestSender`` builds for HTTP, sent as envelopes by :class:`SocketModeSender` instead.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from slack_bolt.adapter.socket_mode import SocketModeHandler
from sqlalchemy import select

from bot import ids
from bot.app import create_app, make_client
from bot.settings import BotSettings
from bot.standin import SlackRequestSender, SlackStandIn, action_from_blocks
from core.embeddings import HashingEmbedder
from core.io import ImportRow
from core.models import Annotation
from core.service import LabelingService
from core.store import read_session
from tests.conftest import make_settings
from tests.test_bot import TEXTS as SPAM_HAM_TEXTS
from tests.test_bot import texts_of

BOT_TOKEN, APP_TOKEN = "xoxb-test", "xapp-1-test"
ALICE, CHANNEL = "UALICE", "CGENERAL"
TEXTS = SPAM_HAM_TEXTS[:6]
ACK_TIMEOUT = 10.0

Row = tuple[int, str, str, str]


def annotations(service: LabelingService) -> list[Row]:
    """(record_id, annotator, label, source) of every stored answer, read on a connection of its own."""
    with read_session(service.engine) as session:
        rows = session.execute(
            select(Annotation.record_id, Annotation.annotator, Annotation.label, Annotation.source)
        ).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


@dataclass(frozen=True)
class Sent:
    """One message the client wrote to the socket, and the answers stored when it was written."""

    message: dict
    stored: list[Row]
    thread: str


class Wire:
    """Stands in for the websocket's send: records every outgoing message with a database snapshot."""

    def __init__(self, service: LabelingService) -> None:
        self.service = service
        self.sent: list[Sent] = []
        self.acked = threading.Event()  # cleared when an envelope is delivered, set when its ack leaves
        self._changed = threading.Condition()

    def send_message(self, message: str) -> None:
        stored = annotations(self.service)  # before the message "leaves"
        with self._changed:
            self.sent.append(Sent(json.loads(message), stored, threading.current_thread().name))
            self._changed.notify_all()
        self.acked.set()

    def acks(self, envelope_id: str) -> list[Sent]:
        with self._changed:
            return [s for s in self.sent if s.message.get("envelope_id") == envelope_id]

    def wait_for_ack(self, envelope_id: str, timeout: float = ACK_TIMEOUT) -> Sent:
        with self._changed:
            if not self._changed.wait_for(lambda: self.acks(envelope_id), timeout):
                raise TimeoutError(f"no acknowledgement of envelope {envelope_id} in {timeout}s: {self.sent}")
        [ack] = self.acks(envelope_id)
        return ack


class AfterAckPool(ThreadPoolExecutor):
    """The App's listener pool, each task held until the envelope in flight has been acknowledged.

    ``create_app`` runs what listeners leave for after their ack (``Labeling.later``, ``ack_first``) here.
    Holding it makes "after the ack" certain rather than likely: a listener that stored its answer on the
    pool instead of before its ack would be caught every time, not only when the pool loses the race.
    """

    def __init__(self, wire: Wire) -> None:
        super().__init__(max_workers=8, thread_name_prefix="socket-mode-listener")
        self.wire = wire

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        def after_ack() -> Any:
            if not self.wire.acked.wait(ACK_TIMEOUT):
                raise TimeoutError("the envelope was never acknowledged")
            return fn(*args, **kwargs)

        return super().submit(after_ack)


class SocketModeSender(SlackRequestSender):
    """``SlackRequestSender``'s payloads delivered as Socket Mode envelopes, not as signed HTTP posts.

    Slash commands become ``slash_commands`` envelopes (the form fields as the payload), interactions
    ``interactive`` ones (the JSON payload as it is); each call returns the envelope_id it used.
    """

    _ids = itertools.count(1)

    def __init__(self, handler: SocketModeHandler, wire: Wire, standin: SlackStandIn) -> None:
        super().__init__("socket-mode://", signing_secret="unused", standin=standin)
        self.handler = handler
        self.wire = wire

    def deliver(self, kind: str, payload: dict, *, accepts_response_payload: bool) -> str:
        envelope_id = f"envelope-{next(self._ids)}"
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
        }
        self.wire.acked.clear()
        self.handler.client.enqueue_message(json.dumps(envelope))  # what the websocket does on a message
        return envelope_id

    def send_form(self, fields: dict[str, Any], **kwargs: Any) -> str:  # type: ignore[override]
        assert fields.get("command"), "only slash commands are form-encoded here"
        return self.deliver("slash_commands", fields, accepts_response_payload=True)

    def send_payload(self, payload: dict, **kwargs: Any) -> str:  # type: ignore[override]
        return self.deliver("interactive", payload, accepts_response_payload=False)


@dataclass
class SocketBot:
    standin: SlackStandIn
    service: LabelingService
    handler: SocketModeHandler
    wire: Wire
    sender: SocketModeSender

    def command(self, text: str) -> str:
        return self.sender.slash_command("/label", text, user_id=ALICE, channel_id=CHANNEL)  # type: ignore[return-value]

    def dm(self) -> list[dict]:
        return self.standin.messages(self.standin.dm_channel(ALICE))

    def cards(self) -> list[dict]:
        return [
            m
            for m in self.dm()
            if any(
                e.get("action_id") == ids.ACTION_SKIP
                for b in m.get("blocks", [])
                if b.get("type") == "actions"
                for e in b.get("elements", [])
            )
        ]


@pytest.fixture
def bot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SocketBot]:
    standin = SlackStandIn(bot_token=BOT_TOKEN).start()
    standin.add_user(ALICE, "alice")
    standin.add_channel(CHANNEL, "general")
    service = LabelingService(make_settings(tmp_path), embedder=HashingEmbedder(64), background=True)
    service.create_project("demo", ["spam", "ham"])
    rows = [ImportRow(line=i + 2, external_id=str(i), text=t) for i, t in enumerate(TEXTS)]
    service.import_rows("demo", rows)
    settings = BotSettings(
        _env_file=None,  # type: ignore[call-arg]
        slack_bot_token=BOT_TOKEN,
        slack_app_token=APP_TOKEN,
        slack_api_url=standin.base_url,
    )
    assert settings.transport() == "socket"
    settings.check("socket")  # what serve checks before it connects
    wire = Wire(service)
    pool = AfterAckPool(wire)
    app = create_app(settings, service, client=make_client(settings), pool=pool)
    handler = SocketModeHandler(app, settings.slack_app_token)  # as ``labelbot serve`` builds it
    monkeypatch.setattr(handler.client, "send_message", wire.send_message)
    try:
        yield SocketBot(standin, service, handler, wire, SocketModeSender(handler, wire, standin))
    finally:
        handler.close()
        pool.shutdown(wait=True)  # what listeners left to do after their ack reaches the stand-in
        standin.stop()
        service.close()


def label_button(card: dict, label: str) -> dict:
    for block in card["blocks"]:
        for element in block.get("elements", []) if block["type"] == "actions" else []:
            if element["type"] == "button" and element["text"]["text"] == label:
                return element
    raise LookupError(f"no {label!r} button on the card")


def test_handler_is_registered_on_the_client_and_opens_no_connection(bot: SocketBot) -> None:
    # The envelopes below reach the App only through this listener; nothing was connected to.
    assert bot.handler.client.socket_mode_request_listeners == [bot.handler.handle]
    assert not bot.handler.client.is_connected()
    assert bot.standin.calls_to("apps.connections.open") == []


def test_label_click_is_stored_before_its_ack_then_card_updated_and_next_card_sent(bot: SocketBot) -> None:
    next_id = bot.command("next")
    assert bot.wire.wait_for_ack(next_id).message == {"envelope_id": next_id}
    bot.standin.wait_until(lambda: len(bot.cards()) == 1)
    [card] = bot.cards()
    button = label_button(card, "spam")
    record_id = ids.parse_label_value(button["value"]).record_id
    assert annotations(bot.service) == []

    action = action_from_blocks(card, button["action_id"], value=button["value"])
    click_id = bot.sender.block_actions(  # type: ignore[assignment]
        ALICE, [action], channel_id=bot.standin.dm_channel(ALICE), message=card
    )
    ack = bot.wire.wait_for_ack(click_id)

    # Acknowledged once, with an empty payload (a block_actions ack carries none) ...
    assert ack.message == {"envelope_id": click_id}
    assert ack.thread != threading.current_thread().name  # by the client's worker, as on a real socket
    # ... and only once the answer was committed: the database held it when the ack was written. (With
    # process_before_response the ack leaves when the listener returns, so this fails for a listener that
    # stores on the pool after its ack, e.g. one wrapped in ack_first.)
    assert ack.stored == [(record_id, ALICE, "spam", "slack")]

    # After the ack: the clicked card shows the answer, and the next card arrives.
    bot.standin.wait_for("chat.update")
    bot.standin.wait_until(lambda: len(bot.cards()) == 1 and bot.cards()[0]["ts"] != card["ts"])
    updated = bot.standin.message(bot.standin.dm_channel(ALICE), card["ts"])
    assert updated is not None
    assert "spam" in texts_of(updated) and f"<@{ALICE}>" in texts_of(updated)
    [next_card] = bot.cards()
    assert ids.parse_label_value(label_button(next_card, "spam")["value"]).record_id != record_id
    assert annotations(bot.service) == [(record_id, ALICE, "spam", "slack")]
    assert len(bot.wire.acks(click_id)) == 1
    assert bot.standin.errors() == []


def test_slash_command_status_is_acked_and_answered(bot: SocketBot) -> None:
    envelope_id = bot.command("status")
    ack = bot.wire.wait_for_ack(envelope_id)
    assert ack.message == {"envelope_id": envelope_id}  # acked empty: the answer goes to response_url
    bot.standin.wait_for("response_url")
    answers = [texts_of(r["payload"]) for r in bot.standin.responses]
    total = len(TEXTS)
    assert any(f"*Progress:* 0 of {total} records labeled" in text for text in answers), answers
    assert all(r["action"] == "ephemeral" and r["user"] == ALICE for r in bot.standin.responses)
    assert len(bot.wire.acks(envelope_id)) == 1
    assert bot.standin.errors() == []
