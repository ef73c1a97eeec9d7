"""Card buttons and menus. A click that changes data commits it first (one short transaction), then
acks — Slack gets its 200 only for what is stored — and updates the card and sends the next one after,
with one service call (``card_update``) on the listener pool.
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
from core.types import AnswerResult

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
            choice.project_id, choice.record_id, user, chosen_label(choice)
        )
    except (ValueError, LabelbotError) as exc:
        ack()
        labeling.later(mark_stale, client, body, stale_reason(exc))
        return
    ack()  # the answer is committed
    labeling.later(_show_answer, labeling, client, body, result, choice.project_id)


def _show_answer(
    labeling: Labeling, client: WebClient, body: dict, result: AnswerResult, project_id: int
) -> None:
    user = result.user
    update = labeling.service.card_update(
        project_id, result.record_id, user, next_cards=1 if result.changed else 0
    )
    channel, ts = card_location(body)
    card = blocks.answered_card(
        update.project,
        update.record,
        label=result.label,
        user_id=user,
        nonce=ids.new_nonce(),
        complete=result.complete,
    )
    client.chat_update(channel=channel, ts=ts, **card)
    if result.changed:  # a repeated click on the same label sends no second card
        labeling.post_cards(client, update.project, user, list(update.next))


def on_skip(ack: Ack, body: dict, action: dict, client: WebClient, context: BoltContext) -> None:
    labeling: Labeling = context["labeling"]
    user = body["user"]["id"]
    try:
        ref = ids.parse_record_value(action.get("value"))
        # By id; confirmed against the button's project name inside the skip's transaction.
        labeling.service.skip(ref.project_id, ref.record_id, user, confirm=confirmed_project(ref))
    except (ValueError, LabelbotError) as exc:
        ack()
        labeling.later(mark_stale, client, body, stale_reason(exc))
        return
    ack()  # the skip is committed
    labeling.later(_show_skipped, labeling, client, body, ref.project_id, ref.record_id, user)


def _show_skipped(
    labeling: Labeling, client: WebClient, body: dict, project_id: int, record_id: int, user: str
) -> None:
    update = labeling.service.card_update(project_id, record_id, user, next_cards=1)
    mark_stale(
        client,
        body,
        "Skipped: you won't be asked about this record again.",
        project=update.project.name,
        record=update.record,
    )
    labeling.post_cards(client, update.project, user, list(update.next))


def on_undo(ack: Ack, body: dict, action: dict, client: WebClient, context: BoltContext) -> None:
    labeling: Labeling = context["labeling"]
    user = body["user"]["id"]
    try:
        ref = ids.parse_record_value(action.get("value"))
        labeling.service.undo(ref.project_id, user, record_id=ref.record_id, confirm=confirmed_project(ref))
    except NothingToUndo:
        ack()  # a repeated Undo click: the card was restored by the first one
        return
    except (ValueError, LabelbotError) as exc:
        ack()
        labeling.later(mark_stale, client, body, stale_reason(exc))
        return
    ack()  # the answer is removed
    labeling.later(_show_restored, labeling, client, body, ref.project_id, ref.record_id, user)


def _show_restored(
    labeling: Labeling, client: WebClient, body: dict, project_id: int, record_id: int, user: str
) -> None:
    update = labeling.service.card_update(project_id, record_id, user)
    channel, ts = card_location(body)
    client.chat_update(
        channel=channel, ts=ts, **blocks.label_card(update.project, update.record, nonce=ids.new_nonce())
    )


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
    labeling.send_cards(client, project, body["user"]["id"], say_when_none=True)


def on_label_n_now(body: dict, action: dict, client: WebClient, context: BoltContext) -> None:
    """The "Label 5 now" button of a scheduled prompt: DM the clicker that many cards."""
    labeling: Labeling = context["labeling"]
    try:
        ref = ids.parse_label_n_value(action.get("value"))
        project = labeling.project_from_ref(ref)
    except (ValueError, StaleCard):
        return  # a forged value or a deleted project: the prompt is simply stale
    labeling.send_cards(
        client, project, body["user"]["id"], min(ref.n, MAX_CARDS_PER_CLICK), say_when_none=True
    )


def register(app: App) -> None:
    # Clicks that store something commit before they ack; the rest ack first and work after.
    app.action(ids.LABEL_CHOICE_RE)(on_label)
    app.action(ids.ACTION_LABEL_SELECT)(on_label)
    app.action(ids.ACTION_SKIP)(on_skip)
    app.action(ids.ACTION_UNDO)(on_undo)
    app.action(ids.ACTION_SHOW_SIMILAR)(ack_first(on_show_similar))
    app.action(ids.ACTION_START_LABELING)(ack_first(on_start_labeling))
    app.action(ids.ACTION_LABEL_N_NOW)(ack_first(on_label_n_now))
