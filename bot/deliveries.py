"""Delivering the outbox (core.deliveries) to Slack: a clicked card's update and the next cards.

A click commits its answer and its outbox rows in one transaction, acks, and has them delivered at
once on the listener pool (:meth:`CardDeliveries.deliver`). What fails is tried again by a poller,
with back-off, until it is delivered or given up (the core decides: 10 minutes after the click, or at
once when Slack refuses for good). ``labelbot serve`` runs the poller all the time, so it also takes
over what a replica that died still owed; elsewhere (tests, the playground) it starts with the first
failure and ends once nothing is owed.

Deliveries go through a WebClient of their own without retry handlers: the outbox does the retrying,
so no pool thread sleeps through a Retry-After or a long outage, and a Retry-After is kept as the
row's next due time instead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from bot import blocks, ids
from core.errors import DatabaseUnavailable, LabelbotError
from core.types import Delivery, RecordView

if TYPE_CHECKING:
    from bot.labeling import Labeling

log = logging.getLogger(__name__)

#: Seconds one Web API call of a delivery may take before it counts as failed (and is tried again).
CALL_TIMEOUT = 10
#: Deliveries worked on at once by one process's poller (each holds a listener-pool thread).
CAPACITY = 8
POLL_SECONDS = 1.0
#: Slack errors worth trying again; any other error Slack answers is its final word.
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "fatal_error", "internal_error", "service_unavailable", "request_timeout"}
)


def delivery_client(client: WebClient) -> WebClient:
    """``client``'s token and URL, no retry handlers (the outbox retries), a short timeout."""
    return WebClient(
        token=client.token, base_url=client.base_url, timeout=CALL_TIMEOUT, retry_handlers=[]
    )


class DeliveryFailed(Exception):
    """One attempt failed: why, whether Slack's answer is final, and what of a ``cards`` row is left."""

    def __init__(
        self,
        error: str,
        *,
        permanent: bool = False,
        retry_after: float | None = None,
        method: str = "",
        remaining: int | None = None,
        unsent: tuple[int, ...] = (),
    ) -> None:
        super().__init__(error)
        self.error, self.permanent, self.retry_after, self.method = error, permanent, retry_after, method
        self.remaining, self.unsent = remaining, unsent


def classify(exc: Exception) -> DeliveryFailed:
    """What a failed call means for the delivery: try again (rate limits, 5xx, no connection, a busy
    database) or give up (Slack's final word, e.g. ``channel_not_found``; a project that is gone)."""
    if isinstance(exc, DeliveryFailed):
        return exc
    if isinstance(exc, SlackApiError):
        response = exc.response
        error = response.get("error") if isinstance(response.data, dict) else None
        method = str(response.api_url).rsplit("/", 1)[-1]
        status = response.status_code
        if status == 429 or error == "ratelimited":
            retry_after = float(response.headers.get("retry-after", response.headers.get("Retry-After", 1)))
            return DeliveryFailed("ratelimited", retry_after=retry_after, method=method)
        if status >= 500 or error in TRANSIENT_ERRORS:
            return DeliveryFailed(error or f"HTTP {status}", method=method)
        return DeliveryFailed(error or f"HTTP {status}", permanent=True, method=method)
    if isinstance(exc, LabelbotError) and not isinstance(exc, DatabaseUnavailable):
        return DeliveryFailed(str(exc), permanent=True)
    if isinstance(exc, OSError):  # refused, reset, timed out, name not found: Slack is away
        return DeliveryFailed(f"Slack unreachable: {getattr(exc, 'reason', None) or exc}")
    return DeliveryFailed(f"{type(exc).__name__}: {exc}")


def cannot_send_line(failure: DeliveryFailed) -> str:
    """The one line a labeler whose cards Slack refused for good hears (through the command's reply)."""
    said = f"Slack said {failure.error}"
    if failure.method != "conversations.open":
        return f"I could not post your cards in our direct message ({said}). Please try again later."
    if failure.error == "missing_scope":
        return (f"I cannot open a direct message with you ({said}): a workspace admin needs to give "
                "labelbot the im:write permission and reinstall it.")
    return f"I could not open a direct message with you ({said}), so no card was sent."


class CardDeliveries:
    """Delivers outbox rows for ``labeling``'s service through ``client`` (see the module's note)."""

    def __init__(self, labeling: Labeling, client: WebClient, *, poll_seconds: float = POLL_SECONDS) -> None:
        self.labeling = labeling
        self.service = labeling.service
        self.client = client
        self.poll_seconds = poll_seconds
        self._lock = threading.Lock()
        self._in_flight = 0
        self._poller: threading.Thread | None = None
        self._keep_polling = False
        self._stop = threading.Event()

    # ------------------------------------------------------------------ when

    def deliver(self, delivery_ids: Iterable[int]) -> None:
        """Deliver these rows now, on the listener pool (after the ack that wrote them)."""
        wanted = tuple(delivery_ids)
        if wanted:
            self.labeling.later(self.deliver_here, wanted)

    def deliver_here(
        self, delivery_ids: Iterable[int], *, reply: Callable[[str], None] | None = None
    ) -> int:
        """Deliver these rows on this thread (one already off the request path); returns how many cards
        were sent. ``reply``: how to tell the user what happened now (a slash command's ``respond``);
        later attempts use the row's ``reply_to``."""
        wanted = tuple(delivery_ids)
        if not wanted:
            return 0
        with self._lock:
            self._in_flight += len(wanted)
        try:
            claimed = self.service.claim_deliveries(ids=wanted, limit=len(wanted))
        except Exception as exc:  # a busy or unreachable database: the poller finds them later
            log.warning("Could not claim deliveries %s now (%s); they are retried", wanted, exc)
            self._ensure_poller()
            return 0
        finally:
            with self._lock:
                self._in_flight -= len(wanted)
        # Rows not claimed are another process's (serve's poller takes them over should it die).
        return sum(self._run(delivery, reply) for delivery in claimed)

    def start(self) -> CardDeliveries:
        """Poll for due deliveries until :meth:`stop` (``labelbot serve``)."""
        self._keep_polling = True
        self._ensure_poller()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        poller = self._poller
        if poller is not None:
            poller.join(timeout)

    def _ensure_poller(self) -> None:
        with self._lock:
            if self._poller is not None and self._poller.is_alive():
                return
            self._stop.clear()
            self._poller = threading.Thread(target=self._poll, name="labelbot-deliveries", daemon=True)
            self._poller.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds) and not self.service.closed:
            claimed: list[Delivery] = []
            try:
                with self._lock:
                    room = CAPACITY - self._in_flight
                if room > 0:
                    claimed = self.service.claim_deliveries(limit=room)
                    with self._lock:
                        self._in_flight += len(claimed)
                    for delivery in claimed:
                        self.labeling.later(self._run_counted, delivery)
                idle = not self._keep_polling and not claimed and self._in_flight == 0
                if idle and self.service.delivery_counts()[0] == 0:
                    return  # nothing owed by anyone: start again with the next failure
            except Exception as exc:  # the database away for a moment: one line, poll again
                log.warning("Delivery poll failed: %s", exc)

    def _run_counted(self, delivery: Delivery) -> None:
        try:
            self._run(delivery)
        finally:
            with self._lock:
                self._in_flight -= 1

    # ------------------------------------------------------------------ what

    def _run(self, delivery: Delivery, reply: Callable[[str], None] | None = None) -> int:
        """Deliver one claimed row and report the outcome; returns how many cards it sent."""
        try:
            sent = self._send(delivery, reply)
        except Exception as exc:
            self._failed(delivery, classify(exc), reply)
            return 0
        try:
            self.service.delivery_done(delivery)
        except Exception as exc:  # sent; the row comes back when its claim lapses and sends once more
            log.warning("Delivery %s sent but not marked done: %s", delivery.id, exc)
        return sent

    def _failed(
        self, delivery: Delivery, failure: DeliveryFailed, reply: Callable[[str], None] | None = None
    ) -> None:
        try:
            gave_up = self.service.delivery_failed(
                delivery,
                failure.error,
                permanent=failure.permanent,
                retry_after=failure.retry_after,
                remaining=failure.remaining,
                unsent=failure.unsent,
            )
        except Exception as exc:  # the claim lapses and the row is tried again
            log.warning("Delivery %s failed (%s) and could not be rescheduled: %s", delivery.id, failure, exc)
            gave_up = False
        what = f"{delivery.kind} for {delivery.user} (delivery {delivery.id}, attempt {delivery.attempts})"
        if gave_up:
            log.warning("Gave up delivering %s: %s", what, failure.error)
            if delivery.kind == "cards" and failure.permanent:
                self._reply(delivery, cannot_send_line(failure), reply)
            return
        log.info("Delivering %s failed (%s); trying again", what, failure.error)
        if delivery.attempts == 1 and delivery.kind == "cards":
            line = f"Slack did not take your cards just now ({failure.error}); they follow when it does."
            self._reply(delivery, line, reply)
        self._ensure_poller()

    def _send(self, delivery: Delivery, reply: Callable[[str], None] | None = None) -> int:
        if delivery.kind == "cards":
            return self._send_cards(delivery, reply)
        assert delivery.record_id is not None and delivery.address is not None
        update = self.service.card_update(delivery.project_id, delivery.record_id, delivery.user)
        if delivery.kind == "answered":
            card = blocks.answered_card(
                update.project, update.record, label=delivery.label or "", user_id=delivery.user,
                nonce=ids.new_nonce(), complete=delivery.complete,
            )
        elif delivery.kind == "skipped":
            card = blocks.stale_card(
                update.project.name, update.record, "Skipped: you won't be asked about this record again.",
                nonce=ids.new_nonce(),
            )
        else:
            card = blocks.label_card(update.project, update.record, nonce=ids.new_nonce())
        channel, ts = ids.parse_card_address(delivery.address)
        self.client.chat_update(channel=channel, ts=ts, **card)
        return 0

    def _send_cards(self, delivery: Delivery, reply: Callable[[str], None] | None = None) -> int:
        """Hand out and DM the cards; the records of cards not sent are released with the failure."""
        project = self.service.get_project(delivery.project_id)
        records: list[RecordView] = self.service.next_records(project.id, delivery.user, delivery.n)
        sent = 0
        try:
            channel = self.labeling.dm_channel(self.client, delivery.user)
            if not records and delivery.notify_empty:
                nothing = blocks.notice(self.labeling.nothing_left(project))
                self.client.chat_postMessage(channel=channel, **nothing)
            for record in records:
                self.client.chat_postMessage(
                    channel=channel, **blocks.label_card(project, record, nonce=ids.new_nonce())
                )
                sent += 1
        except Exception as exc:
            failure = classify(exc)
            failure.remaining = delivery.n - sent
            failure.unsent = tuple(record.record_id for record in records[sent:])
            raise failure from None
        # Said to a slash command (``reply``), or after "did not take your cards just now"; a click on
        # a prompt's button needs no line to say its cards came.
        if reply is not None or (delivery.reply_to and delivery.attempts > 1):
            s = "s" if len(records) != 1 else ""
            sent_line = f"Sent you {len(records)} card{s} from {project.name} in a direct message."
            self._reply(delivery, sent_line if records else self.labeling.nothing_left(project), reply)
        return len(records)

    def _reply(self, delivery: Delivery, text: str, reply: Callable[[str], None] | None = None) -> None:
        """Tell the user: through ``reply``, or the reply address their request came with (best effort)."""
        try:
            if reply is not None:
                reply(text)
                return
            if not delivery.reply_to:
                return
            answer = WebhookClient(delivery.reply_to, timeout=CALL_TIMEOUT).send(
                response_type="ephemeral", **blocks.notice(text)  # type: ignore[arg-type]
            )
            if answer.status_code != 200:
                log.warning("Could not reply to %s: HTTP %s", delivery.user, answer.status_code)
        except Exception as exc:
            log.warning("Could not reply to %s: %s", delivery.user, exc)
