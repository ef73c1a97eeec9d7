"""Socket Mode for the Slack stand-in: a local WebSocket server that delivers envelopes the way Slack does.

``SocketModeStandIn(standin)`` attaches to a :class:`~bot.standin.webapi.SlackStandIn`, whose
``apps.connections.open`` (app-level ``xapp-`` token) then answers ``ws://127.0.0.1:PORT/link/?ticket=...``.
Each ticket opens one connection; the server greets it with ``hello`` and sends it envelopes
(``{"envelope_id", "type", "payload", "accepts_response_payload", "retry_attempt", "retry_reason"}``),
then records every acknowledgement (``{"envelope_id", "payload"?}``) with the time and connection it came on.

What a test can do to the connection, as Slack or the network would: ``request_refresh`` sends
``{"type": "disconnect", "reason": "refresh_requested"}``, ``drop`` closes the TCP connection without a
close frame, ``lose_ack`` drops the connection when a given envelope's ack arrives (an ack lost in transit).
An envelope not acknowledged on the connection it went out on is re-sent, with ``retry_attempt`` one
higher, on the live connection or the next one. (Slack documents such retries for Events API envelopes;
the stand-in re-sends every kind, the harder case for a bot.)

The server is the ``websockets`` package's sync server (the ``dev`` extra), imported only by ``start``.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.standin.signing import SenderResponse, SlackRequestSender

if TYPE_CHECKING:
    from websockets.sync.server import Server, ServerConnection

    from bot.standin.webapi import SlackStandIn

logger = logging.getLogger(__name__)

DEFAULT_APP_TOKEN = "xapp-1-A0APP-1-test"
ENVELOPE_TYPES = ("slash_commands", "interactive", "events_api")


@dataclass(frozen=True)
class Ack:
    """An acknowledgement the server received: which envelope, its response payload (None when the
    ack carried none), when it came and on which connection (numbered from 1 in opening order)."""

    envelope_id: str
    payload: dict | None
    time: float
    connection: int


@dataclass(frozen=True)
class Delivery:
    """One envelope frame the server sent, and on which connection."""

    envelope: dict
    time: float
    connection: int


@dataclass
class _Envelope:
    frame: dict
    sent_on: int | None = None  # the connection it is waiting for an ack on
    acked: bool = False


@dataclass
class SocketConnection:
    """One WebSocket connection the bot opened. ``closed_at`` is None while it is open; ``refreshing``
    once it was sent ``disconnect`` (nothing new is sent on it then, as Slack does)."""

    number: int
    opened_at: float
    closed_at: float | None = None
    refreshing: bool = False
    dropped: bool = False
    _ws: Any = field(default=None, repr=False)

    @property
    def is_open(self) -> bool:
        return self.closed_at is None


class SocketModeStandIn:
    """Slack's Socket Mode WebSocket endpoint on ``ws://127.0.0.1:PORT/link/``.

    Parameters
    ----------
    standin : the Web API stand-in whose ``apps.connections.open`` hands out this server's URLs.
    app_token : the ``xapp-`` token ``apps.connections.open`` requires.
    """

    def __init__(
        self, standin: SlackStandIn | None = None, *, app_token: str = DEFAULT_APP_TOKEN,
        host: str = "127.0.0.1", port: int = 0,
    ) -> None:
        if not app_token.startswith("xapp-"):
            raise ValueError("an app-level token starts with xapp-")
        self.app_token = app_token
        self.host = host
        self._requested_port = port
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._tickets: set[str] = set()
        self._connections: list[SocketConnection] = []
        self._envelopes: dict[str, _Envelope] = {}
        self._deliveries: list[Delivery] = []
        self._acks: list[Ack] = []
        self._lost_acks: list[Ack] = []
        self._lose: set[str] = set()
        self._ids = itertools.count(1)
        # Called with each ack as it arrives, before it is recorded (so before wait_for_ack returns it):
        # a test can look at what the bot had done by the time its ack reached Slack.
        self.on_ack: Callable[[Ack], None] | None = None
        if standin is not None:
            standin.socket_mode = self

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> SocketModeStandIn:
        """Start serving in a daemon thread (idempotent); returns self."""
        from websockets.sync.server import serve  # the dev extra; only Socket Mode tests need it

        with self._lock:
            if self._server is None:
                self._server = serve(
                    self._session, self.host, self._requested_port,
                    process_request=self._check_ticket, logger=logger,
                )
                self._thread = threading.Thread(
                    target=self._server.serve_forever, name="slack-socket-mode", daemon=True
                )
                self._thread.start()
        return self

    def stop(self) -> None:
        """Close every connection and stop listening; the record stays readable."""
        with self._lock:
            server, thread, self._server, self._thread = self._server, self._thread, None, None
            open_ones = [c for c in self._connections if c.is_open]
        for connection in open_ones:
            _close_quietly(connection._ws)
        if server is not None:
            server.shutdown()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> SocketModeStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("SocketModeStandIn is not started; call start() first")
        return self._server.socket.getsockname()[1]

    def new_url(self) -> str:
        """A one-use WebSocket URL, as ``apps.connections.open`` answers it."""
        ticket = secrets.token_hex(8)
        with self._lock:
            self._tickets.add(ticket)
        return f"ws://{self.host}:{self.port}/link/?ticket={ticket}&app_id=A0APP"

    # ------------------------------------------------------------------ what Slack sends

    def deliver(
        self, kind: str, payload: dict, *, accepts_response_payload: bool | None = None,
        envelope_id: str | None = None,
    ) -> str:
        """Send an envelope on the live connection (or the next one to open); returns its envelope_id.

        ``accepts_response_payload`` defaults to Slack's: true for slash commands, view submissions
        and options requests, false otherwise.
        """
        if kind not in ENVELOPE_TYPES:
            raise ValueError(f"envelope type must be one of {ENVELOPE_TYPES}")
        if accepts_response_payload is None:
            accepts_response_payload = kind == "slash_commands" or (
                kind == "interactive" and payload.get("type") in ("view_submission", "block_suggestion")
            )
        envelope_id = envelope_id or f"{next(self._ids):04d}-{secrets.token_hex(6)}"
        frame = {
            "envelope_id": envelope_id, "type": kind, "payload": copy.deepcopy(payload),
            "accepts_response_payload": accepts_response_payload, "retry_attempt": 0, "retry_reason": "",
        }
        with self._lock:
            if envelope_id in self._envelopes:
                raise ValueError(f"envelope {envelope_id} was delivered already")
            self._envelopes[envelope_id] = _Envelope(frame)
            self._send_pending()
        return envelope_id

    def request_refresh(self, reason: str = "refresh_requested") -> None:
        """Send ``disconnect`` on every open connection: the bot is expected to open a new one.

        Nothing new goes out on a connection told so; Slack closes it later, here the bot does.
        """
        with self._lock:
            targets = [c for c in self._connections if c.is_open and not c.refreshing]
            for connection in targets:
                connection.refreshing = True
        for connection in targets:
            message = {"type": "disconnect", "reason": reason, "debug_info": {"host": "standin"}}
            _send_quietly(connection._ws, json.dumps(message))

    def drop(self) -> None:
        """Cut every open connection at the TCP level, with no WebSocket close frame (a network failure)."""
        with self._lock:
            targets = [c for c in self._connections if c.is_open]
            for connection in targets:
                connection.dropped = True
        for connection in targets:
            _cut(connection._ws)

    def lose_ack(self, envelope_id: str) -> None:
        """When ``envelope_id``'s next ack arrives, do not record it and cut the connection it came on
        (as :meth:`drop` does)."""
        with self._lock:
            self._lose.add(envelope_id)

    # ------------------------------------------------------------------ what the bot did

    @property
    def connections(self) -> list[SocketConnection]:
        with self._lock:
            return [copy.copy(c) for c in self._connections]

    def open_connections(self) -> list[SocketConnection]:
        return [c for c in self.connections if c.is_open]

    def acks(self, envelope_id: str | None = None) -> list[Ack]:
        with self._lock:
            return [a for a in self._acks if envelope_id in (None, a.envelope_id)]

    def lost_acks(self) -> list[Ack]:
        """Acks thrown away by :meth:`lose_ack`."""
        with self._lock:
            return list(self._lost_acks)

    def deliveries(self, envelope_id: str | None = None) -> list[Delivery]:
        with self._lock:
            return [d for d in self._deliveries if envelope_id in (None, d.envelope["envelope_id"])]

    def unacked(self) -> list[str]:
        with self._lock:
            return [e for e, envelope in self._envelopes.items() if not envelope.acked]

    def wait_for_ack(self, envelope_id: str, timeout: float = 10.0) -> Ack:
        """The first ack of ``envelope_id``, waiting up to ``timeout`` seconds for it."""
        self.wait_until(lambda: bool(self.acks(envelope_id)), timeout, f"an ack of {envelope_id}")
        return self.acks(envelope_id)[0]

    def wait_for_connections(self, count: int, timeout: float = 10.0) -> list[SocketConnection]:
        """Wait until ``count`` connections were ever opened and one is open; returns them all."""
        self.wait_until(
            lambda: len(self._connections) >= count and any(c.is_open for c in self._connections),
            timeout, f"{count} connection(s), one open",
        )
        return self.connections

    def wait_until(self, condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"timed out after {timeout}s waiting for {what or condition!r}; "
                        f"connections: {self._connections}; unacked: {self.unacked()}"
                    )
                self._changed.wait(remaining)

    # ------------------------------------------------------------------ the server side

    def _check_ticket(self, connection: ServerConnection, request: Any) -> Any:
        from http import HTTPStatus

        path, _, query = request.path.partition("?")
        ticket = dict(p.partition("=")[::2] for p in query.split("&")).get("ticket", "")
        with self._lock:
            known = ticket in self._tickets
            self._tickets.discard(ticket)  # a ticket opens one connection
        if path.rstrip("/") != "/link" or not known:
            return connection.respond(HTTPStatus.UNAUTHORIZED, "unknown or used ticket\n")
        return None

    def _session(self, ws: ServerConnection) -> None:
        with self._lock:
            connection = SocketConnection(len(self._connections) + 1, time.time(), _ws=ws)
            self._connections.append(connection)
            self._changed.notify_all()
        try:
            hello = {
                "type": "hello", "num_connections": sum(c.is_open for c in self.connections),
                "debug_info": {"host": "standin", "approximate_connection_time": 18060},
                "connection_info": {"app_id": "A0APP"},
            }
            ws.send(json.dumps(hello))
            with self._lock:
                self._send_pending()
            for message in ws:
                self._received(connection, message)
        except Exception as exc:  # a dropped connection ends here; the record below still happens
            logger.debug("socket mode connection %s ended: %s", connection.number, exc)
        finally:
            with self._lock:
                connection.closed_at = time.time()
                for envelope in self._envelopes.values():
                    if envelope.sent_on == connection.number and not envelope.acked:
                        envelope.sent_on = None  # re-sent, one attempt later, on the next live connection
                        envelope.frame["retry_attempt"] += 1
                        envelope.frame["retry_reason"] = "timeout"
                self._send_pending()
                self._changed.notify_all()

    def _received(self, connection: SocketConnection, message: str | bytes) -> None:
        try:
            data = json.loads(message)
            envelope_id = data["envelope_id"]
        except (ValueError, TypeError, KeyError):
            logger.warning("socket mode: ignored a message that is no ack: %r", message)
            return
        ack = Ack(envelope_id, data.get("payload"), time.time(), connection.number)
        if self.on_ack is not None and envelope_id not in self._lose:
            self.on_ack(ack)
        with self._lock:
            lost = envelope_id in self._lose
            if lost:
                self._lose.discard(envelope_id)
                self._lost_acks.append(ack)
                connection.dropped = True
            else:
                self._acks.append(ack)
                envelope = self._envelopes.get(envelope_id)
                if envelope is not None:
                    envelope.acked = True
                self._changed.notify_all()
        if lost:
            _cut(connection._ws)

    def _send_pending(self) -> None:
        """Send every envelope not yet out on the newest live connection (call with the lock held)."""
        live = [c for c in self._connections if c.is_open and not c.refreshing and not c.dropped]
        if not live:
            return
        target = live[-1]
        for envelope in self._envelopes.values():
            if envelope.acked or envelope.sent_on is not None:
                continue
            envelope.sent_on = target.number
            frame = json.dumps(envelope.frame)
            self._deliveries.append(Delivery(copy.deepcopy(envelope.frame), time.time(), target.number))
            if not _send_quietly(target._ws, frame):
                return  # the connection is going; its session's end re-sends what it held
        self._changed.notify_all()


def _send_quietly(ws: Any, frame: str) -> bool:
    try:
        ws.send(frame)
        return True
    except Exception as exc:  # closed under us: the session's end handles the envelope
        logger.debug("socket mode: send failed: %s", exc)
        return False


def _close_quietly(ws: Any) -> None:
    try:
        ws.close()
    except Exception as exc:
        logger.debug("socket mode: close failed: %s", exc)


def _cut(ws: Any) -> None:
    """End the TCP connection without a close frame: the peer sees the stream end."""
    try:
        ws.socket.shutdown(socket.SHUT_RDWR)
    except OSError as exc:
        logger.debug("socket mode: cut failed: %s", exc)


class SocketModeSender(SlackRequestSender):
    """``SlackRequestSender``'s payloads delivered as Socket Mode envelopes instead of signed HTTP posts.

    Slash commands go as ``slash_commands`` envelopes (the form fields as the payload), interactions as
    ``interactive`` ones, Events API envelopes as ``events_api`` ones. Each send waits for the ack and
    answers like HTTP would: status 200 and the ack's payload (``""`` when it carried none); 504 when no
    ack came within ``ack_timeout`` seconds. There is no signature in Socket Mode: ``signature`` is ignored.
    """

    def __init__(
        self, socket_mode: SocketModeStandIn, standin: SlackStandIn, ack_timeout: float = 10.0
    ) -> None:
        super().__init__("socket-mode://", signing_secret="", standin=standin)
        self.socket_mode = socket_mode
        self.ack_timeout = ack_timeout

    def _deliver_and_wait(self, kind: str, payload: dict) -> SenderResponse:
        envelope_id = self.socket_mode.deliver(kind, payload)
        try:
            ack = self.socket_mode.wait_for_ack(envelope_id, self.ack_timeout)
        except TimeoutError:
            return SenderResponse(504, "")
        return SenderResponse(200, ack.payload if ack.payload is not None else "")

    def send(self, body: bytes | str, content_type: str, **kwargs: Any) -> SenderResponse:
        raise NotImplementedError("Socket Mode carries envelopes, not raw request bodies")

    def send_form(self, fields: dict[str, Any], **kwargs: Any) -> SenderResponse:
        if "payload" in fields:  # an interaction, form-encoded for HTTP
            return self._deliver_and_wait("interactive", json.loads(fields["payload"]))
        return self._deliver_and_wait("slash_commands", dict(fields))

    def send_json(self, envelope: dict, **kwargs: Any) -> SenderResponse:
        return self._deliver_and_wait("events_api", envelope)
