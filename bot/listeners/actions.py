"""Card buttons and menus: ack at once, record through the service, update the card, send the next."""

from __future__ import annotations

import logging

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot import blocks, ids
from bot.labeling import Labeling, StaleCard
from core.errors import LabelbotError, NothingToUndo, RecordNotFound, StaleRecord
from core.types import ProjectInfo

log = logging.getLogger(__name__)

MAX_CARDS_PER_CLICK = 20  # a forged "Label N now" value must not make the bot post thousands of DMs


def _where(body: dict) -> tuple[str, str]:
    container = body.get("container") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
    return channel, container.get("message_ts") or (body.get("message") or {}).get("ts")


def _mark_stale(client: WebClient, body: dict, project: ProjectInfo | None, reason: str) -> None:
    channel, ts = _where(body)
    card = blocks.stale_card(project.name if project else None, None, reason, nonce=ids.new_nonce())
    client.chat_update(channel=channel, ts=ts, **card)


def _reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, LabelbotError) else "This card is out of date."


def _answer(client: WebClient, body: dict, labeling: Labeling, value_of_label: ids.LabelChoice) -> None:
    """Shared by the label buttons and the label menu."""
    user = body["user"]["id"]
    channel, ts = _where(body)
    project = None
    try:
        project = labeling.project_from_ref(value_of_label)
        label = value_of_label.label(project.label_names)
        result = labeling.service.record_answer(project.name, value_of_label.record_id, user, label)
        record = labeling.service.get_record(project.name, value_of_label.record_id)
    except ValueError:
        _mark_stale(client, body, project, "The label set changed since this card was sent.")
        return
    except (StaleCard, StaleRecord, RecordNotFound) as exc:
        _mark_stale(client, body, project, str(exc))
        return
    card = blocks.answered_card(
        project, record, label=label, user_id=user, nonce=ids.new_nonce(), complete=result.complete
    )
    client.chat_update(channel=channel, ts=ts, **card)
    if result.changed:
        labeling.send_next(client, project, user)


def on_label(ack: Ack, body: dict, action: dict, client: WebClient, context: BoltContext) -> None:
    """A label button or a pick from the label menu: both carry project, record and label."""
    ack()
    value = action.get("value") or (action.get("selected_option") or {}).get("value")
    try:
        choice = ids.parse_label_value(value)
    except ValueError:
        _mark_stale(client, body, None, "This card is out of date.")
        return
    _answer(client, body, context["labeling"], choice)


def on_skip(ack: Ack, body: dict, action: dict, client: WebClient, context: BoltContext) -> None:
    ack()
    labeling: Labeling = context["labeling"]
    user = body["user"]["id"]
    project = None
    try:
        ref = ids.parse_record_value(action.get("value"))
        project = labeling.project_from_ref(ref)
        labeling.service.skip(project.name, ref.record_id, user)
        record = labeling.service.get_record(project.name, ref.record_id)
    except (ValueError, StaleCard, RecordNotFound) as exc:
        _mark_stale(client, body, project, _reason(exc))
        return
    channel, ts = _where(body)
    client.chat_update(
        channel=channel,
        ts=ts,
        **blocks.stale_card(
            project.name,
            record,
            "Skipped: you won't be asked about this record again.",
            nonce=ids.new_nonce(),
        ),
    )
    labeling.send_next(client, project, user)


def on_undo(ack: Ack, body: dict, action: dict, client: WebClient, context: BoltContext) -> None:
    ack()
    labeling: Labeling = context["labeling"]
    user = body["user"]["id"]
    project = None
    try:
        ref = ids.parse_record_value(action.get("value"))
        project = labeling.project_from_ref(ref)
        labeling.service.undo(project.name, user, record_id=ref.record_id)
        record = labeling.service.get_record(project.name, ref.record_id)
    except NothingToUndo:
        return  # a repeated Undo click: the card was restored by the first one
    except (ValueError, StaleCard, RecordNotFound) as exc:
        _mark_stale(client, body, project, _reason(exc))
        return
    channel, ts = _where(body)
    client.chat_update(channel=channel, ts=ts, **blocks.label_card(project, record, nonce=ids.new_nonce()))


def on_show_similar(ack: Ack, body: dict, action: dict, client: WebClient, context: BoltContext) -> None:
    ack()
    labeling: Labeling = context["labeling"]
    project = None
    try:
        ref = ids.parse_record_value(action.get("value"))
        project = labeling.project_from_ref(ref)
        record = labeling.service.get_record(project.name, ref.record_id)
        results = labeling.service.similar(project.name, record_id=ref.record_id, k=8)
    except (ValueError, StaleCard, RecordNotFound) as exc:
        _mark_stale(client, body, project, _reason(exc))
        return
    channel, ts = _where(body)
    view = blocks.similar_modal(project, record, None, results, channel=channel, message_ts=ts)
    client.views_open(trigger_id=body["trigger_id"], view=view)


def on_start_labeling(ack: Ack, body: dict, action: dict, client: WebClient, context: BoltContext) -> None:
    ack()
    labeling: Labeling = context["labeling"]
    user = body["user"]["id"]
    try:
        project = labeling.project_from_ref(ids.parse_project_value(action.get("value")))
    except (ValueError, StaleCard):
        return
    labeling.send_next(client, project, user)


def on_label_n_now(ack: Ack, body: dict, action: dict, client: WebClient, context: BoltContext) -> None:
    """The "Label 5 now" button of a scheduled prompt: DM the clicker that many cards."""
    ack()
    labeling: Labeling = context["labeling"]
    user = body["user"]["id"]
    try:
        ref = ids.parse_label_n_value(action.get("value"))
        project = labeling.project_from_ref(ref)
    except (ValueError, StaleCard):
        return  # a forged value or a deleted project: the prompt is simply stale
    labeling.send_next(client, project, user, min(ref.n, MAX_CARDS_PER_CLICK))


def register(app: App) -> None:
    app.action(ids.LABEL_CHOICE_RE)(on_label)
    app.action(ids.ACTION_LABEL_SELECT)(on_label)
    app.action(ids.ACTION_SKIP)(on_skip)
    app.action(ids.ACTION_UNDO)(on_undo)
    app.action(ids.ACTION_SHOW_SIMILAR)(on_show_similar)
    app.action(ids.ACTION_START_LABELING)(on_start_labeling)
    app.action(ids.ACTION_LABEL_N_NOW)(on_label_n_now)
