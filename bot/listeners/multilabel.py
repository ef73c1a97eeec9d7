"""Multi-label cards: Submit stores the ticked labels as one answer, "None of these" the empty set.

Like a label click (bot.listeners.actions.on_label), the answer commits with the card update and next card
it owes before the ack, and the outbox delivers them after. The ticks themselves reach the bot as
block_actions too (Slack sends one per tick); they change nothing, so they are only acked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot import blocks, ids
from bot.labeling import Labeling, StaleCard, card_location, mark_stale, stale_reason
from core.errors import LabelbotError
from core.types import ProjectInfo

log = logging.getLogger(__name__)

NOTHING_TICKED = "Tick at least one label before Submit, or click None of these."


def chosen_labels(
    ref: ids.RecordRef, options: Sequence[ids.LabelOption]
) -> Callable[[ProjectInfo], frozenset[str]]:
    """The label set ticked on a card, checked against the project as the answer's own transaction
    reads it (a renamed, merged or retired label makes the card stale, with nothing stored)."""

    def resolve(project: ProjectInfo) -> frozenset[str]:
        if not ref.matches(project.name):
            raise StaleCard("This project no longer exists.")
        if not project.multi_label:
            raise StaleCard("This project is no longer multi-label; please use a fresh card.")
        try:
            return frozenset(option.label(project.label_names) for option in options)
        except ValueError:
            raise StaleCard("The label set changed since this card was sent.") from None

    return resolve


def _answer(
    ack: Ack, body: dict, action: dict, client: WebClient, context: BoltContext, *, none: bool
) -> None:
    labeling: Labeling = context["labeling"]
    user = body["user"]["id"]
    try:
        ref = ids.parse_record_value(action.get("value"))
        options = [] if none else blocks.ticked_labels((body.get("state") or {}).get("values") or {})
        if not none and not options:
            ack()
            labeling.later(_tell, client, body, NOTHING_TICKED)
            return
        result = labeling.service.record_answer(
            ref.project_id, ref.record_id, user, chosen_labels(ref, options),
            card_address=ids.encode_card_address(*card_location(body)),
        )
    except (ValueError, LabelbotError) as exc:
        ack()
        labeling.later(mark_stale, client, body, stale_reason(exc))
        return
    ack()  # the answer is committed, and what it owes the labeler with it
    labeling.deliveries.deliver(result.deliveries)


def on_submit(ack: Ack, body: dict, action: dict, client: WebClient, context: BoltContext) -> None:
    """Submit: the ticked labels (at least one) become the clicker's answer."""
    _answer(ack, body, action, client, context, none=False)


def on_none(ack: Ack, body: dict, action: dict, client: WebClient, context: BoltContext) -> None:
    """None of these: the empty set is the answer, whatever is ticked."""
    _answer(ack, body, action, client, context, none=True)


def on_tick(ack: Ack) -> None:
    """A tick or a pick in the card's labels: Slack sends each; Submit reads them all from the state."""
    ack()


def _tell(client: WebClient, body: dict, text: str) -> None:
    """A line only the clicker sees, beside the card (which stays as it is, ticks and all)."""
    channel, _ = card_location(body)
    client.chat_postEphemeral(channel=channel, user=body["user"]["id"], **blocks.notice(text))


def register(app: App) -> None:
    app.action(ids.ACTION_MULTI_SUBMIT)(on_submit)
    app.action(ids.ACTION_MULTI_NONE)(on_none)
    app.action(ids.ACTION_MULTI_LABELS)(on_tick)
