"""``/label schedule``, ``/label digest``, ``/label subscribe`` and ``/label unsubscribe``.

Handlers take the ``Invocation`` of ``bot.listeners.commands`` (which lists them in its subcommand
tables) and edit the jobs of this process's running scheduler, which reaches them through bolt's context
(``context["scheduler"]``, put there by ``LabelScheduler.attach``) as ``call.scheduler``.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

from bot import blocks
from bot import scheduler as sched
from core.errors import LabelbotError
from core.schedules import ACCEPTED_FORMS, check_at_most_hourly, parse_when, split_count

DEFAULT_CARDS = 5
DEFAULT_SUBSCRIPTION = "weekdays 10:00"
DEFAULT_DIGEST = "weekly mon 09:00"
_ZONE_RE = re.compile(r"^(?:tz=)?([A-Za-z][A-Za-z0-9_+\-]*/[A-Za-z0-9_+\-/]+|UTC)$", re.IGNORECASE)

log = logging.getLogger(__name__)


def _scheduler(call: Any) -> sched.LabelScheduler:
    running = call.scheduler
    if running is None:
        raise LabelbotError("Schedules need the bot's scheduler, which `labelbot serve` starts; "
                            "this bot process runs without one.")
    return running


def _split_zone(args: str) -> tuple[str, str | None]:
    """Take a time zone token (``Europe/Berlin``, ``tz=UTC``) out of the arguments."""
    zone = None
    kept = []
    for token in args.split():
        m = _ZONE_RE.match(token)
        if m and zone is None:
            zone = "UTC" if m[1].upper() == "UTC" else m[1]
        else:
            kept.append(token)
    return " ".join(kept), zone


def _zone(call: Any, explicit: str | None, running: sched.LabelScheduler) -> str:
    slack_tz = None
    if not explicit and not running.settings.timezone:
        slack_tz = sched.slack_timezone(call.client, call.user_id)
    return sched.resolve_timezone(explicit, settings=running.settings, slack_tz=slack_tz)


def schedule(call: Any) -> None:
    """``/label schedule <when> [n]`` | ``list`` | ``remove <id>`` (admins)."""
    running = _scheduler(call)
    project = call.labeling.project_for_channel(call.channel_id)
    sub, _, rest = call.args.partition(" ")
    if sub.lower() == "list":
        items = running.items(project.id)
        call.respond(response_type="ephemeral", **blocks.schedule_list_message(project.name, items))
        return
    if sub.lower() in ("remove", "delete", "rm"):
        if not rest.strip():
            raise LabelbotError("Which one? `/label schedule remove <id>`; `/label schedule list` shows ids.")
        item = running.remove(rest.strip(), project_id=project.id)
        call.reply(f"Removed {item.id} ({item.when}).")
        return
    if not call.args:
        raise LabelbotError(f"Say when, e.g. `/label schedule weekdays 10:00 5`. Accepted: {ACCEPTED_FORMS}; "
                            "add a time zone like Europe/Berlin to override yours.")
    args, explicit = _split_zone(call.args)
    zone = _zone(call, explicit, running)
    when, n = split_count(args, position="last", default=DEFAULT_CARDS, maximum=sched.MAX_CARDS,
                          timezone=zone)
    spec = check_at_most_hourly(parse_when(when, zone))
    item = running.add_prompt(project, call.channel_id, spec, n=n, created_by=call.user_id)
    call.respond(response_type="ephemeral", **blocks.schedule_added_message(
        f"Scheduled a labeling prompt for {project.name} in this channel.", item))


def digest(call: Any) -> None:
    """``/label digest <when>`` schedules the digest here; ``/label digest now`` posts one now (admins)."""
    project = call.labeling.project_for_channel(call.channel_id)
    if call.args.strip().lower() == "now":
        from bot import digests

        digests.post_digest(call.client, call.labeling.service, project, call.channel_id,
                            now=datetime.now(UTC))
        return
    running = _scheduler(call)
    args, explicit = _split_zone(call.args)
    zone = _zone(call, explicit, running)
    spec = check_at_most_hourly(parse_when(args or DEFAULT_DIGEST, zone))
    item = running.add_digest(project, call.channel_id, spec, created_by=call.user_id)
    call.respond(response_type="ephemeral", **blocks.schedule_added_message(
        f"Scheduled the {project.name} digest with its learning-curve chart in this channel.", item))


def subscribe(call: Any) -> None:
    """``/label subscribe [n] [when]``: n cards by DM on a schedule (default 5, weekdays 10:00)."""
    running = _scheduler(call)
    project = call.labeling.project_for_channel(call.channel_id)
    args, explicit = _split_zone(call.args)
    zone = _zone(call, explicit, running)
    when, n = split_count(args, position="first", default=DEFAULT_CARDS, maximum=sched.MAX_CARDS,
                          timezone=zone)
    spec = check_at_most_hourly(parse_when(when or DEFAULT_SUBSCRIPTION, zone))
    item = running.subscribe(project, call.user_id, spec, n=n)
    call.respond(response_type="ephemeral", **blocks.schedule_added_message(
        f"You will get {n} card{'s' if n != 1 else ''} from {project.name} by DM — none when nothing is "
        "left for you. `/label unsubscribe` stops them.", item))


def unsubscribe(call: Any) -> None:
    """``/label unsubscribe``: stop the caller's scheduled cards for this channel's project."""
    running = _scheduler(call)
    project = call.labeling.project_for_channel(call.channel_id)
    if running.unsubscribe(project, call.user_id):
        call.reply(f"Done: no more scheduled cards from {project.name}.")
    else:
        call.reply(f"You have no scheduled cards from {project.name}.")


def status_extras(call: Any, project: Any) -> None:
    """After ``/label status``: trend, stopping advice and the learning-curve chart (best effort)."""
    from bot import digests  # matplotlib loads on first use

    try:
        digests.send_status_extras(call.client, call.respond, call.labeling.service, project,
                                   channel=call.channel_id, user=call.user_id)
    except Exception:  # the status itself was sent; a failed chart upload must not turn into an error reply
        log.exception("Status extras for %s failed", project.name)
