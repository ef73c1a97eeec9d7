"""Card buttons and menus. A click that changes data commits it first — with the card update and the
next card it owes, in one short transaction (core.deliveries) — then acks, so Slack gets its 200 only
for what is stored, and the listener pool delivers them after (bot.deliveries), retried until Slack
takes them.
"""

from __future__ import annotations

import logging

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot import blocks, ids
from bot.labeling import (
    Labeling,
    StaleCard,
    ack_first,
    card_location,
    chosen_label,
    confirmed_project,
    mark_stale,
    stale_reason,
)
from core.errors import LabelbotError, NothingToUndo

log = logging.getLogger(__name__)

MAX_CARDS_PER_CLICK = 20  # a forged "Label N now" value must not make the bot post thousands of DMs


def on_label(ack: Ack, body: dict, action: dict, client: WebClient, context: BoltContext) -> None:
    """A label button or a pick from the label menu: both carry project, record and label."""
    labeling: Labeling = context["labeling"]
    user = body["user"]["id"]
    value = action.get("value") or (action.get("selected_option") or {}).get("value")
    try:
        choice = ids.parse_label_value(value)
        result = labeling.service.record_answer(
            choice.project_id, choice.record_id, user, chosen_label(choice), card_address=_clicked_card(body)
        )
    except (ValueError, LabelbotError) as exc:
        ack()
        labeling.later(mark_stale, client, body, stale_reason(exc))
        return
    ack()  # the answer is committed, and what it owes the labeler with it
    labeling.deliveries.deliver(result.deliveries)


def _clicked_card(body: dict) -> str:
    """The clicked card's address for the outbox (ValueError for a payload without a valid one)."""
    return ids.encode_card_address(*card_location(body))


def on_skip(ack: Ack, body: dict, action: dict, client: WebClient, context: BoltContext) -> None:
    labeling: Labeling = context["labeling"]
    user = body["user"]["id"]
    try:
        ref = ids.parse_record_value(action.get("value"))
        # By id; confirmed against the button's project name inside the skip's transaction.
        owed = labeling.service.skip(
            ref.project_id, ref.record_id, user,
            confirm=confirmed_project(ref), card_address=_clicked_card(body),
        )
    except (ValueError, LabelbotError) as exc:
        ack()
        labeling.later(mark_stale, client, body, stale_reason(exc))
        return
    ack()  # the skip is committed
    labeling.deliveries.deliver(owed)


def on_undo(ack: Ack, body: dict, action: dict, client: WebClient, context: BoltContext) -> None:
    labeling: Labeling = context["labeling"]
    user = body["user"]["id"]
    try:
        ref = ids.parse_record_value(action.get("value"))
        result = labeling.service.undo(
            ref.project_id, user, record_id=ref.record_id, confirm=confirmed_project(ref),
            card_address=_clicked_card(body),
        )
    except NothingToUndo:
        ack()  # a repeated Undo click: the card was restored by the first one
        return
    except (ValueError, LabelbotError) as exc:
        ack()
        labeling.later(mark_stale, client, body, stale_reason(exc))
        return
    ack()  # the answer is removed
    labeling.deliveries.deliver(result.deliveries)


def on_show_similar(body: dict, action: dict, client: WebClient, context: BoltContext) -> None:
    labeling: Labeling = context["labeling"]
    try:
        ref = ids.parse_record_value(action.get("value"))
        project = labeling.project_from_ref(ref)
        record = labeling.service.get_record(project.id, ref.record_id)
        results = labeling.service.similar(project.id, record_id=ref.record_id, k=8)
    except (ValueError, LabelbotError) as exc:
        mark_stale(client, body, stale_reason(exc))
        return
    channel, ts = card_location(body)
    view = blocks.similar_modal(project, record, None, results, channel=channel, message_ts=ts)
    client.views_open(trigger_id=body["trigger_id"], view=view)


def on_start_labeling(body: dict, action: dict, client: WebClient, context: BoltContext) -> None:
    labeling: Labeling = context["labeling"]
    try:
        project = labeling.project_from_ref(ids.parse_project_value(action.get("value")))
    except (ValueError, StaleCard):
        return
    owed = labeling.service.request_cards(project.id, body["user"]["id"], 1, notify_empty=True)
    labeling.deliveries.deliver_here([owed])


def on_label_n_now(body: dict, action: dict, client: WebClient, context: BoltContext) -> None:
    """The "Label 5 now" button of a scheduled prompt: DM the clicker that many cards."""
    labeling: Labeling = context["labeling"]
    try:
        ref = ids.parse_label_n_value(action.get("value"))
        project = labeling.project_from_ref(ref)
    except (ValueError, StaleCard):
        return  # a forged value or a deleted project: the prompt is simply stale
    n = min(ref.n, MAX_CARDS_PER_CLICK)
    if n < 1:
        return
    # The prompt is a channel message: its response_url tells the clicker (only them) what happened.
    owed = labeling.service.request_cards(
        project.id, body["user"]["id"], n, notify_empty=True, reply_to=body.get("response_url")
    )
    labeling.deliveries.deliver_here([owed])


def register(app: App) -> None:
    # Clicks that store something commit before they ack; the rest ack first and work after.
    app.action(ids.LABEL_CHOICE_RE)(on_label)
    app.action(ids.ACTION_LABEL_SELECT)(on_label)
    app.action(ids.ACTION_SKIP)(on_skip)
    app.action(ids.ACTION_UNDO)(on_undo)
    app.action(ids.ACTION_SHOW_SIMILAR)(ack_first(on_show_similar))
    app.action(ids.ACTION_START_LABELING)(ack_first(on_start_labeling))
    app.action(ids.ACTION_LABEL_N_NOW)(ack_first(on_label_n_now))
