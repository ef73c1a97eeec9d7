"""``/label <subcommand>``: ack at once, then translate to one service call and answer."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient

from bot import blocks, ids
from bot.labeling import Labeling, ack_first
from bot.listeners import labelset as labelset_commands
from bot.listeners import rules as rule_commands
from bot.listeners import schedule as schedule_commands
from bot.scheduler import LabelScheduler
from core.errors import LabelbotError

log = logging.getLogger(__name__)

COMMAND = "/label"
MAX_CARDS_PER_COMMAND = 20


@dataclass(frozen=True)
class Invocation:
    """One ``/label`` call, as the handlers need it."""

    labeling: Labeling
    client: WebClient
    respond: Respond
    user_id: str
    channel_id: str
    trigger_id: str
    args: str
    # The process's running ``bot.scheduler.LabelScheduler`` (bolt's ``context["scheduler"]``); None when
    # the bot runs without one (tests, the playground).
    scheduler: LabelScheduler | None = None
    response_url: str | None = None  # where a reply after the command's own goes (cards sent later)

    def reply(self, text: str) -> None:
        self.respond(response_type="ephemeral", **blocks.notice(text))


Handler = Callable[[Invocation], None]


def _card_count(call: Invocation, subcommand: str, default: int) -> int:
    """The optional ``[n]`` of ``/label next`` and ``/label review``, checked."""
    try:
        n = int(call.args) if call.args else default
    except ValueError:
        raise LabelbotError(
            f"`/label {subcommand}` takes a number of cards, e.g. `/label {subcommand} 5` "
            f"(not {call.args!r})."
        ) from None
    if not 1 <= n <= MAX_CARDS_PER_COMMAND:
        raise LabelbotError(f"Ask for between 1 and {MAX_CARDS_PER_COMMAND} cards at a time.")
    return n


def _next(call: Invocation) -> None:
    n = _card_count(call, "next", 1)
    project = call.labeling.project_for_channel(call.channel_id)
    # Owed first, then sent: the reply ("Sent you 2 cards", nothing left, or why Slack refused) comes
    # from the delivery, and cards Slack does not take now follow when it does (bot.deliveries).
    owed = call.labeling.service.request_cards(project.id, call.user_id, n, reply_to=call.response_url)
    call.labeling.deliveries.deliver_here([owed], reply=call.reply)


def _status(call: Invocation) -> None:
    project = call.labeling.project_for_channel(call.channel_id)
    status = call.labeling.service.status(project.name)
    call.respond(response_type="ephemeral", **blocks.status_message(status))
    schedule_commands.status_extras(call, project)  # trend, stopping advice and the chart


def _leaderboard(call: Invocation) -> None:
    project = call.labeling.project_for_channel(call.channel_id)
    status = call.labeling.service.status(project.name)
    call.respond(response_type="ephemeral", **blocks.leaderboard_message(status))


def _search(call: Invocation) -> None:
    if not call.args:
        raise LabelbotError("Tell me what to search for, e.g. `/label search card never arrived`.")
    project = call.labeling.project_for_channel(call.channel_id)
    results = call.labeling.service.similar(project.name, text=call.args, k=10)
    call.client.views_open(
        trigger_id=call.trigger_id, view=blocks.search_results_modal(project, call.args, results)
    )


def _help(call: Invocation) -> None:
    call.respond(response_type="ephemeral", **blocks.help_message(call.labeling.is_admin(call.user_id)))


def _retrain(call: Invocation) -> None:
    project = call.labeling.project_for_channel(call.channel_id)
    started = call.labeling.service.request_retrain(project.name)
    call.reply(
        f"Retraining {project.name} in the background."
        if started
        else f"A retrain of {project.name} is already running."
    )


def _export(call: Invocation) -> None:
    project = call.labeling.project_for_channel(call.channel_id)
    with tempfile.TemporaryDirectory(prefix="labelbot-export-") as tmp:
        path = Path(tmp) / f"{project.name}.csv"
        result = call.labeling.service.export(project.name, path)
        call.client.files_upload_v2(
            channel=call.channel_id,
            file=str(path),
            filename=f"{project.name}-labels.csv",
            title=f"{project.name}: {result.rows} records",
            initial_comment=blocks.escape_mrkdwn(f"Export of {project.name}: {result.rows} records."),
        )


def _project(call: Invocation) -> None:
    if not call.args:
        names = ", ".join(p.name for p in call.labeling.service.list_projects()) or "none yet"
        raise LabelbotError(f"Name the project to bind this channel to (projects: {names}).")
    project = call.labeling.service.get_project(call.args)
    call.labeling.service.bind_context(call.channel_id, project.name)
    call.respond(
        response_type="in_channel",
        **blocks.notice(f"This channel now labels {project.name}. Try `/label next`."),
    )


def _me(call: Invocation) -> None:
    project = call.labeling.project_for_channel(call.channel_id)
    status = call.labeling.service.status(project.name)
    call.respond(response_type="ephemeral", **blocks.me_message(status, call.user_id))


def _review(call: Invocation) -> None:
    n = _card_count(call, "review", 5)
    project = call.labeling.project_for_channel(call.channel_id)
    items = call.labeling.service.review_queue(project.name, n)
    if not items:
        call.reply(f"Nothing to review in {project.name}: no disagreements or likely mislabels right now.")
        return
    channel = call.labeling.dm_channel(call.client, call.user_id)
    for item in items:
        card = blocks.review_card(project, item, nonce=ids.new_nonce())
        call.client.chat_postMessage(channel=channel, **card)
    call.reply(
        f"Sent you {len(items)} review card{'s' if len(items) != 1 else ''} from {project.name} in a direct "
        "message; your pick becomes the gold label."
    )


SUBCOMMANDS: dict[str, Handler] = {
    "next": _next,
    "status": _status,
    "leaderboard": _leaderboard,
    "search": _search,
    "help": _help,
    "me": _me,
    "subscribe": schedule_commands.subscribe,
    "unsubscribe": schedule_commands.unsubscribe,
    "rule": rule_commands.rule,  # list for everyone; add and remove check for an admin
    "guide": labelset_commands.guide,  # setting one is for admins: the handler checks
}
ADMIN_SUBCOMMANDS: dict[str, Handler] = {
    "retrain": _retrain,
    "export": _export,
    "project": _project,
    "review": _review,
    "schedule": schedule_commands.schedule,
    "digest": schedule_commands.digest,
    "labels": labelset_commands.labels,
}


def handle_label(ack: Ack, command: dict, client: WebClient, respond: Respond, context: BoltContext) -> None:
    ack()
    name, _, args = (command.get("text") or "").strip().partition(" ")
    name = name.lower()
    call = Invocation(
        labeling=context["labeling"],
        client=client,
        respond=respond,
        user_id=command["user_id"],
        channel_id=command["channel_id"],
        trigger_id=command.get("trigger_id", ""),
        args=args.strip(),
        scheduler=context.get("scheduler"),
        response_url=command.get("response_url"),
    )
    handler = SUBCOMMANDS.get(name) or ADMIN_SUBCOMMANDS.get(name)
    if handler is None:
        handler = _help
    elif name in ADMIN_SUBCOMMANDS and not call.labeling.is_admin(call.user_id):
        call.reply(f"Sorry, `/label {name}` is for labelbot admins. Ask one of them, or try `/label help`.")
        return
    try:
        handler(call)
    except LabelbotError as exc:
        call.reply(str(exc))


def register(app: App) -> None:
    app.command(COMMAND)(ack_first(handle_label))
