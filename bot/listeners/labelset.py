"""Guidelines and the label set in Slack: the Guidelines button (a modal), ``/label guide`` and
``/label labels``. Each handler is one facade call; the subcommands sit in bot.listeners.commands' tables."""

from __future__ import annotations

import re
import shlex
from typing import TYPE_CHECKING

from slack_bolt import App, BoltContext
from slack_sdk import WebClient

from bot import blocks, ids
from bot.labeling import Labeling, StaleCard, ack_first, mark_stale, stale_reason
from core.errors import LabelbotError

if TYPE_CHECKING:
    from bot.listeners.commands import Invocation

_EXAMPLES_RE = re.compile(r"\bexamples?\s*:", re.IGNORECASE)
# Slack turns typed quotes into curly ones; shlex knows only the straight ones.
_QUOTES = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'"})
LABELS_USAGE = (
    "Use `/label labels add NAME [description]`, `rename OLD NEW`, `merge FROM INTO` or `retire NAME` "
    '(quote names with spaces: `rename "late fee" fees`).'
)


def on_guidelines(body: dict, action: dict, client: WebClient, context: BoltContext) -> None:
    """A card's Guidelines button opens the guidelines modal; the similar modal's pushes it on top."""
    labeling: Labeling = context["labeling"]
    try:
        project = labeling.project_from_ref(ids.parse_project_value(action.get("value")))
    except (ValueError, StaleCard) as exc:
        if body.get("view") is None:
            mark_stale(client, body, stale_reason(exc))
        return
    view = blocks.guidelines_modal(project)
    if body.get("view") is not None:
        client.views_push(trigger_id=body["trigger_id"], view=view)
    else:
        client.views_open(trigger_id=body["trigger_id"], view=view)


def _label_prefix(text: str, names: tuple[str, ...]) -> tuple[str, str] | None:
    """(label, rest) for the longest label name that ``text`` starts with (names may hold spaces)."""
    for name in sorted(names, key=len, reverse=True):
        if text == name or text.startswith(name + " "):
            return name, text[len(name) :].strip()
    return None


def guide(call: Invocation) -> None:
    """``/label guide`` shows the guidelines (anyone); ``/label guide LABEL text [Examples: a; b]`` sets
    LABEL's (admins)."""
    project = call.labeling.project_for_channel(call.channel_id)
    if not call.args:
        call.respond(response_type="ephemeral", **blocks.guidelines_message(project))
        return
    if not call.labeling.is_admin(call.user_id):
        call.reply("Sorry, setting guidelines is for labelbot admins; `/label guide` alone shows them.")
        return
    found = _label_prefix(call.args, project.label_names)
    if found is None:
        raise LabelbotError(
            f"Start with one of {project.name}'s labels ({', '.join(project.label_names)}), e.g. "
            f"`/label guide {project.label_names[0]} what it means`."
        )
    label, rest = found
    marker = _EXAMPLES_RE.search(rest)
    description = rest[: marker.start()] if marker else rest
    examples = [e.strip() for e in rest[marker.end() :].split(";") if e.strip()] if marker else None
    if not description.strip():
        raise LabelbotError(
            f"Give {label}'s description after its name: `/label guide {label} what it means`."
        )
    call.labeling.service.set_guideline(project.name, label, description, examples)
    shown = f" and {len(examples)} example{'s' if len(examples) != 1 else ''}" if examples else ""
    call.reply(f"Set the description{shown} of {label} in {project.name}; cards show it under Guidelines.")


def labels(call: Invocation) -> None:
    """``/label labels add|rename|merge|retire ...`` (admins; the table in bot.listeners.commands checks)."""
    project = call.labeling.project_for_channel(call.channel_id)
    try:
        words = shlex.split(call.args.translate(_QUOTES))
    except ValueError:
        raise LabelbotError(f"Unbalanced quotes. {LABELS_USAGE}") from None
    if not words:
        retired = f" Retired: {', '.join(project.retired_labels)}." if project.retired_labels else ""
        call.reply(f"{project.name}'s labels: {', '.join(project.label_names)}.{retired} {LABELS_USAGE}")
        return
    edit, args = words[0].lower(), words[1:]
    if edit == "merge" and len(args) == 3 and args[1].lower() == "into":
        args = [args[0], args[2]]
    if edit == "add" and args:
        done = call.labeling.service.edit_labels(project.name, "add", args[0], description=" ".join(args[1:]))
    elif edit in ("rename", "merge") and len(args) == 2:
        done = call.labeling.service.edit_labels(project.name, edit, args[0], args[1])
    elif edit == "retire" and len(args) == 1:
        done = call.labeling.service.edit_labels(project.name, "retire", args[0])
    else:
        raise LabelbotError(LABELS_USAGE)
    call.reply(done.summary)


def register(app: App) -> None:
    app.action(ids.ACTION_GUIDELINES)(ack_first(on_guidelines))
