"""The playground's engine: the real bot against the Slack stand-in, driven as Slack's client would.

``Playground`` starts a ``SlackStandIn`` (the Web API the bot calls), the real bolt App from
``create_app`` on a ``SlackHTTPServer`` (``/slack/events``), and turns what a person does on the web
page into the requests Slack would send: slash commands, ``block_actions``, ``view_submission``,
``view_closed`` and the ``app_home_opened`` event, signed with the signing secret by
``SlackRequestSender``. The bot cannot tell the difference: same listeners, same database.

``state(user)`` is what that user sees (channel and DM messages with their own ephemerals, the App
Home tab, open modals, uploaded files); ``state(user, since=N, timeout=...)`` waits for a change
first, which is how the page gets live updates (long polling fed by ``SlackStandIn.subscribe``).
"""

from __future__ import annotations

import copy
import json
import logging
import re
import secrets
import sys
import threading
import time
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from slack_bolt import App

from bot import blocks
from bot.app import create_app, make_client
from bot.server import EVENTS_PATH, SlackHTTPServer
from bot.settings import BotSettings
from bot.standin import BOT_USER_ID, SlackRequestSender, SlackStandIn, action_from_blocks
from core.service import LabelingService

log = logging.getLogger(__name__)

BOT_TOKEN = "xoxb-playground"
CHANNEL_ID = "CGENERAL"
CHANNEL_NAME = "general"
LONG_POLL_SECONDS = 25.0
_COMMAND_RE = re.compile(r"^(/[A-Za-z0-9_.-]+)(?:\s+(.*))?$", re.DOTALL)
# What a Slack client checks before it sends a modal: required inputs must have a value.
REQUIRED_MESSAGE = "Please complete this required field."
# Events that change nothing a person sees; the page is not woken for them.
_SILENT_EVENTS = frozenset({"api_call"})


@dataclass(frozen=True)
class PlaygroundUser:
    """A team member the page can act as."""

    id: str
    name: str
    real_name: str
    tz: str = "UTC"


DEFAULT_USERS: tuple[PlaygroundUser, ...] = (
    PlaygroundUser("UALICE", "alice", "Alice Archer", "Europe/London"),
    PlaygroundUser("UBOB", "bob", "Bob Baker", "America/New_York"),
    PlaygroundUser("UCAROL", "carol", "Carol Chen", "Asia/Singapore"),
    PlaygroundUser("UADMIN", "admin", "Admin Adams", "UTC"),
)
ADMIN_USER_ID = "UADMIN"


class PlaygroundError(Exception):
    """Something the page asked for that Slack's client would refuse (shown to the person)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Playground:
    """The real bot, a Slack stand-in and the page's API, on one ``SlackHTTPServer``.

    Parameters
    ----------
    service : the ``LabelingService`` the bot uses (its database is the playground's).
    host, port : where the server listens (port 0 picks a free one); the page is ``/playground``.
    users : the team members the page can switch between; ``admin_ids`` are labelbot admins
        (``UADMIN`` and the configured ``LABELBOT_ADMINS``).
    project : bind ``#general`` and the users' DMs to this project when they are not bound yet, so
        ``/label`` finds it even when the database holds several projects.
    """

    def __init__(
        self,
        service: LabelingService,
        *,
        host: str = "127.0.0.1",
        port: int = 3000,
        users: Sequence[PlaygroundUser] = DEFAULT_USERS,
        admin_ids: Iterable[str] = (ADMIN_USER_ID,),
        project: str | None = None,
        workers: int = 8,
    ) -> None:
        self.service = service
        self.users = list(users)
        self.signing_secret = secrets.token_hex(16)
        self._changed = threading.Condition()
        self._version = 0
        self._closed = False
        self._times: dict[str, float] = {}  # ts -> wall-clock time the message appeared

        self.standin = SlackStandIn(bot_token=BOT_TOKEN).start()
        self._unsubscribe = self.standin.subscribe(self._on_event)
        for user in self.users:
            self.standin.add_user(user.id, user.name, user.real_name, tz=user.tz,
                                  is_admin=user.id in set(admin_ids))
        self.standin.add_channel(CHANNEL_ID, CHANNEL_NAME)
        if project is not None:
            self._bind(project)

        self.settings = BotSettings(
            _env_file=None,  # type: ignore[call-arg]
            slack_bot_token=BOT_TOKEN,
            slack_signing_secret=self.signing_secret,
            slack_api_url=self.standin.base_url,
            admins=frozenset(admin_ids),
        )
        self.app: App = create_app(self.settings, service, client=make_client(self.settings), workers=workers)

        from bot.playground.routes import PlaygroundRoutes  # here: routes import this module

        self.routes = PlaygroundRoutes(self, loopback_only=host in ("127.0.0.1", "localhost", "::1"))
        try:
            self.server = SlackHTTPServer(self.app, host, port, routes=[self.routes])
        except OSError:
            self._unsubscribe()
            self.standin.stop()
            raise
        # A page that goes away (reload, user switch) drops its long poll: not worth a traceback.
        self.server.handle_error = _quiet_handle_error  # type: ignore[method-assign]
        self.sender = SlackRequestSender(f"{self.server.url}{EVENTS_PATH}", self.signing_secret,
                                         standin=self.standin, timeout=30)
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """The page: ``http://HOST:PORT/playground``."""
        return f"{self.server.url}/playground"

    def start(self) -> Playground:
        """Serve in a background thread; returns self."""
        self.server.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        self.server.serve_forever()

    def stop(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()  # wakes long polls so their threads end
        self.server.stop()
        self._unsubscribe()
        self.standin.stop()

    def __enter__(self) -> Playground:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _bind(self, project: str) -> None:
        info = self.service.get_project(project)
        for context in [CHANNEL_ID, *("D" + u.id for u in self.users)]:
            if self.service.default_project(context) is None:
                self.service.bind_context(context, info.name)

    # ------------------------------------------------------------------ live state

    def _on_event(self, event: dict) -> None:
        if event.get("type") in _SILENT_EVENTS:
            return
        message = event.get("message")
        with self._changed:
            if isinstance(message, dict) and message.get("ts"):
                self._times.setdefault(message["ts"], time.time())
            self._version += 1
            self._changed.notify_all()

    @property
    def version(self) -> int:
        with self._changed:
            return self._version

    def wait_for_change(self, since: int, timeout: float) -> int:
        """Block until the version passes ``since`` (or ``timeout`` or shutdown); the version now."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._changed:
            while self._version <= since and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            return self._version

    def user(self, user_id: str) -> PlaygroundUser:
        for user in self.users:
            if user.id == user_id:
                return user
        raise PlaygroundError(f"unknown user {user_id!r}")

    def state(self, user_id: str, *, since: int | None = None, timeout: float = 0.0) -> dict[str, Any]:
        """What ``user_id`` sees now (after waiting up to ``timeout`` s for a change past ``since``)."""
        self.user(user_id)
        if since is not None:
            self.wait_for_change(since, timeout)
        # Read the version first: a change during the snapshot bumps it again, so the page re-fetches.
        version = self.version
        snap = self.standin.snapshot()
        with self._changed:
            times = dict(self._times)
        dm = "D" + user_id
        channels = [
            {"id": c["id"], "name": c.get("name") or "", "type": "channel"}
            for c in snap["channels"] if not c.get("is_im")
        ]
        channels.append({"id": dm, "name": "labelbot", "type": "im"})
        messages: dict[str, list[dict]] = {}
        for channel in channels:
            own = [dict(m, channel=channel["id"]) for m in snap["messages"].get(channel["id"], [])]
            mine = [dict(e, ephemeral=True) for e in snap["ephemerals"]
                    if e.get("user") == user_id and e.get("channel") == channel["id"]]
            merged = sorted(own + mine, key=lambda m: _ts_key(m["ts"]))
            for message in merged:
                message["time"] = times.get(message["ts"])
            messages[channel["id"]] = merged
        views = {v["id"]: v for v in snap["views"]}
        home_id = snap["home_views"].get(user_id)
        files = {
            f["id"]: {"id": f["id"], "name": f.get("name"), "title": f.get("title"),
                      "mimetype": f.get("mimetype"), "size": f.get("size"), "url": file_url(f),
                      "slack_urls": [f[k] for k in ("url_private", "permalink") if f.get(k)]}
            for f in snap["files"]
        }
        return {
            "version": version,
            "me": user_id,
            "team": snap["team"],
            "bot": {"id": BOT_USER_ID, "name": "labelbot"},
            "users": [
                {"id": u["id"], "name": u["name"], "real_name": u.get("real_name") or u["name"],
                 "is_bot": u.get("is_bot", False), "is_admin": u["id"] in self.settings.admins}
                for u in snap["users"]
            ],
            "channels": channels,
            "messages": messages,
            "home": views.get(home_id) if home_id else None,
            "modals": [views[v] for v in snap["modal_stacks"].get(user_id, []) if v in views],
            "files": files,
        }

    # ------------------------------------------------------------------ what a person does

    def command(self, user_id: str, channel_id: str, text: str) -> dict[str, Any]:
        """A slash command typed in ``channel_id`` (e.g. ``"/label next 3"``), sent as Slack sends it."""
        user = self.user(user_id)
        match = _COMMAND_RE.match(text.strip())
        if match is None:
            raise PlaygroundError("Type a slash command such as /label help.")
        command, args = match.group(1), (match.group(2) or "").strip()
        if command != "/label":
            raise PlaygroundError(f"{command} is not a valid command. In the playground, try /label help.")
        channel_name = self._channel_name(channel_id)
        response_url = self.standin.new_response_url(channel_id, user_id)
        answer = self.sender.slash_command(
            command, args, user_id=user_id, user_name=user.name, channel_id=channel_id,
            channel_name=channel_name, response_url=response_url,
        )
        if answer.status != 200:
            raise PlaygroundError(f'{command} failed with the error "dispatch_failed"', status=502)
        body = answer.body
        if body:
            # A reply in the ack itself: Slack shows it like a response_url post.
            payload = body if isinstance(body, dict) else {"text": str(body)}
            _post_json(response_url, payload)
        return {"ok": True}

    def message(self, user_id: str, channel_id: str, text: str) -> dict[str, Any]:
        """A plain message typed by ``user_id`` (the bot subscribes to no message events)."""
        self.user(user_id)
        self._channel_name(channel_id)
        if not text.strip():
            raise PlaygroundError("The message is empty.")
        # Slack stores what people type with &, < and > escaped.
        message = self.standin.add_message(channel_id, blocks.escape_mrkdwn(text), user_id)
        return {"ok": True, "ts": message["ts"]}

    def action(
        self,
        user_id: str,
        *,
        block_id: str,
        action_id: str,
        channel_id: str | None = None,
        ts: str | None = None,
        view_id: str | None = None,
        value: str | None = None,
        selected_value: str | None = None,
        values: dict | None = None,
    ) -> dict[str, Any]:
        """A click or a pick on a message (``channel_id`` + ``ts``) or in a view (``view_id``)."""
        user = self.user(user_id)
        if view_id is not None:
            view = self._own_view(user_id, view_id)
            action = self._find_action(view["blocks"], block_id, action_id, value, selected_value)
            state = build_state_values(view, values or {}) if view.get("type") == "modal" else {}
            answer = self.sender.block_actions(user_id, [action], user_name=user.name, view=view,
                                               state_values=state)
        else:
            if channel_id is None or ts is None:
                raise PlaygroundError("an action needs a message (channel and ts) or a view")
            message, ephemeral = self._find_message(user_id, channel_id, ts)
            # Slack sends a message's checkboxes and menus as they stand with every click on it.
            state = message_state_values(message, values or {})
            blocks_ = message.get("blocks", [])
            action = (_ticks_action(block_id, action_id, state)
                      or self._find_action(blocks_, block_id, action_id, value, selected_value))
            answer = self.sender.block_actions(user_id, [action], user_name=user.name, channel_id=channel_id,
                                               message=message, is_ephemeral=ephemeral, state_values=state)
        if answer.status != 200:
            raise PlaygroundError("The app did not respond to this click.", status=502)
        return {"ok": True}

    def submit(self, user_id: str, view_id: str, values: dict) -> dict[str, Any]:
        """Submit a modal: required fields checked like Slack's client, then ``view_submission``."""
        user = self.user(user_id)
        view = self._own_view(user_id, view_id)
        state = build_state_values(view, values)
        missing = missing_required(view, state)
        if missing:
            return {"ok": False, "errors": missing}
        answer = self.sender.view_submission(user_id, view, state, user_name=user.name)
        if answer.status != 200:
            return {"ok": False, "errors": {}, "error": "We had some trouble connecting. Try again?"}
        body = answer.body if isinstance(answer.body, dict) else {}
        action = body.get("response_action")
        if action == "errors":
            return {"ok": False, "errors": body.get("errors") or {}}
        client = make_client(self.settings)
        if action == "update":
            client.views_update(view_id=view_id, view=body["view"])
        elif action == "push":
            client.views_push(trigger_id=self.standin.new_trigger_id(user_id), view=body["view"])
        elif action == "clear":
            self.standin.close_view(view["root_view_id"])
        else:
            self.standin.close_view(view_id)
        return {"ok": True}

    def close(self, user_id: str, view_id: str) -> dict[str, Any]:
        """Cancel a modal; ``view_closed`` goes to the bot when the view asked for it."""
        user = self.user(user_id)
        view = self._own_view(user_id, view_id)
        self.standin.close_view(view_id)
        if view.get("notify_on_close"):
            self.sender.view_closed(user_id, view, user_name=user.name)
        return {"ok": True}

    def open_home(self, user_id: str) -> dict[str, Any]:
        """The person opened the bot's Home tab: Slack sends ``app_home_opened`` every time."""
        self.user(user_id)
        answer = self.sender.app_home_opened(user_id)
        if answer.status != 200:
            raise PlaygroundError("The app did not respond.", status=502)
        return {"ok": True}

    # ------------------------------------------------------------------ helpers

    def _channel_name(self, channel_id: str) -> str:
        if channel_id.startswith("D"):
            self.user(channel_id[1:])
            return "directmessage"
        channel = self.standin.channel(channel_id)
        if channel is None:
            raise PlaygroundError(f"unknown channel {channel_id!r}")
        return channel.get("name") or channel_id

    def _own_view(self, user_id: str, view_id: str) -> dict:
        home = self.standin.home_view(user_id)
        if home is not None and home["id"] == view_id:
            return home
        for view in self.standin.modal_stack(user_id):
            if view["id"] == view_id:
                return view
        raise PlaygroundError("This view is no longer open.", status=409)

    def _find_message(self, user_id: str, channel_id: str, ts: str) -> tuple[dict, bool]:
        if channel_id.startswith("D") and channel_id != "D" + user_id:
            raise PlaygroundError("That is someone else's direct message.", status=403)
        message = self.standin.message(channel_id, ts)
        if message is not None:
            return message, False
        for ephemeral in self.standin.ephemerals(user=user_id, channel=channel_id):
            if ephemeral["ts"] == ts:
                return ephemeral, True
        raise PlaygroundError("This message is gone.", status=409)

    @staticmethod
    def _find_action(
        block_list: list[dict], block_id: str, action_id: str, value: str | None, selected_value: str | None
    ) -> dict:
        scope = [b for b in block_list if b.get("block_id") == block_id] or block_list
        try:
            return action_from_blocks(scope, action_id, value=value, selected_value=selected_value)
        except LookupError:
            raise PlaygroundError("This button or menu is no longer there.", status=409) from None


def _quiet_handle_error(request: Any, client_address: Any) -> None:
    error = sys.exc_info()[1]
    if isinstance(error, (BrokenPipeError, ConnectionResetError)):
        log.debug("client %s went away", client_address)
    else:
        log.exception("error while serving %s", client_address)


def file_url(file: dict) -> str:
    """Where the page loads an uploaded file from."""
    return f"/playground/files/{file['id']}"


def _ts_key(ts: str) -> tuple[int, int]:
    seconds, _, fraction = str(ts).partition(".")
    return int(seconds or 0), int((fraction + "000000")[:6])


def _post_json(url: str, payload: dict) -> None:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10):
        pass


# ---------------------------------------------------------------------------------- modal state

_INPUT_TYPES = {"checkboxes", "static_select", "multi_static_select", "radio_buttons", "plain_text_input"}


def _options(element: dict) -> list[dict]:
    return list(element.get("options") or []) + [
        o for group in element.get("option_groups") or [] for o in group.get("options", [])
    ]


def build_state_values(view: dict, values: dict) -> dict:
    """Slack's ``view.state.values`` for what the person entered.

    ``values`` is ``{block_id: {action_id: value}}`` with a string (select, radio, text input) or a list
    of strings (checkboxes, multi-select); options are copied from the view as Slack does. Every input
    block appears, empty ones with ``None``/``[]``, like Slack sends them. Unknown values are dropped.
    """
    state: dict[str, dict] = {}
    for block in view.get("blocks", []):
        element = block.get("element") if block.get("type") == "input" else None
        if not isinstance(element, dict) or element.get("type") not in _INPUT_TYPES:
            continue
        action_id = element.get("action_id", "")
        given = (values.get(block.get("block_id"), {}) or {}).get(action_id)
        state.setdefault(block["block_id"], {})[action_id] = _state_entry(element, given)
    return state


def _state_entry(element: dict, given: Any) -> dict[str, Any]:
    """One element's state as Slack sends it, for ``given`` (a string, a list of strings or nothing)."""
    kind = element["type"]
    entry: dict[str, Any] = {"type": kind}
    if kind == "plain_text_input":
        entry["value"] = given if isinstance(given, str) and given != "" else None
        return entry
    wanted = given if isinstance(given, list) else ([given] if isinstance(given, str) else [])
    chosen = [copy.deepcopy(o) for o in _options(element) if o.get("value") in set(wanted)]
    if kind in ("checkboxes", "multi_static_select"):
        entry["selected_options"] = chosen
    else:
        entry["selected_option"] = chosen[0] if chosen else None
    return entry


def message_state_values(message: dict, values: dict) -> dict:
    """The ``state.values`` Slack sends with a click on ``message``: every checkbox group and menu in its
    actions blocks, with what the person ticked or picked (``values`` as for :func:`build_state_values`)."""
    state: dict[str, dict] = {}
    for block in message.get("blocks", []):
        if block.get("type") != "actions":
            continue
        for element in block.get("elements", []):
            if element.get("type") in _INPUT_TYPES - {"plain_text_input"} and element.get("action_id"):
                given = (values.get(block.get("block_id"), {}) or {}).get(element["action_id"])
                state.setdefault(block["block_id"], {})[element["action_id"]] = _state_entry(element, given)
    return state


def _ticks_action(block_id: str, action_id: str, state: dict) -> dict | None:
    """The action of a tick in a message's checkboxes or multi-select: every option now chosen (none
    when the last one was unticked), as Slack sends it. None for any other element."""
    entry = (state.get(block_id) or {}).get(action_id)
    if entry is None or "selected_options" not in entry:
        return None
    return {"type": entry["type"], "action_id": action_id, "block_id": block_id,
            "selected_options": entry["selected_options"], "action_ts": f"{time.time():.6f}"}


def missing_required(view: dict, state: dict) -> dict[str, str]:
    """``{block_id: message}`` for required inputs left empty (Slack's client blocks the submit)."""
    missing = {}
    for block in view.get("blocks", []):
        if block.get("type") != "input" or block.get("optional"):
            continue
        entry = next(iter((state.get(block.get("block_id")) or {}).values()), None)
        if entry is None:
            continue
        filled = entry.get("value") or entry.get("selected_option") or entry.get("selected_options")
        if not filled:
            missing[block["block_id"]] = REQUIRED_MESSAGE
    return missing
