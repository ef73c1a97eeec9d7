"""What every listener shares: the service, who is an admin, finding projects, sending cards, marking a
card stale, the outbox's deliveries, and the pool that runs a listener's slow part after Slack got its 200.

The App runs with ``process_before_response=True``: a listener's synchronous part decides the HTTP
response, so a click commits its answer with the card update and next card it owes (the outbox,
core.deliveries), acks, and returns — the 200 leaves at once, with no polling for the ack — and the
pool delivers them after (:class:`bot.deliveries.CardDeliveries`), again and again until Slack takes them.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from slack_sdk import WebClient

from bot import blocks, ids
from bot.deliveries import CardDeliveries
from core.errors import LabelbotError, ProjectNotFound
from core.service import LabelingService
from core.types import ProjectInfo, RecordView

log = logging.getLogger(__name__)

#: The longest work after an ack waits for requests in flight before it runs anyway.
YIELD_SECONDS = 0.05


class StaleCard(LabelbotError):
    """A click on a card whose project or label set is gone or changed."""


def card_location(body: dict) -> tuple[str, str]:
    """(channel, ts) of the message a click came from."""
    container = body.get("container") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
    return channel, container.get("message_ts") or (body.get("message") or {}).get("ts")


def stale_reason(exc: Exception) -> str:
    """The line a stale card shows: a core error says what happened; a bad value just is out of date."""
    if isinstance(exc, ProjectNotFound):  # the card names it by id: "no project #3" helps nobody
        return "This project no longer exists."
    return str(exc) if isinstance(exc, LabelbotError) else "This card is out of date."


def mark_stale(
    client: WebClient,
    body: dict,
    reason: str,
    *,
    project: str | None = None,
    record: RecordView | None = None,
) -> None:
    """Replace the clicked card with one that says why it no longer works (the one stale-card helper)."""
    channel, ts = card_location(body)
    client.chat_update(
        channel=channel, ts=ts, **blocks.stale_card(project, record, reason, nonce=ids.new_nonce())
    )


def chosen_label(choice: ids.LabelChoice) -> Callable[[ProjectInfo], str]:
    """The label a button means, checked against the project as the answer's own transaction reads it."""

    def resolve(project: ProjectInfo) -> str:
        if not choice.matches(project.name):
            raise StaleCard("This project no longer exists.")
        try:
            return choice.label(project.label_names)
        except ValueError:
            raise StaleCard("The label set changed since this card was sent.") from None

    return resolve


def confirmed_project(ref: ids.ProjectRef) -> Callable[[ProjectInfo], None]:
    """Refuses a project that is no longer the one a button was made for (checked in the write's own
    transaction: ids of deleted projects can come back on databases made before they were unique)."""

    def confirm(project: ProjectInfo) -> None:
        if not ref.matches(project.name):
            raise StaleCard("This project no longer exists.")

    return confirm


class Labeling:
    def __init__(
        self,
        service: LabelingService,
        *,
        admins: frozenset[str] = frozenset(),
        executor: Executor | None = None,
        client: WebClient | None = None,
    ) -> None:
        self.service = service
        self.admins = admins
        self.executor = executor or ThreadPoolExecutor(
            max_workers=4, thread_name_prefix="labelbot-after-ack"
        )
        # The outbox's deliveries through ``client`` (create_app gives it bot.deliveries.delivery_client);
        # none for a Labeling that only sends scheduled cards.
        self.deliveries = CardDeliveries(self, client) if client is not None else None
        self._dms: dict[str, str] = {}
        self._lock = threading.Lock()
        self._acks = threading.Condition()
        self._acks_in_flight = 0

    @contextlib.contextmanager
    def answering_slack(self) -> Iterator[None]:
        """Marks a request whose response Slack is waiting for (see :meth:`yield_to_acks`)."""
        with self._acks:
            self._acks_in_flight += 1
        try:
            yield
        finally:
            with self._acks:
                self._acks_in_flight -= 1
                if not self._acks_in_flight:
                    self._acks.notify_all()

    def yield_to_acks(self, at_most: float | None = None) -> None:
        """Let requests in flight have the interpreter first (work after an ack waits for them).

        One process runs the request threads and the after-ack pool under one GIL: without this, a
        burst of card updates slows the acks Slack is waiting for. Bounded, so it never starves.
        """
        with self._acks:
            self._acks.wait_for(
                lambda: not self._acks_in_flight, timeout=YIELD_SECONDS if at_most is None else at_most
            )

    def later(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run ``fn`` on the listener pool after the response went out; failures are logged once."""

        def run() -> None:
            try:
                self.yield_to_acks()
                fn(*args, **kwargs)
            except Exception:
                log.exception("%s failed after the ack", getattr(fn, "__name__", fn))

        self.executor.submit(run)

    def is_admin(self, user_id: str) -> bool:
        return user_id in self.admins

    def project_for_channel(self, channel_id: str | None) -> ProjectInfo:
        """The channel's project, or the only one; a clear message when there is none or several."""
        name = self.service.default_project(channel_id)
        if name is not None:
            return self.service.get_project(name)
        projects = self.service.list_projects()
        if not projects:
            raise LabelbotError("There is no project yet: create one with `labelbot init NAME --labels a,b`.")
        names = ", ".join(p.name for p in projects[:10])
        raise LabelbotError(
            f"There are several projects ({names}); an admin can bind this channel to one with "
            "`/label project NAME`."
        )

    def project_from_ref(self, ref: ids.ProjectRef) -> ProjectInfo:
        """The project a button points at; StaleCard when it was deleted (or its id reused)."""
        try:
            project = self.service.get_project(ref.project_id)
        except ProjectNotFound:
            raise StaleCard("This project no longer exists.") from None
        if not ref.matches(project.name):
            raise StaleCard("This project no longer exists.")
        return project

    def dm_channel(self, client: WebClient, user_id: str) -> str:
        with self._lock:
            cached = self._dms.get(user_id)
        if cached:
            return cached
        channel = client.conversations_open(users=user_id)["channel"]["id"]
        with self._lock:
            self._dms[user_id] = channel
        return channel

    def nothing_left(self, project: ProjectInfo) -> str:
        """What to say when a labeler gets no card: done, or records still waiting for vectors."""
        waiting = self.service.embedding_status(project.id).missing
        if waiting:
            return (
                f"Nothing to label in {project.name} for you right now: {waiting:,} records are still "
                "being embedded, and they come to you once they are."
            )
        return f"Nothing left to label in {project.name} for you right now. Thank you!"


#: The arguments bolt passes to a listener wrapped by :func:`ack_first` (bolt passes what a listener's
#: signature names; the wrapper names every one our listeners use and forwards the ones each wants).
_LISTENER_ARGS = ("ack", "body", "client", "context", "action", "command", "event", "view", "respond", "say")


def ack_first(listener: Callable[..., None]) -> Callable[..., None]:
    """For a listener with nothing to decide before its 200: ack now, run it on the pool after.

    Its own ``ack()`` call then does nothing that matters (the response has gone).
    """
    wanted = list(inspect.signature(listener).parameters)

    def run(ack, body, client, context, action, command, event, view, respond, say):  # type: ignore[no-untyped-def]
        given = locals()
        ack()
        context["labeling"].later(listener, **{name: given[name] for name in wanted})

    functools.update_wrapper(run, listener, updated=())
    del run.__wrapped__  # type: ignore[attr-defined]  # bolt must see run's arguments, not the listener's
    assert tuple(inspect.getfullargspec(run).args) == _LISTENER_ARGS
    return run
