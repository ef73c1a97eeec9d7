"""The bot's HTTP server: waitress (threaded, WSGI) in front of a bolt App at ``/slack/events``.

Each request is handled on one of ``threads`` worker threads, so one slow click never delays another
user's ack. Waitress reads requests on its own I/O thread and hands a worker only a complete request:
a body over ``max_body_bytes`` (Content-Length, or chunked) is refused with 413, unread, and a connection
that sends nothing for ``read_timeout`` seconds (a stalled half request, an idle keep-alive) is closed.
A request to ``/slack/events`` reaches bolt only once its Slack signature is verified (401 otherwise)
and its body has the shape of a Slack request (400 otherwise), each refusal one log line: bolt parses
the body before it checks the signature, and a body it cannot parse costs a traceback and a 500.
Extra routes (the playground, ``/healthz`` for load balancers) plug in and are not signed. Why waitress,
figures, and running it behind a reverse proxy: docs/server.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from slack_bolt import App, BoltRequest
from slack_sdk.signature import SignatureVerifier
from waitress import wasyncore
from waitress.server import create_server

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
# A route gets (method, path with query, headers, body) and returns (status, headers, body) or None.
RouteResult = tuple[int, dict[str, str], bytes] | None
Route = Callable[[str, str, dict[str, str], bytes], RouteResult]

# Slack's payloads are a few KiB; a block_actions payload carrying a full card and a modal's state
# stays in the tens of KiB. 1 MiB leaves a wide margin and bounds what one request can make us hold.
MAX_BODY_BYTES = 1024 * 1024
# Whole seconds (waitress's unit) without a byte before a connection is closed; checked every second,
# so a stalled client is gone within 9 s. Keep a proxy's idle keep-alive below it (docs/server.md).
READ_TIMEOUT = 8
SIGNATURE_WINDOW = 5 * 60  # seconds between a request's X-Slack-Request-Timestamp and now (Slack's rule)
THREADS = 32
STOP_GRACE = 3.0  # seconds requests already read get to finish on stop(): Slack waits 3 s for an ack
# Headers a WSGI app must not set (waitress refuses them); the server writes its own Content-Length.
_HOP_BY_HOP = frozenset({"connection", "content-length", "keep-alive", "proxy-authenticate",
                         "proxy-authorization", "te", "trailers", "transfer-encoding", "upgrade"})
_TEXT = {"Content-Type": "text/plain; charset=utf-8"}


def health_route(database_answers: Callable[[], bool], role: Callable[[], str]) -> Route:
    """``GET /healthz`` (no Slack signature: load balancers ask it): ``{"database": "ok", "role":
    "leader"}`` with 200 when the database answers, ``"database": "unreachable"`` with 503 when not.
    ``role``: ``leader`` (this replica runs the scheduled jobs and retrains) or ``follower``."""

    def route(method: str, path: str, headers: dict[str, str], body: bytes) -> RouteResult:
        if path.partition("?")[0] != HEALTH_PATH:
            return None
        if method not in ("GET", "HEAD"):
            return 405, {**_TEXT, "Allow": "GET, HEAD"}, b"Method not allowed\n"
        try:
            reachable = database_answers()
        except Exception as error:  # a health check answers; one line in the log, no traceback
            log.warning("Health check: database does not answer: %s", error)
            reachable = False
        report = {"database": "ok" if reachable else "unreachable", "role": role()}
        out_headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
        return (200 if reachable else 503), out_headers, json.dumps(report).encode() + b"\n"

    return route


class SlackHTTPServer:
    """Serve ``app`` on ``host:port`` (port 0 picks a free one) in a background thread or the foreground.

    The socket is bound and listening once this returns; ``max_body_bytes``, ``read_timeout`` (seconds
    without a byte from a client before its connection is closed) and ``threads`` tune waitress.
    ``signing_secret`` (default: the App's) verifies requests to ``/slack/events`` before bolt sees them.
    """

    def __init__(
        self,
        app: App,
        host: str = "127.0.0.1",
        port: int = 3000,
        routes: list[Route] | None = None,
        *,
        max_body_bytes: int = MAX_BODY_BYTES,
        read_timeout: int = READ_TIMEOUT,
        threads: int = THREADS,
        signing_secret: str | None = None,
    ) -> None:
        if read_timeout < 1 or int(read_timeout) != read_timeout:
            raise ValueError("read_timeout is a whole number of seconds, at least 1")
        # The App's own secret unless told otherwise: bolt checks it again, we check it first.
        secret = signing_secret if signing_secret is not None else getattr(app, "_signing_secret", None)
        if not secret:
            raise ValueError("the HTTP endpoint needs the app's Slack signing secret")
        self._verifier = SignatureVerifier(secret)
        self.app = app
        self.routes = list(routes or [])
        # Bound here rather than by waitress, which would listen on every address of a name like
        # "localhost" (each with its own port when port=0).
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
        except OSError:
            sock.close()
            raise
        self._map: dict[int, Any] = {}
        self._server = create_server(
            # waitress refuses a body of max_request_body_size bytes or more; ours allows max_body_bytes.
            self._wsgi, map=self._map, sockets=[sock], threads=threads, ident="labelbot",
            max_request_body_size=max_body_bytes + 1, channel_timeout=int(read_timeout),
            # Inactive connections are looked for every second (waitress's default: every 30 s).
            cleanup_interval=1, asyncore_loop_timeout=1, asyncore_use_poll=True,
            log_socket_errors=False,  # a client that hangs up (a closed tab) is not a server error
        )
        self._lock = threading.Lock()
        self._stopping = False
        self._closed = False
        self._serving = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.effective_port)

    @property
    def server_address(self) -> tuple[str, int]:
        return str(self._server.effective_host), self.port

    @property
    def url(self) -> str:
        host = self.server_address[0]
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def handle_error(self, request: object, client_address: object) -> None:
        """Called inside ``except`` when bolt or a route raises (the client gets a 500); replaceable."""
        log.exception("error while serving %s", client_address)

    def start(self) -> SlackHTTPServer:
        self._thread = threading.Thread(target=self.serve_forever, name="labelbot-http", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        with self._lock:
            if self._stopping or self._serving.is_set():
                return
            self._serving.set()
        try:
            while not self._stopping and self._map:
                wasyncore.loop(timeout=1, map=self._map, use_poll=True, count=1)
            self._drain()
        finally:
            self._close()
            self._done.set()

    def _drain(self) -> None:
        """Stop accepting, then keep the loop running (it sends the answers) while requests already
        read are in flight, for up to STOP_GRACE seconds."""
        wasyncore.dispatcher.close(self._server)  # the listening socket only (the server's close() also
        # closes the trigger that worker threads pull when their answer is ready)
        deadline = time.monotonic() + STOP_GRACE
        while time.monotonic() < deadline and any(
            getattr(channel, "requests", None) or getattr(channel, "total_outbufs_len", 0)
            for channel in list(self._map.values())
        ):
            wasyncore.loop(timeout=0.1, map=self._map, use_poll=True, count=1)

    def stop(self) -> None:
        """Stop accepting, let requests in flight finish (up to STOP_GRACE s), close every connection
        and free the port."""
        with self._lock:
            self._stopping = True
            serving = self._serving.is_set()
        if serving:
            with contextlib.suppress(OSError):  # OSError: the loop has closed it already
                self._server.pull_trigger()  # wakes the loop, which closes everything on its own thread
            self._done.wait(timeout=STOP_GRACE + 5)
        else:
            self._close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        wasyncore.close_all(self._map, ignore_all=True)
        self._server.task_dispatcher.shutdown(cancel_pending=True, timeout=2)

    def __enter__(self) -> SlackHTTPServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ requests (worker threads)

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        headers = {key[5:].replace("_", "-").lower(): value
                   for key, value in environ.items() if key.startswith("HTTP_")}
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(key):
                headers[key.replace("_", "-").lower()] = environ[key]
        body = environ["wsgi.input"].read()  # already in memory (or a spool file): waitress read it all
        try:
            status, out_headers, out_body = self._respond(environ, method, headers, body)
        except Exception:
            self.handle_error(None, (environ.get("REMOTE_ADDR"), environ.get("REMOTE_PORT")))
            status, out_headers, out_body = 500, list(_TEXT.items()), b"Internal server error\n"
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Status"
        out_headers = [(k, v) for k, v in out_headers if k.lower() not in _HOP_BY_HOP]
        start_response(f"{status} {reason}", [*out_headers, ("Content-Length", str(len(out_body)))])
        return [out_body]  # with Content-Length, waitress sends it as soon as it has it

    def _respond(
        self, environ: dict[str, Any], method: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        if environ.get("PATH_INFO") == EVENTS_PATH and method == "POST":
            client = environ.get("REMOTE_ADDR")
            text, refusal = self._verified_text(headers, body)
            if refusal is not None:
                log.warning("Slack request refused (401) from %s: %s", client, refusal)
                return 401, list(_TEXT.items()), b"Invalid Slack signature\n"
            malformed = _malformed(text, headers.get("content-type", ""))
            if malformed is not None:
                log.warning("Slack request refused (400) from %s: %s", client, malformed)
                return 400, list(_TEXT.items()), b"Malformed Slack request\n"
            request = BoltRequest(body=text, query=environ.get("QUERY_STRING", ""),
                                  headers={k: [v] for k, v in headers.items()})
            response = self.app.dispatch(request)
            out = [(k, value) for k, values in response.headers.items()
                   for value in (values if isinstance(values, list | tuple) else [values])]
            return response.status, out, (response.body or "").encode("utf-8")
        path = environ.get("REQUEST_URI") or environ.get("PATH_INFO") or "/"
        for route in self.routes:
            result = route(method, path, headers, body)
            if result is not None:
                status, route_headers, route_body = result
                return status, list(route_headers.items()), route_body
        return 404, list(_TEXT.items()), b"Not found\n"

    def _verified_text(self, headers: dict[str, str], body: bytes) -> tuple[str, str | None]:
        """The body as text and None when Slack signed it (v0 HMAC of ``v0:{timestamp}:{body}`` within
        five minutes), else why not. Nothing of the body is parsed before this says yes."""
        timestamp = headers.get("x-slack-request-timestamp")
        signature = headers.get("x-slack-signature")
        if not timestamp or not signature:
            return "", "no X-Slack-Signature or X-Slack-Request-Timestamp"
        try:
            sent = int(timestamp)
        except ValueError:
            return "", "X-Slack-Request-Timestamp is not a number"
        if abs(time.time() - sent) > SIGNATURE_WINDOW:
            return "", "X-Slack-Request-Timestamp is more than 5 minutes from now"
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return "", "the body is not UTF-8, so Slack did not sign it"
        if not self._verifier.is_valid(body=text, timestamp=timestamp, signature=signature):
            return "", "the signature does not match"
        return text, None


def _malformed(text: str, content_type: str) -> str | None:
    """Why a signed body is not one of Slack's requests, or None. Slack sends a JSON object with a
    ``type`` (Events API), or a form with a ``payload`` that is such an object (interactions), a
    ``command`` (slash commands) or ``ssl_check``. Bolt reads a body that starts with ``{`` as JSON
    whatever its Content-Type, so this does too."""
    if not text:
        return "empty body"
    if content_type.partition(";")[0].strip().lower() == "application/json" or text.startswith("{"):
        return _not_an_object_with_type(text, "the JSON body")
    try:
        form = dict(parse_qsl(text, keep_blank_values=True, strict_parsing=True))
    except ValueError:
        return "the body is neither JSON nor a url-encoded form"
    if "payload" in form:
        return _not_an_object_with_type(form["payload"], "payload")
    if form.get("command", "").startswith("/") or "ssl_check" in form:
        return None
    return "a form without payload, command or ssl_check"


def _not_an_object_with_type(text: str, what: str) -> str | None:
    try:
        value = json.loads(text)
    except ValueError:  # JSONDecodeError, and a number too long to convert
        return f"{what} is not JSON"
    except RecursionError:
        return f"{what} is nested too deeply"
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        return f"{what} is not a JSON object with a type"
    actions = value.get("actions")
    if (actions is not None or value["type"] in _ACTION_TYPES) and not (
        isinstance(actions, list) and actions and all(isinstance(a, dict) for a in actions)
    ):  # bolt reads actions[0] unchecked: an IndexError with a traceback
        return f"{what} has no actions"
    return None


_ACTION_TYPES = frozenset({"block_actions", "interactive_message"})
