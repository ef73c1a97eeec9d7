"""Every Slack action id, callback id and block id the bot uses, and the encoding of button/option values.

Values never carry a project *name*: names can be long and contain any character, while Slack caps an
option ``value`` at 150 characters. They carry the project's integer id plus a short digest of its name,
so a click that outlives its project (deleted, and the id reused by a new one) is detected instead of
being applied to the wrong data. Labels travel the same way: an index into the project's label list plus
a digest of the label name, so a reordered or edited label set is caught as stale.

Every ``parse_*`` function raises ``ValueError`` (and nothing else) on a malformed, forged or stale value;
listeners catch it and answer with a notice instead of crashing.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

# ---------------------------------------------------------------------------------------------- action ids

#: Label buttons. Slack wants action ids unique within a block, so each button gets ``label_choice:<i>``;
#: match them with :data:`LABEL_CHOICE_RE` (``app.action(LABEL_CHOICE_RE)``).
ACTION_LABEL_CHOICE = "label_choice"
LABEL_CHOICE_RE = re.compile(r"^label_choice(?::[0-9]{1,6})?\Z")
ACTION_LABEL_SELECT = "label_select"  # static_select on cards with more than BUTTON_LIMIT labels
ACTION_SKIP = "skip"
ACTION_SHOW_SIMILAR = "show_similar"
ACTION_UNDO = "undo"
ACTION_START_LABELING = "start_labeling"  # App Home button
ACTION_LABEL_N_NOW = "label_n_now"  # "Label 5 now" button
ACTION_GUIDELINES = "guidelines"  # a card's (or the similar modal's) Guidelines button: the guidelines modal
# Multi-label cards: the labels as checkboxes (a multi_static_select beyond 10) whose every tick Slack
# sends as a block_actions that only needs an ack; Submit reads the ticks from the message's state and
# "None of these" answers with the empty set. Both buttons carry encode_record_value values, the ticked
# options encode_label_option values (index + digest: a changed label set is caught as stale).
ACTION_MULTI_LABELS = "multi_labels"
ACTION_MULTI_SUBMIT = "multi_submit"
ACTION_MULTI_NONE = "multi_none"
# Inputs inside the similar/search modal (they do not fire block_actions; read them from view.state).
ACTION_SIMILAR_RECORDS = "similar_records"
ACTION_SIMILAR_LABEL = "similar_label"

# -------------------------------------------------------------------------------------------- callback ids

CALLBACK_SIMILAR_MODAL = "similar_modal"
CALLBACK_SEARCH_MODAL = "search_modal"
CALLBACK_GUIDELINES_MODAL = "guidelines_modal"

# ----------------------------------------------------------------------------------------------- block ids

# Cards: ``<card>.<part>.<nonce>``. The card kind is part of the id so an answered or stale card never
# reuses the ids of the label card it replaces, even with the same nonce.
CARD_LABEL = "card"
CARD_ANSWERED = "done"
CARD_STALE = "stale"
PART_HEADER = "hdr"
PART_TEXT = "txt"
PART_CONTEXT = "ctx"
PART_LABELS = "lbl"
PART_CONTROLS = "ctl"
PART_NOTE = "note"
# Modal input blocks: stable, so ``view.state.values`` and ``response_action: errors`` can address them.
BLOCK_SIMILAR_RECORDS = "similar_records"  # suffixed ".0", ".1", ... (10 checkboxes per block at most)
BLOCK_SIMILAR_LABEL = "similar_label"

MAX_ID_LENGTH = 255  # Slack's limit for action_id, block_id and callback_id
_NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def new_nonce() -> str:
    """A fresh random nonce for :func:`card_block_id` (8 hex characters)."""
    return secrets.token_hex(4)


def check_nonce(nonce: str) -> str:
    """Return ``nonce`` if it is 1–32 characters of ``[A-Za-z0-9_-]``, else raise ``ValueError``."""
    if not isinstance(nonce, str) or not _NONCE_RE.fullmatch(nonce):
        raise ValueError(f"Invalid nonce {nonce!r}: use 1-32 characters from [A-Za-z0-9_-].")
    return nonce


def card_block_id(card: str, part: str, nonce: str) -> str:
    """Block id of one part of a card. Slack keeps a select's state per block id, so a card that is
    updated in place must be rendered with a new ``nonce``."""
    return f"{card}.{part}.{check_nonce(nonce)}"


def label_choice_action_id(index: int) -> str:
    """Action id of the label button at ``index`` (``label_choice:<index>``)."""
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < 1_000_000:
        raise ValueError(f"Invalid label index {index!r}.")
    return f"{ACTION_LABEL_CHOICE}:{index}"


def similar_records_block_id(index: int) -> str:
    """Block id of the ``index``-th checkbox input block in the similar/search modal."""
    return f"{BLOCK_SIMILAR_RECORDS}.{index}"


# -------------------------------------------------------------------------------------------------- values

_VERSION = "1"
_MAX_INT = 2**63 - 1  # SQLite INTEGER range; also bounds what a forged value can make us parse
_INT = r"(0|[1-9][0-9]{0,18})"  # no signs, spaces or leading zeros: one spelling per number
_DIGEST = r"([0-9a-f]{8})"
_PROJECT_RE = re.compile(rf"^p{_VERSION}:{_INT}:{_DIGEST}$")
_LABEL_N_RE = re.compile(rf"^n{_VERSION}:{_INT}:{_DIGEST}:{_INT}$")
_RECORD_RE = re.compile(rf"^r{_VERSION}:{_INT}:{_DIGEST}:{_INT}$")
_LABEL_RE = re.compile(rf"^l{_VERSION}:{_INT}:{_DIGEST}:{_INT}:{_INT}:{_DIGEST}$")
_OPTION_RE = re.compile(rf"^o{_VERSION}:{_INT}:{_DIGEST}$")
_RECORD_OPTION_RE = re.compile(rf"^{_INT}$")
_MAX_VALUE = 150  # the smallest value limit among the places these go (option values)


@functools.lru_cache(maxsize=4096)  # label names, over and over: every card's menu digests them all
def digest(text: str) -> str:
    """8 hex characters identifying ``text`` (a project or label name); not a security measure."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()


def _check_int(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_INT:
        raise ValueError(f"Invalid {what} {value!r}: expected a non-negative integer.")
    return value


def _match(pattern: re.Pattern[str], value: object, what: str) -> re.Match[str]:
    if not isinstance(value, str):
        raise ValueError(f"Malformed {what} value: expected a string, got {type(value).__name__}.")
    match = pattern.fullmatch(value) if len(value) <= _MAX_VALUE else None
    if match is None:
        raise ValueError(f"Malformed {what} value {value[:80]!r}.")
    return match


def _int(text: str) -> int:
    # The patterns allow 19 digits, a little more than a signed 64-bit integer holds.
    number = int(text)
    if number > _MAX_INT:
        raise ValueError(f"Number out of range in value: {text}.")
    return number


@dataclass(frozen=True)
class ProjectRef:
    """A project as a value names it: its id and the digest of the name it had when the value was made."""

    project_id: int
    project_digest: str

    def matches(self, project_name: str) -> bool:
        """Whether the project with this id still has the name the value was made for."""
        return digest(project_name) == self.project_digest

    def check(self, project_name: str) -> None:
        """Raise ``ValueError`` when the project was replaced since the value was made."""
        if not self.matches(project_name):
            raise ValueError(f"This button belongs to a project that no longer exists "
                             f"(id {self.project_id}).")


@dataclass(frozen=True)
class LabelNRef(ProjectRef):
    """Value of a "Label N now" button."""

    n: int


@dataclass(frozen=True)
class RecordRef(ProjectRef):
    """Value of Skip, Show similar and Undo buttons."""

    record_id: int


def _resolve_label(index: int, label_digest: str, label_names: Sequence[str]) -> str:
    if index >= len(label_names) or digest(label_names[index]) != label_digest:
        raise ValueError("The project's labels changed since this card was shown; please use a fresh card.")
    return label_names[index]


@dataclass(frozen=True)
class LabelChoice(RecordRef):
    """Value of a label button or a label option on a card."""

    label_index: int
    label_digest: str

    def label(self, label_names: Sequence[str]) -> str:
        """The chosen label's name; ``ValueError`` when the label set changed since the card was made."""
        return _resolve_label(self.label_index, self.label_digest, label_names)


@dataclass(frozen=True)
class LabelOption:
    """Value of a label option in the similar/search modal (the project is in ``private_metadata``)."""

    label_index: int
    label_digest: str

    def label(self, label_names: Sequence[str]) -> str:
        """The chosen label's name; ``ValueError`` when the label set changed since the modal opened."""
        return _resolve_label(self.label_index, self.label_digest, label_names)


def encode_project_value(project_id: int, project_name: str) -> str:
    """Value of a Start labeling button: ``p1:<project_id>:<digest>``."""
    return f"p{_VERSION}:{_check_int(project_id, 'project id')}:{digest(project_name)}"


def parse_project_value(value: str) -> ProjectRef:
    m = _match(_PROJECT_RE, value, "project")
    return ProjectRef(_int(m[1]), m[2])


def encode_label_n_value(project_id: int, project_name: str, n: int) -> str:
    """Value of a "Label N now" button: ``n1:<project_id>:<digest>:<n>``."""
    if _check_int(n, "count") < 1:
        raise ValueError(f"Invalid count {n!r}: expected at least 1.")
    return f"n{_VERSION}:{_check_int(project_id, 'project id')}:{digest(project_name)}:{n}"


def parse_label_n_value(value: str) -> LabelNRef:
    m = _match(_LABEL_N_RE, value, "label-n")
    if _int(m[3]) < 1:
        raise ValueError(f"Malformed label-n value {value!r}: count must be at least 1.")
    return LabelNRef(_int(m[1]), m[2], _int(m[3]))


def encode_record_value(project_id: int, project_name: str, record_id: int) -> str:
    """Value of Skip / Show similar / Undo buttons: ``r1:<project_id>:<digest>:<record_id>``."""
    pid = _check_int(project_id, "project id")
    return f"r{_VERSION}:{pid}:{digest(project_name)}:{_check_int(record_id, 'record id')}"


def parse_record_value(value: str) -> RecordRef:
    m = _match(_RECORD_RE, value, "record")
    return RecordRef(_int(m[1]), m[2], _int(m[3]))


def encode_label_value(
    project_id: int, project_name: str, record_id: int, label_index: int, label: str
) -> str:
    """Value of a label button or card option:
    ``l1:<project_id>:<digest>:<record_id>:<label index>:<label digest>``.

    At most 65 characters whatever the names, so it fits Slack's 150-character option values.
    """
    pid = _check_int(project_id, "project id")
    rid = _check_int(record_id, "record id")
    index = _check_int(label_index, "label index")
    return f"l{_VERSION}:{pid}:{digest(project_name)}:{rid}:{index}:{digest(label)}"


def parse_label_value(value: str) -> LabelChoice:
    m = _match(_LABEL_RE, value, "label")
    return LabelChoice(_int(m[1]), m[2], _int(m[3]), _int(m[4]), m[5])


def encode_label_option(label_index: int, label: str) -> str:
    """Value of a label option in the similar/search modal: ``o1:<index>:<label digest>``."""
    return f"o{_VERSION}:{_check_int(label_index, 'label index')}:{digest(label)}"


def parse_label_option(value: str) -> LabelOption:
    m = _match(_OPTION_RE, value, "label option")
    return LabelOption(_int(m[1]), m[2])


def encode_record_option(record_id: int) -> str:
    """Value of a record checkbox in the similar/search modal: the record id in decimal."""
    return str(_check_int(record_id, "record id"))


def parse_record_option(value: str) -> int:
    return _int(_match(_RECORD_OPTION_RE, value, "record option")[1])


# ------------------------------------------------------------------------------------------ modal metadata


@dataclass(frozen=True)
class ModalContext:
    """What the similar/search modal carries in ``private_metadata``."""

    project_id: int
    project_digest: str
    record_id: int | None = None  # the record Show similar was clicked on; None for a search
    channel: str | None = None  # where the source card is, so the listener can refresh it
    message_ts: str | None = None

    def matches(self, project_name: str) -> bool:
        return digest(project_name) == self.project_digest

    def check(self, project_name: str) -> None:
        if not self.matches(project_name):
            raise ValueError(f"This dialog belongs to a project that no longer exists "
                             f"(id {self.project_id}).")


_SLACK_REF_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # channel ids and message timestamps
MAX_METADATA = 3000


def encode_modal_metadata(
    project_id: int,
    project_name: str,
    record_id: int | None = None,
    *,
    channel: str | None = None,
    message_ts: str | None = None,
) -> str:
    """``private_metadata`` of the similar/search modal: compact JSON, well under 3000 characters."""
    data: dict[str, object] = {"v": 1, "p": _check_int(project_id, "project id"), "d": digest(project_name)}
    if record_id is not None:
        data["r"] = _check_int(record_id, "record id")
    for key, ref in (("c", channel), ("t", message_ts)):
        if ref is not None:
            if not isinstance(ref, str) or not _SLACK_REF_RE.fullmatch(ref):
                raise ValueError(f"Invalid Slack channel or timestamp {ref!r}.")
            data[key] = ref
    return json.dumps(data, separators=(",", ":"))


def parse_modal_metadata(value: str) -> ModalContext:
    if not isinstance(value, str) or not value or len(value) > MAX_METADATA:
        raise ValueError("Malformed modal metadata.")
    try:
        data = json.loads(value)
    except ValueError:
        raise ValueError("Malformed modal metadata: not JSON.") from None
    if (not isinstance(data, dict) or type(data.get("v")) is not int or data["v"] != 1
            or set(data) - {"v", "p", "d", "r", "c", "t"}):
        raise ValueError("Malformed modal metadata: unknown version or keys.")
    project_id = _check_int(data.get("p"), "project id")
    project_digest = data.get("d")
    if not isinstance(project_digest, str) or not re.fullmatch(r"[0-9a-f]{8}", project_digest):
        raise ValueError("Malformed modal metadata: bad project digest.")
    record_id = data.get("r")
    if record_id is not None:
        _check_int(record_id, "record id")
    refs = []
    for key in ("c", "t"):
        ref = data.get(key)
        if ref is not None and (not isinstance(ref, str) or not _SLACK_REF_RE.fullmatch(ref)):
            raise ValueError("Malformed modal metadata: bad channel or timestamp.")
        refs.append(ref)
    return ModalContext(project_id, project_digest, record_id, refs[0], refs[1])


# ------------------------------------------------------------------------------------ outbox addresses


def encode_card_address(channel: str, message_ts: str) -> str:
    """Where a clicked card is (channel and message ts), as the outbox keeps it (core.deliveries)."""
    for ref in (channel, message_ts):
        if not isinstance(ref, str) or not _SLACK_REF_RE.fullmatch(ref):
            raise ValueError(f"Invalid Slack channel or timestamp {ref!r}.")
    return f"{channel} {message_ts}"


def parse_card_address(address: str) -> tuple[str, str]:
    """(channel, message ts) of :func:`encode_card_address`."""
    channel, _, message_ts = (address or "").partition(" ")
    if not _SLACK_REF_RE.fullmatch(channel) or not _SLACK_REF_RE.fullmatch(message_ts):
        raise ValueError(f"Malformed card address {address!r}.")
    return channel, message_ts


# ------------------------------------------------------------------------------------------ review cards

#: Label buttons on an admin's review card (``/label review``): the click is recorded as the gold label.
#: Distinct action ids (not a flag in the value) route review clicks to their own listener, which checks
#: that the clicker is an admin whatever the card says. Values are :func:`encode_label_value` values.
ACTION_REVIEW_CHOICE = "review_choice"
REVIEW_CHOICE_RE = re.compile(r"^review_choice(?::[0-9]{1,6})?\Z")
ACTION_REVIEW_SELECT = "review_select"  # static_select on review cards with more than BUTTON_LIMIT labels
CARD_REVIEW = "review"  # block id prefix of a review card ...
CARD_REVIEWED = "gold"  # ... and of the same card once the admin decided
#: A multi-label project's review card: the labels as the multi-label card's checkboxes (ticks only acked),
#: "Submit gold" and "None of these" (encode_record_value values); the ticked set becomes the gold set.
ACTION_REVIEW_LABELS = "review_labels"
ACTION_REVIEW_SUBMIT = "review_submit"
ACTION_REVIEW_NONE = "review_none"


def review_choice_action_id(index: int) -> str:
    """Action id of the label button at ``index`` on a review card (``review_choice:<index>``)."""
    return ACTION_REVIEW_CHOICE + label_choice_action_id(index)[len(ACTION_LABEL_CHOICE):]
