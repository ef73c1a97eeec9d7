"""A threaded HTTP server for a bolt App: every Slack request arrives at ``/slack/events``.

Bolt's built-in development server handles one request at a time; this one gives each request its own
thread, so one slow click never delays another user's ack. Extra routes (the playground) plug in.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from slack_bolt import App, BoltRequest

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
# A route gets (method, path with query, headers, body) and returns (status, headers, body) or None.
Route = Callable[[str, str, dict[str, str], bytes], "tuple[int, dict[str, str], bytes] | None"]


class _ThreadingServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default listen backlog is 5: a burst of clicks from a team overflows it and the
    # kernel drops the SYNs, so those clicks wait for TCP's 1 s retransmit (or get reset).
    request_queue_size = 128


class SlackHTTPServer:
    """Serve ``app`` on ``host:port`` (port 0 picks a free one) in a background thread or the foreground."""

    def __init__(
        self, app: App, host: str = "127.0.0.1", port: int = 3000, routes: list[Route] | None = None
    ) -> None:
        self.app = app
        self.routes = list(routes or [])
        handler = _make_handler(self)
        self.httpd = _ThreadingServer((host, port), handler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        host = self.httpd.server_address[0]
        return f"http://{host}:{self.port}"

    def start(self) -> SlackHTTPServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="labelbot-http", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SlackHTTPServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def _make_handler(server: SlackHTTPServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: object) -> None:
            log.debug("%s - " + fmt, self.address_string(), *args)

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                if name.lower() not in ("content-length", "connection"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _handle(self) -> None:
            body = self._body() if self.command == "POST" else b""
            headers = {name.lower(): value for name, value in self.headers.items()}
            path = urlsplit(self.path).path
            if path == EVENTS_PATH and self.command == "POST":
                request = BoltRequest(
                    body=body.decode("utf-8"),
                    query=urlsplit(self.path).query,
                    headers={k: [v] for k, v in headers.items()},
                )
                response = server.app.dispatch(request)
                out_headers = {k: v[0] if isinstance(v, list) else v for k, v in response.headers.items()}
                self._send(response.status, out_headers, (response.body or "").encode("utf-8"))
                return
            for route in server.routes:
                result = route(self.command, self.path, headers, body)
                if result is not None:
                    self._send(*result)
                    return
            self._send(404, {"Content-Type": "text/plain; charset=utf-8"}, b"Not found\n")

        do_GET = do_POST = do_HEAD = _handle

    return Handler
