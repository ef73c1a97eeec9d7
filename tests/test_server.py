"""bot.server.SlackHTTPServer (waitress) with a real bolt App on loopback: acks, limits, timeouts, routes."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import pytest
from slack_bolt import App
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import event

from bot.server import EVENTS_PATH, HEALTH_PATH, SlackHTTPServer, health_route
from core.embeddings import HashingEmbedder
from core.leadership import Leadership
from core.service import LabelingService
from tests.conftest import make_settings

SECRET = "test-server-secret"
LIMIT = 4096


def make_app() -> App:
    # A fixed authorization: bolt asks no Web API (auth.test) before running the listener.
    def authorize(**_: object) -> AuthorizeResult:
        return AuthorizeResult(enterprise_id=None, team_id="T1", bot_token="xoxb-test", bot_user_id="UBOT")

    app = App(signing_secret=SECRET, authorize=authorize)

    @app.command("/ping")
    def ping(ack, command):  # type: ignore[no-untyped-def]
        ack(f"pong {command['text']}")

    return app


def signed(body: str, secret: str = SECRET) -> dict[str, str]:
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    return {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": str(signature)}


def ping_body(text: str) -> str:
    return urlencode({"command": "/ping", "text": text, "user_id": "U1", "channel_id": "C1", "team_id": "T1",
                      "response_url": "http://127.0.0.1:9/unused", "trigger_id": "1.2.3"})


class Routes:
    """A playground-like route: /echo, /slow (waits for /release), /boom; None for other paths."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []

    def __call__(self, method: str, path: str, headers: dict[str, str], body: bytes):  # type: ignore[no-untyped-def]
        self.seen.append((method, path, headers, body))
        if path.startswith("/echo"):
            return 200, {"Content-Type": "text/plain", "X-Echo-Length": str(len(body))}, b"echo " + body
        if path == "/slow":
            released = self.release.wait(timeout=20)
            return 200, {}, b"slow done" if released else b"slow timed out"
        if path == "/release":
            self.release.set()
            return 200, {}, b"released"
        if path == "/boom":
            raise RuntimeError("route bug")
        return None


@pytest.fixture
def routes() -> Routes:
    return Routes()


@pytest.fixture
def server(routes: Routes) -> Iterator[SlackHTTPServer]:
    with SlackHTTPServer(make_app(), "127.0.0.1", 0, routes=[routes], max_body_bytes=LIMIT,
                         read_timeout=1) as srv:
        yield srv


def request(srv: SlackHTTPServer, method: str, path: str, body: bytes | str | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def raw_connection(srv: SlackHTTPServer, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    sock.sendall(data)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def closed_by_server(sock: socket.socket) -> bool:
    """True when the peer closed (EOF or reset); False when data came; raises on a timeout."""
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True


def test_port_zero_picks_a_free_port_and_url_reports_it(server: SlackHTTPServer) -> None:
    assert server.port != 0
    assert server.url == f"http://127.0.0.1:{server.port}"
    assert server.server_address == ("127.0.0.1", server.port)


def test_signed_request_gets_bolts_ack_and_a_bad_signature_does_not(server: SlackHTTPServer) -> None:
    body = ping_body("hello")
    status, _, text = request(server, "POST", EVENTS_PATH, body, signed(body))
    assert status == 200
    assert b"pong hello" in text

    status, _, text = request(server, "POST", EVENTS_PATH, body, signed(body, secret="another-secret"))
    assert status == 401
    assert b"pong" not in text


def test_oversized_content_length_is_refused_with_413_before_the_body_is_sent(
    server: SlackHTTPServer, routes: Routes
) -> None:
    # Headers only: the 413 must come back although the body never does.
    sock = raw_connection(server, (f"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
                                   f"Content-Length: {LIMIT + 1}\r\n\r\n").encode())
    with sock:
        response = read_until_closed(sock)  # the server closes after its 413
    assert response.startswith(b"HTTP/1.1 413 "), response[:80]
    assert routes.seen == []  # the route never ran

    status, headers, _ = request(server, "POST", "/echo", b"x" * LIMIT, {"Content-Type": "text/plain"})
    assert (status, headers["x-echo-length"]) == (200, str(LIMIT))  # exactly at the limit is fine


@pytest.mark.parametrize("partial", [
    b"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le",  # stalls inside the headers
    b"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\ntext=half",  # the body
])
def test_a_client_that_stalls_half_way_is_disconnected(server: SlackHTTPServer, partial: bytes) -> None:
    sock = raw_connection(server, partial)
    with sock:
        sock.settimeout(15)  # read_timeout is 1 s: a generous bound on the wait, not a threshold
        assert closed_by_server(sock)  # no response to a half request, just the end of the connection


def test_two_requests_on_one_keep_alive_connection(server: SlackHTTPServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    bodies = []
    sockets = []
    try:
        for text in ("one", "two"):
            body = ping_body(text)
            conn.request("POST", EVENTS_PATH, body=body, headers=signed(body))
            resp = conn.getresponse()
            bodies.append((resp.status, resp.read()))
            assert resp.getheader("Connection", "").lower() != "close"
            sockets.append(conn.sock)
    finally:
        conn.close()
    assert [status for status, _ in bodies] == [200, 200]
    assert b"pong one" in bodies[0][1] and b"pong two" in bodies[1][1]
    assert sockets[0] is not None and sockets[0] is sockets[1]  # http.client did not reconnect


def test_extra_routes_get_path_query_lowercased_headers_and_body(
    server: SlackHTTPServer, routes: Routes
) -> None:
    status, headers, body = request(server, "POST", "/echo?a=1&b=%20", b"payload",
                                    {"X-Custom-Thing": "yes", "Content-Type": "text/plain"})
    assert (status, body, headers["x-echo-length"]) == (200, b"echo payload", "7")
    method, path, seen_headers, seen_body = routes.seen[-1]
    assert (method, path, seen_body) == ("POST", "/echo?a=1&b=%20", b"payload")
    assert seen_headers["x-custom-thing"] == "yes"
    assert seen_headers["content-type"] == "text/plain"
    assert seen_headers["host"] == f"127.0.0.1:{server.port}"

    status, headers, body = request(server, "HEAD", "/echo")
    assert (status, body, headers["content-length"]) == (200, b"", str(len(b"echo ")))


def test_unknown_paths_and_get_on_the_events_path_are_404(server: SlackHTTPServer) -> None:
    assert request(server, "GET", "/nowhere")[0] == 404
    assert request(server, "POST", "/nowhere", b"{}")[0] == 404
    assert request(server, "GET", EVENTS_PATH)[0] == 404


def test_a_route_that_raises_answers_500_and_reaches_handle_error(server: SlackHTTPServer) -> None:
    errors: list[BaseException | None] = []

    def handle_error(request: object, client_address: object) -> None:  # the playground's hook
        import sys

        errors.append(sys.exc_info()[1])

    server.handle_error = handle_error  # type: ignore[method-assign]
    assert request(server, "GET", "/boom")[0] == 500
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
    assert request(server, "GET", "/echo")[0] == 200  # and the server carries on


def test_a_slow_request_does_not_delay_another(server: SlackHTTPServer, routes: Routes) -> None:
    slow: list[tuple[int, dict[str, str], bytes]] = []
    thread = threading.Thread(target=lambda: slow.append(request(server, "GET", "/slow")))
    thread.start()
    deadline = time.monotonic() + 10
    while not any(path == "/slow" for _, path, _, _ in routes.seen) and time.monotonic() < deadline:
        time.sleep(0.01)
    body = ping_body("meanwhile")
    status, _, text = request(server, "POST", EVENTS_PATH, body, signed(body))
    assert status == 200 and b"pong meanwhile" in text
    assert slow == []  # the slow one is still waiting for /release
    assert request(server, "GET", "/release")[2] == b"released"
    thread.join(timeout=10)
    assert slow and slow[0][2] == b"slow done"


def test_stop_returns_promptly_frees_the_port_and_threads_are_daemons() -> None:
    srv = SlackHTTPServer(make_app(), "127.0.0.1", 0).start()
    port = srv.port
    ours = [t for t in threading.enumerate() if t.name == "labelbot-http" or t.name.startswith("waitress-")]
    assert ours and all(t.daemon for t in ours)
    idle = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # left open after one request
    idle.request("GET", "/nowhere")
    assert idle.getresponse().read() == b"Not found\n"
    assert idle.sock is not None
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < 10  # generous: an idle keep-alive connection must not hold stop()
    assert closed_by_server(idle.sock)
    idle.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    again = SlackHTTPServer(make_app(), "127.0.0.1", port)  # the port is free again
    again.stop()  # never started: closes without serving


def test_read_timeout_must_be_whole_seconds() -> None:
    with pytest.raises(ValueError):
        SlackHTTPServer(make_app(), "127.0.0.1", 0, read_timeout=0.5)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- /healthz (replicas)


@pytest.fixture
def two_replicas(tmp_path: Path) -> Iterator[list[tuple[LabelingService, Leadership, SlackHTTPServer]]]:
    """Two services on one database, each with its lease and a server answering /healthz."""
    settings = make_settings(tmp_path)
    now = datetime.now(UTC)  # the leases' clock stands still: the leader stays leader however slow the test
    replicas = []
    for _ in range(2):
        service = LabelingService(settings, embedder=HashingEmbedder(64))
        lease = service.leadership(clock=lambda: now)
        lease.try_acquire()
        route = health_route(service.database_answers, lambda lease=lease: lease.role)
        server = SlackHTTPServer(make_app(), "127.0.0.1", 0, routes=[route])
        replicas.append((service, lease, server.start()))
    yield replicas
    for service, _, server in replicas:
        server.stop()
        service.close()


def test_healthz_says_which_replica_leads_without_a_slack_signature(
    two_replicas: list[tuple[LabelingService, Leadership, SlackHTTPServer]],
) -> None:
    (_, first_lease, first), (_, _, second) = two_replicas
    answers = [request(srv, "GET", HEALTH_PATH) for srv in (first, second)]
    assert [(status, json.loads(body)) for status, _, body in answers] == [
        (200, {"database": "ok", "role": "leader"}), (200, {"database": "ok", "role": "follower"})
    ]
    assert all(headers["content-type"] == "application/json" for _, headers, _ in answers)
    first_lease.release()
    two_replicas[1][1].try_acquire()
    assert json.loads(request(second, "GET", HEALTH_PATH + "?probe=1")[2])["role"] == "leader"
    assert json.loads(request(first, "GET", HEALTH_PATH)[2])["role"] == "follower"
    assert request(first, "POST", HEALTH_PATH, b"{}")[0] == 405
    status, _, body = request(first, "HEAD", HEALTH_PATH)
    assert status == 200 and body == b""


def test_healthz_answers_503_when_the_database_is_gone(
    two_replicas: list[tuple[LabelingService, Leadership, SlackHTTPServer]], caplog: pytest.LogCaptureFixture
) -> None:
    (service, _, server), (_, _, other) = two_replicas

    def refuse(*_: object) -> None:
        raise service.engine.dialect.loaded_dbapi.OperationalError("the database is gone (test)")

    service.engine.dispose()  # pooled connections go; new ones are refused
    event.listen(service.engine, "do_connect", refuse)
    status, _, body = request(server, "GET", HEALTH_PATH)
    assert (status, json.loads(body)) == (503, {"database": "unreachable", "role": "leader"})
    assert request(other, "GET", HEALTH_PATH)[0] == 200  # the other replica's database still answers
    warnings = [r for r in caplog.records if "does not answer" in r.getMessage()]
    assert warnings and all(r.exc_info is None and "\n" not in r.getMessage() for r in warnings)


def test_healthz_answers_503_when_the_sqlite_file_is_replaced_by_a_directory(tmp_path: Path) -> None:
    service = LabelingService(make_settings(tmp_path, database_url=f"sqlite:///{tmp_path / 'gone.db'}"),
                              embedder=HashingEmbedder(64))
    server = SlackHTTPServer(make_app(), "127.0.0.1", 0,
                             routes=[health_route(service.database_answers, lambda: "follower")]).start()
    try:
        assert request(server, "GET", HEALTH_PATH)[0] == 200
        service.engine.dispose()
        for path in tmp_path.glob("gone.db*"):
            path.unlink()
        (tmp_path / "gone.db").mkdir()  # nothing can open it again
        status, _, body = request(server, "GET", HEALTH_PATH)
        assert (status, json.loads(body)) == (503, {"database": "unreachable", "role": "follower"})
    finally:
        server.stop()
        service.close()
