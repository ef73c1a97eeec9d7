"""Modal submissions: Show similar / search results → one label applied to the ticked records."""

from __future__ import annotations

import logging

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot import blocks, ids
from bot.labeling import Labeling, StaleCard, stale_reason
from core.errors import LabelbotError

log = logging.getLogger(__name__)


def on_bulk_label(ack: Ack, body: dict, view: dict, client: WebClient, context: BoltContext) -> None:
    labeling: Labeling = context["labeling"]
    user = body["user"]["id"]
    try:
        meta = ids.parse_modal_metadata(view.get("private_metadata", ""))
        project = labeling.project_from_ref(meta)
        record_ids, label = blocks.parse_similar_submission(view["state"]["values"], project.label_names)
        if project.multi_label:  # a set of labels, applied as one answer to each ticked record
            names = blocks.parse_similar_label_set(view["state"]["values"], project.label_names)
    except (ValueError, KeyError, StaleCard):
        ack(
            response_action="errors",
            errors={ids.BLOCK_SIMILAR_LABEL: "This form is out of date: close it and open it again."},
        )
        return
    if project.multi_label:
        label = ", ".join(names) or None  # for the errors and the report
        errors = blocks.similar_errors(record_ids, label)
        chosen: object = frozenset(names)
    else:
        errors = blocks.similar_errors(record_ids, label)
        chosen = label
    if errors:
        ack(**errors)
        return
    try:
        results = labeling.service.bulk_label(project.id, record_ids, user, chosen)  # one transaction
    except LabelbotError as exc:  # deleted or changed since the form opened: nothing was stored
        ack(response_action="errors", errors={ids.BLOCK_SIMILAR_LABEL: stale_reason(exc)})
        return
    ack()  # the answers are committed: the modal closes
    labeling.later(_report, labeling, client, user, project.name, label, len(record_ids), results)


def _report(
    labeling: Labeling, client: WebClient, user: str, project: str, label: str, asked: int, results: list
) -> None:
    skipped = asked - len(results)
    text = f"Labeled {len(results)} record{'s' if len(results) != 1 else ''} in {project} as {label}."
    if skipped:
        text += f" {skipped} already had all the answers they need and were left as they were."
    client.chat_postMessage(channel=labeling.dm_channel(client, user), **blocks.notice(text))


def register(app: App) -> None:
    app.view(ids.CALLBACK_SIMILAR_MODAL)(on_bulk_label)
    app.view(ids.CALLBACK_SEARCH_MODAL)(on_bulk_label)
