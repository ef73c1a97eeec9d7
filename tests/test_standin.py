"""The Slack stand-in, driven by the real slack_sdk/slack_bolt clients over loopback HTTP."""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler, ServerErrorRetryHandler
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient

from bot.standin import (
    BOT_USER_ID,
    SlackRequestSender,
    SlackStandIn,
    StandInError,
    action_from_blocks,
    card_message,
    compute_signature,
    validate_blocks,
)

SECRET = "test-signing-secret"


def section(text: str, block_id: str | None = None) -> dict:
    block = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
    if block_id:
        block["block_id"] = block_id
    return block


def modal(title: str = "Label", blocks: list | None = None, **extra) -> dict:
    return {"type": "modal", "title": {"type": "plain_text", "text": title}, "blocks": blocks or [], **extra}


@pytest.fixture
def standin():
    with SlackStandIn() as slack:
        slack.add_user("U1", "alice", "Alice A.", tz="Europe/Berlin", is_admin=True)
        slack.add_user("U2", "bob")
        slack.add_channel("C1", "general")
        yield slack


@pytest.fixture
def client(standin):
    return WebClient(token="xoxb-test", base_url=standin.base_url)


# ---------------------------------------------------------------------------- messages


def test_post_message_then_history(standin, client):
    first = client.chat_postMessage(channel="C1", text="one")
    second = client.chat_postMessage(channel="#general", text="two", blocks=[section("*two*")])

    assert first["channel"] == "C1" and second["channel"] == "C1"
    assert second["message"]["text"] == "two"
    assert second["message"]["bot_id"] == "B0BOT"
    # Slack fills in block ids; the stand-in does too.
    assert second["message"]["blocks"][0]["block_id"]
    assert float(first["ts"]) < float(second["ts"])
    assert first["ts"] < second["ts"]  # also ordered as strings

    history = client.conversations_history(channel="C1")
    assert [m["text"] for m in history["messages"]] == ["two", "one"]  # newest first, like Slack
    older = client.conversations_history(channel="C1", latest=second["ts"])
    assert [m["text"] for m in older["messages"]] == ["one"]
    paged = client.conversations_history(channel="C1", limit=1)
    assert paged["has_more"] is True and [m["text"] for m in paged["messages"]] == ["two"]
    assert [m["text"] for m in standin.messages("C1")] == ["one", "two"]
    assert standin.calls_to("chat.postMessage")[1].params["blocks"][0]["text"]["text"] == "*two*"


def test_post_to_user_id_lands_in_dm(standin, client):
    opened = client.conversations_open(users="U1")
    assert opened["channel"]["id"] == "DU1" == standin.dm_channel("U1")
    posted = client.chat_postMessage(channel="U1", text="hello")
    assert posted["channel"] == "DU1"
    assert [m["text"] for m in standin.messages("DU1")] == ["hello"]
    assert client.conversations_open(users="U1")["already_open"] is True
    with pytest.raises(SlackApiError) as err:
        client.conversations_open(users="U404")
    assert err.value.response["error"] == "user_not_found"


def test_thread_replies_are_kept_out_of_history(standin, client):
    parent = client.chat_postMessage(channel="C1", text="parent")
    reply = client.chat_postMessage(channel="C1", text="reply", thread_ts=parent["ts"])

    assert reply["message"]["thread_ts"] == parent["ts"]
    assert [m["text"] for m in client.conversations_history(channel="C1")["messages"]] == ["parent"]
    replies = client.conversations_replies(channel="C1", ts=parent["ts"])["messages"]
    assert [m["text"] for m in replies] == ["parent", "reply"]
    assert replies[0]["reply_count"] == 1
    assert [m["text"] for m in standin.messages("C1", thread_ts=parent["ts"])] == ["parent", "reply"]
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel="C1", text="orphan", thread_ts="1.000000")


def test_update_and_delete(standin, client):
    posted = client.chat_postMessage(channel="C1", text="v1", blocks=[section("v1")])
    updated = client.chat_update(channel="C1", ts=posted["ts"], text="v2", blocks=[section("v2")])

    assert updated["ts"] == posted["ts"]
    stored = standin.message("C1", posted["ts"])
    assert stored["text"] == "v2"
    assert stored["blocks"][0]["text"]["text"] == "v2"
    assert "edited" in stored
    with pytest.raises(SlackApiError) as err:
        client.chat_update(channel="C1", ts="1.000000", text="x")
    assert err.value.response["error"] == "message_not_found"

    client.chat_delete(channel="C1", ts=posted["ts"])
    assert standin.messages("C1") == []


def test_user_messages_cannot_be_updated_by_the_bot(standin, client):
    message = standin.add_message("C1", "typed by alice", user="U1")
    with pytest.raises(SlackApiError) as err:
        client.chat_update(channel="C1", ts=message["ts"], text="x")
    assert err.value.response["error"] == "cant_update_message"


def test_slack_like_errors(standin, client):
    standin.add_channel("C2", "private", is_private=True, bot_is_member=False)
    cases = [
        (lambda: client.chat_postMessage(channel="C404", text="x"), "channel_not_found"),
        (lambda: client.chat_postMessage(channel="C2", text="x"), "not_in_channel"),
        (lambda: client.api_call("chat.postMessage", json={"channel": "C1"}), "no_text"),
        (lambda: client.chat_postMessage(channel="C1", text="x", blocks=[section("b")] * 51),
         "invalid_blocks"),
        (lambda: client.chat_postMessage(channel="C1", text="x", blocks=[section("")]),
         "invalid_blocks"),
        (lambda: client.chat_postMessage(channel="C1", text="x" * 40_001), "msg_too_long"),
        (lambda: client.api_call("chat.noSuchMethod"), "unknown_method"),
        (lambda: client.users_info(user="U404"), "user_not_found"),
    ]
    for call, error in cases:
        with pytest.raises(SlackApiError) as err:
            call()
        assert err.value.response["error"] == error
    assert standin.messages("C1") == []
    assert len(standin.errors()) == len(cases)


def test_fifty_blocks_are_accepted(client):
    blocks = [section(f"b{i}") for i in range(50)]
    assert client.chat_postMessage(channel="C1", text="x", blocks=blocks)["ok"]


def test_invalid_token_is_rejected(standin):
    with pytest.raises(SlackApiError) as err:
        WebClient(token="xoxb-wrong", base_url=standin.base_url).chat_postMessage(channel="C1", text="x")
    assert err.value.response["error"] == "invalid_auth"
    with pytest.raises(SlackApiError) as err:
        WebClient(base_url=standin.base_url).auth_test()
    assert err.value.response["error"] == "not_authed"
    assert standin.messages("C1") == []


def test_auth_test_answers_what_bolt_reads(client):
    answer = client.auth_test()
    assert answer["user_id"] == BOT_USER_ID
    assert answer["bot_id"] == "B0BOT"
    assert answer["team_id"] == "T0001"
    assert answer["is_enterprise_install"] is False
    assert "chat:write" in answer.headers["X-OAuth-Scopes"]


def test_form_encoded_blocks_are_parsed(standin, client):
    blocks = [section("from a form", block_id="b1")]
    client.api_call("chat.postMessage", params={"channel": "C1", "text": "f", "blocks": json.dumps(blocks)})
    stored = standin.messages("C1")[0]
    assert stored["blocks"] == blocks


def test_ephemeral_messages_are_recorded_per_user(standin, client):
    standin.add_channel("C3", "team", members=["U2"])
    answer = client.chat_postEphemeral(channel="C1", user="U1", text="only you")
    assert answer["message_ts"]
    assert [e["text"] for e in standin.ephemerals(user="U1")] == ["only you"]
    assert standin.ephemerals(user="U2") == []
    assert standin.messages("C1") == []
    assert standin.messages("U2") == []  # a DM that was never opened reads as empty
    with pytest.raises(SlackApiError) as err:
        client.chat_postEphemeral(channel="C3", user="U1", text="x")
    assert err.value.response["error"] == "user_not_in_channel"


def test_users_and_conversations_info(client):
    info = client.users_info(user="U1")["user"]
    assert (info["name"], info["real_name"], info["tz"], info["is_admin"]) == (
        "alice", "Alice A.", "Europe/Berlin", True,
    )
    members = client.users_list()["members"]
    assert {"U1", "U2", BOT_USER_ID} <= {m["id"] for m in members}
    channel = client.conversations_info(channel="C1")["channel"]
    assert (channel["id"], channel["name"], channel["is_member"]) == ("C1", "general", True)


def test_concurrent_posts_get_unique_increasing_ts(standin, client):
    def post(worker: int) -> None:
        for i in range(10):
            client.chat_postMessage(channel="C1", text=f"{worker}-{i}")

    threads = [threading.Thread(target=post, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stamps = [m["ts"] for m in standin.messages("C1")]
    assert len(stamps) == 60
    assert stamps == sorted(set(stamps))
    assert len(standin.calls_to("chat.postMessage")) == 60


# ---------------------------------------------------------------------------- views


def test_views_open_push_update(standin, client):
    trigger = standin.new_trigger_id("U1")
    view = modal(callback_id="cb", private_metadata="42")
    opened = client.views_open(trigger_id=trigger, view=view)["view"]
    assert opened["id"].startswith("V")
    assert (opened["callback_id"], opened["private_metadata"]) == ("cb", "42")
    assert [v["id"] for v in standin.modal_stack("U1")] == [opened["id"]]
    with pytest.raises(SlackApiError) as err:
        client.views_open(trigger_id=trigger, view=modal())
    assert err.value.response["error"] == "exchanged_trigger_id"

    updated = client.views_update(view_id=opened["id"], hash=opened["hash"], view=modal("Next"))["view"]
    assert updated["id"] == opened["id"] and updated["hash"] != opened["hash"]
    assert standin.view(opened["id"])["title"]["text"] == "Next"
    with pytest.raises(SlackApiError) as err:
        client.views_update(view_id=opened["id"], hash=opened["hash"], view=modal("Stale"))
    assert err.value.response["error"] == "hash_conflict"

    pushed = client.views_push(trigger_id=standin.new_trigger_id("U1"), view=modal("Pushed"))["view"]
    assert pushed["previous_view_id"] == opened["id"]
    assert [v["id"] for v in standin.modal_stack("U1")] == [opened["id"], pushed["id"]]
    standin.close_view(opened["id"])
    assert standin.modal_stack("U1") == []


def test_views_are_validated(standin, client):
    too_many = modal(blocks=[section(str(i)) for i in range(101)])
    with pytest.raises(SlackApiError) as err:
        client.views_open(trigger_id=standin.new_trigger_id("U1"), view=too_many)
    assert err.value.response["error"] == "invalid_blocks"
    with pytest.raises(SlackApiError) as err:
        client.views_open(trigger_id=standin.new_trigger_id("U1"), view=modal(blocks=[section("")]))
    assert err.value.response["error"] == "invalid_blocks"
    assert "[json-pointer:/view/blocks/0/text/text]" in err.value.response["errors"][0]
    with pytest.raises(SlackApiError) as err:
        client.views_open(trigger_id=standin.new_trigger_id("U1"), view=modal("x" * 25))
    assert err.value.response["error"] == "invalid_arguments"
    input_block = {
        "type": "input", "label": {"type": "plain_text", "text": "Why"},
        "element": {"type": "plain_text_input", "action_id": "why"},
    }
    with pytest.raises(SlackApiError):  # input blocks need a submit button
        client.views_open(trigger_id=standin.new_trigger_id("U1"), view=modal(blocks=[input_block]))
    ok = modal(blocks=[section(str(i)) for i in range(100)])
    assert client.views_open(trigger_id=standin.new_trigger_id("U1"), view=ok)["ok"]


def test_views_publish_home(standin, client):
    home = {"type": "home", "blocks": [section("home 1")]}
    first = client.views_publish(user_id="U1", view=home)["view"]
    assert standin.home_view("U1")["blocks"][0]["text"]["text"] == "home 1"
    second = client.views_publish(user_id="U1", view={"type": "home", "blocks": [section("home 2")]})["view"]
    assert second["id"] == first["id"]
    assert standin.home_view("U1")["blocks"][0]["text"]["text"] == "home 2"
    assert standin.home_view("U2") is None
    with pytest.raises(SlackApiError) as err:
        client.views_publish(user_id="U1", view=modal())
    assert err.value.response["error"] == "invalid_arguments"


# ---------------------------------------------------------------------------- files


def test_files_upload_v2_csv_round_trip(standin, client):
    csv_text = "text,label\nhello,greeting\nbye,farewell\n"
    answer = client.files_upload_v2(
        channel="C1", content=csv_text, filename="labels.csv", title="Labels", initial_comment="export"
    )
    file_id = answer["file"]["id"]
    assert standin.file_content(file_id) == csv_text.encode("utf-8")
    complete = standin.calls_to("files.completeUploadExternal")
    assert len(complete) == 1
    assert complete[0].params["channel_id"] == "C1"
    assert complete[0].params["files"][0]["id"] == file_id
    assert standin.calls_to("upload")[0].params["length"] == len(csv_text.encode("utf-8"))
    shared = standin.messages("C1")[-1]
    assert shared["text"] == "export"
    assert [f["id"] for f in shared["files"]] == [file_id]
    assert standin.files()[0]["title"] == "Labels"


# ---------------------------------------------------------------------------- faults


def test_rate_limit_is_retried_after_retry_after(standin, client):
    standin.fail_next("chat.postMessage", status=429, retry_after=0)
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=1))
    client.chat_postMessage(channel="C1", text="once")

    assert [m["text"] for m in standin.messages("C1")] == ["once"]
    calls = standin.calls_to("chat.postMessage")
    assert [c.status for c in calls] == [429, 200]
    assert calls[0].response == {"ok": False, "error": "ratelimited"}


def test_rate_limit_without_retry_handler_carries_retry_after(standin, client):
    standin.fail_next("chat.postMessage", status=429, retry_after=7)
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C1", text="x")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == "7"
    client.chat_postMessage(channel="C1", text="next one passes")
    assert len(standin.messages("C1")) == 1


def test_server_error_is_retried(standin, client):
    standin.fail_next("chat.postMessage", status=500)
    client.retry_handlers.append(
        ServerErrorRetryHandler(max_retry_count=1, interval_calculator=FixedValueRetryIntervalCalculator(0.0))
    )
    client.chat_postMessage(channel="C1", text="after 500")
    assert [c.status for c in standin.calls_to("chat.postMessage")] == [500, 200]
    assert len(standin.messages("C1")) == 1

    standin.fail_next("chat.postMessage", status=500, times=2)
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel="C1", text="gives up")
    assert len(standin.messages("C1")) == 1


def test_fail_next_with_a_slack_error(standin, client):
    standin.fail_next("views.publish", status=200, error="not_enabled")
    with pytest.raises(SlackApiError) as err:
        client.views_publish(user_id="U1", view={"type": "home", "blocks": []})
    assert err.value.response["error"] == "not_enabled"
    assert client.views_publish(user_id="U1", view={"type": "home", "blocks": []})["ok"]


# ---------------------------------------------------------------------------- waiting and events


def test_wait_for_blocks_until_the_call_arrives(standin, client):
    go = threading.Event()

    def post_later() -> None:
        go.wait()
        client.chat_postMessage(channel="C1", text="a")
        client.chat_postMessage(channel="C1", text="b")

    worker = threading.Thread(target=post_later)
    worker.start()
    try:
        with pytest.raises(TimeoutError):
            standin.wait_for("chat.postMessage", timeout=0.2)
        go.set()
        calls = standin.wait_for("chat.postMessage", count=2)
        assert [c.params["text"] for c in calls] == ["a", "b"]
        found = standin.wait_for(lambda c: c.params.get("text") == "b")
        assert len(found) == 1
        standin.wait_until(lambda: len(standin.messages("C1")) == 2)
    finally:
        go.set()
        worker.join()


def test_subscribers_see_state_changes_in_order(standin, client):
    seen: list[dict] = []
    later: list[dict] = []
    done = threading.Event()

    def on_event(event: dict) -> None:
        if event["type"] != "api_call":
            seen.append(event)

    def on_late_event(event: dict) -> None:
        later.append(event)
        if event["type"] == "message_posted" and event["message"]["text"] == "second":
            done.set()

    unsubscribe = standin.subscribe(on_event)
    posted = client.chat_postMessage(channel="C1", text="first")
    client.chat_update(channel="C1", ts=posted["ts"], text="first, edited")
    unsubscribe()
    standin.subscribe(on_late_event)
    client.chat_postMessage(channel="C1", text="second")
    assert done.wait(5)

    assert [(e["type"], e["message"]["text"]) for e in seen] == [
        ("message_posted", "first"), ("message_updated", "first, edited"),
    ]
    assert seen[0]["channel"] == "C1"
    assert any(e["type"] == "api_call" and e["call"].method == "chat.postMessage" for e in later)


# ---------------------------------------------------------------------------- response_url


def test_response_url_ephemeral_in_channel_replace_delete(standin, client):
    slash_url = standin.new_response_url("C1", "U1")
    assert WebhookClient(slash_url).send(text="just for you").status_code == 200
    assert [e["text"] for e in standin.ephemerals(user="U1")] == ["just for you"]

    WebhookClient(slash_url).send(text="for everyone", response_type="in_channel")
    assert [m["text"] for m in standin.messages("C1")] == ["for everyone"]

    card = client.chat_postMessage(channel="C1", text="card", blocks=[section("pick")])
    action_url = standin.new_response_url("C1", "U1", message_ts=card["ts"])
    WebhookClient(action_url).send(text="picked", blocks=[section("done")], replace_original=True)
    replaced = standin.message("C1", card["ts"])
    assert replaced["text"] == "picked" and replaced["blocks"][0]["text"]["text"] == "done"

    WebhookClient(action_url).send_dict({"delete_original": True})
    assert standin.message("C1", card["ts"]) is None
    assert [r["action"] for r in standin.responses] == ["ephemeral", "in_channel", "replaced", "deleted"]


def test_response_url_replaces_an_ephemeral_card(standin, client):
    posted = client.chat_postEphemeral(channel="C1", user="U1", text="card", blocks=[section("choose")])
    url = standin.new_response_url("C1", "U1", message_ts=posted["message_ts"])
    WebhookClient(url).send(text="thanks", replace_original=True)
    (card,) = standin.ephemerals(user="U1")
    assert card["text"] == "thanks" and "blocks" not in card
    WebhookClient(url).send_dict({"delete_original": True})
    assert standin.ephemerals(user="U1") == []
    assert standin.messages("C1") == []


def test_response_url_errors(standin):
    unknown = standin.root_url + "response_url/nope"
    assert WebhookClient(unknown).send(text="x").status_code == 404
    url = standin.new_response_url("C1", "U1")
    assert WebhookClient(url).send_dict({"text": ""}).status_code == 400
    statuses = [WebhookClient(url).send(text=str(i)).status_code for i in range(6)]
    assert statuses == [200] * 5 + [404]  # Slack allows five uses


# ---------------------------------------------------------------------------- block validation


def test_validate_blocks_reports_slack_style_problems():
    button = {"type": "button", "text": {"type": "plain_text", "text": "Yes"}, "action_id": "a"}
    assert validate_blocks([{"type": "actions", "elements": [button]}]) == []
    problems = validate_blocks([
        {"type": "actions", "elements": [button, button]},
        {"type": "secton", "text": {"type": "mrkdwn", "text": "typo"}},
        section("x", block_id="dup"),
        section("y", block_id="dup"),
        {"type": "header", "text": {"type": "plain_text", "text": "h" * 151}},
    ])
    joined = "\n".join(problems)
    assert "duplicate action_id" in joined
    assert "unsupported type: secton" in joined
    assert "duplicate block_id" in joined
    assert "text attribute cannot exceed 150 characters [json-pointer:/blocks/4]" in joined
    assert len(problems) == 4
    assert validate_blocks("not a list")


def test_python_helpers_raise_standin_error(standin):
    with pytest.raises(StandInError) as err:
        standin.add_message("C404", "x", user="U1")
    assert err.value.error == "channel_not_found"


# ---------------------------------------------------------------------------- signing


def test_signed_headers_verify_with_slack_sdk():
    sender = SlackRequestSender("http://127.0.0.1:9/slack/events", SECRET)
    verifier = SignatureVerifier(SECRET)
    body = "token=x&command=%2Flabel&text=hello"

    good = sender.signed_headers(body)
    assert verifier.is_valid(body, good["X-Slack-Request-Timestamp"], good["X-Slack-Signature"])
    assert not verifier.is_valid(body + "&x=1", good["X-Slack-Request-Timestamp"], good["X-Slack-Signature"])

    bad = sender.signed_headers(body, signature="bad")
    assert not verifier.is_valid_request(body, bad)

    expired = sender.signed_headers(body, signature="expired")
    assert not verifier.is_valid_request(body, expired)
    # The expired one is correctly signed: only its age makes it invalid.
    regenerated = verifier.generate_signature(timestamp=expired["X-Slack-Request-Timestamp"], body=body)
    assert regenerated == expired["X-Slack-Signature"]

    assert sender.signed_headers(body, signature="none") == {}
    assert compute_signature(SECRET, 1, b"x") == verifier.generate_signature(timestamp="1", body="x")


class _Capture(BaseHTTPRequestHandler):
    """Records requests and answers 200 only if the Slack signature verifies."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.captured.append((body, dict(self.headers.items())))
        ok = SignatureVerifier(SECRET).is_valid_request(body, dict(self.headers.items()))
        answer = json.dumps({"verified": ok}).encode()
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def capture():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    server.captured = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_sender_requests_are_signed_on_the_wire(capture, standin):
    url = f"http://127.0.0.1:{capture.server_address[1]}/slack/events"
    sender = SlackRequestSender(url, SECRET, standin=standin)

    status, body = sender.slash_command("/label", "start demo", user_id="U1", channel_id="C1")
    assert (status, body) == (200, {"verified": True})
    raw, headers = capture.captured[-1]
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    fields = dict(urllib.parse.parse_qsl(raw.decode()))
    assert (fields["command"], fields["text"], fields["user_id"], fields["team_id"]) == (
        "/label", "start demo", "U1", "T0001",
    )
    assert fields["response_url"].startswith(standin.root_url + "response_url/")

    for mode in ("bad", "expired", "none"):
        assert sender.slash_command(signature=mode).status == 401

    sender.event({"type": "app_mention", "user": "U1", "text": "hi", "channel": "C1"})
    sender.app_home_opened("U1")
    envelopes = [json.loads(raw) for raw, _ in capture.captured[-2:]]
    assert [e["type"] for e in envelopes] == ["event_callback", "event_callback"]
    assert envelopes[1]["event"] == {
        "type": "app_home_opened", "user": "U1", "channel": "DU1", "tab": "home",
        "event_ts": envelopes[1]["event"]["event_ts"],
    }
    assert envelopes[0]["event_id"] != envelopes[1]["event_id"]


def test_block_actions_payload_shape(capture, standin, client):
    url = f"http://127.0.0.1:{capture.server_address[1]}/slack/events"
    sender = SlackRequestSender(url, SECRET, standin=standin)
    buttons = {"type": "actions", "block_id": "labels", "elements": [
        {"type": "button", "action_id": f"label_{v}", "value": v, "text": {"type": "plain_text", "text": v}}
        for v in ("spam", "ham")
    ]}
    posted = client.chat_postMessage(channel="C1", text="card", blocks=[section("msg"), buttons])
    message = standin.message("C1", posted["ts"])
    action = action_from_blocks(message, "label_ham")

    assert sender.block_actions("U1", [action], channel_id="C1", message=message).status == 200
    payload = json.loads(dict(urllib.parse.parse_qsl(capture.captured[-1][0].decode()))["payload"])
    assert payload["type"] == "block_actions"
    assert payload["user"]["id"] == "U1"
    assert payload["container"] == {
        "type": "message", "message_ts": posted["ts"], "channel_id": "C1", "is_ephemeral": False,
    }
    assert payload["message"]["blocks"] == message["blocks"]
    assert (payload["actions"][0]["block_id"], payload["actions"][0]["value"]) == ("labels", "ham")
    with pytest.raises(LookupError):
        action_from_blocks(message, "label_ham", value="eggs")

    built = card_message(message["blocks"], posted["ts"], text="card")
    assert built["ts"] == posted["ts"] and built["blocks"] == message["blocks"]


# ---------------------------------------------------------------------------- with a real bolt app


class _BoltHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        from slack_bolt.request import BoltRequest

        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8")
        response = self.server.app.dispatch(BoltRequest(body=body, headers=dict(self.headers.items())))
        raw = (response.body if isinstance(response.body, str) else json.dumps(response.body)).encode()
        self.send_response(response.status)
        for key, values in response.headers.items():
            for value in values:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def bolt(standin):
    from slack_bolt import App

    app = App(client=WebClient(token="xoxb-test", base_url=standin.base_url), signing_secret=SECRET)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BoltHandler)
    server.app = app
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    sender = SlackRequestSender(f"http://127.0.0.1:{server.server_address[1]}/slack/events", SECRET,
                                standin=standin)
    yield app, sender
    server.shutdown()
    server.server_close()
    thread.join()


def test_bolt_app_round_trip(standin, bolt):
    app, sender = bolt

    @app.command("/label")
    def on_command(ack, respond, body, client):
        ack()
        respond(f"got {body['text']}")
        client.views_open(trigger_id=body["trigger_id"], view=modal("Pick"))

    @app.action("label")
    def on_label(ack, respond, action):
        ack()
        respond(text=f"labelled {action['value']}", replace_original=True)

    @app.view("form")
    def on_submit(ack, view):
        ack(response_action="errors", errors={"b": f"bad {view['state']['values']['b']['a']['value']}"})

    assert sender.slash_command("/label", "go", user_id="U1", channel_id="C1").status == 200
    standin.wait_for("views.open")
    standin.wait_for("response_url")
    assert [e["text"] for e in standin.ephemerals(user="U1")] == ["got go"]
    assert standin.modal_stack("U1")[0]["title"]["text"] == "Pick"

    buttons = {"type": "actions", "elements": [
        {"type": "button", "action_id": "label", "value": "spam",
         "text": {"type": "plain_text", "text": "Spam"}},
    ]}
    card = app.client.chat_postMessage(channel="C1", text="card", blocks=[buttons])
    message = standin.message("C1", card["ts"])
    action = action_from_blocks(message, "label", value="spam")
    assert sender.block_actions("U1", [action], channel_id="C1", message=message).status == 200
    standin.wait_for("response_url", count=2)
    assert standin.message("C1", card["ts"])["text"] == "labelled spam"

    view = {"type": "modal", "callback_id": "form", "id": "V1"}
    state = {"b": {"a": {"type": "plain_text_input", "value": "x"}}}
    status, body = sender.view_submission("U1", view, state)
    assert (status, body) == (200, {"response_action": "errors", "errors": {"b": "bad x"}})

    assert sender.slash_command("/label", signature="bad").status == 401
    assert standin.errors() == []
