"""Review cards (``/label review``): an admin's click is the record's gold label."""

from __future__ import annotations

import logging

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot import blocks, ids
from bot.labeling import Labeling, card_location, chosen_label, mark_stale, stale_reason
from core.errors import LabelbotError
from core.types import AnswerResult

log = logging.getLogger(__name__)


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
