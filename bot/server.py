"""The bot's HTTP server: waitress (threaded, WSGI) in front of a bolt App at ``/slack/events``.

Each request is handled on one of ``threads`` worker threads, so one slow click never delays another
user's ack. Waitress reads requests on its own I/O thread and hands a worker only a complete request:
a body over ``max_body_bytes`` (Content-Length, or chunked) is refused with 413, unread, and a connection
that sends nothing for ``read_timeout`` seconds (a stalled half request, an idle keep-alive) is closed.
Extra routes (the playground, ``/healthz`` for load balancers) plug in. Why waitress, figures, and
running it behind a reverse proxy: docs/server.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from slack_bolt import App, BoltRequest
from waitress import wasyncore
from waitress.server import create_server

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
# A route gets (method, path with query, headers, body) and returns (status, headers, body) or None.
RouteResult = tuple[int, dict[str, str], bytes] | None
Route = Callable[[str, str, dict[str, str], bytes], RouteResult]

MAX_BODY_BYTES = 1024 * 1024  # Slack's payloads are a few KiB; a modal's state stays far below this
READ_TIMEOUT = 10  # whole seconds (waitress's unit)
THREADS = 32
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
    ) -> None:
        if read_timeout < 1 or int(read_timeout) != read_timeout:
            raise ValueError("read_timeout is a whole number of seconds, at least 1")
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
        finally:
            self._close()
            self._done.set()

    def stop(self) -> None:
        """Stop accepting, close every connection and free the port; in-flight work gets up to 2 s."""
        with self._lock:
            self._stopping = True
            serving = self._serving.is_set()
        if serving:
            with contextlib.suppress(OSError):  # OSError: the loop has closed it already
                self._server.pull_trigger()  # wakes the loop, which closes everything on its own thread
            self._done.wait(timeout=5)
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
            request = BoltRequest(body=body.decode("utf-8", "replace"), query=environ.get("QUERY_STRING", ""),
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
