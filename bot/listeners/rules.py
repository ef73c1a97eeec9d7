"""``/label rule add|list|remove``: keyword/regex rules, weak labels shown on cards (core.rules).

``rule`` takes the ``Invocation`` of ``bot.listeners.commands``, which lists it in its subcommand table:
everyone may list the rules; adding and removing them is for admins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot import blocks
from core.errors import LabelbotError
from core.types import RuleInfo

if TYPE_CHECKING:
    from bot.listeners.commands import Invocation

USAGE = (
    "Use `/label rule add refund, money back -> LABEL` (keywords, comma-separated) or "
    "`/label rule add /refund(ed)?/i -> LABEL` (a regex), `/label rule list` or `/label rule remove ID`."
)
ADMIN_ACTIONS = ("add", "remove")


def rule(call: Invocation) -> None:
    action, _, rest = call.args.partition(" ")
    action, rest = action.lower(), rest.strip()
    if action not in ("", "list", *ADMIN_ACTIONS):
        raise LabelbotError(USAGE)
    if action in ADMIN_ACTIONS and not call.labeling.is_admin(call.user_id):
        call.reply(f"Sorry, `/label rule {action}` is for labelbot admins.")
        return
    project = call.labeling.project_for_channel(call.channel_id)
    service = call.labeling.service
    if action in ("", "list"):
        found = service.list_rules(project.id)
        call.respond(response_type="ephemeral", **blocks.rules_message(project.name, found))
    elif action == "add":
        if not rest:
            raise LabelbotError(USAGE)
        call.reply(f"Added rule {_summary(service.add_rule(project.id, rest, call.user_id))}")
    else:
        try:
            rule_id = int(rest.lstrip("#"))
        except ValueError:
            raise LabelbotError(
                f"Name the rule to remove by its id, e.g. `/label rule remove 3` (not {rest!r})."
            ) from None
        removed = service.remove_rule(project.id, rule_id)
        call.reply(f"Removed rule #{removed.id}: {removed.description}. Answers are untouched.")


def _summary(rule: RuleInfo) -> str:
    if rule.timed_out:
        return (f"#{rule.id}: {rule.description}. Its pattern timed out on some record, so it matches "
                f"nothing; remove it with `/label rule remove {rule.id}` and write a simpler one.")
    return f"#{rule.id}: {rule.description}. It matches {rule.matched:,} of {rule.total:,} records."
