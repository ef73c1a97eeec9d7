"""The /slack/events endpoint against hostile or broken clients (issue 12, point 4), over real loopback HTTP:
unsigned and forged requests (401), malformed signed ones (400), huge bodies (413), stalled clients."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from urllib.parse import quote, urlencode

import pytest
from slack_bolt import App
from slack_sdk.signature import SignatureVerifier

from bot.server import EVENTS_PATH, SlackHTTPServer
from tests.test_server import (
    SECRET,
    closed_by_server,
    make_app,
    ping_body,
    raw_connection,
    read_until_closed,
    request,
    signed,
)

FORM = "application/x-www-form-urlencoded"


class CountingApp:
    """Counts the requests that reach bolt's dispatch (the App itself answers them)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.dispatched = 0
        original = app.dispatch

        def dispatch(request):  # type: ignore[no-untyped-def]
            self.dispatched += 1
            return original(request)

        app.dispatch = dispatch  # type: ignore[method-assign]


@pytest.fixture
def counted() -> CountingApp:
    return CountingApp(make_app())


@pytest.fixture
def server(counted: CountingApp) -> Iterator[SlackHTTPServer]:
    with SlackHTTPServer(counted.app, "127.0.0.1", 0, max_body_bytes=4096, read_timeout=1, threads=4) as srv:
        yield srv


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def signed_at(body: str, timestamp: str, content_type: str = FORM, secret: str = SECRET) -> dict[str, str]:
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    return {"Content-Type": content_type, "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": str(signature)}


def assert_no_traceback(logs: pytest.LogCaptureFixture) -> None:
    assert "Traceback" not in logs.text
    assert all(record.exc_info is None for record in logs.records)


def refusals(logs: pytest.LogCaptureFixture, status: int) -> list[logging.LogRecord]:
    return [r for r in logs.records if r.name == "bot.server" and f"refused ({status})" in r.getMessage()]


# ------------------------------------------------------------------------------------------ signatures

BODY = ping_body("secret stuff")
def now(offset: int = 0) -> str:
    """A timestamp taken when the request is made: one taken at collection may be minutes old by then."""
    return str(int(time.time()) + offset)


@pytest.mark.parametrize(("make_headers", "why"), [
    (lambda: {"Content-Type": FORM}, "no X-Slack-Signature"),
    (lambda: {"Content-Type": FORM, "X-Slack-Request-Timestamp": now()}, "no X-Slack-Signature"),
    (lambda: signed_at(BODY, now(), secret="forged-secret"), "does not match"),
    (lambda: signed_at(BODY + "&text=more", now()), "does not match"),  # signed a different body
    (lambda: signed_at(BODY, now(-6 * 60)), "more than 5 minutes"),
    (lambda: signed_at(BODY, now(6 * 60)), "more than 5 minutes"),
    (lambda: signed_at(BODY, "yesterday"), "not a number"),
    (lambda: signed_at(BODY, "1" * 5000), "not a number"),  # too many digits for int(): ValueError, not 500
], ids=["unsigned", "no-signature", "forged", "other-body", "expired", "future", "word-timestamp",
        "5000-digit-timestamp"])
def test_unsigned_forged_or_expired_requests_get_401_and_one_line_before_bolt_sees_them(
    server: SlackHTTPServer, counted: CountingApp, logs: pytest.LogCaptureFixture,
    make_headers: Callable[[], dict[str, str]], why: str,
) -> None:
    status, _, text = request(server, "POST", EVENTS_PATH, BODY, make_headers())
    assert (status, b"pong" in text) == (401, False)
    assert counted.dispatched == 0
    lines = refusals(logs, 401)
    assert len(lines) == 1 and why in lines[0].getMessage() and "\n" not in lines[0].getMessage()
    assert_no_traceback(logs)


@pytest.mark.parametrize("body", [
    "payload=%7Bnot+json",  # an unsigned malformed payload: bolt would parse it (a traceback, no answer)
    "payload=" + "%5B" * 1300,  # nested beyond the JSON parser's recursion limit
    "\u00e9t\u00e9=1",
])
def test_an_unsigned_malformed_body_is_not_parsed(
    server: SlackHTTPServer, counted: CountingApp, logs: pytest.LogCaptureFixture, body: str
) -> None:
    assert request(server, "POST", EVENTS_PATH, body.encode(), {"Content-Type": FORM})[0] == 401
    not_utf8 = b"\xff\xfe" + body.encode()
    assert request(server, "POST", EVENTS_PATH, not_utf8, signed(body))[0] == 401
    assert counted.dispatched == 0
    assert len(refusals(logs, 401)) == 2
    assert_no_traceback(logs)


def test_a_signed_request_still_reaches_bolt_and_unsigned_routes_still_answer(
    counted: CountingApp, logs: pytest.LogCaptureFixture
) -> None:
    def health(method: str, path: str, headers: dict[str, str], body: bytes):  # type: ignore[no-untyped-def]
        return (200, {}, b"ok") if path == "/healthz" else None

    with SlackHTTPServer(counted.app, "127.0.0.1", 0, routes=[health]) as srv:
        status, _, text = request(srv, "POST", EVENTS_PATH, BODY, signed(BODY))
        assert (status, b"pong secret stuff" in text) == (200, True)
        assert request(srv, "GET", "/healthz")[:3:2] == (200, b"ok")  # no signature asked for
    assert counted.dispatched == 1
    assert refusals(logs, 401) == []


def test_the_secret_defaults_to_the_apps(logs: pytest.LogCaptureFixture) -> None:
    with SlackHTTPServer(make_app(), "127.0.0.1", 0, signing_secret="another-secret") as srv:
        assert request(srv, "POST", EVENTS_PATH, BODY, signed(BODY))[0] == 401  # refused here, by ours
        assert len(refusals(logs, 401)) == 1
    with SlackHTTPServer(make_app(), "127.0.0.1", 0) as srv:
        assert request(srv, "POST", EVENTS_PATH, BODY, signed(BODY))[0] == 200
        assert request(srv, "POST", EVENTS_PATH, BODY, signed(BODY, secret="another-secret"))[0] == 401
        assert len(refusals(logs, 401)) == 2


def test_a_server_without_a_signing_secret_refuses_to_start() -> None:
    with pytest.raises(ValueError, match="signing secret"):
        SlackHTTPServer(make_app(), "127.0.0.1", 0, signing_secret="")


# ---------------------------------------------------------------------------- malformed but signed


@pytest.mark.parametrize(("body", "content_type"), [
    ("payload=%7Bnot+json", FORM),  # payload= that is not JSON
    ("payload=%5B1%2C2%5D", FORM),  # a JSON array, not an object
    ("payload=" + quote(json.dumps({"type": "block_actions", "actions": []})), FORM),  # bolt: IndexError
    ("payload=" + quote(json.dumps({"type": "block_actions", "actions": "x"})), FORM),
    ("payload=%7B%22no%22%3A%22type%22%7D", FORM),  # an object without a type
    ("payload=" + "%5B" * 1300, FORM),  # nested too deeply for the JSON parser
    ("this is not a url-encoded form", FORM),
    ("a=1&&b=2", FORM),  # empty field
    ('["block_actions", {"type": "block_actions"}]', FORM),  # JSON where a form is expected
    ("foo=bar", FORM),  # a form, but not one Slack sends
    ('{"type": "event_callback", ', FORM),  # starts like JSON (bolt reads it as JSON), is not
    ('{"type": ', "application/json"),
    ("command=%2Fping", "application/json"),  # a form where JSON is expected
    ("[1, 2]", "application/json; charset=utf-8"),
    ("", FORM),
], ids=["payload-not-json", "payload-array", "no-actions", "actions-not-a-list",
        "payload-no-type", "payload-deep", "not-a-form", "empty-field",
        "json-as-form", "foreign-form", "broken-json-as-form", "broken-json", "form-as-json", "json-array",
        "empty"])
def test_malformed_signed_requests_get_400_and_one_line_never_a_traceback(
    server: SlackHTTPServer, counted: CountingApp, logs: pytest.LogCaptureFixture, body: str,
    content_type: str,
) -> None:
    headers = signed_at(body, str(int(time.time())), content_type)
    status, _, text = request(server, "POST", EVENTS_PATH, body.encode(), headers)
    assert (status, text) == (400, b"Malformed Slack request\n")
    assert counted.dispatched == 0
    lines = refusals(logs, 400)
    assert len(lines) == 1 and "\n" not in lines[0].getMessage()
    assert_no_traceback(logs)
    # The connection was answered, not dropped, and the server carries on.
    assert request(server, "POST", EVENTS_PATH, BODY, signed(BODY))[0] == 200


@pytest.mark.parametrize(("body", "content_type"), [
    (ping_body("form"), FORM),
    ("ssl_check=1&token=x", FORM),
    ("payload=" + json.dumps({"type": "block_actions", "actions": [{"action_id": "x", "type": "button"}]}),
     FORM),
    (json.dumps({"type": "url_verification", "challenge": "c", "token": "t"}), "application/json"),
    (json.dumps({"type": "url_verification", "challenge": "c", "token": "t"}), FORM),  # bolt reads it as JSON
])
def test_well_formed_signed_requests_of_every_kind_reach_bolt(
    server: SlackHTTPServer, counted: CountingApp, logs: pytest.LogCaptureFixture, body: str,
    content_type: str,
) -> None:
    sent = body if "payload=" not in body else urlencode({"payload": body[len("payload="):]})
    headers = signed_at(sent, str(int(time.time())), content_type)
    status, _, _ = request(server, "POST", EVENTS_PATH, sent, headers)
    assert status not in (400, 401, 500)
    assert counted.dispatched == 1
    assert refusals(logs, 400) == [] and refusals(logs, 401) == []


# ---------------------------------------------------------------------------------------- body size


@pytest.mark.parametrize("length", [4097, 20 * 1024 * 1024, 10**12, 10**40])
def test_a_body_over_the_limit_gets_413_unread_and_nothing_is_allocated_for_it(
    server: SlackHTTPServer, counted: CountingApp, logs: pytest.LogCaptureFixture, length: int
) -> None:
    # Headers only: the 413 must come back although the body never does.
    sock = raw_connection(server, (f"POST {EVENTS_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                   f"Content-Type: {FORM}\r\nContent-Length: {length}\r\n\r\n").encode())
    with sock:
        response = read_until_closed(sock)
    assert response.startswith(b"HTTP/1.1 413 "), response[:80]
    assert counted.dispatched == 0
    assert "MemoryError" not in logs.text
    assert_no_traceback(logs)
    assert request(server, "POST", EVENTS_PATH, BODY, signed(BODY))[0] == 200


def test_the_default_limit_is_one_mib() -> None:
    with SlackHTTPServer(make_app(), "127.0.0.1", 0) as srv:
        over = raw_connection(srv, (f"POST {EVENTS_PATH} HTTP/1.1\r\nHost: x\r\n"
                                    f"Content-Length: {1024 * 1024 + 1}\r\n\r\n").encode())
        with over:
            assert read_until_closed(over).startswith(b"HTTP/1.1 413 ")
        at_limit = "payload=" + "x" * (1024 * 1024 - len("payload="))
        status = request(srv, "POST", EVENTS_PATH, at_limit, signed(at_limit))[0]
        assert status == 400  # read and refused for its shape, not its size


# ---------------------------------------------------------------------------------- stalled clients


@pytest.mark.parametrize("partial", [
    b"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le",  # stalls inside the headers
    b"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\ntext=half",  # the body
], ids=["in-headers", "in-body"])
def test_forty_stalled_clients_do_not_stop_others_and_are_closed(
    server: SlackHTTPServer, counted: CountingApp, partial: bytes
) -> None:
    stalled = [raw_connection(server, partial) for _ in range(40)]  # ten times the server's 4 threads
    try:
        for _ in range(3):
            status, _, text = request(server, "POST", EVENTS_PATH, BODY, signed(BODY))
            assert (status, b"pong secret stuff" in text) == (200, True)
        assert counted.dispatched == 3
        deadline = time.monotonic() + 30  # read_timeout is 1 s: a generous bound, not a threshold
        for sock in stalled:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            assert closed_by_server(sock)  # no answer to a half request: the connection just ends
    finally:
        for sock in stalled:
            sock.close()
    assert counted.dispatched == 3


def test_the_default_read_timeout_closes_a_stalled_client_within_ten_seconds() -> None:
    with SlackHTTPServer(make_app(), "127.0.0.1", 0) as srv:
        assert srv._server.adj.channel_timeout < 10  # checked every second (cleanup_interval) on top
        assert srv._server.adj.cleanup_interval <= 1
        sock = raw_connection(srv, b"POST /slack/events HTTP/1.1\r\nHost: x\r\n")
        with sock:
            sock.settimeout(30)
            assert closed_by_server(sock)


def test_a_stalled_connection_closed_by_its_client_costs_nothing(server: SlackHTTPServer) -> None:
    for _ in range(40):
        raw_connection(server, b"POST /slack/events HTTP/1.1\r\nHost: x\r\n").close()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_until_closed(sock).startswith(b"HTTP/1.1 404 ")
