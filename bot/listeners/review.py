"""Review cards (``/label review``): an admin's click is the record's gold label."""

from __future__ import annotations

import logging

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot import blocks, ids
from bot.labeling import Labeling, StaleCard
from core.errors import RecordNotFound

log = logging.getLogger(__name__)


def _where(body: dict) -> tuple[str, str]:
    container = body.get("container") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
    return channel, container.get("message_ts") or (body.get("message") or {}).get("ts")


def on_review_choice(ack: Ack, body: dict, action: dict, client: WebClient, context: BoltContext) -> None:
    """A label button or menu pick on a review card: recorded with ``source="review"`` (gold)."""
    ack()
    labeling: Labeling = context["labeling"]
    user = body["user"]["id"]
    channel, ts = _where(body)
    # The card is only ever sent to admins, but a click can be forged: check the clicker, not the card.
    if not labeling.is_admin(user):
        log.warning("Review click by non-admin %s ignored", user)
        client.chat_postEphemeral(
            channel=channel, user=user, **blocks.notice("Only labelbot admins can set gold labels.")
        )
        return
    project = None
    try:
        value = action.get("value") or (action.get("selected_option") or {}).get("value")
        choice = ids.parse_label_value(value)
        project = labeling.project_from_ref(choice)
        label = choice.label(project.label_names)
        labeling.service.record_answer(project.name, choice.record_id, user, label, source="review")
        record = labeling.service.get_record(project.name, choice.record_id)
    except (ValueError, StaleCard, RecordNotFound) as exc:
        reason = str(exc) if not isinstance(exc, ValueError) else "This review card is out of date."
        card = blocks.stale_card(project.name if project else None, None, reason, nonce=ids.new_nonce())
        client.chat_update(channel=channel, ts=ts, **card)
        return
    card = blocks.reviewed_card(project, record, label=label, user_id=user, nonce=ids.new_nonce())
    client.chat_update(channel=channel, ts=ts, **card)


def register(app: App) -> None:
    app.action(ids.REVIEW_CHOICE_RE)(on_review_choice)
    app.action(ids.ACTION_REVIEW_SELECT)(on_review_choice)
