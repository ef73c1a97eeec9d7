"""Block Kit validation through slack_sdk's models, shared by the tests and the Slack stand-in.

Each block is parsed with ``slack_sdk.models.blocks.Block.parse`` (a view's own fields with
``slack_sdk.models.views.View``) and serialised again with ``to_dict()``, which runs every model's
``JsonValidator``s (lengths, counts, enums). The models silently drop what they do not know (unknown
blocks, elements and keys, empty texts) and read unknown text types as ``mrkdwn``, so whatever does
not come back exactly as it was sent is reported too (static select options excepted, see _parse).
The few rules Slack enforces that the models do not are checked by hand below, each saying why.

Problems read like Slack's own: ``"<what> [json-pointer:/blocks/3/elements/0]"``.
"""

from __future__ import annotations

from typing import Any

from slack_sdk.models.blocks import Block, Option, OptionGroup, StaticSelectElement
from slack_sdk.models.views import View

# slack_sdk has no message model, and View counts blocks only when it holds them (we parse them one by
# one instead, to say which one is wrong).
MAX_BLOCKS = {"message": 50, "view": 100}
# What Slack adds to the views it answers with (View does not know app_installed_team_id).
ANSWERED = {"id", "team_id", "app_id", "app_installed_team_id", "bot_id", "root_view_id", "previous_view_id",
            "hash", "state"}
# CheckboxesElement and RadioButtonsElement check no option count.
MAX_OPTIONS = {"checkboxes": 10, "radio_buttons": 10}
# TextObject.parse reads any text object as mrkdwn, also where Slack takes only plain_text.
PLAIN_ONLY = {"header": ("text",), "button": ("text",), "input": ("label", "hint"),
              "modal": ("title", "submit", "close"), "static_select": ("placeholder",)}


def problems(payload: Any, surface: str) -> list[str]:
    """Every way ``payload`` (a message with ``blocks`` when ``surface`` is ``"message"``, a modal or
    home view when it is ``"view"``) breaks Slack's Block Kit rules; empty when it is fine."""
    root = "/view" if surface == "view" else ""
    if not isinstance(payload, dict):
        return [f"must be an object [json-pointer:{root or '/'}]"]
    found: list[str] = []
    blocks = payload.get("blocks", [])
    if surface == "view":
        # Views Slack answered with validate too: without its additions and its "" for unset strings
        # (View drops those). The blocks are checked one by one below.
        fields = {k: v for k, v in payload.items() if k not in ANSWERED and k != "blocks" and v != ""}
        found += _round_trip(lambda: _view(fields), fields, root) + _not_plain(payload, root)
        if payload.get("type") == "modal":
            # View leaves both optional; Slack wants a title, and a submit button under input blocks.
            needed = ["title", *(["submit"] if any(_type(b) == "input" for b in blocks or []) else [])]
            found += [f"a modal needs {k} [json-pointer:/view/{k}]" for k in needed if k not in fields]
    if not isinstance(blocks, list):
        return [*found, f"must be an array [json-pointer:{root}/blocks]"]
    if len(blocks) > MAX_BLOCKS[surface]:
        found.append(f"no more than {MAX_BLOCKS[surface]} items allowed [json-pointer:{root}/blocks]")
    block_ids: set[str] = set()
    for i, block in enumerate(blocks):
        where = f"{root}/blocks/{i}"
        if not isinstance(block, dict):
            found.append(f"must be an object [json-pointer:{where}]")
            continue
        found += _round_trip(lambda block=block: _parse(block), block, where)
        # No model looks beyond itself: Slack rejects a block_id used twice in a message or view, an
        # action_id used twice in a block, and repeated option values.
        found += _repeated([block], "block_id", where, block_ids) + _not_plain(block, where)
        action_ids: set[str] = set()
        for key, element in _elements(block):
            at = f"{where}/{key}"
            found += _repeated([element], "action_id", at, action_ids) + _not_plain(element, at)
            options = element.get("options") or [option for group in element.get("option_groups") or []
                                                 for option in _get(group, "options") or []]
            found += _repeated(options, "value", at, set())
            limit = MAX_OPTIONS.get(element.get("type"))
            if limit is not None and len(options) > limit:
                found.append(f"no more than {limit} options allowed [json-pointer:{at}/options]")
    return found


def _view(fields: dict) -> View:
    view = View(**fields)
    view.blocks = None  # not given: they are checked one by one
    return view


def _parse(block: dict) -> Block:
    parsed = Block.parse(block)
    if parsed is None:  # Block.parse logs an unknown type and returns None
        raise ValueError(f"unsupported type: {block.get('type')}")
    for element in (getattr(parsed, "accessory", None), getattr(parsed, "element", None),
                    *(getattr(parsed, "elements", None) or ())):
        if isinstance(element, StaticSelectElement):
            # StaticSelectElement keeps the option dicts it is given, unchecked (the other option elements
            # parse theirs). Parse them for Option's and OptionGroup's limits, but only validate them:
            # serialising them again would make checking a card with 77 options twice as slow.
            groups = OptionGroup.parse_all(element.option_groups) or []
            options = Option.parse_all(element.options) or [o for g in groups for o in g.options]
            for model in (*groups, *options):
                model.validate_json()
    return parsed


def _round_trip(parse: Any, sent: dict, where: str) -> list[str]:
    try:
        kept = parse().to_dict()
    except Exception as err:  # SlackObjectFormationError, or TypeError, KeyError... from malformed input
        return [f"{err} [json-pointer:{where}]"]
    return [] if kept == sent else _changes(sent, kept, where)


def _changes(sent: Any, kept: Any, where: str) -> list[str]:
    """Where slack_sdk's serialisation differs from what was sent."""
    if isinstance(sent, dict) and isinstance(kept, dict):
        return [p for key in sorted(sent.keys() | kept.keys(), key=str)
                for p in _changes(sent.get(key), kept.get(key), f"{where}/{key}")]
    if isinstance(sent, list) and isinstance(kept, list) and len(sent) == len(kept):
        pairs = enumerate(zip(sent, kept, strict=True))
        return [p for i, (a, b) in pairs for p in _changes(a, b, f"{where}/{i}")]
    if sent == kept:
        return []
    if kept is None:
        what = "must not be empty" if sent in ("", [], {}) else "unknown to slack_sdk's models"
    elif sent is None:
        what = "is required"
    else:
        what = f"slack_sdk's models read {_short(sent)} as {_short(kept)}"
    return [f"{what} [json-pointer:{where}]"]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else None


def _type(obj: Any) -> Any:
    return _get(obj, "type")


def _repeated(objs: Any, key: str, where: str, seen: set[str]) -> list[str]:
    found = []
    for value in (_get(obj, key) for obj in objs):
        if isinstance(value, str) and value in seen:
            found.append(f"duplicate {key} {value!r} [json-pointer:{where}/{key}]")
        elif isinstance(value, str):
            seen.add(value)
    return found


def _elements(block: dict) -> list[tuple[str, dict]]:
    """(pointer below the block, element) for each interactive element of a block."""
    found = [(key, block[key]) for key in ("accessory", "element") if isinstance(block.get(key), dict)]
    if block.get("type") == "actions" and isinstance(block.get("elements"), list):
        found += [(f"elements/{i}", el) for i, el in enumerate(block["elements"]) if isinstance(el, dict)]
    return found


def _not_plain(obj: dict, where: str) -> list[str]:
    return [f"must be a plain_text text object [json-pointer:{where}/{key}]"
            for key in PLAIN_ONLY.get(obj.get("type"), ()) if key in obj and _type(obj[key]) != "plain_text"]
