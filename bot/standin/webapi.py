"""An in-memory Slack Web API stand-in served over HTTP on loopback (stdlib, and slack_sdk's models to
validate Block Kit).

``SlackStandIn`` answers the Web API methods a bolt app uses (``chat.*``, ``views.*``,
``conversations.*``, ``users.*``, the three-step ``files_upload_v2`` flow and ``response_url``
posts) the way Slack does, keeps the resulting workspace state (messages, ephemerals, views,
files) and records every call. Point ``slack_sdk.WebClient(base_url=standin.base_url)`` at it.

It is meant for tests (``calls``, ``wait_for``, ``fail_next``) and as the engine of a local
playground (``subscribe``, ``add_message``, ``snapshot``). All state sits behind one lock, so the
HTTP threads, the test thread and a UI thread can use it at once.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import hashlib
import itertools
import json
import logging
import mimetypes
import queue
import secrets
import threading
import time
import urllib.parse
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bot import blockkit

logger = logging.getLogger(__name__)

TEAM_ID = "T0001"
TEAM_DOMAIN = "labelbot-test"
BOT_USER_ID = "U0BOT"
BOT_ID = "B0BOT"
APP_ID = "A0APP"
BOT_NAME = "labelbot"
DEFAULT_BOT_TOKEN = "xoxb-test"
DEFAULT_SCOPES = ("chat:write", "commands", "files:write", "im:write", "users:read", "channels:history")

MAX_MESSAGE_TEXT = 40_000
MAX_MODAL_STACK = 3
RESPONSE_URL_USES = 5

# ts values are "seconds.micros" strings; a fixed origin plus a counter keeps them strictly
# increasing, equally long (so they also sort as strings) and reproducible between runs.
_TS_ORIGIN_MICROS = 1_700_000_000 * 1_000_000
_TS_STEP_MICROS = 100

# Keys that slack_sdk sends JSON-encoded inside form bodies.
_JSON_PARAMS = ("blocks", "attachments", "view", "files", "metadata", "user_auth_blocks")


@dataclass(frozen=True)
class RecordedCall:
    """One request the stand-in answered.

    ``method`` is the Web API method (``"chat.postMessage"``), or ``"upload"`` for bytes posted
    to an upload URL, or ``"response_url"`` for a ``respond()`` post. ``params`` is the parsed
    request (JSON-encoded form fields decoded; the token removed). ``status`` and ``response``
    are what the stand-in answered.
    """

    method: str
    params: dict
    time: float
    status: int = 200
    response: dict | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.response and self.response.get("ok"))


class StandInError(Exception):
    """A Slack error answer (``{"ok": false, "error": ...}``); also raised by the Python helpers."""

    def __init__(self, error: str, status: int = 200, detail: str | None = None, **extra: Any) -> None:
        super().__init__(f"{error}: {detail}" if detail else error)
        self.error = error
        self.status = status
        self.extra = dict(extra)
        if detail:
            # Slack explains argument problems in response_metadata.messages; keep that shape.
            self.extra.setdefault("response_metadata", {"messages": [f"[ERROR] {detail}"]})

    def body(self) -> dict:
        return {"ok": False, "error": self.error, **self.extra}


@dataclass
class _Fault:
    status: int
    retry_after: int
    remaining: int
    error: str | None


# --------------------------------------------------------------------------- block validation


def validate_blocks(blocks: Any) -> list[str]:
    """Slack-style problems with a message's ``blocks`` (:func:`bot.blockkit.problems`), empty when valid."""
    return blockkit.problems({"blocks": blocks}, "message")


def _short_id(*parts: Any) -> str:
    """Deterministic stand-in for the random ids Slack gives blocks and elements without one."""
    digest = hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return digest[:5]


def _with_ids(blocks: list) -> list:
    """Copy of ``blocks`` with block_id/action_id filled in, as Slack stores them."""
    out = copy.deepcopy(blocks)
    for i, block in enumerate(out):
        block.setdefault("block_id", _short_id(i, block))
        elements = list(block.get("elements") or []) if block.get("type") == "actions" else []
        for key in ("accessory", "element"):
            if isinstance(block.get(key), dict):
                elements.append(block[key])
        for j, el in enumerate(elements):
            if isinstance(el, dict) and el.get("type") not in ("plain_text", "mrkdwn", "image"):
                el.setdefault("action_id", _short_id(i, j, el))
    return out


def _ts_key(ts: Any) -> tuple[int, int]:
    """Exact ordering key of a ``"seconds.micros"`` ts (floats would round, strings mis-sort "9.1")."""
    seconds, _, fraction = str(ts).partition(".")
    try:
        return int(seconds or 0), int((fraction + "000000")[:6])
    except ValueError as err:
        raise StandInError("invalid_ts_latest", detail=f"bad ts {ts!r}") from err


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def _tz_offset(tz: str) -> int:
    try:
        offset = datetime.datetime.now(zoneinfo.ZoneInfo(tz)).utcoffset()
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return 0
    return int(offset.total_seconds()) if offset else 0


# --------------------------------------------------------------------------- the stand-in


class SlackStandIn:
    """A Slack workspace with one bot, answering the Web API on ``http://127.0.0.1:PORT/api/``.

    Parameters
    ----------
    bot_token : every Web API call must carry it (``Authorization: Bearer`` or ``token=``),
        else ``invalid_auth`` (``not_authed`` when missing).
    host, port : where to listen; port 0 picks a free one.
    team_id, team_domain : the workspace.
    scopes : sent back in the ``X-OAuth-Scopes`` header, which bolt reads.

    Examples
    --------
    >>> with SlackStandIn() as slack:                                   # doctest: +SKIP
    ...     slack.add_user("U1", "alice")
    ...     client = WebClient(token="xoxb-test", base_url=slack.base_url)
    ...     client.chat_postMessage(channel="U1", text="hi")
    ...     slack.messages(slack.dm_channel("U1"))[0]["text"]
    'hi'
    """

    def __init__(
        self,
        bot_token: str = DEFAULT_BOT_TOKEN,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        team_id: str = TEAM_ID,
        team_domain: str = TEAM_DOMAIN,
        scopes: Iterable[str] = DEFAULT_SCOPES,
        validate: bool = True,
    ) -> None:
        self.bot_token = bot_token
        # Block Kit checks on every message and view (off only where the stand-in's own CPU would
        # distort a measurement of the bot: bench/slack_latency.py; real Slack's CPU is not ours).
        self.validate = validate
        self.host = host
        self.team_id = team_id
        self.team_domain = team_domain
        self.scopes = ",".join(scopes)
        self._requested_port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

        # One re-entrant lock guards all state; the condition wakes wait_for/wait_until.
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        # Subscribers run on one dispatcher thread, in event order, so a slow UI never holds up
        # an API answer and a callback may itself call the stand-in.
        self._subscribers: list[Callable[[dict], None]] = []
        self._events: queue.SimpleQueue[tuple[dict, tuple] | None] = queue.SimpleQueue()
        self._dispatcher: threading.Thread | None = None

        self._calls: list[RecordedCall] = []
        self._faults: dict[str, list[_Fault]] = {}
        self._ts_counter = itertools.count(1)
        self._id_counter = itertools.count(1)
        self._users: dict[str, dict] = {}
        self._channels: dict[str, dict] = {}
        self._members: dict[str, set[str] | None] = {}  # None: everyone is a member
        self._bot_member: set[str] = set()
        self._messages: dict[str, list[dict]] = {}
        self._ephemerals: list[dict] = []
        self._views: dict[str, dict] = {}
        self._view_owner: dict[str, str | None] = {}
        self._modal_stacks: dict[str | None, list[str]] = {}
        self._home_views: dict[str, str] = {}
        self._files: dict[str, dict] = {}
        self._file_content: dict[str, bytes] = {}
        self._triggers: dict[str, str | None] = {}
        self._used_triggers: set[str] = set()
        self._response_urls: dict[str, dict] = {}
        self._responses: list[dict] = []
        # A SocketModeStandIn attached to this workspace (bot.standin.socket_mode); apps.connections.open
        # answers its URLs.
        self.socket_mode: Any = None

        self._users[BOT_USER_ID] = self._user_object(
            BOT_USER_ID, BOT_NAME, "Labelbot", "UTC", is_admin=False, is_owner=False, is_bot=True,
            email=None, deleted=False,
        )
        self._methods: dict[str, Callable[[dict], dict]] = {
            "api.test": lambda params: {"args": params},
            "apps.connections.open": self._apps_connections_open,
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "conversations.open": self._conversations_open,
            "conversations.info": self._conversations_info,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "conversations.members": self._conversations_members,
            "conversations.list": self._conversations_list,
            "users.info": self._users_info,
            "users.list": self._users_list,
            "users.lookupByEmail": self._users_lookup_by_email,
            "views.open": self._views_open,
            "views.push": self._views_push,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "reactions.add": self._reactions_add,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
        }

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> SlackStandIn:
        """Start serving in a daemon thread (idempotent); returns self."""
        with self._lock:
            if self._server is not None:
                return self
            server = _Server((self.host, self._requested_port), _Handler)
            server.standin = self
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="slack-standin", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; the state stays readable."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        with self._lock:
            dispatcher, events, self._dispatcher = self._dispatcher, self._events, None
        if dispatcher is not None:
            events.put(None)  # delivers what is queued, then ends
            dispatcher.join(timeout=5)

    def __enter__(self) -> SlackStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("SlackStandIn is not started; call start() first")
        return self._server.server_address[1]

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT/``."""
        return f"http://{self.host}:{self.port}/"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/api/``: pass as ``WebClient(base_url=...)``."""
        return f"{self.root_url}api/"

    # ------------------------------------------------------------------ workspace setup

    def add_user(
        self,
        user_id: str,
        name: str,
        real_name: str | None = None,
        tz: str = "UTC",
        is_admin: bool = False,
        *,
        is_owner: bool = False,
        is_bot: bool = False,
        email: str | None = None,
        deleted: bool = False,
    ) -> dict:
        """Add (or replace) a workspace member; returns its ``users.info`` object."""
        user = self._user_object(
            user_id, name, real_name or name, tz, is_admin=is_admin, is_owner=is_owner, is_bot=is_bot,
            email=email, deleted=deleted,
        )
        with self._lock:
            self._users[user_id] = user
            self._emit({"type": "user_added", "user": user})
        return copy.deepcopy(user)

    def add_channel(
        self,
        channel_id: str,
        name: str,
        *,
        is_private: bool = False,
        members: Iterable[str] | None = None,
        bot_is_member: bool = True,
    ) -> dict:
        """Add a channel. ``members=None`` makes every user a member; the bot needs
        ``bot_is_member`` to post there (else ``not_in_channel``, as in Slack)."""
        channel = {
            "id": channel_id, "name": name, "is_channel": not is_private, "is_group": False,
            "is_im": False, "is_mpim": False, "is_private": is_private, "is_archived": False,
            "is_general": False, "created": int(time.time()), "creator": "", "context_team_id": self.team_id,
        }
        with self._lock:
            self._channels[channel_id] = channel
            member_set = None if members is None else set(members)
            if member_set is not None:
                member_set.discard(BOT_USER_ID)
            self._members[channel_id] = member_set
            if bot_is_member:
                self._bot_member.add(channel_id)
            else:
                self._bot_member.discard(channel_id)
            self._messages.setdefault(channel_id, [])
            self._emit({"type": "channel_added", "channel": self._channel_object(channel_id)})
        return self.channel(channel_id)

    def dm_channel(self, user_id: str) -> str:
        """The bot's DM channel id with ``user_id`` (``"D" + user_id``), opened if the user exists."""
        with self._lock:
            if user_id in self._users:
                self._open_im(user_id)
        return "D" + user_id

    def add_message(
        self,
        channel: str,
        text: str,
        user: str,
        *,
        blocks: list | None = None,
        thread_ts: str | None = None,
    ) -> dict:
        """Post a message as ``user`` (a human typing); returns it. Send the matching event yourself."""
        with self._lock:
            if user not in self._users:
                raise StandInError("user_not_found", detail=user)
            channel_id = self._resolve_channel(channel)
            fields: dict[str, Any] = {"text": text}
            if blocks is not None:
                fields["blocks"] = _with_ids(blocks)
            message = self._store_message(channel_id, fields, user=user, thread_ts=thread_ts)
        return copy.deepcopy(message)

    def new_trigger_id(self, user_id: str | None = None) -> str:
        """A trigger_id that ``views.open``/``views.push`` accept once, tied to ``user_id``."""
        with self._lock:
            trigger_id = f"{next(self._id_counter)}.{int(time.time())}.{secrets.token_hex(8)}"
            self._triggers[trigger_id] = user_id
        return trigger_id

    def new_response_url(self, channel: str, user: str, message_ts: str | None = None) -> str:
        """A response_url for a slash command or an action on message ``message_ts``.

        Posts to it are recorded in ``responses`` and applied like Slack does: ``replace_original``
        updates and ``delete_original`` deletes message ``message_ts`` (a channel message or an
        ephemeral one); ``response_type: in_channel`` posts in ``channel``; otherwise an ephemeral
        message to ``user``. Like Slack, a response_url takes five posts.
        """
        token = secrets.token_urlsafe(12)
        with self._lock:
            self._response_urls[token] = {
                "channel": channel, "user": user, "message_ts": message_ts, "uses": 0,
            }
        return f"{self.root_url}response_url/{token}"

    # ------------------------------------------------------------------ fault injection

    def fail_next(
        self, method: str, status: int = 429, retry_after: int = 1, times: int = 1, error: str | None = None
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail.

        ``status=429``: HTTP 429 with ``Retry-After: retry_after`` and ``{"ok": false, "error":
        "ratelimited"}``. ``status>=500``: that status with ``fatal_error``. ``status=200`` with
        ``error=...``: a normal Slack error answer (e.g. ``error="channel_not_found"``).
        ``method`` may also be ``"upload"`` or ``"response_url"``.
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        if status == 200 and not error:
            raise ValueError("status=200 needs error=...")
        with self._lock:
            self._faults.setdefault(method, []).append(_Fault(status, retry_after, times, error))

    def _take_fault(self, method: str) -> _Fault | None:
        pending = self._faults.get(method)
        if not pending:
            return None
        fault = pending[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            pending.pop(0)
        return fault

    # ------------------------------------------------------------------ recording and waiting

    @property
    def calls(self) -> list[RecordedCall]:
        """Every answered request, oldest first (a snapshot copy)."""
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[RecordedCall]:
        with self._lock:
            return [c for c in self._calls if c.method == method]

    def errors(self) -> list[RecordedCall]:
        """Calls that got an error answer (HTTP error or ``ok: false``): a bot test usually wants none."""
        with self._lock:
            return [c for c in self._calls if not c.ok]

    def clear_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def wait_for(
        self, what: str | Callable[[RecordedCall], bool], timeout: float = 5.0, count: int = 1
    ) -> list[RecordedCall]:
        """Block until at least ``count`` recorded calls match; return all matching calls.

        ``what`` is a method name or a predicate on ``RecordedCall``. Raises ``TimeoutError``
        (listing the calls seen) when ``timeout`` seconds pass first.
        """
        if isinstance(what, str):
            method = what

            def predicate(call: RecordedCall) -> bool:
                return call.method == method
        else:
            predicate = what
        found: list[RecordedCall] = []

        def enough() -> bool:
            nonlocal found
            found = [c for c in self._calls if predicate(c)]
            return len(found) >= count

        self._wait(enough, timeout, lambda: f"{count} call(s) matching {what!r}; got {len(found)}")
        return found

    def wait_until(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        """Block until ``condition()`` is true; it is re-checked on every call and state change."""
        self._wait(condition, timeout, lambda: f"condition {condition!r}")

    def _wait(self, condition: Callable[[], bool], timeout: float, describe: Callable[[], str]) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [c.method for c in self._calls[-20:]]
                    raise TimeoutError(
                        f"timed out after {timeout}s waiting for {describe()}; last calls: {seen}"
                    )
                self._changed.wait(remaining)

    # ------------------------------------------------------------------ state readers

    def messages(self, channel: str, thread_ts: str | None = None) -> list[dict]:
        """Messages in ``channel`` oldest first, thread replies included; ``thread_ts`` keeps one
        thread (parent and replies). ``channel`` may be an id, ``#name`` or a user id (its DM)."""
        with self._lock:
            channel_id = self._lookup_channel(channel)
            if channel_id is None:
                if channel in self._users or (channel.startswith("D") and channel[1:] in self._users):
                    return []  # a DM nobody opened yet
                raise StandInError("channel_not_found", detail=channel)
            msgs = self._messages.get(channel_id, [])
            if thread_ts is not None:
                msgs = [m for m in msgs if thread_ts in (m["ts"], m.get("thread_ts"))]
            return copy.deepcopy(msgs)

    def message(self, channel: str, ts: str) -> dict | None:
        with self._lock:
            channel_id = self._lookup_channel(channel)
            found = self._find_message(channel_id, ts) if channel_id else None
            return copy.deepcopy(found)

    def ephemerals(self, user: str | None = None, channel: str | None = None) -> list[dict]:
        """Ephemeral messages (from ``chat.postEphemeral`` and ``response_url``), oldest first."""
        with self._lock:
            return copy.deepcopy([
                e for e in self._ephemerals
                if (user is None or e["user"] == user) and (channel is None or e["channel"] == channel)
            ])

    @property
    def responses(self) -> list[dict]:
        """Accepted ``response_url`` posts: ``{"channel", "user", "message_ts", "payload", "action"}``
        where action is ``replaced``, ``deleted``, ``in_channel`` or ``ephemeral``."""
        with self._lock:
            return copy.deepcopy(self._responses)

    def view(self, view_id: str) -> dict | None:
        with self._lock:
            return copy.deepcopy(self._views.get(view_id))

    def views(self) -> list[dict]:
        """All views ever opened or published (closed ones included), oldest first."""
        with self._lock:
            return copy.deepcopy(list(self._views.values()))

    def modal_stack(self, user_id: str | None) -> list[dict]:
        """Open modals of ``user_id``, bottom first (``None``: modals opened with unknown triggers)."""
        with self._lock:
            return copy.deepcopy([self._views[v] for v in self._modal_stacks.get(user_id, [])])

    def home_view(self, user_id: str) -> dict | None:
        with self._lock:
            view_id = self._home_views.get(user_id)
            return copy.deepcopy(self._views[view_id]) if view_id else None

    def close_view(self, view_id: str) -> None:
        """Close a modal and the ones pushed above it (what a user's "Cancel" or a
        ``response_action: clear`` does)."""
        with self._lock:
            for user, stack in self._modal_stacks.items():
                if view_id in stack:
                    closed = stack[stack.index(view_id):]
                    del stack[stack.index(view_id):]
                    for vid in closed:
                        self._emit({"type": "view_closed", "user": user, "view_id": vid})
                    break

    def user(self, user_id: str) -> dict | None:
        with self._lock:
            return copy.deepcopy(self._users.get(user_id))

    def channel(self, channel_id: str) -> dict | None:
        with self._lock:
            return copy.deepcopy(self._channel_object(channel_id)) if channel_id in self._channels else None

    def files(self) -> list[dict]:
        """File objects (as ``files.completeUploadExternal`` answers them), oldest first."""
        with self._lock:
            return copy.deepcopy(list(self._files.values()))

    def file_content(self, file_id: str) -> bytes:
        with self._lock:
            if file_id not in self._file_content:
                raise StandInError("file_not_found", detail=file_id)
            return self._file_content[file_id]

    def snapshot(self) -> dict:
        """The whole workspace as JSON-safe data (for a UI's first render)."""
        with self._lock:
            return copy.deepcopy({
                "team": {"id": self.team_id, "domain": self.team_domain},
                "bot": {"user_id": BOT_USER_ID, "bot_id": BOT_ID, "app_id": APP_ID},
                "users": list(self._users.values()),
                "channels": [self._channel_object(c) for c in self._channels],
                "messages": self._messages,
                "ephemerals": self._ephemerals,
                "views": list(self._views.values()),
                "modal_stacks": {u: ids for u, ids in self._modal_stacks.items() if u is not None},
                "home_views": self._home_views,
                "files": list(self._files.values()),
            })

    # ------------------------------------------------------------------ events

    def subscribe(self, callback: Callable[[dict], None]) -> Callable[[], None]:
        """Call ``callback(event)`` on every state change and API call; returns an unsubscribe function.

        Events are dicts with a ``type``: ``api_call`` (``call``), ``message_posted`` /
        ``message_updated`` (``channel``, ``message``), ``message_deleted`` (``channel``, ``ts``),
        ``ephemeral_posted`` (``channel``, ``user``, ``message``), ``view_opened`` / ``view_pushed`` /
        ``view_updated`` / ``home_published`` (``user``, ``view``), ``view_closed`` (``user``,
        ``view_id``), ``ephemeral_updated`` (``channel``, ``user``, ``message``), ``ephemeral_deleted``
        (``channel``, ``user``, ``ts``), ``file_uploaded`` (``file``), ``user_added``, ``channel_added``.
        Callbacks run on one dispatcher thread, in event order, after the change is made (so
        they may call the stand-in); an exception in one is logged and ignored. An event reaches
        the callbacks subscribed when it happened, even if one unsubscribes before delivery.
        """
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def _emit(self, event: dict) -> None:
        # Called with the state lock held, so queue order is state order; the copy freezes
        # the event against later changes.
        self._changed.notify_all()
        if not self._subscribers:
            return
        if self._dispatcher is None or not self._dispatcher.is_alive():
            # A fresh queue per dispatcher: a stop sentinel can only end the thread it was meant for.
            self._events = queue.SimpleQueue()
            self._dispatcher = threading.Thread(target=self._dispatch_loop, args=(self._events,),
                                                name="slack-standin-events", daemon=True)
            self._dispatcher.start()
        # The subscriber list is taken now: an event goes to whoever was subscribed when it happened.
        self._events.put((copy.deepcopy(event), tuple(self._subscribers)))

    def _dispatch_loop(self, events: queue.SimpleQueue) -> None:
        while (item := events.get()) is not None:
            event, callbacks = item
            for callback in callbacks:
                try:
                    callback(event)
                except Exception:  # a broken UI must not break the bot under test
                    logger.exception("SlackStandIn subscriber failed on %s", event.get("type"))

    # ------------------------------------------------------------------ HTTP routing

    def _route(self, verb: str, path: str, query: str, headers: Any, raw: bytes) -> tuple[int, dict, bytes]:
        if path.startswith("/api/"):
            status, extra, body = self._handle_api(path[len("/api/"):], query, headers, raw)
        elif path.startswith("/upload/") and verb == "POST":
            status, extra, body = self._handle_upload(path[len("/upload/"):], raw)
        elif path.startswith("/response_url/") and verb == "POST":
            status, extra, body = self._handle_response_url(path[len("/response_url/"):], headers, raw)
        else:
            status, extra, body = 404, {}, {"ok": False, "error": "not_found"}
        return status, extra, json.dumps(body).encode("utf-8")

    def _record(self, method: str, params: dict, status: int, body: dict) -> dict:
        """Record a call; returns a copy of ``body`` that is safe to serialize after the lock is
        released (``body`` may hold live state such as the posted message)."""
        call = RecordedCall(method, copy.deepcopy(params), time.time(), status, copy.deepcopy(body))
        self._calls.append(call)
        self._emit({"type": "api_call", "call": call})
        return call.response

    def _apply_fault(self, method: str) -> tuple[int, dict, dict] | None:
        fault = self._take_fault(method)
        if fault is None:
            return None
        if fault.status == 429:
            return 429, {"Retry-After": str(fault.retry_after)}, {"ok": False, "error": "ratelimited"}
        return fault.status, {}, {"ok": False, "error": fault.error or "fatal_error"}

    def _handle_api(self, method: str, query: str, headers: Any, raw: bytes) -> tuple[int, dict, dict]:
        extra_headers = {"X-OAuth-Scopes": self.scopes}
        status = 200
        try:
            params = _parse_params(headers.get("Content-Type") or "", query, raw)
        except StandInError as err:
            params, parse_error = {}, err
        else:
            parse_error = None
        auth = headers.get("Authorization") or ""
        token = auth[len("Bearer "):].strip() if auth.startswith("Bearer ") else params.pop("token", None)
        params.pop("token", None)
        with self._lock:
            fault = self._apply_fault(method)
            if fault is not None:
                status, fault_headers, body = fault
                extra_headers.update(fault_headers)
            else:
                try:
                    handler = self._methods.get(method)
                    if handler is None:
                        raise StandInError("unknown_method")
                    if not token:
                        raise StandInError("not_authed")
                    if method == "apps.connections.open":  # the one method that takes the app-level token
                        if not token.startswith("xapp-"):
                            raise StandInError("not_allowed_token_type")
                        if self.socket_mode is None or token != self.socket_mode.app_token:
                            raise StandInError("invalid_auth")
                    elif token != self.bot_token:
                        raise StandInError("invalid_auth")
                    if parse_error is not None:
                        raise parse_error
                    body = {"ok": True, **handler(params)}
                except StandInError as err:
                    status, body = err.status, err.body()
                except Exception:  # a stand-in bug or odd params: answer and record, don't hang up
                    logger.exception("SlackStandIn failed on %s %r", method, params)
                    status, body = 500, {"ok": False, "error": "standin_internal_error"}
            body = self._record(method, params, status, body)
        return status, extra_headers, body

    def _handle_upload(self, file_id: str, raw: bytes) -> tuple[int, dict, dict]:
        params = {"file_id": file_id, "length": len(raw)}
        with self._lock:
            fault = self._apply_fault("upload")
            if fault is not None:
                status, headers, body = fault
            elif file_id not in self._files:
                status, headers, body = 404, {}, {"ok": False, "error": "file_not_found"}
            else:
                self._file_content[file_id] = bytes(raw)
                self._files[file_id]["size"] = len(raw)
                status, headers, body = 200, {}, {"ok": True}
            body = self._record("upload", params, status, body)
        return status, headers, body

    def _handle_response_url(self, token: str, headers: Any, raw: bytes) -> tuple[int, dict, dict]:
        try:
            payload = _parse_params(headers.get("Content-Type") or "application/json", "", raw)
        except StandInError as err:
            payload, parse_error = {}, err
        else:
            parse_error = None
        with self._lock:
            fault = self._apply_fault("response_url")
            if fault is not None:
                status, extra, body = fault
            else:
                extra = {}
                try:
                    if parse_error is not None:
                        raise parse_error
                    self._apply_response(token, payload)
                    status, body = 200, {"ok": True}
                except StandInError as err:
                    status, body = err.status, err.body()
            body = self._record("response_url", payload, status, body)
        return status, extra, body

    def _apply_response(self, token: str, payload: dict) -> None:
        target = self._response_urls.get(token)
        if target is None:
            raise StandInError("expired_url", status=404)
        if target["uses"] >= RESPONSE_URL_USES:
            # Slack allows five posts per response_url; more is a bot bug.
            raise StandInError("used_url", status=404, detail=f"response_url used {RESPONSE_URL_USES} times")
        channel_id = self._lookup_channel(target["channel"]) or target["channel"]
        message_ts = target["message_ts"]
        # The original is a channel message, or an ephemeral one (Slack lets both be replaced).
        original = self._find_message(channel_id, message_ts) if message_ts else None
        ephemeral = None if original or not message_ts else self._find_ephemeral(message_ts)
        if _truthy(payload.get("delete_original")):
            if original is not None:
                self._remove_message(channel_id, message_ts)
            elif ephemeral is not None:
                self._ephemerals.remove(ephemeral)
                self._emit({"type": "ephemeral_deleted", "channel": ephemeral["channel"],
                            "user": ephemeral["user"], "ts": message_ts})
            else:
                raise StandInError("message_not_found", status=404, detail="no original message to delete")
            action = "deleted"
        else:
            fields = self._message_fields(payload, status=400)
            if _truthy(payload.get("replace_original")):
                if original is not None:
                    self._update_message(channel_id, original, fields, replace=True)
                elif ephemeral is not None:
                    for key in ("blocks", "attachments", "metadata"):
                        ephemeral.pop(key, None)
                    ephemeral.update({"text": "", **fields})
                    self._emit({"type": "ephemeral_updated", "channel": ephemeral["channel"],
                                "user": ephemeral["user"], "message": ephemeral})
                else:
                    raise StandInError("message_not_found", status=404,
                                       detail="no original message to replace")
                action = "replaced"
            elif payload.get("response_type") == "in_channel":
                self._store_message(channel_id, fields, user=BOT_USER_ID, thread_ts=payload.get("thread_ts"))
                action = "in_channel"
            else:
                self._store_ephemeral(channel_id, target["user"], fields, payload.get("thread_ts"))
                action = "ephemeral"
        target["uses"] += 1
        self._responses.append({
            "channel": channel_id, "user": target["user"], "message_ts": message_ts,
            "payload": copy.deepcopy(payload), "action": action,
        })

    # ------------------------------------------------------------------ state internals

    def _user_object(
        self, user_id: str, name: str, real_name: str, tz: str, *, is_admin: bool, is_owner: bool,
        is_bot: bool, email: str | None, deleted: bool,
    ) -> dict:
        profile = {"real_name": real_name, "display_name": name, "real_name_normalized": real_name}
        if email:
            profile["email"] = email
        if is_bot:
            profile["bot_id"] = BOT_ID
        return {
            "id": user_id, "team_id": self.team_id, "name": name, "real_name": real_name, "deleted": deleted,
            "tz": tz, "tz_label": tz, "tz_offset": _tz_offset(tz), "is_admin": is_admin, "is_owner": is_owner,
            "is_primary_owner": False, "is_restricted": False, "is_ultra_restricted": False, "is_bot": is_bot,
            "is_app_user": False, "profile": profile,
        }

    def _channel_object(self, channel_id: str) -> dict:
        channel = dict(self._channels[channel_id])
        if not channel["is_im"]:
            channel["is_member"] = channel_id in self._bot_member
            members = self._members.get(channel_id)
            n_users = len(self._users) - 1 if members is None else len(members)
            channel["num_members"] = n_users + int(channel["is_member"])
        return channel

    def _open_im(self, user_id: str) -> tuple[str, bool]:
        channel_id = "D" + user_id
        existed = channel_id in self._channels
        if not existed:
            self._channels[channel_id] = {
                "id": channel_id, "is_channel": False, "is_group": False, "is_im": True, "is_mpim": False,
                "is_private": True, "is_archived": False, "user": user_id, "is_open": True,
                "created": int(time.time()), "context_team_id": self.team_id,
            }
            self._members[channel_id] = {user_id}
            self._messages[channel_id] = []
        return channel_id, existed

    def _lookup_channel(self, channel: str) -> str | None:
        if channel in self._channels:
            return channel
        if channel.startswith("#"):
            for cid, ch in self._channels.items():
                if ch.get("name") == channel[1:]:
                    return cid
        if channel in self._users and "D" + channel in self._channels:
            return "D" + channel
        return None

    def _resolve_channel(self, channel: Any, *, open_dm: bool = True) -> str:
        """Channel id for a channel id, ``#name`` or user id (Slack posts to a user's DM)."""
        if not channel or not isinstance(channel, str):
            raise StandInError("channel_not_found", detail="channel is required")
        found = self._lookup_channel(channel)
        if found is not None:
            return found
        user_id = channel[1:] if channel.startswith("D") and channel[1:] in self._users else channel
        if open_dm and user_id in self._users:
            return self._open_im(user_id)[0]
        raise StandInError("channel_not_found", detail=channel)

    def _is_member(self, channel_id: str, user_id: str) -> bool:
        channel = self._channels[channel_id]
        if user_id == BOT_USER_ID:
            return channel["is_im"] or channel_id in self._bot_member
        members = self._members.get(channel_id)
        return members is None or user_id in members

    def _next_ts(self) -> str:
        micros = _TS_ORIGIN_MICROS + next(self._ts_counter) * _TS_STEP_MICROS
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._id_counter):08d}"

    def _find_message(self, channel_id: str | None, ts: Any) -> dict | None:
        for message in self._messages.get(channel_id or "", []):
            if message["ts"] == ts:
                return message
        return None

    def _find_ephemeral(self, ts: str) -> dict | None:
        return next((e for e in self._ephemerals if e["ts"] == ts), None)

    def _message_fields(self, params: dict, status: int = 200, require_content: bool = True) -> dict:
        """Validated message content from API params: text, blocks, attachments, metadata."""
        text = params.get("text")
        blocks = params.get("blocks")
        attachments = params.get("attachments")
        if text is not None and not isinstance(text, str):
            text = str(text)
        if require_content and not text and not blocks and not attachments:
            raise StandInError("no_text", status=status)
        if text and len(text) > MAX_MESSAGE_TEXT:
            raise StandInError("msg_too_long", status=status)
        fields: dict[str, Any] = {}
        if text is not None:
            fields["text"] = text
        if blocks is not None:
            if not isinstance(blocks, list):
                raise StandInError("invalid_blocks_format", status=status,
                                   detail="blocks must be a JSON array")
            problems = validate_blocks(blocks) if self.validate else []
            if problems:
                raise StandInError("invalid_blocks", status=status, errors=problems,
                                   response_metadata={"messages": [f"[ERROR] {p}" for p in problems]})
            fields["blocks"] = _with_ids(blocks)
        if attachments is not None:
            if not isinstance(attachments, list):
                raise StandInError("invalid_attachments", status=status)
            fields["attachments"] = attachments
        if params.get("metadata") is not None:
            fields["metadata"] = params["metadata"]
        return fields

    def _store_message(
        self, channel_id: str, fields: dict, *, user: str, thread_ts: Any = None, extra: dict | None = None
    ) -> dict:
        message: dict[str, Any] = {"type": "message", "user": user, "text": fields.get("text", "")}
        if user == BOT_USER_ID:
            message.update({
                "bot_id": BOT_ID, "app_id": APP_ID,
                "bot_profile": {"id": BOT_ID, "app_id": APP_ID, "name": BOT_NAME, "team_id": self.team_id},
            })
        message["team"] = self.team_id
        message.update({k: v for k, v in fields.items() if k != "text"})
        message.update(extra or {})
        root = None
        if thread_ts:
            parent = self._find_message(channel_id, thread_ts)
            if parent is None:
                raise StandInError("thread_not_found", detail=f"no message {thread_ts} in {channel_id}")
            # A reply to a reply joins the parent's thread, as in Slack.
            root = self._find_message(channel_id, parent.get("thread_ts", parent["ts"])) or parent
        message["ts"] = self._next_ts()
        if root is not None:
            message["thread_ts"] = root["ts"]
            message["parent_user_id"] = root.get("user")
            root["thread_ts"] = root["ts"]
            root["reply_count"] = root.get("reply_count", 0) + 1
            root["latest_reply"] = message["ts"]
            root["reply_users"] = sorted(set(root.get("reply_users", [])) | {user})
        self._messages.setdefault(channel_id, []).append(message)
        self._emit({"type": "message_posted", "channel": channel_id, "message": message})
        return message

    def _update_message(self, channel_id: str, message: dict, fields: dict, replace: bool = False) -> None:
        if replace:
            # response_url replace_original: the new payload is the whole message.
            for key in ("blocks", "attachments", "metadata"):
                message.pop(key, None)
            message["text"] = ""
        message.update(fields)
        message["edited"] = {"user": BOT_USER_ID, "ts": self._next_ts()}
        self._emit({"type": "message_updated", "channel": channel_id, "message": message})

    def _remove_message(self, channel_id: str, ts: str) -> None:
        msgs = self._messages[channel_id]
        message = self._find_message(channel_id, ts)
        msgs.remove(message)
        root_ts = message.get("thread_ts")
        if root_ts and root_ts != ts:
            root = self._find_message(channel_id, root_ts)
            if root is not None:
                root["reply_count"] = max(0, root.get("reply_count", 1) - 1)
        self._emit({"type": "message_deleted", "channel": channel_id, "ts": ts})

    def _store_ephemeral(self, channel_id: str, user: str, fields: dict, thread_ts: Any) -> dict:
        message = {"type": "message", "subtype": "ephemeral", "channel": channel_id, "user": user,
                   "ts": self._next_ts(), "text": fields.get("text", "")}
        message.update({k: v for k, v in fields.items() if k != "text"})
        if thread_ts:
            message["thread_ts"] = thread_ts
        self._ephemerals.append(message)
        self._emit({"type": "ephemeral_posted", "channel": channel_id, "user": user, "message": message})
        return message

    # ------------------------------------------------------------------ Web API methods

    def _auth_test(self, params: dict) -> dict:
        return {
            "url": f"https://{self.team_domain}.slack.com/", "team": self.team_domain, "user": BOT_NAME,
            "team_id": self.team_id, "user_id": BOT_USER_ID, "bot_id": BOT_ID, "is_enterprise_install": False,
        }

    def _chat_post_message(self, params: dict) -> dict:
        channel_id = self._resolve_channel(params.get("channel"))
        if not self._is_member(channel_id, BOT_USER_ID):
            raise StandInError("not_in_channel")
        fields = self._message_fields(params)
        extra = {k: params[k] for k in ("username", "icon_emoji", "icon_url") if params.get(k)}
        message = self._store_message(channel_id, fields, user=BOT_USER_ID,
                                      thread_ts=params.get("thread_ts"), extra=extra)
        return {"channel": channel_id, "ts": message["ts"], "message": message}

    def _existing_message(self, params: dict, ts_key: str = "ts") -> tuple[str, dict]:
        channel_id = self._resolve_channel(params.get("channel"), open_dm=False)
        message = self._find_message(channel_id, params.get(ts_key))
        if message is None:
            raise StandInError("message_not_found")
        return channel_id, message

    def _chat_update(self, params: dict) -> dict:
        channel_id, message = self._existing_message(params)
        if message.get("user") != BOT_USER_ID:
            raise StandInError("cant_update_message")
        fields = self._message_fields(params)
        self._update_message(channel_id, message, fields)
        return {
            "channel": channel_id, "ts": message["ts"], "text": message.get("text", ""), "message": message,
        }

    def _chat_delete(self, params: dict) -> dict:
        channel_id, message = self._existing_message(params)
        if message.get("user") != BOT_USER_ID:
            raise StandInError("cant_delete_message")
        self._remove_message(channel_id, message["ts"])
        return {"channel": channel_id, "ts": message["ts"]}

    def _chat_post_ephemeral(self, params: dict) -> dict:
        channel_id = self._resolve_channel(params.get("channel"))
        user = params.get("user")
        if user not in self._users:
            raise StandInError("user_not_found")
        if not self._is_member(channel_id, user):
            raise StandInError("user_not_in_channel")
        fields = self._message_fields(params)
        message = self._store_ephemeral(channel_id, user, fields, params.get("thread_ts"))
        return {"message_ts": message["ts"]}

    def _chat_get_permalink(self, params: dict) -> dict:
        channel_id, message = self._existing_message(params, ts_key="message_ts")
        link = f"https://{self.team_domain}.slack.com/archives/{channel_id}/p{message['ts'].replace('.', '')}"
        return {"channel": channel_id, "permalink": link}

    def _conversations_open(self, params: dict) -> dict:
        if params.get("channel"):
            channel_id = self._resolve_channel(params["channel"], open_dm=False)
            return {"channel": self._channel_object(channel_id)}
        users = [u.strip() for u in str(params.get("users") or "").split(",") if u.strip()]
        if len(users) != 1:
            # Group DMs are not modelled; a labeling bot only talks to one person at a time.
            raise StandInError("invalid_arguments", detail="the stand-in supports exactly one user")
        if users[0] not in self._users:
            raise StandInError("user_not_found")
        channel_id, existed = self._open_im(users[0])
        channel = self._channel_object(channel_id) if _truthy(params.get("return_im")) else {"id": channel_id}
        result: dict[str, Any] = {"channel": channel}
        if existed:
            result.update({"no_op": True, "already_open": True})
        return result

    def _conversations_info(self, params: dict) -> dict:
        return {"channel": self._channel_object(self._resolve_channel(params.get("channel"), open_dm=False))}

    def _conversations_history(self, params: dict) -> dict:
        channel_id = self._resolve_channel(params.get("channel"), open_dm=False)
        latest, oldest = params.get("latest"), params.get("oldest")
        inclusive = _truthy(params.get("inclusive"))
        top = [
            m for m in self._messages.get(channel_id, [])
            if m.get("thread_ts") in (None, m["ts"]) or m.get("subtype") == "thread_broadcast"
        ]
        if latest:
            bound = _ts_key(latest)
            top = [m for m in top if _ts_key(m["ts"]) < bound or (inclusive and _ts_key(m["ts"]) == bound)]
        if oldest:
            bound = _ts_key(oldest)
            top = [m for m in top if _ts_key(m["ts"]) > bound or (inclusive and _ts_key(m["ts"]) == bound)]
        return self._page(list(reversed(top)), params, "messages")

    def _conversations_replies(self, params: dict) -> dict:
        channel_id = self._resolve_channel(params.get("channel"), open_dm=False)
        ts = params.get("ts")
        parent = self._find_message(channel_id, ts)
        if parent is None:
            raise StandInError("thread_not_found")
        root_ts = parent.get("thread_ts", parent["ts"])
        thread = [m for m in self._messages[channel_id] if root_ts in (m["ts"], m.get("thread_ts"))]
        return self._page(thread, params, "messages")

    def _conversations_members(self, params: dict) -> dict:
        channel_id = self._resolve_channel(params.get("channel"), open_dm=False)
        members = [u for u in self._users if u != BOT_USER_ID and self._is_member(channel_id, u)]
        if self._is_member(channel_id, BOT_USER_ID):
            members.append(BOT_USER_ID)
        return self._page(members, params, "members")

    def _conversations_list(self, params: dict) -> dict:
        types = set(str(params.get("types") or "public_channel").split(","))
        wanted = [
            self._channel_object(cid) for cid, ch in self._channels.items()
            if ("im" in types and ch["is_im"])
            or ("public_channel" in types and ch["is_channel"])
            or ("private_channel" in types and not ch["is_im"] and ch["is_private"])
        ]
        return self._page(wanted, params, "channels")

    @staticmethod
    def _page(items: list, params: dict, key: str) -> dict:
        try:
            limit = int(params.get("limit") or 100)
            start = int(params.get("cursor") or 0)
        except ValueError as err:
            raise StandInError("invalid_cursor") from err
        limit = max(1, min(limit, 1000))
        page = items[start:start + limit]
        next_cursor = str(start + limit) if start + limit < len(items) else ""
        result: dict[str, Any] = {key: page, "response_metadata": {"next_cursor": next_cursor}}
        if key == "messages":
            result["has_more"] = bool(next_cursor)
        return result

    def _apps_connections_open(self, params: dict) -> dict:
        return {"url": self.socket_mode.new_url()}

    def _users_info(self, params: dict) -> dict:
        user = self._users.get(params.get("user"))
        if user is None:
            raise StandInError("user_not_found")
        return {"user": user}

    def _users_list(self, params: dict) -> dict:
        return {**self._page(list(self._users.values()), params, "members"), "cache_ts": int(time.time())}

    def _users_lookup_by_email(self, params: dict) -> dict:
        for user in self._users.values():
            if params.get("email") and user["profile"].get("email") == params.get("email"):
                return {"user": user}
        raise StandInError("users_not_found")

    # views ---------------------------------------------------------------

    def _take_trigger(self, params: dict) -> str | None:
        trigger_id = params.get("trigger_id")
        if not trigger_id or not isinstance(trigger_id, str):
            raise StandInError("invalid_arguments", detail="trigger_id is required")
        if trigger_id in self._used_triggers:
            raise StandInError("exchanged_trigger_id")
        self._used_triggers.add(trigger_id)
        # Triggers not made by new_trigger_id are accepted; their modals belong to user None.
        return self._triggers.get(trigger_id)

    def _checked_view(self, params: dict, kinds: tuple[str, ...]) -> dict:
        view = params.get("view")
        if not isinstance(view, dict):
            raise StandInError("invalid_arguments", detail="view must be a JSON object")
        if view.get("type") not in kinds:
            raise StandInError("invalid_arguments", detail=f"view type must be {' or '.join(kinds)}")
        problems = blockkit.problems(view, "view") if self.validate else []
        if problems:
            # Blocks get invalid_blocks (as for messages), the view's own fields invalid_arguments.
            blocks_wrong = any("[json-pointer:/view/blocks" in p for p in problems)
            raise StandInError("invalid_blocks" if blocks_wrong else "invalid_arguments", errors=problems,
                               response_metadata={"messages": [f"[ERROR] {p}" for p in problems]})
        return view

    def _view_object(self, view: dict, view_id: str, *, root: str | None, previous: str | None) -> dict:
        stored = copy.deepcopy(view)
        stored["blocks"] = _with_ids(view.get("blocks", []))
        for key, default in (("private_metadata", ""), ("callback_id", ""), ("external_id", ""),
                             ("clear_on_close", False), ("notify_on_close", False)):
            stored.setdefault(key, default)
        stored.update({
            "id": view_id, "team_id": self.team_id, "state": {"values": {}},
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}", "root_view_id": root or view_id,
            "previous_view_id": previous, "app_id": APP_ID, "app_installed_team_id": self.team_id,
            "bot_id": BOT_ID,
        })
        return stored

    def _views_open(self, params: dict) -> dict:
        view = self._checked_view(params, ("modal",))
        user = self._take_trigger(params)
        # A new views.open replaces whatever modals the user had open.
        for old in self._modal_stacks.get(user, []):
            self._emit({"type": "view_closed", "user": user, "view_id": old})
        view_id = self._new_id("V")
        stored = self._view_object(view, view_id, root=None, previous=None)
        self._views[view_id] = stored
        self._view_owner[view_id] = user
        self._modal_stacks[user] = [view_id]
        self._emit({"type": "view_opened", "user": user, "view": stored})
        return {"view": stored}

    def _views_push(self, params: dict) -> dict:
        view = self._checked_view(params, ("modal",))
        user = self._take_trigger(params)
        stack = self._modal_stacks.get(user) or []
        if not stack:
            raise StandInError("invalid_arguments", detail="views.push needs an open modal")
        if len(stack) >= MAX_MODAL_STACK:
            raise StandInError("push_limit_reached")
        view_id = self._new_id("V")
        stored = self._view_object(view, view_id, root=stack[0], previous=stack[-1])
        self._views[view_id] = stored
        self._view_owner[view_id] = user
        stack.append(view_id)
        self._emit({"type": "view_pushed", "user": user, "view": stored})
        return {"view": stored}

    def _views_update(self, params: dict) -> dict:
        view_id = params.get("view_id")
        if not view_id and params.get("external_id"):
            view_id = next((v["id"] for v in self._views.values()
                            if v.get("external_id") == params["external_id"]), None)
        current = self._views.get(view_id) if view_id else None
        if current is None:
            raise StandInError("not_found")
        view = self._checked_view(params, (current["type"],))
        if params.get("hash") and params["hash"] != current["hash"]:
            raise StandInError("hash_conflict")
        stored = self._view_object(view, view_id, root=current["root_view_id"],
                                   previous=current["previous_view_id"])
        stored["state"] = current["state"]
        self._views[view_id] = stored
        self._emit({"type": "view_updated", "user": self._view_owner.get(view_id), "view": stored})
        return {"view": stored}

    def _views_publish(self, params: dict) -> dict:
        user = params.get("user_id")
        if user not in self._users:
            raise StandInError("user_not_found")
        view = self._checked_view(params, ("home",))
        view_id = self._home_views.get(user)
        if view_id is not None and params.get("hash") and params["hash"] != self._views[view_id]["hash"]:
            raise StandInError("hash_conflict")
        view_id = view_id or self._new_id("V")
        stored = self._view_object(view, view_id, root=None, previous=None)
        self._views[view_id] = stored
        self._view_owner[view_id] = user
        self._home_views[user] = view_id
        self._emit({"type": "home_published", "user": user, "view": stored})
        return {"view": stored}

    def _reactions_add(self, params: dict) -> dict:
        channel_id, message = self._existing_message(params, ts_key="timestamp")
        name = params.get("name")
        if not name:
            raise StandInError("invalid_name")
        reactions = message.setdefault("reactions", [])
        for reaction in reactions:
            if reaction["name"] == name:
                if BOT_USER_ID in reaction["users"]:
                    raise StandInError("already_reacted")
                reaction["users"].append(BOT_USER_ID)
                reaction["count"] += 1
                break
        else:
            reactions.append({"name": name, "users": [BOT_USER_ID], "count": 1})
        self._emit({"type": "message_updated", "channel": channel_id, "message": message})
        return {}

    # files ---------------------------------------------------------------

    def _files_get_upload_url(self, params: dict) -> dict:
        filename = params.get("filename")
        try:
            length = int(params.get("length"))
        except (TypeError, ValueError):
            length = -1
        if not filename or length < 0:
            raise StandInError("invalid_arguments", detail="filename and length are required")
        file_id = self._new_id("F")
        self._files[file_id] = {
            "id": file_id, "name": filename, "title": filename,
            "mimetype": mimetypes.guess_type(filename)[0] or "application/octet-stream",
            "filetype": filename.rsplit(".", 1)[-1].lower() if "." in filename else "binary",
            "size": length, "user": BOT_USER_ID, "created": int(time.time()), "channels": [],
            "shares": {}, "is_public": False,
        }
        if params.get("alt_txt"):
            self._files[file_id]["alt_txt"] = params["alt_txt"]
        return {"upload_url": f"{self.root_url}upload/{file_id}", "file_id": file_id}

    def _files_complete_upload(self, params: dict) -> dict:
        entries = params.get("files")
        if not isinstance(entries, list) or not entries:
            raise StandInError("invalid_arguments", detail="files must be a non-empty JSON array")
        for entry in entries:
            file_id = entry.get("id") if isinstance(entry, dict) else None
            if file_id not in self._files:
                raise StandInError("file_not_found", detail=str(file_id))
            if file_id not in self._file_content:
                raise StandInError("file_not_found",
                                   detail=f"{file_id}: nothing was posted to its upload_url")
        targets = []
        if params.get("channel_id"):
            targets.append(params["channel_id"])
        targets += [c for c in str(params.get("channels") or "").split(",") if c]
        channel_ids = [self._resolve_channel(c) for c in targets]
        for channel_id in channel_ids:
            if not self._is_member(channel_id, BOT_USER_ID):
                raise StandInError("not_in_channel")
        shared = []
        for entry in entries:
            file = self._files[entry["id"]]
            if entry.get("title"):
                file["title"] = entry["title"]
            shared.append(file)
            self._emit({"type": "file_uploaded", "file": file})
        for channel_id in channel_ids:
            message = self._store_message(
                channel_id, {"text": params.get("initial_comment") or ""}, user=BOT_USER_ID,
                thread_ts=params.get("thread_ts"), extra={"files": copy.deepcopy(shared), "upload": True},
            )
            scope = "private" if self._channels[channel_id]["is_private"] else "public"
            for file in shared:
                file["channels"].append(channel_id)
                file["shares"].setdefault(scope, {}).setdefault(channel_id, []).append({"ts": message["ts"]})
        return {"files": shared}


def _parse_params(content_type: str, query: str, raw: bytes) -> dict:
    """Request parameters from the query string and a JSON or form body (body wins)."""
    params: dict[str, Any] = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    kind = content_type.split(";")[0].strip().lower()
    if raw:
        if kind == "application/json":
            try:
                body = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise StandInError("invalid_json", detail=str(err)) from err
            if not isinstance(body, dict):
                raise StandInError("invalid_json", detail="the body must be a JSON object")
            params.update(body)
        elif kind in ("", "application/x-www-form-urlencoded"):
            try:
                params.update(urllib.parse.parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
            except UnicodeDecodeError as err:
                raise StandInError("invalid_form_data", detail=str(err)) from err
        else:
            raise StandInError("invalid_form_data", detail=f"unsupported Content-Type {content_type!r}")
    for key in _JSON_PARAMS:
        value = params.get(key)
        if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
            # An undecodable value stays a string: validation then reports it as Slack would.
            with contextlib.suppress(json.JSONDecodeError):
                params[key] = json.loads(value)
    return params


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 drops connections when many bot threads call at once
    allow_reuse_address = True
    standin: SlackStandIn


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "SlackStandIn/1"

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def _serve(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            status, headers, body = self.server.standin._route(
                self.command, url.path, url.query, self.headers, raw
            )
        except Exception:  # an internal bug answers 500 instead of hanging the client
            logger.exception("SlackStandIn failed on %s %s", self.command, self.path)
            status, headers, body = 500, {}, b'{"ok": false, "error": "standin_internal_error"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)
