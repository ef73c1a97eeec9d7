"""A real labelbot App over HTTP on loopback, its WebClient pointed at the Slack stand-in.

Requests are signed with the real scheme; tests assert on what reaches the stand-in and the database.
``start_harness(..., transport="socket")`` serves the same App over Socket Mode instead: bolt's
``SocketModeHandler`` (as ``labelbot serve`` builds it) connects to the stand-in's WebSocket server, and
the same sender calls arrive as envelopes, each answered once its ack comes back.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from slack_bolt import App

from bot.app import create_app, make_client, socket_mode_handler
from bot.server import EVENTS_PATH, SlackHTTPServer
from bot.settings import BotSettings
from bot.standin import SlackRequestSender, SlackStandIn, SocketModeSender, SocketModeStandIn
from bot.standin.signing import SenderResponse, action_from_blocks
from core.config import Settings
from core.embeddings import HashingEmbedder
from core.service import LabelingService
from core.types import LabelDef
from tests.conftest import database_url

SIGNING_SECRET = "test-signing-secret"
BOT_TOKEN = "xoxb-test"
APP_TOKEN = "xapp-1-A0APP-1-test"
ADMIN, ALICE, BOB = "UADMIN", "UALICE", "UBOB"
CHANNEL = "CGENERAL"


@dataclass
class SlackHarness:
    standin: SlackStandIn
    service: LabelingService
    app: App
    server: SlackHTTPServer | None  # None over Socket Mode
    sender: SlackRequestSender
    settings: BotSettings
    pool: ThreadPoolExecutor
    extra: dict[str, object] = field(default_factory=dict)
    socket_mode: SocketModeStandIn | None = None  # the WebSocket end, over Socket Mode
    handler: Any = None  # bot.app.socket_mode_handler's

    # -------------------------------------------------------------- what users do

    def command(
        self, text: str, *, user: str = ALICE, channel: str = CHANNEL, **kwargs: object
    ) -> SenderResponse:
        return self.sender.slash_command("/label", text, user_id=user, channel_id=channel, **kwargs)

    def click(
        self,
        user: str,
        message: dict,
        action_id: str,
        *,
        value: str | None = None,
        selected_value: str | None = None,
        **kwargs: object,
    ) -> SenderResponse:
        action = action_from_blocks(message, action_id, value=value, selected_value=selected_value)
        return self.sender.block_actions(user, [action], channel_id=self.dm(user), message=message, **kwargs)

    def click_label(self, user: str, message: dict, label: str) -> SenderResponse:
        """Click the button (or pick the menu option) for ``label`` on a card."""
        for block in message["blocks"]:
            for element in block.get("elements", []) if block["type"] == "actions" else []:
                if element["type"] == "button" and element["text"]["text"] == label:
                    return self.click(user, message, element["action_id"], value=element["value"])
                if element["type"] == "static_select":
                    options = element.get("options") or [
                        o for g in element.get("option_groups", []) for o in g["options"]
                    ]
                    for option in options:
                        if option["text"]["text"] == label:
                            return self.click(
                                user, message, element["action_id"], selected_value=option["value"]
                            )
        raise LookupError(f"no control for label {label!r} on the card")

    # -------------------------------------------------------------- what Slack shows

    def dm(self, user: str) -> str:
        return self.standin.dm_channel(user)

    def dm_messages(self, user: str) -> list[dict]:
        return self.standin.messages(self.dm(user))

    def cards(self, user: str) -> list[dict]:
        """Messages in the user's DM that still carry label controls."""
        return [m for m in self.dm_messages(user) if _has_action(m, "skip")]

    def wait_for_messages(self, user: str, count: int) -> list[dict]:
        self.standin.wait_until(lambda: len(self.dm_messages(user)) >= count)
        return self.dm_messages(user)

    def wait_for_cards(self, user: str, count: int) -> list[dict]:
        self.standin.wait_until(lambda: len(self.cards(user)) >= count)
        return self.cards(user)

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.handler is not None:
            self.handler.close()
        if self.socket_mode is not None:
            self.socket_mode.stop()
        self.pool.shutdown(wait=True)  # what clicks left to do after their ack reaches the stand-in
        self.standin.stop()
        self.service.close()


def _has_action(message: dict, action_id: str) -> bool:
    return any(
        element.get("action_id") == action_id
        for block in message.get("blocks", [])
        if block.get("type") == "actions"
        for element in block.get("elements", [])
    )


def start_harness(
    tmp_path: Path,
    *,
    labels: Sequence[str | LabelDef] = ("spam", "ham"),
    texts: Sequence[str] = (),
    project: str = "demo",
    service_settings: dict[str, object] | None = None,
    embedder: object | None = None,
    transport: Literal["http", "socket"] = "http",
    ping_interval: float = 10,
) -> SlackHarness:
    """Stand-in + service + App + HTTP server (or Socket Mode connection), with users ADMIN, ALICE and BOB
    and one project. ``ping_interval`` is the Socket Mode client's (10 s, as serve's)."""
    standin = SlackStandIn(bot_token=BOT_TOKEN).start()
    for user, name in ((ADMIN, "admin"), (ALICE, "alice"), (BOB, "bob")):
        standin.add_user(user, name)
    standin.add_channel(CHANNEL, "general")
    values: dict[str, object] = {
        "database_url": database_url(tmp_path, "bot", with_tables=True),
        "embedding_model": "hashing-64",
        "retrain_every": 0,
        "queue_size": 50,
    }
    values.update(service_settings or {})
    service = LabelingService(
        Settings(_env_file=None, **values),  # type: ignore[call-arg]
        embedder=embedder or HashingEmbedder(64),  # type: ignore[arg-type]
        background=True,
    )
    if project:
        service.create_project(project, list(labels))
        if texts:
            from core.io import ImportRow

            rows = [ImportRow(line=i + 2, external_id=str(i), text=t) for i, t in enumerate(texts)]
            service.import_rows(project, rows)
    socket = transport == "socket"
    settings = BotSettings(
        _env_file=None,  # type: ignore[call-arg]
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=None if socket else SIGNING_SECRET,
        slack_app_token=APP_TOKEN if socket else None,
        slack_api_url=standin.base_url,
        admins=frozenset({ADMIN}),
    )
    settings.check(transport)  # what serve checks before it connects
    pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="harness-listener")
    app = create_app(settings, service, client=make_client(settings), pool=pool)
    if socket:
        socket_mode = SocketModeStandIn(standin, app_token=APP_TOKEN).start()
        # As ``labelbot serve`` builds it: the App's WebClient (the stand-in's URL) opens the connection.
        handler = socket_mode_handler(app, settings.slack_app_token, ping_interval=ping_interval)
        handler.connect()
        socket_mode.wait_for_connections(1)  # the server has the connection too (it may lag the client)
        return SlackHarness(
            standin=standin, service=service, app=app, server=None, settings=settings, pool=pool,
            sender=SocketModeSender(socket_mode, standin), socket_mode=socket_mode, handler=handler,
        )
    server = SlackHTTPServer(app, "127.0.0.1", 0).start()
    sender = SlackRequestSender(f"{server.url}{EVENTS_PATH}", SIGNING_SECRET, standin=standin)
    return SlackHarness(
        standin=standin, service=service, app=app, server=server, sender=sender, settings=settings, pool=pool
    )
