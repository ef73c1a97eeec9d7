"""Review cards (``/label review``): an admin's click is the record's gold label (in a multi-label
project, the ticked labels with Submit gold are the gold set)."""

from __future__ import annotations

import logging

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot import blocks, ids
from bot.labeling import Labeling, card_location, chosen_label, mark_stale, stale_reason
from bot.listeners.multilabel import chosen_labels
from core.errors import LabelbotError
from core.types import AnswerResult

log = logging.getLogger(__name__)

NOTHING_TICKED_GOLD = "Tick at least one label before Submit gold, or click None of these."


def on_review_choice(ack: Ack, body: dict, action: dict, client: WebClient, context: BoltContext) -> None:
    """A label button or menu pick on a review card: recorded with ``source="review"`` (gold)."""
    labeling: Labeling = context["labeling"]
    user = body["user"]["id"]
    # The card is only ever sent to admins, but a click can be forged: check the clicker, not the card.
    if not labeling.is_admin(user):
        ack()
        log.warning("Review click by non-admin %s ignored", user)
        channel, _ = card_location(body)
        labeling.later(
            client.chat_postEphemeral,
            channel=channel,
            user=user,
            **blocks.notice("Only labelbot admins can set gold labels."),
        )
        return
    try:
        value = action.get("value") or (action.get("selected_option") or {}).get("value")
        choice = ids.parse_label_value(value)
        result = labeling.service.record_answer(
            choice.project_id, choice.record_id, user, chosen_label(choice), source="review"
        )
    except (ValueError, LabelbotError) as exc:
        ack()
        reason = stale_reason(exc) if not isinstance(exc, ValueError) else "This review card is out of date."
        labeling.later(mark_stale, client, body, reason)
        return
    ack()  # the gold label is committed
    labeling.later(_show_reviewed, labeling, client, body, choice.project_id, result)


def _set_choice(
    ack: Ack, body: dict, action: dict, client: WebClient, context: BoltContext, *, none: bool
) -> None:
    """A multi-label review card's Submit gold (the ticked set) or None of these (the empty set)."""
    labeling: Labeling = context["labeling"]
    user = body["user"]["id"]
    if not labeling.is_admin(user):  # as on_review_choice: a forged click changes nothing
        ack()
        log.warning("Review click by non-admin %s ignored", user)
        labeling.later(_tell, client, body, "Only labelbot admins can set gold labels.")
        return
    try:
        ref = ids.parse_record_value(action.get("value"))
        options = [] if none else blocks.ticked_labels(
            (body.get("state") or {}).get("values") or {},
            cards=(ids.CARD_REVIEW, ids.CARD_REVIEWED), action_id=ids.ACTION_REVIEW_LABELS,
        )
        if not none and not options:
            ack()
            labeling.later(_tell, client, body, NOTHING_TICKED_GOLD)
            return
        result = labeling.service.record_answer(
            ref.project_id, ref.record_id, user, chosen_labels(ref, options), source="review"
        )
    except (ValueError, LabelbotError) as exc:
        ack()
        reason = stale_reason(exc) if not isinstance(exc, ValueError) else "This review card is out of date."
        labeling.later(mark_stale, client, body, reason)
        return
    ack()  # the gold set is committed
    labeling.later(_show_reviewed, labeling, client, body, ref.project_id, result)


def on_review_submit(ack: Ack, body: dict, action: dict, client: WebClient, context: BoltContext) -> None:
    """Submit gold on a multi-label review card: the ticked labels (at least one) are the gold set."""
    _set_choice(ack, body, action, client, context, none=False)


def on_review_none(ack: Ack, body: dict, action: dict, client: WebClient, context: BoltContext) -> None:
    """None of these on a multi-label review card: the empty set is the gold set."""
    _set_choice(ack, body, action, client, context, none=True)


def on_review_tick(ack: Ack) -> None:
    """A tick on a review card's labels: Submit gold reads them all from the message state."""
    ack()


def _tell(client: WebClient, body: dict, text: str) -> None:
    channel, _ = card_location(body)
    client.chat_postEphemeral(channel=channel, user=body["user"]["id"], **blocks.notice(text))


def _show_reviewed(
    labeling: Labeling, client: WebClient, body: dict, project_id: int, result: AnswerResult
) -> None:
    update = labeling.service.card_update(project_id, result.record_id, result.user)
    channel, ts = card_location(body)
    card = blocks.reviewed_card(
        update.project, update.record, label=result.label, user_id=result.user, nonce=ids.new_nonce()
    )
    client.chat_update(channel=channel, ts=ts, **card)


def register(app: App) -> None:
    app.action(ids.REVIEW_CHOICE_RE)(on_review_choice)
    app.action(ids.ACTION_REVIEW_SELECT)(on_review_choice)
    app.action(ids.ACTION_REVIEW_SUBMIT)(on_review_submit)
    app.action(ids.ACTION_REVIEW_NONE)(on_review_none)
    app.action(ids.ACTION_REVIEW_LABELS)(on_review_tick)
