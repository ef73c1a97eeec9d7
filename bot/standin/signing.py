"""Send Slack-shaped, signed requests to a bolt app's ``/slack/events`` endpoint (stdlib only).

``SlackRequestSender`` builds the documented payloads (slash commands, ``block_actions``,
``view_submission``/``view_closed``, Events API ``event_callback`` envelopes), signs them the
way Slack does (``X-Slack-Signature: v0=HMAC-SHA256(secret, "v0:{timestamp}:{body}")``) and
returns the app's answer. Options send a bad signature, an expired timestamp or no signature
headers, to test the app's request verification.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from bot.standin.webapi import APP_ID, BOT_ID, BOT_USER_ID, TEAM_DOMAIN, TEAM_ID

if TYPE_CHECKING:
    from bot.standin.webapi import SlackStandIn

Signature = Literal["valid", "bad", "expired", "none"]

# Bolt rejects requests whose timestamp is more than five minutes off.
EXPIRED_AGE_SECONDS = 10 * 60

_counter = itertools.count(1)
_counter_lock = threading.Lock()


def _next() -> int:
    with _counter_lock:
        return next(_counter)


class SenderResponse(NamedTuple):
    """The app's answer: HTTP status and body (parsed JSON if it is JSON, else text; ``""`` if empty)."""

    status: int
    body: Any


def compute_signature(signing_secret: str, timestamp: str | int, body: bytes | str) -> str:
    """``v0=`` + hex HMAC-SHA256 of ``v0:{timestamp}:{body}``, as Slack signs requests."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    base = f"v0:{timestamp}:".encode() + raw
    return "v0=" + hmac.new(signing_secret.encode("utf-8"), base, hashlib.sha256).hexdigest()


def make_trigger_id() -> str:
    """A unique trigger_id shaped like Slack's (``"12345.67890.abcdef..."``)."""
    return f"{_next()}.{int(time.time())}.{secrets.token_hex(16)}"


def _action_ts() -> str:
    return f"{time.time():.6f}"


def card_message(
    blocks: list[dict],
    ts: str,
    *,
    text: str = "",
    user: str = BOT_USER_ID,
    bot_id: str = BOT_ID,
    app_id: str = APP_ID,
    team_id: str = TEAM_ID,
) -> dict:
    """A bot message dict as Slack embeds it in a ``block_actions`` payload's ``message``."""
    return {
        "type": "message", "subtype": "bot_message", "text": text, "ts": ts, "user": user,
        "bot_id": bot_id, "app_id": app_id, "team": team_id, "blocks": copy.deepcopy(blocks),
    }


def _iter_elements(blocks: list[dict]):
    for block in blocks:
        candidates = list(block.get("elements") or []) if block.get("type") == "actions" else []
        candidates += [block[k] for k in ("accessory", "element") if isinstance(block.get(k), dict)]
        for element in candidates:
            if isinstance(element, dict):
                yield block, element


def action_from_blocks(
    source: dict | list[dict],
    action_id: str,
    *,
    value: str | None = None,
    selected_value: str | None = None,
) -> dict:
    """The ``actions[0]`` entry Slack sends when a user clicks/selects element ``action_id``.

    ``source`` is a message or view dict (its ``blocks``) or a block list, e.g. what the stand-in
    recorded. ``value`` picks among buttons sharing an action_id; ``selected_value`` picks the
    option of a select, radio or overflow element. Raises ``LookupError`` if nothing matches.
    """
    blocks = source.get("blocks", []) if isinstance(source, dict) else source
    for block, element in _iter_elements(blocks):
        if element.get("action_id") != action_id:
            continue
        kind = element.get("type")
        if kind == "button":
            if value is not None and element.get("value") != value:
                continue
            action = {"type": "button", "text": element.get("text"), "value": element.get("value")}
            if element.get("style"):
                action["style"] = element["style"]
        else:
            options = element.get("options") or [
                o for group in element.get("option_groups", []) for o in group.get("options", [])
            ]
            chosen = [o for o in options if o.get("value") == selected_value]
            if not chosen:
                continue
            action = {"type": kind}
            if kind in ("multi_static_select", "checkboxes"):
                action["selected_options"] = chosen
            else:
                action["selected_option"] = chosen[0]
        action.update({"action_id": action_id, "block_id": block.get("block_id"), "action_ts": _action_ts()})
        return action
    wanted = f"value={value!r}" if value is not None else f"selected_value={selected_value!r}"
    raise LookupError(f"no element with action_id={action_id!r} and {wanted} in the blocks")


class SlackRequestSender:
    """Posts signed Slack requests to a bolt app.

    Parameters
    ----------
    url : the app's endpoint, e.g. ``http://127.0.0.1:PORT/slack/events``.
    signing_secret : the secret the app verifies with.
    standin : optional ``SlackStandIn``; when given, missing ``response_url``/``trigger_id`` values
        are made with ``standin.new_response_url`` / ``standin.new_trigger_id``, so ``respond()``
        and ``views.open`` land in the stand-in.
    """

    def __init__(
        self,
        url: str,
        signing_secret: str,
        *,
        team_id: str = TEAM_ID,
        team_domain: str = TEAM_DOMAIN,
        api_app_id: str = APP_ID,
        verification_token: str = "legacy-verification-token",
        standin: SlackStandIn | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.signing_secret = signing_secret
        self.team_id = team_id
        self.team_domain = team_domain
        self.api_app_id = api_app_id
        self.verification_token = verification_token
        self.standin = standin
        self.timeout = timeout

    # ------------------------------------------------------------------ transport

    def signed_headers(
        self, body: bytes | str, *, signature: Signature = "valid", timestamp: int | None = None
    ) -> dict[str, str]:
        """``X-Slack-Request-Timestamp`` and ``X-Slack-Signature`` for ``body``.

        ``signature``: ``"valid"``; ``"bad"`` (signed with another secret); ``"expired"`` (validly
        signed, but ten minutes old); ``"none"`` (no headers).
        """
        if signature == "none":
            return {}
        if timestamp is None:
            timestamp = int(time.time()) - (EXPIRED_AGE_SECONDS if signature == "expired" else 0)
        secret = self.signing_secret if signature != "bad" else self.signing_secret + "-wrong"
        return {
            "X-Slack-Request-Timestamp": str(timestamp),
            "X-Slack-Signature": compute_signature(secret, timestamp, body),
        }

    def send(
        self,
        body: bytes | str,
        content_type: str,
        *,
        signature: Signature = "valid",
        headers: dict[str, str] | None = None,
    ) -> SenderResponse:
        """POST ``body`` signed; HTTP errors are returned, not raised."""
        raw = body.encode("utf-8") if isinstance(body, str) else body
        all_headers = {"Content-Type": content_type, "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)"}
        all_headers.update(self.signed_headers(raw, signature=signature))
        all_headers.update(headers or {})
        request = urllib.request.Request(self.url, data=raw, headers=all_headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                return SenderResponse(resp.status, _decode(resp.read(), resp.headers.get("Content-Type")))
        except urllib.error.HTTPError as err:
            return SenderResponse(err.code, _decode(err.read(), err.headers.get("Content-Type")))

    def send_form(self, fields: dict[str, Any], **kwargs: Any) -> SenderResponse:
        return self.send(urllib.parse.urlencode(fields), "application/x-www-form-urlencoded", **kwargs)

    def send_payload(self, payload: dict, **kwargs: Any) -> SenderResponse:
        """An interactivity request: form field ``payload`` holding the JSON."""
        return self.send_form({"payload": json.dumps(payload)}, **kwargs)

    def send_json(self, envelope: dict, **kwargs: Any) -> SenderResponse:
        return self.send(json.dumps(envelope), "application/json", **kwargs)

    # ------------------------------------------------------------------ helpers

    def trigger_id(self, user_id: str) -> str:
        return self.standin.new_trigger_id(user_id) if self.standin is not None else make_trigger_id()

    def _response_url(self, channel_id: str, user_id: str, message_ts: str | None) -> str:
        if self.standin is not None:
            return self.standin.new_response_url(channel_id, user_id, message_ts)
        # Nothing listens on port 9 of loopback: a respond() without a stand-in fails fast.
        return f"http://127.0.0.1:9/response_url/{secrets.token_hex(8)}"

    def _user(self, user_id: str, user_name: str | None) -> dict:
        name = user_name or user_id.lower()
        return {"id": user_id, "username": name, "name": name, "team_id": self.team_id}

    def _team(self) -> dict:
        return {"id": self.team_id, "domain": self.team_domain}

    # ------------------------------------------------------------------ request kinds

    def slash_command(
        self,
        command: str = "/label",
        text: str = "",
        *,
        user_id: str = "U0001",
        user_name: str | None = None,
        channel_id: str = "C0001",
        channel_name: str = "general",
        response_url: str | None = None,
        trigger_id: str | None = None,
        team_id: str | None = None,
        signature: Signature = "valid",
    ) -> SenderResponse:
        """A slash command, form-encoded with the documented fields."""
        fields = {
            "token": self.verification_token,
            "team_id": team_id or self.team_id,
            "team_domain": self.team_domain,
            "channel_id": channel_id,
            "channel_name": channel_name,
            "user_id": user_id,
            "user_name": user_name or user_id.lower(),
            "command": command,
            "text": text,
            "api_app_id": self.api_app_id,
            "is_enterprise_install": "false",
            "response_url": response_url or self._response_url(channel_id, user_id, None),
            "trigger_id": trigger_id or self.trigger_id(user_id),
        }
        return self.send_form(fields, signature=signature)

    def block_actions(
        self,
        user_id: str,
        actions: list[dict],
        *,
        user_name: str | None = None,
        channel_id: str | None = None,
        message: dict | None = None,
        view: dict | None = None,
        container: dict | None = None,
        response_url: str | None = None,
        trigger_id: str | None = None,
        state_values: dict | None = None,
        is_ephemeral: bool = False,
        signature: Signature = "valid",
    ) -> SenderResponse:
        """A ``block_actions`` interaction on a ``message`` (in ``channel_id``) or in a ``view``.

        ``actions`` entries need ``action_id``; ``block_id``, ``type`` (button, or static_select
        when ``selected_option`` is given) and ``action_ts`` are filled in when missing. Pass the
        message/view the stand-in recorded; see ``action_from_blocks`` to build the action.
        """
        if message is None and view is None:
            raise ValueError("block_actions needs the message or the view the action happened in")
        full_actions = []
        for action in actions:
            item = dict(action)
            if "action_id" not in item:
                raise ValueError(f"action without action_id: {action!r}")
            item.setdefault("block_id", "")
            item.setdefault("type", "static_select" if "selected_option" in item else "button")
            item.setdefault("action_ts", _action_ts())
            full_actions.append(item)
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": self._user(user_id, user_name),
            "api_app_id": self.api_app_id,
            "token": self.verification_token,
            "trigger_id": trigger_id or self.trigger_id(user_id),
            "team": self._team(),
            "enterprise": None,
            "is_enterprise_install": False,
            "actions": full_actions,
        }
        if message is not None:
            if channel_id is None:
                raise ValueError("an action on a message needs channel_id")
            payload["container"] = container or {
                "type": "message", "message_ts": message.get("ts"), "channel_id": channel_id,
                "is_ephemeral": is_ephemeral,
            }
            payload["channel"] = {"id": channel_id, "name": channel_id}
            payload["message"] = copy.deepcopy(message)
            url = response_url or self._response_url(channel_id, user_id, message.get("ts"))
            payload["response_url"] = url
            payload["state"] = {"values": copy.deepcopy(state_values or {})}
        else:
            assert view is not None
            full_view = copy.deepcopy(view)
            full_view["state"] = {"values": copy.deepcopy(state_values or {})}
            payload["container"] = container or {"type": "view", "view_id": view.get("id")}
            payload["view"] = full_view
            if response_url:
                payload["response_url"] = response_url
        return self.send_payload(payload, signature=signature)

    def view_submission(
        self,
        user_id: str,
        view: dict,
        state_values: dict,
        *,
        user_name: str | None = None,
        trigger_id: str | None = None,
        response_urls: list[dict] | None = None,
        signature: Signature = "valid",
    ) -> SenderResponse:
        """A modal submission; ``state_values`` is ``{block_id: {action_id: {"type", "value"...}}}``.

        The body is what bolt answers, e.g. ``{"response_action": "errors", "errors": {...}}``,
        or ``""`` for a plain ``ack()``.
        """
        payload = {
            "type": "view_submission",
            "team": self._team(),
            "user": self._user(user_id, user_name),
            "api_app_id": self.api_app_id,
            "token": self.verification_token,
            "trigger_id": trigger_id or self.trigger_id(user_id),
            "view": self._full_view(view, state_values),
            "response_urls": response_urls or [],
            "is_enterprise_install": False,
            "enterprise": None,
        }
        return self.send_payload(payload, signature=signature)

    def view_closed(
        self,
        user_id: str,
        view: dict,
        *,
        is_cleared: bool = False,
        user_name: str | None = None,
        signature: Signature = "valid",
    ) -> SenderResponse:
        """A modal closed by the user (sent only for views with ``notify_on_close``)."""
        payload = {
            "type": "view_closed",
            "team": self._team(),
            "user": self._user(user_id, user_name),
            "api_app_id": self.api_app_id,
            "token": self.verification_token,
            "view": self._full_view(view, {}),
            "is_cleared": is_cleared,
            "is_enterprise_install": False,
            "enterprise": None,
        }
        return self.send_payload(payload, signature=signature)

    def _full_view(self, view: dict, state_values: dict) -> dict:
        full = copy.deepcopy(view)
        for key, default in (
            ("id", f"V{_next():08d}"), ("type", "modal"), ("callback_id", ""), ("private_metadata", ""),
            ("hash", f"{int(time.time())}.{secrets.token_hex(4)}"), ("blocks", []),
        ):
            full.setdefault(key, default)
        full.setdefault("team_id", self.team_id)
        full.setdefault("app_id", self.api_app_id)
        full.setdefault("bot_id", BOT_ID)
        full.setdefault("root_view_id", full["id"])
        full.setdefault("previous_view_id", None)
        full["state"] = {"values": copy.deepcopy(state_values)}
        return full

    def event(
        self,
        event: dict,
        event_type: str | None = None,
        *,
        team_id: str | None = None,
        event_id: str | None = None,
        signature: Signature = "valid",
        retry_num: int | None = None,
    ) -> SenderResponse:
        """An Events API ``event_callback`` envelope around ``event``.

        ``event_type`` sets ``event["type"]`` (e.g. ``"app_home_opened"``) when given. ``event_id``
        is unique per call unless given. ``retry_num`` adds Slack's ``X-Slack-Retry-Num`` header.
        """
        inner = copy.deepcopy(event)
        if event_type is not None:
            inner["type"] = event_type
        if "type" not in inner:
            raise ValueError("the event needs a type (in the dict or as event_type)")
        now = time.time()
        inner.setdefault("event_ts", f"{now:.6f}")
        envelope = {
            "token": self.verification_token,
            "team_id": team_id or self.team_id,
            "api_app_id": self.api_app_id,
            "event": inner,
            "type": "event_callback",
            "event_id": event_id or f"Ev{_next():08d}{secrets.token_hex(3).upper()}",
            "event_time": int(now),
            "authorizations": [{
                "enterprise_id": None, "team_id": team_id or self.team_id, "user_id": BOT_USER_ID,
                "is_bot": True, "is_enterprise_install": False,
            }],
            "is_ext_shared_channel": False,
            "event_context": secrets.token_hex(12),
        }
        headers = {}
        if retry_num is not None:
            headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"}
        return self.send_json(envelope, signature=signature, headers=headers)

    def app_home_opened(
        self, user_id: str, *, tab: str = "home", view: dict | None = None, signature: Signature = "valid"
    ) -> SenderResponse:
        """The ``app_home_opened`` event; the channel is the stand-in's DM id ``"D" + user_id``."""
        event: dict[str, Any] = {
            "type": "app_home_opened", "user": user_id, "channel": "D" + user_id, "tab": tab,
        }
        if view is not None:
            event["view"] = copy.deepcopy(view)
        return self.event(event, signature=signature)

    def message_event(
        self,
        user_id: str,
        channel_id: str,
        text: str,
        *,
        ts: str | None = None,
        thread_ts: str | None = None,
        channel_type: str | None = None,
        signature: Signature = "valid",
    ) -> SenderResponse:
        """A ``message`` event from a user (pass ``ts`` of the message added with
        ``SlackStandIn.add_message`` to keep both sides consistent)."""
        event: dict[str, Any] = {
            "type": "message", "user": user_id, "channel": channel_id, "text": text,
            "ts": ts or f"{time.time():.6f}", "team": self.team_id,
            "channel_type": channel_type or ("im" if channel_id.startswith("D") else "channel"),
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
        return self.event(event, signature=signature)

    def url_verification(
        self, challenge: str = "challenge-token", *, signature: Signature = "valid"
    ) -> SenderResponse:
        """The Events API handshake; bolt answers ``{"challenge": challenge}``."""
        envelope = {"token": self.verification_token, "challenge": challenge, "type": "url_verification"}
        return self.send_json(envelope, signature=signature)


def _decode(raw: bytes, content_type: str | None) -> Any:
    text = raw.decode("utf-8", errors="replace")
    if not text:
        return ""
    if "json" in (content_type or "") or text.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text
