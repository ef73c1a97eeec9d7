"""Block Kit rendering: pure functions from ``core.types`` values to Slack message and view dicts.

No Slack SDK calls and no I/O. Message functions return ``{"text": fallback, "blocks": [...]}``; modal and
App Home functions return a complete view dict. Everything that came from users or data files (record
text, project and label names, reasons, queries) is escaped before it goes into ``mrkdwn`` and cut to
Slack's documented limits, so a record containing ``<!channel>`` never pings anyone and a 10,000-character
record never makes Slack reject the message. ``mrkdwn`` text objects are sent with ``verbatim: true`` so
Slack does not auto-link bare URLs, channel names or ``@here`` either. ``plain_text`` is never parsed by
Slack, so it is only cut, not escaped.

:func:`message_problems` and :func:`view_problems` check a rendered dict with slack_sdk's models (see
:mod:`bot.blockkit`); the tests run every renderer through them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from bot import blockkit, ids
from core import multilabel
from core.types import (
    AnnotatorStats,
    LabelDef,
    ModelRunInfo,
    PairAgreement,
    ProjectInfo,
    ProjectStatus,
    RecordView,
    ReviewItem,
    RuleInfo,
    SimilarRecord,
)

# Slack's documented limits (https://api.slack.com/reference/block-kit). Lengths are counted in UTF-16
# code units (see slack_len), which is never less than the character count Slack documents.
MAX_MESSAGE_BLOCKS = 50
MAX_CONTEXT_ELEMENTS = 10
SECTION_TEXT_LIMIT = 3000
HEADER_LIMIT = 150
BUTTON_TEXT_LIMIT = 75
OPTION_TEXT_LIMIT = 75
OPTION_VALUE_LIMIT = 150
OPTION_DESCRIPTION_LIMIT = 75
OPTION_GROUP_LABEL_LIMIT = 75
SELECT_OPTIONS_LIMIT = 100
OPTION_GROUPS_LIMIT = 100
CHECKBOX_OPTIONS_LIMIT = 10
PLACEHOLDER_LIMIT = 150
INPUT_LABEL_LIMIT = 2000
MODAL_TITLE_LIMIT = 24  # also submit and close
PRIVATE_METADATA_LIMIT = 3000

# Our own choices.
BUTTON_LIMIT = 5  # label sets up to this size get one button per label, larger ones a select menu
MAX_SELECTABLE_LABELS = SELECT_OPTIONS_LIMIT * OPTION_GROUPS_LIMIT  # what one static_select can hold
FALLBACK_LIMIT = 3000  # notification text; Slack would take 40,000 but nobody reads that in a toast
SNIPPET_LIMIT = 200  # record text in modal result lists
REASON_LIMIT = 1000
USER_LIMIT = 80  # a non-Slack annotator name (e.g. from an import), shown escaped
MAX_SIMILAR_RESULTS = 40  # records listed in the similar/search modal (one section each)
MAX_HOME_PROJECTS = 30  # three blocks per project in the App Home
STATUS_LABEL_LIMIT = 20
LONG_MARKER_MIN = 300  # limits below this get a bare "…" instead of the "(truncated, N more …)" marker

_SLACK_USER_RE = re.compile(r"^[UW][A-Z0-9]{1,30}$")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_ENTITY_RE = re.compile(r"&(?:amp|lt|gt);")
_WS_RE = re.compile(r"\s+")

Block = dict[str, Any]
Message = dict[str, Any]
View = dict[str, Any]

# ------------------------------------------------------------------------------------------ text helpers


def _clean(text: object) -> str:
    """``str(text)`` with lone UTF-16 surrogates replaced: they cannot be sent as JSON to Slack."""
    text = "" if text is None else str(text)
    if _SURROGATE_RE.search(text):
        # Round-trip through UTF-16: valid pairs become one code point, lone halves become U+FFFD.
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def slack_len(text: str) -> int:
    """Length in UTF-16 code units: an emoji outside the BMP counts 2. Never below ``len(text)``, so a
    text within this length is within Slack's limit whichever way Slack counts."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def escape_mrkdwn(text: str) -> str:
    """Escape ``&``, ``<`` and ``>`` as Slack requires, so user data can't mention, link or ping."""
    return _clean(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _is_extender(ch: str) -> bool:
    cp = ord(ch)
    return (
        unicodedata.category(ch) in ("Mn", "Me", "Mc")  # combining marks
        or cp == 0x200D  # zero-width joiner
        or 0xFE00 <= cp <= 0xFE0F  # variation selectors (emoji presentation)
        or 0x1F3FB <= cp <= 0x1F3FF  # skin-tone modifiers
        or 0xE0020 <= cp <= 0xE007F  # tag characters (subdivision flags)
        or 0xE0100 <= cp <= 0xE01EF
    )


def _is_regional(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def _splits_cluster(text: str, i: int) -> bool:
    """Whether cutting ``text`` before index ``i`` would split a user-perceived character."""
    if i <= 0 or i >= len(text):
        return False
    before, after = text[i - 1], text[i]
    if _is_extender(after) or before == "\u200d" or (before == "\r" and after == "\n"):
        return True
    if _is_regional(before) and _is_regional(after):
        run = 0  # flags are pairs of regional indicators: don't cut inside a pair
        while run < i and _is_regional(text[i - 1 - run]):
            run += 1
        return run % 2 == 1
    return False


def _safe_cut(text: str, cut: int) -> int:
    """Move ``cut`` left until it is neither inside an escape sequence nor inside a character cluster."""
    while True:
        moved = cut
        for m in _ENTITY_RE.finditer(text, max(0, moved - 4), moved + 4):
            if m.start() < moved < m.end():
                moved = m.start()
        while _splits_cluster(text, moved):
            moved -= 1
        if moved == cut:
            return cut
        cut = moved


def _visible_len(text: str) -> int:
    """Characters as a reader sees them: an escape sequence counts as one."""
    return len(text) - 4 * text.count("&amp;") - 3 * (text.count("&lt;") + text.count("&gt;"))


def _long_marker(n: int) -> str:
    return f"… (truncated, {n:,} more character{'' if n == 1 else 's'})"


def truncate(text: str, limit: int, *, marker: str | None = None) -> str:
    """Cut ``text`` to at most ``limit`` (in :func:`slack_len` units), marker included.

    The cut never falls inside ``&amp;``/``&lt;``/``&gt;`` nor inside a character cluster (combining
    marks, emoji with modifiers or joiners, flags). The marker defaults to
    ``"… (truncated, N more characters)"`` for limits of at least 300 and to ``"…"`` below that.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    text = _clean(text)
    if slack_len(text) <= limit:
        return text

    def make(remaining: int) -> str:
        if marker is not None:
            return marker
        return _long_marker(remaining) if limit >= LONG_MARKER_MIN else "…"

    mark = make(_visible_len(text))  # the longest the marker can get
    if slack_len(mark) >= limit:
        mark = "…"
    budget = limit - slack_len(mark)
    cut, used = len(text), 0
    for i, ch in enumerate(text):
        used += 2 if ord(ch) > 0xFFFF else 1
        if used > budget:
            cut = i
            break
    kept = text[: _safe_cut(text, cut)].rstrip()
    final = make(_visible_len(text[len(kept):]))  # fewer digits than the estimate, so it still fits
    return kept + (final if slack_len(final) <= slack_len(mark) else mark)


def mrkdwn_text(text: str, limit: int = SECTION_TEXT_LIMIT) -> str:
    """Escape, then cut to ``limit`` with the marker counted in."""
    return truncate(escape_mrkdwn(text), limit)


def mention(user: str) -> str:
    """``<@U123>`` for a Slack user id, the escaped (and shortened) name for anything else."""
    user = _clean(user)
    if _SLACK_USER_RE.match(user):
        return f"<@{user}>"
    return mrkdwn_text(user, USER_LIMIT) or "(unknown)"


def _snippet(text: str, limit: int) -> str:
    """One line of escaped text: whitespace collapsed so quotes and lists stay intact."""
    return mrkdwn_text(_WS_RE.sub(" ", _clean(text)).strip(), limit)


def _plain(text: str, limit: int, *, default: str = "…") -> dict[str, Any]:
    return {"type": "plain_text", "text": _plain_text(text, limit, default), "emoji": True}


@functools.lru_cache(maxsize=4096)  # label names and the like, rendered on every card
def _plain_text(text: str, limit: int, default: str) -> str:
    text = _clean(text)
    if not text.strip():
        text = default  # Slack rejects empty text objects
    return truncate(text, limit)


def _md(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text or " ", "verbatim": True}


def _section(text: str, block_id: str | None = None) -> Block:
    block: Block = {"type": "section", "text": _md(text)}
    if block_id is not None:
        block["block_id"] = block_id
    return block


def _context(texts: Sequence[str], block_id: str | None = None) -> Block:
    block: Block = {"type": "context", "elements": [_md(t) for t in texts[:MAX_CONTEXT_ELEMENTS]]}
    if block_id is not None:
        block["block_id"] = block_id
    return block


def _header(text: str, block_id: str | None = None) -> Block:
    block: Block = {"type": "header", "text": _plain(text, HEADER_LIMIT)}
    if block_id is not None:
        block["block_id"] = block_id
    return block


def _button(text: str, action_id: str, value: str, *, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {"type": "button", "text": _plain(text, BUTTON_TEXT_LIMIT),
                              "action_id": action_id, "value": value}
    if style is not None:
        button["style"] = style
    return button


def _message(fallback: str, blocks: list[Block]) -> Message:
    """``fallback`` is already escaped mrkdwn."""
    return {"text": truncate(fallback, FALLBACK_LIMIT) or "labelbot", "blocks": blocks}


def _lines_to_sections(lines: Sequence[str], *, max_sections: int, more: Callable[[int], str]) -> list[str]:
    """Pack lines into section texts of at most 3000 characters. When ``max_sections`` are full, the
    lines left over are summarised by ``more(n_left)`` at the end of the last section."""
    lines = [truncate(line, SECTION_TEXT_LIMIT // 2) for line in lines]
    sections: list[list[str]] = [[]]
    size = 0  # slack_len of the current section's text
    for k, line in enumerate(lines):
        current = sections[-1]
        if not current or size + 1 + slack_len(line) <= SECTION_TEXT_LIMIT:
            size += slack_len(line) + (1 if current else 0)
            current.append(line)
            continue
        if len(sections) < max(max_sections, 1):
            sections.append([line])
            size = slack_len(line)
            continue
        hidden = len(lines) - k
        while current and size + 1 + slack_len(more(hidden)) > SECTION_TEXT_LIMIT:
            size -= slack_len(current.pop()) + 1
            hidden += 1
        current.append(more(hidden))
        break
    return ["\n".join(section) for section in sections if section]


# ------------------------------------------------------------------------------------------ formatting


def _pct(value: float | None, digits: int = 0) -> str | None:
    if value is None or not math.isfinite(value):
        return None
    return f"{min(max(value, 0.0), 1.0):.{digits}%}"


def _num(value: float | None, digits: int = 2) -> str | None:
    if value is None or not math.isfinite(value):
        return None
    return f"{value:.{digits}f}"


def _duration(seconds: float | None) -> str | None:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{seconds / 3600:.1f} h"


def _when(moment: datetime) -> str:
    """A Slack date token: shown in each reader's time zone, with a UTC fallback."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # the store writes UTC; SQLite drops the zone
    fallback = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} at {{time}}|{fallback}>"


def _bar(fraction: float, width: int = 10) -> str:
    filled = round(min(max(fraction, 0.0), 1.0) * width)
    return "▓" * filled + "░" * (width - filled)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _guess_text(label: str | None, confidence: float | None) -> str:
    if label is None:
        return "No model yet"
    text = f"Model guess: *{mrkdwn_text(label, 300)}*"
    pct = _pct(confidence)
    return f"{text} ({pct})" if pct else text


def _record_title(project_name: str, record: RecordView) -> str:
    suffix = f" — record {truncate(_clean(record.external_id), 40)}"
    return truncate(_clean(project_name), HEADER_LIMIT - slack_len(suffix)) + suffix


# ----------------------------------------------------------------------------------------------- cards


def _record_blocks(card: str, project_name: str, record: RecordView, nonce: str) -> list[Block]:
    text = mrkdwn_text(record.text) if _clean(record.text).strip() else "_(this record has no text)_"
    return [
        _header(_record_title(project_name, record), ids.card_block_id(card, ids.PART_HEADER, nonce)),
        _section(text, ids.card_block_id(card, ids.PART_TEXT, nonce)),
    ]


def _option(text: str, value: str, description: str = "") -> dict[str, Any]:
    option: dict[str, Any] = {"text": _plain(text, OPTION_TEXT_LIMIT), "value": value}
    if _clean(description).strip():
        option["description"] = _plain(description, OPTION_DESCRIPTION_LIMIT)
    return option


def _label_select(
    labels: Sequence[LabelDef],
    value_of: Callable[[int, LabelDef], str],
    *,
    action_id: str,
    placeholder: str,
    initial: str | None = None,
) -> dict[str, Any]:
    """A static_select of all labels; option groups of 100 when there are more than 100."""
    options = [_option(label.name, value_of(i, label), label.description)
               for i, label in enumerate(labels[:MAX_SELECTABLE_LABELS])]
    select: dict[str, Any] = {"type": "static_select", "action_id": action_id,
                              "placeholder": _plain(placeholder, PLACEHOLDER_LIMIT)}
    if len(options) <= SELECT_OPTIONS_LIMIT:
        select["options"] = options
    else:
        n = len(options)
        step = SELECT_OPTIONS_LIMIT
        select["option_groups"] = [
            {"label": _plain(f"Labels {start + 1}–{min(start + step, n)}", OPTION_GROUP_LABEL_LIMIT),
             "options": options[start:start + step]}
            for start in range(0, n, step)
        ]
    names = [label.name for label in labels[:MAX_SELECTABLE_LABELS]]
    if initial is not None and initial in names:
        select["initial_option"] = options[names.index(initial)]
    return select


def label_card(project: ProjectInfo, record: RecordView, *, nonce: str) -> Message:
    """The card a labeler answers: record text, the model's guess, label buttons or a select, Skip and
    Show similar. Re-render with a new ``nonce`` whenever the card is updated in place."""
    ids.check_nonce(nonce)
    if project.multi_label:
        return multi_label_card(project, record, nonce=nonce)
    blocks = _record_blocks(ids.CARD_LABEL, project.name, record, nonce)
    context = [_guess_text(record.predicted_label, record.confidence)]
    if _clean(record.reason).strip():
        context.append("Why this record: " + mrkdwn_text(record.reason, REASON_LIMIT))
    if record.rules:
        context.append(rules_context(record.rules))
    blocks.append(_context(context, ids.card_block_id(ids.CARD_LABEL, ids.PART_CONTEXT, nonce)))

    record_value = ids.encode_record_value(project.id, project.name, record.record_id)
    controls = [
        _button("Skip", ids.ACTION_SKIP, record_value),
        _button("Show similar", ids.ACTION_SHOW_SIMILAR, record_value),
    ]
    if has_guidelines(project):
        controls.append(_guidelines_button(project))

    def value_of(i: int, label: LabelDef) -> str:
        return ids.encode_label_value(project.id, project.name, record.record_id, i, label.name)

    labels = project.labels
    labels_id = ids.card_block_id(ids.CARD_LABEL, ids.PART_LABELS, nonce)
    controls_id = ids.card_block_id(ids.CARD_LABEL, ids.PART_CONTROLS, nonce)
    if not labels:
        blocks.append({"type": "actions", "block_id": controls_id, "elements": controls})
    elif len(labels) <= BUTTON_LIMIT:
        buttons = [
            _button(label.name, ids.label_choice_action_id(i), value_of(i, label),
                    style="primary" if label.name == record.predicted_label else None)
            for i, label in enumerate(labels)
        ]
        blocks.append({"type": "actions", "block_id": labels_id, "elements": buttons})
        blocks.append({"type": "actions", "block_id": controls_id, "elements": controls})
    else:
        # Not preselecting the guess: picking the preselected option would fire no action at all.
        placeholder = "Choose a label"
        if record.predicted_label is not None:
            placeholder += f" (model guess: {record.predicted_label})"
        select = _label_select(labels, value_of, action_id=ids.ACTION_LABEL_SELECT, placeholder=placeholder)
        blocks.append({"type": "actions", "block_id": labels_id, "elements": [select, *controls]})
        if len(labels) > MAX_SELECTABLE_LABELS:
            blocks.append(_context(
                [f"Only the first {MAX_SELECTABLE_LABELS:,} of {len(labels):,} labels fit in this menu."],
                ids.card_block_id(ids.CARD_LABEL, ids.PART_NOTE, nonce)))
    fallback = f"{escape_mrkdwn(project.name)}: {_snippet(record.text, SNIPPET_LIMIT) or 'a record to label'}"
    return _message(fallback, blocks)


def answered_card(
    project: ProjectInfo, record: RecordView, *, label: str, user_id: str, nonce: str, complete: bool
) -> Message:
    """The card after an answer: who chose which label, and an Undo button."""
    ids.check_nonce(nonce)
    blocks = _record_blocks(ids.CARD_ANSWERED, project.name, record, nonce)
    status = "this record is complete" if complete else "waiting for more answers from others"
    if project.multi_label:  # ``label`` is the set's canonical text (core.multilabel)
        label = label_set_text(label)
    blocks.append(_context([f"✅ Labeled *{mrkdwn_text(label, 300)}* by {mention(user_id)} · {status}"],
                           ids.card_block_id(ids.CARD_ANSWERED, ids.PART_CONTEXT, nonce)))
    value = ids.encode_record_value(project.id, project.name, record.record_id)
    controls_id = ids.card_block_id(ids.CARD_ANSWERED, ids.PART_CONTROLS, nonce)
    undo = _button("Undo", ids.ACTION_UNDO, value)
    blocks.append({"type": "actions", "block_id": controls_id, "elements": [undo]})
    fallback = f"Labeled {escape_mrkdwn(label)}: {_snippet(record.text, SNIPPET_LIMIT)}"
    return _message(fallback, blocks)


# ------------------------------------------------------------------------------------ multi-label cards

NONE_OF_THESE = "none of these"


def label_set_text(canonical: str) -> str:
    """A multi-label answer or guess as people read it: "a, b", or "none of these" for the empty set.
    Plain text: escape it where it goes into mrkdwn."""
    return ", ".join(multilabel.split(canonical)) or NONE_OF_THESE


def _multi_guess_text(record: RecordView) -> str:
    if record.predicted_label is None:
        return "No model yet"
    text = f"Guess: *{mrkdwn_text(label_set_text(record.predicted_label), 300)}*"
    pct = _pct(record.confidence)
    return f"{text} ({pct})" if pct else text


def _label_set_input(
    labels: Sequence[LabelDef], action_id: str, placeholder: str, *, initial: Sequence[str] = ()
) -> dict[str, Any]:
    """Checkboxes for up to 10 labels (Slack's limit per element), a multi_static_select beyond.
    Option values are ``ids.encode_label_option`` values: index and digest, so an edited set is caught."""
    if len(labels) <= CHECKBOX_OPTIONS_LIMIT:
        options = [_option(label.name, ids.encode_label_option(i, label.name), label.description)
                   for i, label in enumerate(labels)]
        element: dict[str, Any] = {"type": "checkboxes", "action_id": action_id, "options": options}
    else:  # the single-label menu, made multiple (same options and groups of 100)
        element = _label_select(labels, lambda i, label: ids.encode_label_option(i, label.name),
                                action_id=action_id, placeholder=placeholder)
        element["type"] = "multi_static_select"
        options = element.get("options") or [
            option for group in element["option_groups"] for option in group["options"]]
    chosen = [option for option, label in zip(options, labels, strict=False) if label.name in set(initial)]
    if chosen:
        element["initial_options"] = chosen
    return element


def multi_label_card(project: ProjectInfo, record: RecordView, *, nonce: str) -> Message:
    """The card of a multi-label project: the labels as checkboxes (a multi-select beyond 10), Submit,
    "None of these", Skip and Show similar. Ticks are not preset to the model's guess: a Submit without
    a look would store the model's guess as a person's answer; the guess is on the context line."""
    ids.check_nonce(nonce)
    blocks = _record_blocks(ids.CARD_LABEL, project.name, record, nonce)
    context = [_multi_guess_text(record)]
    if _clean(record.reason).strip():
        context.append("Why this record: " + mrkdwn_text(record.reason, REASON_LIMIT))
    if record.rules:
        context.append(rules_context(record.rules))
    context.append("Tick every label that applies, then Submit.")
    blocks.append(_context(context, ids.card_block_id(ids.CARD_LABEL, ids.PART_CONTEXT, nonce)))

    record_value = ids.encode_record_value(project.id, project.name, record.record_id)
    controls = []
    if project.labels:
        controls += [_button("Submit", ids.ACTION_MULTI_SUBMIT, record_value, style="primary"),
                     _button("None of these", ids.ACTION_MULTI_NONE, record_value)]
        labels_input = _label_set_input(project.labels, ids.ACTION_MULTI_LABELS, "Choose the labels")
        labels_id = ids.card_block_id(ids.CARD_LABEL, ids.PART_LABELS, nonce)
        blocks.append({"type": "actions", "block_id": labels_id, "elements": [labels_input]})
    controls += [_button("Skip", ids.ACTION_SKIP, record_value),
                 _button("Show similar", ids.ACTION_SHOW_SIMILAR, record_value)]
    if has_guidelines(project):
        controls.append(_guidelines_button(project))
    controls_id = ids.card_block_id(ids.CARD_LABEL, ids.PART_CONTROLS, nonce)
    blocks.append({"type": "actions", "block_id": controls_id, "elements": controls})
    if len(project.labels) > MAX_SELECTABLE_LABELS:
        blocks.append(_context(
            [f"Only the first {MAX_SELECTABLE_LABELS:,} of {len(project.labels):,} labels fit in this menu."],
            ids.card_block_id(ids.CARD_LABEL, ids.PART_NOTE, nonce)))
    fallback = f"{escape_mrkdwn(project.name)}: {_snippet(record.text, SNIPPET_LIMIT) or 'a record to label'}"
    return _message(fallback, blocks)


def ticked_labels(
    state_values: Any, *, cards: Sequence[str] = (ids.CARD_LABEL,), action_id: str = ids.ACTION_MULTI_LABELS
) -> list[ids.LabelOption]:
    """The options ticked on a multi-label card, from the ``state.values`` Slack sends with a click
    (every stateful element of the message, keyed by block id). ``ValueError`` on a malformed payload.
    ``cards`` and ``action_id``: where the labels are (a review card's are ``review``/``gold`` blocks)."""
    if not isinstance(state_values, Mapping):
        raise ValueError("Malformed message state: expected a mapping.")
    prefixes = tuple(f"{card}.{ids.PART_LABELS}." for card in cards)
    chosen: list[ids.LabelOption] = []
    for block_id, actions in state_values.items():
        if not (isinstance(block_id, str) and block_id.startswith(prefixes)):
            continue
        selected = _state(actions, action_id).get("selected_options") or []
        if not isinstance(selected, list):
            raise ValueError("Malformed message state: selected_options is not a list.")
        for option in selected:
            if not isinstance(option, Mapping):
                raise ValueError("Malformed message state: an option is not an object.")
            chosen.append(ids.parse_label_option(option.get("value")))
    return chosen


def stale_card(
    project_name: str | None, record: RecordView | None, reason: str, *, nonce: str = "0"
) -> Message:
    """A card that no longer takes answers (record complete, project gone); it has no buttons."""
    ids.check_nonce(nonce)
    note = f"⚠️ {mrkdwn_text(reason, REASON_LIMIT) or 'This record no longer needs an answer.'}"
    if record is not None:
        name = project_name or record.project or "Unknown project"
        blocks = _record_blocks(ids.CARD_STALE, name, record, nonce)
    else:
        title = "Record no longer available"
        if project_name:
            title = f"{project_name} — record no longer available"
        blocks = [_header(title, ids.card_block_id(ids.CARD_STALE, ids.PART_HEADER, nonce))]
    blocks.append(_context([note], ids.card_block_id(ids.CARD_STALE, ids.PART_CONTEXT, nonce)))
    return _message(note, blocks)


def notice(text: str) -> Message:
    """A short ephemeral reply; ``text`` is escaped."""
    body = mrkdwn_text(text) or "…"
    return _message(body, [_section(body)])


# ---------------------------------------------------------------------------------------------- modals


def _similar_status(item: SimilarRecord) -> str:
    if item.label is not None:
        return f"labeled *{mrkdwn_text(item.label, 300)}*"
    if item.predicted_label is not None:
        return _guess_text(item.predicted_label, item.confidence).replace("Model guess", "model guess", 1)
    return "not labeled yet"


def _similar_status_plain(item: SimilarRecord) -> str:
    if item.label is not None:
        return f"labeled {item.label}"
    if item.predicted_label is not None:
        pct = _pct(item.confidence)
        return f"guess {item.predicted_label}" + (f" ({pct})" if pct else "")
    return "not labeled yet"


def similar_modal(
    project: ProjectInfo,
    source: RecordView | None,
    query_text: str | None,
    results: Sequence[SimilarRecord],
    *,
    callback_id: str = ids.CALLBACK_SIMILAR_MODAL,
    title: str = "Similar records",
    channel: str | None = None,
    message_ts: str | None = None,
) -> View:
    """Modal listing the nearest records with checkboxes and a label menu ("Apply label").

    Records that already have a label are listed and tickable too (their label is shown): applying a
    label adds the clicker's answer, or changes the answer they gave before; the service leaves records
    that are already complete from others' answers untouched. The first ``MAX_SIMILAR_RESULTS`` results
    are shown. ``private_metadata`` carries the project and source record (see ``ids.parse_modal_metadata``).
    """
    results = list(results)[:MAX_SIMILAR_RESULTS]
    if project.multi_label:  # labels and guesses are sets' canonical texts: shown as "a, b"
        results = [_readable_sets(item) for item in results]
    blocks: list[Block] = []
    if source is not None:
        intro = (f"Records most similar to record {mrkdwn_text(source.external_id, 100)}:\n"
                 f">{_snippet(source.text, SNIPPET_LIMIT) or '_(no text)_'}")
    elif query_text is not None:
        intro = (f"Records matching “{_snippet(query_text, SNIPPET_LIMIT)}” "
                 f"in *{mrkdwn_text(project.name, 500)}*:")
    else:
        intro = f"Records in *{mrkdwn_text(project.name, 500)}*:"
    blocks.append(_section(intro, "intro"))
    if not results:
        blocks.append(_section("No similar records found. Records are searchable once they are embedded.",
                               "empty"))
    else:
        blocks.append({"type": "divider", "block_id": "divider"})
    for i, item in enumerate(results, start=1):
        score = _num(item.score) or "n/a"
        text = (f"*{i}.* {_snippet(item.text, SNIPPET_LIMIT) or '_(no text)_'}\n"
                f"similarity {score} · {_similar_status(item)} · record {mrkdwn_text(item.external_id, 100)}")
        blocks.append(_section(text, f"result.{i}"))

    metadata = ids.encode_modal_metadata(project.id, project.name, source.record_id if source else None,
                                         channel=channel, message_ts=message_ts)
    view: View = {
        "type": "modal",
        "callback_id": callback_id,
        "title": _plain(title, MODAL_TITLE_LIMIT),
        "close": _plain("Cancel", MODAL_TITLE_LIMIT),
        "private_metadata": metadata,
        "blocks": blocks,
    }
    if has_guidelines(project):  # pushes the guidelines modal over this one
        blocks[0]["accessory"] = _guidelines_button(project)
    if not results or not project.labels:
        return view

    chunks = [results[k:k + CHECKBOX_OPTIONS_LIMIT] for k in range(0, len(results), CHECKBOX_OPTIONS_LIMIT)]
    for k, chunk in enumerate(chunks):
        first = k * CHECKBOX_OPTIONS_LIMIT + 1
        label = "Records to label" if len(chunks) == 1 else f"Records {first}–{first + len(chunk) - 1}"
        options = [_option(f"{first + j}. {_WS_RE.sub(' ', _clean(item.text)).strip()}",
                           ids.encode_record_option(item.record_id), _similar_status_plain(item))
                   for j, item in enumerate(chunk)]
        # Optional so the server answers with a readable error (similar_errors) instead of Slack's own.
        blocks.append({"type": "input", "block_id": ids.similar_records_block_id(k), "optional": True,
                       "label": _plain(label, INPUT_LABEL_LIMIT),
                       "element": {"type": "checkboxes", "action_id": ids.ACTION_SIMILAR_RECORDS,
                                   "options": options}})
    blocks.append(_context(["Already-labeled records can be ticked too: your answer is added, or changed if "
                            "you answered before. Records that already have all their answers are left as "
                            "they are."], "note"))
    initial = source.predicted_label if source is not None else None
    if project.multi_label:  # the ticked labels are applied as one set (the model's guess preset)
        select = _label_set_input(project.labels, ids.ACTION_SIMILAR_LABEL, "Choose the labels",
                                  initial=multilabel.split(initial))
        blocks.append({"type": "input", "block_id": ids.BLOCK_SIMILAR_LABEL, "optional": True,
                       "label": _plain("Labels to apply", INPUT_LABEL_LIMIT), "element": select})
        view["submit"] = _plain("Apply labels", MODAL_TITLE_LIMIT)
        return view
    select = _label_select(project.labels, lambda i, label: ids.encode_label_option(i, label.name),
                           action_id=ids.ACTION_SIMILAR_LABEL, placeholder="Choose a label", initial=initial)
    blocks.append({"type": "input", "block_id": ids.BLOCK_SIMILAR_LABEL, "optional": True,
                   "label": _plain("Label to apply", INPUT_LABEL_LIMIT), "element": select})
    view["submit"] = _plain("Apply label", MODAL_TITLE_LIMIT)
    return view


def _readable_sets(item: SimilarRecord) -> SimilarRecord:
    return dataclasses.replace(
        item,
        label=None if item.label is None else label_set_text(item.label),
        predicted_label=None if item.predicted_label is None else label_set_text(item.predicted_label),
    )


def search_results_modal(
    project: ProjectInfo,
    query_text: str,
    results: Sequence[SimilarRecord],
    *,
    channel: str | None = None,
    message_ts: str | None = None,
) -> View:
    """``/label search <text>``: the similar modal for free text, with its own callback id."""
    return similar_modal(project, None, query_text, results, callback_id=ids.CALLBACK_SEARCH_MODAL,
                         title="Search results", channel=channel, message_ts=message_ts)


def parse_similar_submission(
    view_state_values: Mapping[str, Any], label_names: Sequence[str]
) -> tuple[list[int], str | None]:
    """Ticked record ids (in display order, no repeats) and the chosen label name (None if none).

    ``view_state_values`` is ``view["state"]["values"]`` of the submission; ``label_names`` are the
    project's current labels. Raises ``ValueError`` on a malformed payload or a label set that changed.
    """
    if not isinstance(view_state_values, Mapping):
        raise ValueError("Malformed view state: expected a mapping.")
    prefix = ids.BLOCK_SIMILAR_RECORDS + "."
    chunks: list[tuple[int, Any]] = []
    for block_id, actions in view_state_values.items():
        if isinstance(block_id, str) and block_id.startswith(prefix):
            suffix = block_id[len(prefix):]
            if not (suffix.isascii() and suffix.isdigit() and len(suffix) <= 3):
                raise ValueError(f"Malformed view state: unexpected block {block_id[:40]!r}.")
            chunks.append((int(suffix), actions))
    record_ids: list[int] = []
    for _, actions in sorted(chunks, key=lambda chunk: chunk[0]):
        state = _state(actions, ids.ACTION_SIMILAR_RECORDS)
        selected = state.get("selected_options") or []
        if not isinstance(selected, list):
            raise ValueError("Malformed view state: selected_options is not a list.")
        for option in selected:
            if not isinstance(option, Mapping):
                raise ValueError("Malformed view state: an option is not an object.")
            record_ids.append(ids.parse_record_option(option.get("value")))
    label_state = _state(view_state_values.get(ids.BLOCK_SIMILAR_LABEL, {}), ids.ACTION_SIMILAR_LABEL)
    chosen = label_state.get("selected_option")
    label = None
    if chosen:
        if not isinstance(chosen, Mapping):
            raise ValueError("Malformed view state: selected_option is not an object.")
        label = ids.parse_label_option(chosen.get("value")).label(label_names)
    return list(dict.fromkeys(record_ids)), label


def parse_similar_label_set(view_state_values: Mapping[str, Any], label_names: Sequence[str]) -> list[str]:
    """The label names ticked in a multi-label project's similar/search modal (checkboxes or a
    multi-select); ``ValueError`` on a malformed payload or a label set that changed."""
    if not isinstance(view_state_values, Mapping):
        raise ValueError("Malformed view state: expected a mapping.")
    state = _state(view_state_values.get(ids.BLOCK_SIMILAR_LABEL, {}), ids.ACTION_SIMILAR_LABEL)
    selected = state.get("selected_options") or []
    if not isinstance(selected, list) or not all(isinstance(option, Mapping) for option in selected):
        raise ValueError("Malformed view state: selected_options is not a list of objects.")
    return [ids.parse_label_option(option.get("value")).label(label_names) for option in selected]


def _state(actions: Any, action_id: str) -> Mapping[str, Any]:
    if not isinstance(actions, Mapping):
        raise ValueError("Malformed view state: a block's state is not an object.")
    state = actions.get(action_id) or {}
    if not isinstance(state, Mapping):
        raise ValueError("Malformed view state: an element's state is not an object.")
    return state


def similar_errors(record_ids: Sequence[int], label: str | None) -> dict[str, Any] | None:
    """The ``response_action: errors`` answer for an incomplete submission, or None when it is complete."""
    errors: dict[str, str] = {}
    if not record_ids:
        errors[ids.similar_records_block_id(0)] = "Tick at least one record"
    if label is None:
        errors[ids.BLOCK_SIMILAR_LABEL] = "Choose a label"
    return {"response_action": "errors", "errors": errors} if errors else None


# -------------------------------------------------------------------------------------- status messages


def _ranked(annotators: Sequence[AnnotatorStats]) -> list[tuple[int, AnnotatorStats]]:
    """Competition ranking by answers: ties share a rank (1, 2, 2, 4)."""
    ordered = sorted(annotators, key=lambda a: -a.answers)  # stable: keeps the service's tie order
    ranked = []
    for i, stats in enumerate(ordered):
        rank = ranked[-1][0] if i and stats.answers == ordered[i - 1].answers else i + 1
        ranked.append((rank, stats))
    return ranked


def _progress_text(status: ProjectStatus) -> str:
    pct = _pct(status.progress, 1) or "0.0%"
    # A tie is labeled (annotator quality chose) and counted above; it waits in the admins' review queue.
    ties = f" · {_plural(status.ties, 'tie')} decided by annotator quality (in review)" if status.ties else ""
    return (f"*Progress:* {status.labeled:,} of {_plural(status.total, 'record')} labeled ({pct}) · "
            f"{status.remaining:,} still need answers · {_plural(status.annotations, 'answer')} in all"
            f"{ties}\n{_bar(status.progress)}")


def _model_text(run: ModelRunInfo | None) -> str:
    if run is None:
        return "*Model:* not trained yet (it needs answers for at least two labels)."
    scores = []
    if (acc := _pct(run.metrics.get("cv_accuracy"), 1)) is not None:
        scores.append(f"CV accuracy {acc}")
    if (micro := _num(run.metrics.get("cv_micro_f1"), 3)) is not None:  # a multi-label project's run
        scores.append(f"CV micro-F1 {micro}")
    if (f1 := _num(run.metrics.get("cv_macro_f1"), 3)) is not None:
        scores.append(f"macro-F1 {f1}")
    if (subset := _pct(run.metrics.get("cv_subset_accuracy"), 1)) is not None:
        scores.append(f"subset accuracy {subset}")
    quality = " · ".join(scores) if scores else "too few labels to cross-validate"
    return (f"*Latest model:* {quality}\nTrained {_when(run.created_at)} on {_plural(run.n_labels, 'label')} "
            f"({mrkdwn_text(run.strategy, 100)}, {_duration(run.duration_seconds) or 'n/a'})\n"
            f"Learner: {mrkdwn_text(run.learner, 300)}")


_AGREEMENT_NAMES = {"krippendorff_alpha": "Krippendorff's α"}


def _agreement_text(agreement: Mapping[str, float]) -> str | None:
    parts = []
    for key, value in agreement.items():
        shown = _num(value)
        if shown is not None:
            name = _AGREEMENT_NAMES.get(key) or mrkdwn_text(str(key).replace("_", " "), 100)
            parts.append(f"{name} {shown}")
    return "*Agreement:* " + " · ".join(parts) if parts else None


def _annotator_line(rank: int, stats: AnnotatorStats, *, detail: bool) -> str:
    line = f"{rank}. {mention(stats.user)} — {_plural(stats.answers, 'answer')}"
    if detail:
        if (median := _duration(stats.median_seconds)) is not None:
            line += f" · median {median} per answer"
        # Right answers on gold records where the labeler has any: a known answer beats the crowd's.
        if stats.gold_answers:
            line += f" · gold {stats.gold_correct:,}/{stats.gold_answers:,}"
            if (per_label := _pct(stats.gold_label_accuracy)) is not None:  # multi-label: sets right, labels
                line += f" ({per_label} of labels)"
        elif (agree := _pct(stats.agreement)) is not None:
            line += f" · agreement {agree}"
        if (accuracy := _pct(stats.estimated_accuracy)) is not None:
            line += f" · est. accuracy {accuracy}"
    return line


def status_message(
    status: ProjectStatus, *, top_n: int = 5, label_limit: int = STATUS_LABEL_LIMIT
) -> Message:
    """``/label status``: progress, per-label counts, model quality, agreement and top labelers."""
    blocks: list[Block] = [_header(f"Status: {status.project}", "status.hdr"),
                           _section(_progress_text(status), "status.progress")]

    counts = sorted(status.label_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    lines = [f"• {mrkdwn_text(name, 300)} — {count:,}" for name, count in counts[:max(label_limit, 0)]]
    if len(counts) > len(lines):
        lines.append(f"… and {len(counts) - len(lines):,} more labels")
    label_texts = _lines_to_sections(["*Labels*", *lines] if lines else ["*Labels:* _none yet_"],
                                     max_sections=10, more=lambda n: f"… and {n:,} more lines")
    blocks += [_section(text, f"status.labels.{i}") for i, text in enumerate(label_texts)]

    blocks.append(_section(_model_text(status.latest_run), "status.model"))
    # A multi-label project's agreement is per label (each a yes/no question), averaged: say so.
    per_label = " (mean over labels)" if status.multi_label else ""
    if (agreement := _agreement_text(status.agreement)) is not None:
        blocks.append(_section(agreement + per_label, "status.agreement"))
    if (pairs := _pairs_text(status.pairs)) is not None:
        blocks.append(_section(pairs.replace("*Cohen's κ by pair*", f"*Cohen's κ by pair*{per_label}", 1),
                               "status.pairs"))
    if status.rules:
        rule_texts = _rules_sections(status.rules, 2)
        blocks += [_section(text, f"status.rules.{i}") for i, text in enumerate(rule_texts)]

    ranked = _ranked(status.annotators)
    shown = ranked[:max(top_n, 0)]
    people = [_annotator_line(rank, stats, detail=False) for rank, stats in shown]
    if len(ranked) > len(shown):
        people.append(f"… and {len(ranked) - len(shown):,} more (`/label leaderboard`)")
    people = ["*Top labelers*", *people] if people else ["*Top labelers:* _nobody yet_"]
    people_texts = _lines_to_sections(people,
                                      max_sections=MAX_MESSAGE_BLOCKS - len(blocks) - 1,
                                      more=lambda n: f"… and {n:,} more (`/label leaderboard`)")
    blocks += [_section(text, f"status.people.{i}") for i, text in enumerate(people_texts)]

    pct = _pct(status.progress, 1) or "0.0%"
    fallback = (f"{escape_mrkdwn(status.project)}: {status.labeled:,}/{status.total:,} labeled ({pct}), "
                f"{status.remaining:,} remaining")
    return _message(fallback, blocks)


def leaderboard_message(status: ProjectStatus, *, limit: int = 10) -> Message:
    """``/label leaderboard``: annotators ranked by answers, with speed and agreement (right answers on
    gold records, "gold 9/10", for those who answered any; else agreement with the final labels)."""
    blocks: list[Block] = [_header(f"Leaderboard: {status.project}", "board.hdr")]
    ranked = _ranked(status.annotators)
    lines = [_annotator_line(rank, stats, detail=True) for rank, stats in ranked[:max(limit, 0)]]
    if len(ranked) > len(lines):
        lines.append(f"… and {len(ranked) - len(lines):,} more")
    if not lines:
        lines = ["No answers yet. Be the first: `/label next`"]
    texts = _lines_to_sections(lines, max_sections=MAX_MESSAGE_BLOCKS - 1, more=lambda n: f"… and {n:,} more")
    blocks += [_section(text, f"board.{i}") for i, text in enumerate(texts)]
    fallback = f"Leaderboard for {escape_mrkdwn(status.project)}: {_plural(len(ranked), 'labeler')}"
    return _message(fallback, blocks)


_COMMANDS = [
    ("/label next [n]", "get the next record to label (or the next n)"),
    ("/label status", "progress, label counts, model quality and top labelers"),
    ("/label leaderboard", "who labeled how much, how fast and how consistently"),
    ("/label search <text>", "find records like <text> and label several at once"),
    ("/label me", "your answers, speed and agreement with the final labels"),
    ("/label subscribe [n] [when]", "get n cards by DM on a schedule (default: 5, weekdays 10:00)"),
    ("/label unsubscribe", "stop your scheduled cards"),
    ("/label guide", "what each label means: descriptions and examples"),
    ("/label rule list", "the keyword/regex rules (weak labels) with coverage and precision"),
    ("/label help", "this help"),
]
_ADMIN_COMMANDS = [
    ("/label retrain", "retrain the model now and refresh the queue"),
    ("/label export", "export the labels collected so far"),
    ("/label project NAME", "make NAME this channel's project"),
    ("/label review [n]", "review disagreements and likely mislabels; your pick becomes the gold label"),
    ("/label schedule <when> [n]", "post a labeling prompt here on a schedule; also `list`, `remove <id>`"),
    ("/label digest <when>", "post the digest with the learning-curve chart here; `now` posts one now"),
    ("/label guide LABEL text", "set LABEL's description; add `Examples: one; two` for up to 3 examples"),
    ("/label labels add|rename|merge|retire ...", "edit the label set: `add NAME [description]`, "
     "`rename OLD NEW`, `merge FROM INTO`, `retire NAME`"),
    ("/label rule add <keywords or /regex/i> -> LABEL",
     "add a weak-label rule; `rule remove ID` deletes one"),
]


def help_message(is_admin: bool) -> Message:
    """``/label help``; admins also see the admin-only subcommands."""
    def lines(commands: list[tuple[str, str]]) -> str:
        return "\n".join(f"• `{escape_mrkdwn(cmd)}` — {escape_mrkdwn(text)}" for cmd, text in commands)

    blocks = [_header("labelbot commands", "help.hdr"), _section(lines(_COMMANDS), "help.all")]
    if is_admin:
        blocks.append(_section("*Admin only*\n" + lines(_ADMIN_COMMANDS), "help.admin"))
    else:
        blocks.append(_context(["Admins can also retrain the model, export labels and switch projects."],
                               "help.note"))
    return _message("labelbot commands: next, status, leaderboard, search, help", blocks)


# ------------------------------------------------------------------------------------------ guidelines

MAX_GUIDELINE_LABELS = 95  # one section per label; a modal holds 100 blocks


def has_guidelines(project: ProjectInfo) -> bool:
    """Whether any label has a description or examples: only then do cards carry a Guidelines button."""
    return any(label.description or label.examples for label in project.labels)


def _guidelines_button(project: ProjectInfo) -> dict[str, Any]:
    return _button("Guidelines", ids.ACTION_GUIDELINES, ids.encode_project_value(project.id, project.name))


def _guideline_text(label: LabelDef) -> str:
    text = f"*{mrkdwn_text(label.name, 300)}*"
    text += f"\n{mrkdwn_text(label.description, 1000)}" if label.description else "\n_No description yet._"
    text += "".join(f"\n• e.g. “{mrkdwn_text(example, 400)}”" for example in label.examples)
    return text


def _guideline_blocks(project: ProjectInfo, prefix: str) -> list[Block]:
    shown = project.labels[:MAX_GUIDELINE_LABELS]
    out = [_section(_guideline_text(label), f"{prefix}.label.{i}") for i, label in enumerate(shown)]
    if len(project.labels) > len(shown):
        more = len(project.labels) - len(shown)
        out.append(_context([f"{more:,} more labels are not shown."], f"{prefix}.more"))
    return out


def guidelines_modal(project: ProjectInfo) -> View:
    """Every label's description and examples (a card's or the similar modal's Guidelines button)."""
    name = mrkdwn_text(project.name, 1000)
    intro = _context([f"How to label *{name}*: what each label means."], "guide.intro")
    return {
        "type": "modal",
        "callback_id": ids.CALLBACK_GUIDELINES_MODAL,
        "title": _plain("Guidelines", MODAL_TITLE_LIMIT),
        "close": _plain("Close", MODAL_TITLE_LIMIT),
        "blocks": [intro, *_guideline_blocks(project, "guide")],
    }


def guidelines_message(project: ProjectInfo) -> Message:
    """``/label guide``: the guidelines as an ephemeral message (anyone may read them)."""
    if not has_guidelines(project):
        return notice(f"{project.name} has no guidelines yet. An admin can add one with "
                      "`/label guide LABEL description`.")
    blocks = [_header(f"{project.name}: guidelines", "guide.hdr"), *_guideline_blocks(project, "guide")]
    return _message(f"Guidelines for {escape_mrkdwn(project.name)}", blocks[:MAX_MESSAGE_BLOCKS])


# ------------------------------------------------------------------------------------------------ home


def home_view(projects: Sequence[tuple[ProjectInfo, ProjectStatus]], user_id: str) -> View:
    """The App Home tab: per project progress, the user's answers and rank, model quality, Start labeling."""
    blocks: list[Block] = [
        _header("labelbot", "home.hdr"),
        _section("Label records for your team's projects; the model learns from every answer. "
                 "Type `/label help` for commands.", "home.intro"),
    ]
    if not projects:
        blocks.append(_section("No projects yet. An admin can create one with `labelbot init`.",
                               "home.empty"))
    for i, (info, status) in enumerate(projects[:MAX_HOME_PROJECTS]):
        ranked = _ranked(status.annotators)
        mine = next(((rank, stats) for rank, stats in ranked if stats.user == user_id), None)
        you = (f"You: {_plural(mine[1].answers, 'answer')} · rank #{mine[0]} of {len(ranked):,}"
               f"{_my_figures(mine[1])}" if mine else "You have not labeled here yet.")
        pct = _pct(status.progress, 1) or "0.0%"
        text = (f"*{mrkdwn_text(info.name, 1000)}*\n{_bar(status.progress)} {pct} labeled "
                f"({status.labeled:,} of {status.total:,}) · {status.remaining:,} still need answers\n{you}")
        section = _section(text, f"home.project.{i}")
        section["accessory"] = _button("Start labeling", ids.ACTION_START_LABELING,
                                       ids.encode_project_value(info.id, info.name), style="primary")
        model = [_model_text(status.latest_run).replace("\n", " · ")]
        if status.rules:
            model.append(_rules_summary(status.rules))
        blocks += [{"type": "divider", "block_id": f"home.div.{i}"}, section,
                   _context(model, f"home.model.{i}")]
    if len(projects) > MAX_HOME_PROJECTS:
        blocks.append(_context([f"… and {len(projects) - MAX_HOME_PROJECTS:,} more projects: "
                                "use `/label project NAME` in a channel."], "home.more"))
    return {"type": "home", "blocks": blocks}


# ------------------------------------------------------------------------------------------- rules


def rules_context(rules: Sequence[str]) -> str:
    """A card's context line naming the keyword/regex rules matching its record (weak labels)."""
    return "Rules: " + mrkdwn_text("; ".join(rules), REASON_LIMIT)


def rule_line(rule: RuleInfo) -> str:
    """``#3 `refund, money back` → request_refund — covers 12% (120 of 1,000) · precision 90% (9 of 10)``."""
    figures = [f"covers {_pct(rule.coverage, 1) or '0.0%'} ({rule.matched:,} of {rule.total:,})"]
    if rule.timed_out:
        figures = ["⚠️ timed out: the pattern is too slow on some record, so it matches nothing"]
    elif rule.precision is None:
        figures.append(f"precision n/a ({rule.labeled:,} labeled)")
    else:
        figures.append(f"precision {_pct(rule.precision)} ({rule.agreeing:,} of {rule.labeled:,})")
    if rule.conflicts:
        figures.append(f"{rule.conflicts:,} in conflict with other labels' rules")
    elif rule.overlap:
        figures.append(f"{rule.overlap:,} also matched by other rules")
    pattern = mrkdwn_text(_clean(rule.pattern).replace("`", "'"), 300)
    label = mrkdwn_text(rule.label, 300)
    return f"#{rule.id} `{pattern}` → *{label}* — " + " · ".join(figures)


def _rules_sections(rules: Sequence[RuleInfo], max_sections: int) -> list[str]:
    lines = ["*Rules* (weak labels; they never answer a record)", *(rule_line(r) for r in rules)]
    return _lines_to_sections(lines, max_sections=max_sections, more=lambda n: f"… and {n:,} more rules")


def _rules_summary(rules: Sequence[RuleInfo]) -> str:
    covered = max((r.coverage for r in rules), default=0.0)
    return f"{_plural(len(rules), 'rule')} (the widest covers {_pct(covered, 1) or '0.0%'})"


def rules_message(project: str, rules: Sequence[RuleInfo]) -> Message:
    """``/label rule list``: each rule with its coverage, precision and clashes."""
    blocks: list[Block] = [_header(f"Rules: {project}", "rules.hdr")]
    if rules:
        texts = _rules_sections(rules, MAX_MESSAGE_BLOCKS - 2)
        blocks += [_section(text, f"rules.{i}") for i, text in enumerate(texts)]
    else:
        blocks.append(_section("No rules yet. An admin adds one with "
                               "`/label rule add refund, money back -> LABEL`.", "rules.none"))
    blocks.append(_context(["Precision: how many of a rule's matched records got its label as their final "
                            "label (n/a until a few of them are labeled)."], "rules.note"))
    fallback = f"{escape_mrkdwn(project)}: {_plural(len(rules), 'rule')}"
    return _message(fallback, blocks)


# ------------------------------------------------------------------------------------------- validation


def message_problems(message: Any) -> list[str]:
    """What Slack would reject in ``message`` (see :mod:`bot.blockkit`), and a missing notification
    ``text``: Slack takes blocks without one, but every message of ours carries one (empty when fine)."""
    found = blockkit.problems(message, "message")
    text = message.get("text") if isinstance(message, Mapping) else None
    if not isinstance(text, str) or not text.strip():
        found.append("a message needs a notification text [json-pointer:/text]")
    return found


def view_problems(view: Any) -> list[str]:
    """What Slack would reject in a modal or home ``view`` (see :mod:`bot.blockkit`); empty when fine."""
    return blockkit.problems(view, "view")


# ------------------------------------------------------------------------------------- crowd and review

MAX_REVIEW_ANSWERS = 10  # answers listed on a review card before "… and N more"
MAX_PAIRS_SHOWN = 10  # annotator pairs listed in /label status


def _answers_text(answers: Sequence[tuple[str, str]], *, sets: bool = False) -> str:
    if not answers:
        return "No answers from labelers."
    shown = [f"{mention(who)} *{mrkdwn_text(label_set_text(label) if sets else label, 100)}*"
             for who, label in answers[:MAX_REVIEW_ANSWERS]]
    more = len(answers) - len(shown)
    return "Answers: " + " · ".join(shown) + (f" · … and {more:,} more" if more > 0 else "")


def _review_set_controls(project: ProjectInfo, record_id: int, card: str, nonce: str,
                         chosen: str | None = None) -> list[Block]:
    """A multi-label project's review controls: the multi-label card's checkboxes (the gold set, when
    decided, ticked), then "Submit gold" and "None of these"."""
    record_value = ids.encode_record_value(project.id, project.name, record_id)
    ticked = multilabel.split(chosen) if chosen else ()
    labels_input = _label_set_input(project.labels, ids.ACTION_REVIEW_LABELS, "Choose the gold labels",
                                    initial=ticked)
    buttons = [_button("Submit gold", ids.ACTION_REVIEW_SUBMIT, record_value, style="primary"),
               _button("None of these", ids.ACTION_REVIEW_NONE, record_value)]
    return [{"type": "actions", "block_id": ids.card_block_id(card, ids.PART_LABELS, nonce),
             "elements": [labels_input]},
            {"type": "actions", "block_id": ids.card_block_id(card, ids.PART_CONTROLS, nonce),
             "elements": buttons}]


def _review_controls(project: ProjectInfo, record_id: int, card: str, nonce: str,
                     chosen: str | None = None) -> Block:
    """Label buttons (or a menu) whose clicks go to the review listener and become the gold label."""

    def value_of(i: int, label: LabelDef) -> str:
        return ids.encode_label_value(project.id, project.name, record_id, i, label.name)

    block_id = ids.card_block_id(card, ids.PART_LABELS, nonce)
    labels = project.labels
    if len(labels) <= BUTTON_LIMIT:
        elements = [_button(label.name, ids.review_choice_action_id(i), value_of(i, label),
                            style="primary" if label.name == chosen else None)
                    for i, label in enumerate(labels)]
    else:
        elements = [_label_select(labels, value_of, action_id=ids.ACTION_REVIEW_SELECT,
                                  placeholder="Choose the gold label", initial=chosen)]
    return {"type": "actions", "block_id": block_id, "elements": elements}


def review_card(project: ProjectInfo, item: ReviewItem, *, nonce: str) -> Message:
    """An admin's review card: the record, why it needs a decision, every answer so far (the admin may
    see them) and the model's view. The admin's pick becomes the record's gold label."""
    ids.check_nonce(nonce)
    record = RecordView(project=item.project, record_id=item.record_id, external_id=item.external_id,
                        text=item.text)
    blocks = _record_blocks(ids.CARD_REVIEW, f"Review: {project.name}", record, nonce)
    multi = project.multi_label  # answers and guesses are sets: "a, b"; the gold set is ticked
    context = ["🔎 " + (mrkdwn_text(item.reason, REASON_LIMIT) or "Needs a decision."),
               _answers_text(item.answers, sets=multi)]
    if item.suggested_label is not None:
        suggested = label_set_text(item.suggested_label) if multi else item.suggested_label
        context.append(_guess_text(suggested, item.confidence))
    if multi:
        context.append("Tick the gold labels, then Submit gold.")
    blocks.append(_context(context, ids.card_block_id(ids.CARD_REVIEW, ids.PART_CONTEXT, nonce)))
    if multi:
        blocks += _review_set_controls(project, item.record_id, ids.CARD_REVIEW, nonce)
    else:
        blocks.append(_review_controls(project, item.record_id, ids.CARD_REVIEW, nonce))
    fallback = f"Review {escape_mrkdwn(project.name)}: {_snippet(item.text, SNIPPET_LIMIT) or 'a record'}"
    return _message(fallback, blocks)


def reviewed_card(
    project: ProjectInfo, record: RecordView, *, label: str, user_id: str, nonce: str
) -> Message:
    """A review card after the admin's decision: the gold label, still changeable with the same controls."""
    ids.check_nonce(nonce)
    blocks = _record_blocks(ids.CARD_REVIEWED, f"Review: {project.name}", record, nonce)
    context_id = ids.card_block_id(ids.CARD_REVIEWED, ids.PART_CONTEXT, nonce)
    if project.multi_label:  # ``label`` is the gold set's canonical text
        shown = label_set_text(label)
        blocks.append(_context([f"⭐ Gold labels *{mrkdwn_text(shown, 300)}* set by {mention(user_id)} · "
                                "the record is complete; tick others and Submit gold to change them"],
                               context_id))
        blocks += _review_set_controls(project, record.record_id, ids.CARD_REVIEWED, nonce, chosen=label)
        return _message(f"Gold labels {escape_mrkdwn(shown)}: {_snippet(record.text, SNIPPET_LIMIT)}", blocks)
    blocks.append(_context([f"⭐ Gold label *{mrkdwn_text(label, 300)}* set by {mention(user_id)} · "
                            "the record is complete; pick another label to change it"], context_id))
    blocks.append(_review_controls(project, record.record_id, ids.CARD_REVIEWED, nonce, chosen=label))
    return _message(f"Gold label {escape_mrkdwn(label)}: {_snippet(record.text, SNIPPET_LIMIT)}", blocks)


def _kappa_line(pair: PairAgreement, *, user_id: str | None = None) -> str:
    kappa = _num(pair.kappa) or "n/a (one label throughout)"
    if user_id is not None:
        other = pair.second if pair.first == user_id else pair.first
        return f"• with {mention(other)}: κ {kappa} over {_plural(pair.overlap, 'record')}"
    over = _plural(pair.overlap, "record")
    return f"• {mention(pair.first)} and {mention(pair.second)}: κ {kappa} over {over}"


def _pairs_text(pairs: Sequence[PairAgreement]) -> str | None:
    """Cohen's kappa per annotator pair (the service keeps pairs with enough shared records)."""
    if not pairs:
        return None
    lines = [_kappa_line(pair) for pair in pairs[:MAX_PAIRS_SHOWN]]
    if len(pairs) > len(lines):
        lines.append(f"… and {len(pairs) - len(lines):,} more pairs")
    return "*Cohen's κ by pair*\n" + "\n".join(lines)


def _my_figures(stats: AnnotatorStats) -> str:
    """Speed and agreement after the answer count, where known."""
    parts = []
    if (median := _duration(stats.median_seconds)) is not None:
        parts.append(f"median {median} per answer")
    if (agree := _pct(stats.agreement)) is not None:
        parts.append(f"agreement {agree}")
    return "".join(f" · {part}" for part in parts)


def me_message(status: ProjectStatus, user_id: str) -> Message:
    """``/label me``: the caller's answers, rank, speed, agreement with the final labels and kappas."""
    blocks: list[Block] = [_header(f"You in {status.project}", "me.hdr")]
    ranked = _ranked(status.annotators)
    mine = next(((rank, stats) for rank, stats in ranked if stats.user == user_id), None)
    if mine is None:
        blocks.append(_section(f"You have not labeled in *{mrkdwn_text(status.project, 500)}* yet. "
                               "Try `/label next`.", "me.none"))
        return _message(f"You have not labeled in {escape_mrkdwn(status.project)} yet", blocks)
    rank, stats = mine
    lines = [f"*{_plural(stats.answers, 'answer')}* · rank #{rank} of {len(ranked):,}"]
    if (median := _duration(stats.median_seconds)) is not None:
        lines.append(f"Median time per answer (card delivered → answer): {median}")
    if (agree := _pct(stats.agreement)) is not None:
        lines.append(f"Agreement with the final labels of complete records: {agree}")
    if stats.gold_answers:
        if (per_label := _pct(stats.gold_label_accuracy)) is not None:  # multi-label: sets, then labels
            lines.append(f"Gold questions (records with an admin's label set): {stats.gold_correct:,} of "
                         f"{stats.gold_answers:,} sets exactly right; {per_label} of label decisions right")
        else:
            lines.append(f"Gold questions (records with an admin's label): {stats.gold_correct:,} of "
                         f"{stats.gold_answers:,} right")
    if (accuracy := _pct(stats.estimated_accuracy)) is not None:
        lines.append(f"Estimated accuracy (crowd model): {accuracy}")
    blocks.append(_section("\n".join(lines), "me.figures"))
    pairs = [pair for pair in status.pairs if user_id in (pair.first, pair.second)]
    if pairs:
        lines = [_kappa_line(pair, user_id=user_id) for pair in pairs[:MAX_PAIRS_SHOWN]]
        if len(pairs) > len(lines):
            lines.append(f"… and {len(pairs) - len(lines):,} more")
        title = "*Cohen's κ with other labelers*" + (" (mean over labels)" if status.multi_label else "")
        blocks.append(_section(title + "\n" + "\n".join(lines), "me.pairs"))
    fallback = f"You in {escape_mrkdwn(status.project)}: {_plural(stats.answers, 'answer')}, rank #{rank}"
    return _message(fallback, blocks)


# ------------------------------------------------------------------------- schedules, prompts and digests

MAX_SCHEDULE_ITEMS = 40
MAX_WEEK_PEOPLE = 15


def _minutes_text(minutes: int) -> str:
    return "a minute" if minutes <= 1 else f"{minutes:,} minutes"


def prompt_message(
    project: ProjectInfo, *, waiting: int, accuracy: float | None, n: int, minutes: int
) -> Message:
    """A scheduled channel prompt: "12 records are waiting; the model is at 81% — 5 minutes helps",
    with a "Label N now" button that DMs the clicker ``n`` cards."""
    score = " micro-F1" if project.multi_label else ""  # what run_prompt passes for a multi-label project
    model = (f"the model is at {_pct(accuracy)}{score}" if _pct(accuracy) is not None
             else "the model is still learning")
    line = (f"{_plural(waiting, 'record')} {'is' if waiting == 1 else 'are'} waiting; {model} — "
            f"{_minutes_text(minutes)} helps")
    section = _section(f"*{mrkdwn_text(project.name, 500)}*: {line}", "prompt.txt")
    button = _button(f"Label {n} now", ids.ACTION_LABEL_N_NOW,
                     ids.encode_label_n_value(project.id, project.name, n), style="primary")
    blocks: list[Block] = [section, {"type": "actions", "block_id": "prompt.act", "elements": [button]}]
    return _message(f"{escape_mrkdwn(project.name)}: {line}", blocks)


# (metric, name, shown as a percentage): a multi-label project's runs score sets, not single labels.
_TREND_METRICS = (("cv_accuracy", "accuracy", True), ("cv_macro_f1", "macro-F1", False))
_MULTI_LABEL_TREND_METRICS = (
    ("cv_micro_f1", "micro-F1", False), ("cv_macro_f1", "macro-F1", False),
    ("cv_subset_accuracy", "subset accuracy", True),
)  # fmt: skip


def _trend_text(runs: Sequence[ModelRunInfo], since: datetime | None) -> str:
    multi = any(r.metrics.get("cv_micro_f1") is not None for r in runs)
    metrics = _MULTI_LABEL_TREND_METRICS if multi else _TREND_METRICS
    scored = [r for r in runs if r.metrics.get(metrics[0][0]) is not None]
    if not scored:
        return "*Model trend:* no cross-validated model yet."
    last = scored[-1]
    recent = scored
    if since is not None:
        aware = since if since.tzinfo else since.replace(tzinfo=UTC)
        before = [r for r in scored if (r.created_at if r.created_at.tzinfo else
                                        r.created_at.replace(tzinfo=UTC)) < aware]
        recent = ([before[-1]] if before else []) + [r for r in scored if r not in before]
    first = recent[0] if recent else last
    parts = []
    for key, name, percent in metrics:
        a, b = first.metrics.get(key), last.metrics.get(key)
        if a is None or b is None:
            continue
        # Accuracy as a percentage, macro-F1 as a score: as /label status shows them.
        shown = (lambda v: _pct(v, 1)) if percent else (lambda v: _num(v, 3))
        if first is last:
            parts.append(f"{name} {shown(b)}")
        elif percent:
            parts.append(f"{name} {shown(a)} → {shown(b)} ({(b - a) * 100:+.1f} points)")
        else:
            parts.append(f"{name} {shown(a)} → {shown(b)} ({b - a:+.3f})")
    span = (f"from {_plural(first.n_labels, 'label')} to {last.n_labels:,}" if first is not last
            else f"at {_plural(last.n_labels, 'label')}")
    return f"*Model trend* ({span}): " + " · ".join(parts)


def advice_text(advice: Any) -> str:
    """Stopping advice (a ``core.stopping.StoppingAdvice``) as mrkdwn: the verdict, then weak labels."""
    verdict = ":checkered_flag: " if advice.stop else ":seedling: "
    text = verdict + escape_mrkdwn(advice.message)
    if advice.weak_labels:
        text += "\n*Still weak:* " + mrkdwn_text(advice.weak_text, 1500) + (
            " — label more of these if they matter." if advice.stop else "")
    return truncate(text, SECTION_TEXT_LIMIT)


def digest_message(
    status: ProjectStatus,
    *,
    week: Mapping[str, int],
    runs: Sequence[ModelRunInfo],
    advice: Any | None,
    since: datetime | None = None,
    title: str | None = None,
    include_progress: bool = True,
) -> Message:
    """The weekly digest (and the extra part of ``/label status``): progress, answers in the last
    7 days per person, the metrics trend and the stopping advice. The chart is uploaded beside it."""
    header = title or f"Weekly digest: {status.project}"
    blocks: list[Block] = [_header(header, "digest.hdr")]
    if include_progress:
        blocks.append(_section(_progress_text(status), "digest.progress"))
    ranked = sorted(week.items(), key=lambda kv: (-kv[1], kv[0]))
    if ranked:
        total = sum(n for _, n in ranked)
        lines = [f"• {mention(who)} — {_plural(n, 'answer')}" for who, n in ranked[:MAX_WEEK_PEOPLE]]
        if len(ranked) > len(lines):
            lines.append(f"… and {len(ranked) - len(lines):,} more")
        blocks.append(_section(f"*Last 7 days:* {_plural(total, 'answer')}\n" + "\n".join(lines),
                               "digest.week"))
    else:
        blocks.append(_section("*Last 7 days:* no answers. `/label next` takes a minute.", "digest.week"))
    blocks.append(_section(_trend_text(runs, since), "digest.trend"))
    if advice is not None:
        blocks.append(_section(advice_text(advice), "digest.advice"))
    scores = "micro-F1, macro-F1 and subset accuracy" if status.multi_label else "accuracy and macro-F1"
    blocks.append(_context([f"The learning curve ({scores} against labels, and labels per "
                            "class) is attached as a chart."], "digest.note"))
    pct = _pct(status.progress, 1) or "0.0%"
    fallback = f"{escape_mrkdwn(header)}: {status.labeled:,}/{status.total:,} labeled ({pct})"
    return _message(fallback, blocks)


_KIND_NAMES = {"prompt": "Prompt", "digest": "Digest", "subscription": "Subscription"}


def _schedule_line(item: Any) -> str:
    """One schedule (a ``core.schedules.ScheduledItem``): id, kind, where, when, cards and next run."""
    if item.kind == "subscription":
        where = mention(item.target)
    elif re.fullmatch(r"[CGD][A-Z0-9]{1,30}", str(item.target)):
        where = f"<#{item.target}>"
    else:
        where = mrkdwn_text(str(item.target), 80)
    cards = f" · {_plural(item.n, 'card')}" if item.n else ""
    nxt = f" · next {_when(item.next_run)}" if item.next_run is not None else " · paused"
    return (f"`{escape_mrkdwn(item.id)}` {_KIND_NAMES.get(item.kind, item.kind)} {where} — "
            f"{mrkdwn_text(item.when, 200)}{cards}{nxt}")


def schedule_added_message(intro: str, item: Any) -> Message:
    """The reply after scheduling: ``intro`` (escaped) and the new schedule's line."""
    body = f"{mrkdwn_text(intro, 1000)}\n{_schedule_line(item)}"
    return _message(f"{escape_mrkdwn(intro)} ({escape_mrkdwn(item.id)})", [_section(body, "sched.added")])


def schedule_list_message(project_name: str, items: Sequence[Any]) -> Message:
    """``/label schedule list``: every prompt, digest and subscription of a project, with its id."""
    blocks: list[Block] = [_header(f"Schedules: {project_name}", "sched.hdr")]
    lines = [f"• {_schedule_line(item)}" for item in items[:MAX_SCHEDULE_ITEMS]]
    if len(items) > len(lines):
        lines.append(f"… and {len(items) - len(lines):,} more")
    if not lines:
        lines = ["Nothing scheduled. Try `/label schedule weekdays 10:00 5` or "
                 "`/label digest weekly mon 09:00`."]
    texts = _lines_to_sections(lines, max_sections=MAX_MESSAGE_BLOCKS - 2, more=lambda n: f"… and {n:,} more")
    blocks += [_section(text, f"sched.{i}") for i, text in enumerate(texts)]
    blocks.append(_context(["Remove one with `/label schedule remove <id>`."], "sched.note"))
    return _message(f"Schedules for {escape_mrkdwn(project_name)}: {len(items):,}", blocks)
