"""One App factory for Socket Mode, HTTP and the tests."""

from __future__ import annotations

import gc
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import App, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot import listeners
from bot.deliveries import delivery_client
from bot.labeling import Labeling
from bot.settings import BotSettings
from core.errors import ConfigError, LabelbotError
from core.service import LabelingService

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://slack.com/api/"


def freeze_startup_objects() -> None:
    """Exempt what start-up made (libraries, settings, the app) from later full garbage collections.

    They live as long as the process; walking them again in every full collection paused requests
    for up to 100 ms at a time in bench/slack_latency.py (3 ms after this). Call once, before serving.
    """
    gc.collect()
    gc.freeze()


def make_client(settings: BotSettings) -> WebClient:
    """A WebClient that retries 429 (honouring Retry-After), transient 5xx and connection errors."""
    return WebClient(
        token=settings.slack_bot_token,
        base_url=settings.slack_api_url or DEFAULT_API_URL,
        retry_handlers=[
            RateLimitErrorRetryHandler(max_retry_count=3),
            ServerErrorRetryHandler(max_retry_count=2),
            ConnectionErrorRetryHandler(max_retry_count=2),
        ],
    )


def check_slack(client: WebClient) -> dict:
    """Call auth.test once; one clear LabelbotError when Slack cannot be reached or refuses the token.

    ``labelbot serve`` calls it before it starts anything, so a wrong token or URL ends start-up with
    one line rather than a traceback from bolt. Returns auth.test's answer (team, bot user).
    """
    try:
        return dict(client.auth_test().data)  # type: ignore[arg-type]
    except SlackApiError as exc:
        error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
        if error in ("invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"):
            raise ConfigError(f"Slack refused the bot token ({error}): check SLACK_BOT_TOKEN.") from None
        raise LabelbotError(
            f"Slack answered auth.test at {client.base_url} with {error or exc.response.status_code}."
        ) from None
    except OSError as exc:  # URLError, refused connection, timeout, TLS: all OSErrors
        reason = getattr(exc, "reason", None) or exc
        raise LabelbotError(
            f"Cannot reach Slack at {client.base_url}: {reason}. Check the network, or SLACK_API_URL."
        ) from None


def socket_mode_handler(app: App, app_token: str, *, ping_interval: float = 10) -> Any:
    """The Socket Mode connection for ``app`` (``labelbot serve`` and the tests build it here).

    slack_sdk's websocket-client adapter, not its builtin one: after a dropped connection the builtin
    client reads the closed stream as "no data yet" in a busy loop and reconnects only after five missed
    pings (57 s, most of a core, in bench/socket_reconnect.py); this one reconnects in half a second.
    Envelopes sent meanwhile are re-sent by Slack, so none is lost either way.
    """
    from slack_bolt.adapter.socket_mode.websocket_client import SocketModeHandler

    return SocketModeHandler(app, app_token, ping_interval=ping_interval)


def create_app(
    settings: BotSettings,
    service: LabelingService,
    *,
    client: WebClient | None = None,
    token_verification: bool = True,
    workers: int | None = None,
    pool: ThreadPoolExecutor | None = None,
    labeling: Labeling | None = None,
) -> App:
    """The bolt App with every listener registered.

    Listeners' slow parts run after their ack on a pool of ``workers`` threads (default
    ``settings.after_ack_workers``), or on ``pool``, which the caller then shuts down. Few threads on
    purpose: they share the GIL with the request threads, and the acks Slack waits on come first
    (``Labeling.yield_to_acks``; docs/benchmarks.md). ``labeling``: the listeners' shared state, made by
    the caller that runs its deliveries' poller (``labelbot serve``); its pool is then the App's.
    """
    client = client or make_client(settings)
    if labeling is None:
        pool = pool or ThreadPoolExecutor(
            max_workers=workers or settings.after_ack_workers, thread_name_prefix="labelbot-listener"
        )
        labeling = Labeling(service, admins=settings.admins, executor=pool, client=delivery_client(client))
    app = App(
        # The token travels with the client: passing it too only makes bolt warn that it ignores one.
        signing_secret=settings.slack_signing_secret,
        client=client,
        token_verification_enabled=token_verification,
        # A listener's synchronous part decides the response: a click commits, acks and returns, and
        # the 200 leaves at once (no polling for the ack); the slow part runs on the pool after.
        process_before_response=True,
        listener_executor=labeling.executor,
        logger=logging.getLogger("labelbot.bolt"),
    )

    @app.middleware
    def inject_labeling(context: BoltContext, next) -> None:  # type: ignore[no-untyped-def]
        # Listeners reach the service through Bolt's context, never through globals.
        context["labeling"] = labeling
        with labeling.answering_slack():  # the pool's after-ack work yields to this request
            next()

    listeners.register(app)
    return app
