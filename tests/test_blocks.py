"""Block Kit rendering (bot.blocks) and action values (bot.ids): Slack's limits, escaping, round trips."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from bot import blocks as bk
from bot import ids
from core.types import (
    AnnotatorStats,
    LabelDef,
    ModelRunInfo,
    ProjectInfo,
    ProjectStatus,
    RecordView,
    RuleInfo,
    SimilarRecord,
)

NOW = datetime(2024, 5, 17, 12, 30, tzinfo=UTC)
INJECTION = "Hi <!channel> see <https://evil.example|click> & <@U999> &amp; <!here> > <"
LABEL_SET_SIZES = [2, 5, 6, 10, 77, 150, 250]

# Clusters a reader sees as one character; a cut must fall between them, never inside.
CLUSTERS = ["e\u0301", "👍🏽", "👨\u200d👩\u200d👧", "🇩🇪", "🏳\ufe0f\u200d🌈", "x", "한", "🇫🇷",
            "a\u0308\u0301", "&"]


# ---------------------------------------------------------------------------------------------- helpers


def make_labels(n: int) -> tuple[LabelDef, ...]:
    """Generated names: some with markup characters, some exactly 75 characters long, some unicode."""
    labels = []
    for i in range(n):
        if i % 7 == 3:
            name = f"<!channel> & <b>{i}</b>"
        elif i % 7 == 5:
            name = (f"long_label_{i}_" + "x" * 75)[:75]
        elif i % 7 == 6:
            name = f"étiquette 🚀 {i}"
        else:
            name = f"label_{i}"
        description = "" if i % 3 == 0 else f"What {i} means: <@U1> & friends " + "d" * (i % 90)
        labels.append(LabelDef(name, description))
    return tuple(labels)


def make_project(n_labels: int, name: str = "banking | <!channel> : ünï 🚀", pid: int = 42) -> ProjectInfo:
    return ProjectInfo(id=pid, name=name, labels=make_labels(n_labels), answers_per_record=1,
                       strategy="margin-kmeans", created_at=NOW)


def make_record(
    text: str = INJECTION, *, guess: str | None = None, confidence: float | None = None,
    record_id: int = 1234, reason: str = "uncertain between <a> and b&c (margin 0.01)",
) -> RecordView:
    return RecordView(project="p", record_id=record_id, external_id=f"ext-{record_id}", text=text,
                      predicted_label=guess, confidence=confidence, reason=reason)


def text_objects(obj: Any) -> Iterator[dict[str, Any]]:
    """Every Block Kit text object nested anywhere in ``obj``."""
    if isinstance(obj, dict):
        if obj.get("type") in ("plain_text", "mrkdwn") and "text" in obj:
            yield obj
        for value in obj.values():
            yield from text_objects(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from text_objects(value)


def elements(obj: Any, kind: str) -> Iterator[dict[str, Any]]:
    """Every element of type ``kind`` nested anywhere in ``obj``."""
    if isinstance(obj, dict):
        if obj.get("type") == kind:
            yield obj
        for value in obj.values():
            yield from elements(value, kind)
    elif isinstance(obj, list):
        for value in obj:
            yield from elements(value, kind)


def all_options(select: dict[str, Any]) -> list[dict[str, Any]]:
    if "options" in select:
        return select["options"]
    return [option for group in select["option_groups"] for option in group["options"]]


# What the renderer may put inside <...> itself: user mentions and date tokens. Anything else inside
# angle brackets would be user data that escaped escaping.
_ALLOWED_ANGLE = re.compile(r"<@[UW][A-Z0-9]+>|<!date\^\d+\^\{date_short_pretty\} at \{time\}\|[^<>|]*>")


def assert_no_injection(rendered: dict[str, Any]) -> None:
    texts = [obj["text"] for obj in text_objects(rendered) if obj["type"] == "mrkdwn"]
    if "text" in rendered and isinstance(rendered["text"], str):
        texts.append(rendered["text"])  # the notification fallback is parsed like mrkdwn
    for text in texts:
        stripped = re.sub(r"^>", "", _ALLOWED_ANGLE.sub("", text), flags=re.M)  # ">" opening a line: a quote
        assert "<" not in stripped and ">" not in stripped, text[:300]
        assert "<!channel>" not in text and "<!here>" not in text
        # Every & starts one of the three escapes: user data's own "&amp;" shows up as "&amp;amp;".
        assert re.fullmatch(r"([^&]|&amp;|&lt;|&gt;)*", stripped, re.S), text[:300]


def check_message(message: dict[str, Any]) -> None:
    assert bk.message_problems(message) == []
    assert isinstance(message["text"], str) and message["text"].strip()
    assert_no_injection(message)
    json.dumps(message)  # serialisable as Slack receives it


def check_view(view: dict[str, Any]) -> None:
    assert bk.view_problems(view) == []
    assert_no_injection(view)
    json.dumps(view)


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


_MARKER_RE = re.compile(r"… \(truncated, ([0-9,]+) more characters?\)$")


def split_marker(text: str) -> tuple[str, int]:
    match = _MARKER_RE.search(text)
    assert match, text[-80:]
    return text[: match.start()], int(match[1].replace(",", ""))


# ------------------------------------------------------------------------------------- escape/truncate


def test_escape_mrkdwn_uses_slack_entities() -> None:
    assert bk.escape_mrkdwn("<!channel> & <@U1> <https://x|y> &amp;") == (
        "&lt;!channel&gt; &amp; &lt;@U1&gt; &lt;https://x|y&gt; &amp;amp;")
    assert bk.escape_mrkdwn("plain *bold* text") == "plain *bold* text"


def test_truncate_leaves_short_text_alone() -> None:
    assert bk.truncate("hello", 5) == "hello"
    assert bk.truncate("", 3) == ""
    with pytest.raises(ValueError):
        bk.truncate("hello", 0)


def test_truncate_long_text_counts_what_it_cut() -> None:
    text = "".join(chr(ord("a") + i % 26) for i in range(10_000))
    out = bk.truncate(text, 3000)
    kept, hidden = split_marker(out)
    assert len(out) <= 3000
    assert len(out) >= 2998  # ASCII: nothing forces the cut further left
    assert text.startswith(kept)
    assert len(kept) + hidden == len(text)


def test_truncate_short_limits_use_an_ellipsis() -> None:
    out = bk.truncate("abcdefghijklmnopqrstuvwxyz", 10)
    assert out == "abcdefghi…"


@pytest.mark.parametrize("limit", [*range(300, 321), *range(2990, 3001)])
def test_truncate_never_cuts_an_escape_sequence(limit: int) -> None:
    escaped = bk.escape_mrkdwn("&<>" * 2000)
    out = bk.truncate(escaped, limit)
    kept, hidden = split_marker(out)
    assert bk.slack_len(out) <= limit
    assert re.fullmatch(r"(&amp;&lt;&gt;)*(&amp;(&lt;)?)?", kept), kept[-20:]
    assert len(unescape(kept)) + hidden == 6000  # hidden counts characters as the reader sees them


@pytest.mark.parametrize("limit", [*range(1, 60), 299, 300, 301, 302, 303, 2999, 3000])
def test_truncate_never_splits_a_character_cluster(limit: int) -> None:
    clusters = CLUSTERS * 400
    text = "".join(clusters)
    boundaries = {0}
    position = 0
    for cluster in clusters:
        position += len(cluster)
        boundaries.add(position)
    out = bk.truncate(text, limit)
    assert bk.slack_len(out) <= limit
    out.encode("utf-8")  # no lone surrogates
    if limit >= bk.LONG_MARKER_MIN:
        kept, hidden = split_marker(out)
        assert len(kept) + hidden == len(text)
    else:
        assert out.endswith("…")
        kept = out[:-1]
    assert text.startswith(kept)
    assert len(kept) in boundaries
    # And it does not throw away more than one cluster's worth of room.
    longest = max(bk.slack_len(c) for c in CLUSTERS)
    assert bk.slack_len(out) > limit - longest - (len(str(len(text))) if limit >= 300 else 0) - 1


def test_slack_len_counts_utf16_units_and_surrogates_are_repaired() -> None:
    assert bk.slack_len("😀") == 2
    assert bk.slack_len("é") == 1
    assert bk.escape_mrkdwn("\ud83d\ude00") == "😀"  # a pair left as two code points
    assert bk.escape_mrkdwn("a\ud83db") == "a\ufffdb"  # a lone half can't be sent as JSON
    bk.notice("broken \udc00 text")["text"].encode("utf-8")


def test_mention_only_wraps_slack_user_ids() -> None:
    assert bk.mention("U0123ABC") == "<@U0123ABC>"
    assert bk.mention("W42") == "<@W42>"
    assert bk.mention("<!channel>") == "&lt;!channel&gt;"
    assert bk.mention("U123>") == "U123&gt;"
    assert bk.mention("u123") == "u123"
    assert len(bk.mention("x" * 10_000)) <= bk.USER_LIMIT


# -------------------------------------------------------------------------------------------------- ids

PROJECT_NAMES = ["a|b", "x:y:z", "ünï 🚀 кириллица", "", "p" * 5000, "l1:1:deadbeef:2", "\n\t<>&\"'"]


@pytest.mark.parametrize("name", PROJECT_NAMES)
@pytest.mark.parametrize(("pid", "rid"), [(0, 0), (1, 2), (2**63 - 1, 2**63 - 1)])
def test_values_round_trip(name: str, pid: int, rid: int) -> None:
    other = name + "x"
    project = ids.parse_project_value(ids.encode_project_value(pid, name))
    assert (project.project_id, project.matches(name), project.matches(other)) == (pid, True, False)
    record = ids.parse_record_value(ids.encode_record_value(pid, name, rid))
    assert (record.project_id, record.record_id, record.matches(name)) == (pid, rid, True)
    record.check(name)
    with pytest.raises(ValueError):
        record.check(other)
    n_now = ids.parse_label_n_value(ids.encode_label_n_value(pid, name, 5))
    assert (n_now.project_id, n_now.n, n_now.matches(name)) == (pid, 5, True)
    labels = ["a|b", "ünï 🚀", "y" * 75, "<!channel>"]
    for index, label in enumerate(labels):
        value = ids.encode_label_value(pid, name, rid, index, label)
        assert len(value) <= bk.OPTION_VALUE_LIMIT
        choice = ids.parse_label_value(value)
        assert (choice.project_id, choice.record_id, choice.label_index) == (pid, rid, index)
        assert choice.matches(name) and choice.label(labels) == label
        option = ids.encode_label_option(index, label)
        assert len(option) <= bk.OPTION_VALUE_LIMIT
        assert ids.parse_label_option(option).label(labels) == label
    assert ids.parse_record_option(ids.encode_record_option(rid)) == rid
    metadata = ids.encode_modal_metadata(pid, name, rid, channel="C012AB", message_ts="1715950000.123456")
    assert len(metadata) <= bk.PRIVATE_METADATA_LIMIT
    context = ids.parse_modal_metadata(metadata)
    assert (context.project_id, context.record_id, context.channel, context.message_ts) == (
        pid, rid, "C012AB", "1715950000.123456")
    assert context.matches(name) and not context.matches(other)
    assert ids.parse_modal_metadata(ids.encode_modal_metadata(pid, name)).record_id is None


def test_label_choice_detects_a_changed_label_set() -> None:
    choice = ids.parse_label_value(ids.encode_label_value(1, "p", 2, 1, "refund"))
    assert choice.label(["card", "refund"]) == "refund"
    with pytest.raises(ValueError):
        choice.label(["refund", "card"])  # reordered: index 1 is now another label
    with pytest.raises(ValueError):
        choice.label(["card"])  # index out of range
    with pytest.raises(ValueError):
        ids.parse_label_option(ids.encode_label_option(0, "a")).label(["b"])


MALFORMED = [
    None, 17, b"r1:1:00000000:2", "", "garbage", "r1", "r1:1:00000000", "r1:1:00000000:2:3",
    "r1:01:00000000:2", "r1:-1:00000000:2", "r1:+1:00000000:2", "r1: 1:00000000:2", "r1:1:ABCDEF12:2",
    "r1:1:0000000:2", "r1:1:00000000:2\n", "r1:1:00000000:2 ", "r2:1:00000000:2", "R1:1:00000000:2",
    "r1:1:00000000:١", "r1:9999999999999999999:00000000:2", "r1:99999999999999999999:00000000:2",
    "r1:1:00000000:" + "1" * 200, "l1:1:00000000:2:3:00000000", "p1:1:00000000", "o1:1:00000000",
]


@pytest.mark.parametrize("value", MALFORMED)
def test_malformed_record_values_raise_value_error(value: Any) -> None:
    with pytest.raises(ValueError):
        ids.parse_record_value(value)


@pytest.mark.parametrize("parse", [ids.parse_project_value, ids.parse_label_value, ids.parse_label_option,
                                   ids.parse_label_n_value, ids.parse_record_option])
@pytest.mark.parametrize("value", [None, "", "x", "r1:1:00000000:2", "1:2", "-3", "03", " 3", "3\n",
                                   "l1:1:00000000:2:3:0000000g", "n1:1:00000000:0", "9" * 20])
def test_every_parser_rejects_forged_values(parse: Any, value: Any) -> None:
    with pytest.raises(ValueError):
        parse(value)


@pytest.mark.parametrize("value", [
    None, "", "{", "[]", "null", '{"v":2,"p":1,"d":"00000000"}', '{"v":true,"p":1,"d":"00000000"}',
    '{"v":1,"p":-1,"d":"00000000"}', '{"v":1,"p":true,"d":"00000000"}', '{"v":1,"p":1,"d":"xyz"}',
    '{"v":1,"p":1,"d":"00000000","r":"5"}', '{"v":1,"p":1,"d":"00000000","x":1}',
    '{"v":1,"p":1,"d":"00000000","c":"<!channel>"}', '{"v":1,"p":1,"d":"00000000","t":5}', "x" * 3001,
])
def test_malformed_modal_metadata_raises_value_error(value: Any) -> None:
    with pytest.raises(ValueError):
        ids.parse_modal_metadata(value)


@pytest.mark.parametrize("bad", [-1, True, "1", 2**63, 1.0])
def test_encoders_reject_bad_numbers(bad: Any) -> None:
    with pytest.raises(ValueError):
        ids.encode_record_value(bad, "p", 1)
    with pytest.raises(ValueError):
        ids.encode_label_value(1, "p", bad, 0, "a")
    with pytest.raises(ValueError):
        ids.encode_record_option(bad)


def test_action_and_block_ids() -> None:
    assert ids.LABEL_CHOICE_RE.match(ids.label_choice_action_id(3))
    assert ids.LABEL_CHOICE_RE.match(ids.ACTION_LABEL_CHOICE)
    assert not ids.LABEL_CHOICE_RE.match("label_choice:3\n")
    assert not ids.LABEL_CHOICE_RE.match(ids.ACTION_LABEL_SELECT)
    assert ids.card_block_id(ids.CARD_LABEL, ids.PART_TEXT, "n1") != ids.card_block_id(
        ids.CARD_ANSWERED, ids.PART_TEXT, "n1")
    for bad in ["", "a b", "x" * 33, "é", "a.b"]:
        with pytest.raises(ValueError):
            ids.card_block_id(ids.CARD_LABEL, ids.PART_TEXT, bad)
    assert ids.new_nonce() != ids.new_nonce()
    assert ids.check_nonce(ids.new_nonce())


# ------------------------------------------------------------------------------------------- label card


@pytest.mark.parametrize("n_labels", LABEL_SET_SIZES)
def test_label_card_fits_slack_and_encodes_every_choice(n_labels: int) -> None:
    project = make_project(n_labels)
    guess = project.labels[1].name
    record = make_record(INJECTION * 200, guess=guess, confidence=0.624)
    card = bk.label_card(project, record, nonce="abc123")
    check_message(card)

    text = card["blocks"][1]["text"]["text"]
    assert "&lt;!channel&gt;" in text and "&lt;https://evil.example|click&gt;" in text
    kept, hidden = split_marker(text)
    assert (INJECTION * 200).startswith(unescape(kept))
    assert len(unescape(kept)) + hidden == len(INJECTION) * 200

    context = " ".join(e["text"] for e in card["blocks"][2]["elements"])
    assert "62%" in context and bk.escape_mrkdwn(guess) in context
    assert "uncertain between &lt;a&gt; and b&amp;c" in context

    buttons = list(elements(card, "button"))
    selects = list(elements(card, "static_select"))
    label_names = list(project.label_names)
    if n_labels <= bk.BUTTON_LIMIT:
        assert selects == []
        label_buttons = [b for b in buttons if ids.LABEL_CHOICE_RE.match(b["action_id"])]
        assert [b["text"]["text"] for b in label_buttons] == [bk.truncate(n, 75) for n in label_names]
        assert len({b["action_id"] for b in label_buttons}) == n_labels
        chosen = [ids.parse_label_value(b["value"]) for b in label_buttons]
        assert [c.label(label_names) for c in chosen] == label_names
        assert [b.get("style") for b in label_buttons] == [
            "primary" if name == guess else None for name in label_names]
    else:
        (select,) = selects
        assert select["action_id"] == ids.ACTION_LABEL_SELECT
        assert ("option_groups" in select) == (n_labels > 100)
        assert "initial_option" not in select  # choosing a preselected option would fire nothing
        options = all_options(select)
        assert [o["text"]["text"] for o in options] == label_names  # plain_text: shown as is, unescaped
        chosen = [ids.parse_label_value(o["value"]) for o in options]
        assert [c.label(label_names) for c in chosen] == label_names
        assert all((c.project_id, c.record_id) == (42, 1234) and c.matches(project.name) for c in chosen)
        described = {o["text"]["text"]: o["description"]["text"] for o in options if "description" in o}
        for label in project.labels:
            assert described.get(label.name) == (bk.truncate(label.description, 75) or None)
        if "option_groups" in select:
            assert select["option_groups"][0]["label"]["text"] == "Labels 1–100"
            assert len(select["option_groups"]) == -(-n_labels // 100)
    by_action = {b["action_id"]: b for b in buttons}
    for action in (ids.ACTION_SKIP, ids.ACTION_SHOW_SIMILAR):
        ref = ids.parse_record_value(by_action[action]["value"])
        assert (ref.project_id, ref.record_id) == (42, 1234) and ref.matches(project.name)


def test_label_card_without_a_model_and_with_odd_text() -> None:
    project = make_project(3)
    for text in ["", "   ", "x" * 2990 + "👨\u200d👩\u200d👧" * 20, "&" * 5000, "<" * 10_000]:
        card = bk.label_card(project, make_record(text, reason=""), nonce="n")
        check_message(card)
        context = " ".join(e["text"] for e in card["blocks"][2]["elements"])
        assert "No model yet" in context
        shown = card["blocks"][1]["text"]["text"]
        if text.strip():
            body = split_marker(shown)[0] if _MARKER_RE.search(shown) else shown
            assert text.startswith(unescape(body))
        else:
            assert shown.strip()


def test_label_card_cut_inside_an_emoji_sequence_keeps_whole_clusters() -> None:
    clusters = ["x"] * 2950 + ["👨\u200d👩\u200d👧", "🇩🇪", "👍🏽", "e\u0301"] * 30
    text = "".join(clusters)
    boundaries, position = {0}, 0
    for cluster in clusters:
        position += len(cluster)
        boundaries.add(position)
    shown = bk.label_card(make_project(2), make_record(text), nonce="n")["blocks"][1]["text"]["text"]
    kept, hidden = split_marker(shown)
    assert len(kept) in boundaries and text.startswith(kept)
    assert len(kept) + hidden == len(text)


def test_answered_card_changes_every_block_id() -> None:
    project = make_project(6)
    record = make_record(guess="label_0", confidence=0.9)
    original = bk.label_card(project, record, nonce="n1")
    for nonce in ("n1", "n2"):
        answered = bk.answered_card(project, record, label="label_0", user_id="U012ABC", nonce=nonce,
                                    complete=True)
        check_message(answered)
        before = {b["block_id"] for b in original["blocks"]}
        after = {b["block_id"] for b in answered["blocks"]}
        assert before.isdisjoint(after)
    again = bk.label_card(project, record, nonce="n2")
    assert {b["block_id"] for b in again["blocks"]}.isdisjoint(b["block_id"] for b in original["blocks"])
    with pytest.raises(ValueError):
        bk.label_card(project, record, nonce="not a nonce")


def test_answered_card_mentions_only_real_user_ids() -> None:
    project = make_project(2)
    record = make_record()
    good = bk.answered_card(project, record, label="<b>&", user_id="U012ABC", nonce="x", complete=True)
    context = good["blocks"][2]["elements"][0]["text"]
    assert "<@U012ABC>" in context and "*&lt;b&gt;&amp;*" in context and "complete" in context
    (undo,) = elements(good, "button")
    assert undo["action_id"] == ids.ACTION_UNDO
    assert ids.parse_record_value(undo["value"]).record_id == record.record_id
    forged = bk.answered_card(project, record, label="a", user_id="<!channel>", nonce="x", complete=False)
    check_message(forged)
    context = forged["blocks"][2]["elements"][0]["text"]
    assert "&lt;!channel&gt;" in context and "<@" not in context and "more answers" in context


def test_stale_card_has_no_actions() -> None:
    for card in [bk.stale_card("proj <!here>", make_record(), "This record is already complete."),
                 bk.stale_card(None, None, "The project <x> is gone."),
                 bk.stale_card("p", None, "")]:
        check_message(card)
        assert not [b for b in card["blocks"] if b["type"] == "actions"]
        assert not list(elements(card, "button"))
    gone = bk.stale_card(None, None, "The project <x> is gone.")
    assert "The project &lt;x&gt; is gone." in json.dumps(gone, ensure_ascii=False)


def test_notice_escapes_and_is_never_empty() -> None:
    message = bk.notice("Done <!channel> & co")
    check_message(message)
    assert message["text"] == "Done &lt;!channel&gt; &amp; co"
    assert bk.notice("")["text"].strip()
    assert bk.slack_len(bk.notice("y" * 50_000)["blocks"][0]["text"]["text"]) <= 3000


# -------------------------------------------------------------------------------------------------- modal


def make_results(n: int) -> list[SimilarRecord]:
    out = []
    for i in range(n):
        label = "label_1" if i % 3 == 0 else None
        guess = "<!channel> & <b>3</b>" if i % 3 == 1 else None
        out.append(SimilarRecord(record_id=1000 + i, external_id=f"e<{i}>", text=f"{i} {INJECTION} " * 30,
                                 score=0.87 - i / 100, label=label, predicted_label=guess,
                                 confidence=0.5 if guess else None))
    return out


@pytest.mark.parametrize("n_labels", [2, 150, 250])
@pytest.mark.parametrize("n_results", [0, 5, 10, 11, 40, 60])
def test_similar_modal_fits_slack(n_labels: int, n_results: int) -> None:
    project = make_project(n_labels)
    source = make_record(guess=project.labels[1].name, confidence=0.7)
    results = make_results(n_results)
    view = bk.similar_modal(project, source, None, results, channel="C1", message_ts="1.2")
    check_view(view)
    assert view["type"] == "modal" and view["callback_id"] == ids.CALLBACK_SIMILAR_MODAL
    context = ids.parse_modal_metadata(view["private_metadata"])
    assert (context.project_id, context.record_id) == (42, 1234)
    assert (context.channel, context.message_ts) == ("C1", "1.2")
    assert context.matches(project.name)
    shown = results[: bk.MAX_SIMILAR_RESULTS]
    checkboxes = list(elements(view, "checkboxes"))
    assert all(len(c["options"]) <= 10 for c in checkboxes)
    ticked_values = [o["value"] for c in checkboxes for o in c["options"]]
    assert [ids.parse_record_option(v) for v in ticked_values] == [r.record_id for r in shown]
    assert ("submit" in view) == bool(shown)
    sections = [b["text"]["text"] for b in view["blocks"] if b["block_id"].startswith("result.")]
    assert len(sections) == len(shown)
    for item, text in zip(shown, sections, strict=True):
        assert f"similarity {item.score:.2f}" in text
        if item.label is not None:
            assert f"labeled *{item.label}*" in text
        elif item.predicted_label is not None:
            assert "&lt;!channel&gt; &amp; &lt;b&gt;3&lt;/b&gt;" in text
    if shown:
        (select,) = elements(view, "static_select")
        assert select["initial_option"]["text"]["text"] == project.labels[1].name
        names = list(project.label_names)
        assert [ids.parse_label_option(o["value"]).label(names) for o in all_options(select)] == names


def test_similar_submission_round_trip_and_errors() -> None:
    project = make_project(150)
    names = list(project.label_names)
    view = bk.similar_modal(project, None, "refund <please>", make_results(15))
    input_ids = {b["block_id"] for b in view["blocks"] if b["type"] == "input"}
    checkbox_blocks = [b for b in view["blocks"]
                       if b["type"] == "input" and b["element"]["type"] == "checkboxes"]
    assert len(checkbox_blocks) == 2
    (select,) = elements(view, "static_select")
    picked_label = all_options(select)[120]
    # Slack sends state keyed by block id then action id; dict order is not guaranteed to be block order.
    values = {
        ids.BLOCK_SIMILAR_LABEL: {ids.ACTION_SIMILAR_LABEL: {"type": "static_select",
                                                             "selected_option": picked_label}},
        checkbox_blocks[1]["block_id"]: {ids.ACTION_SIMILAR_RECORDS: {
            "type": "checkboxes", "selected_options": checkbox_blocks[1]["element"]["options"][:2]}},
        checkbox_blocks[0]["block_id"]: {ids.ACTION_SIMILAR_RECORDS: {
            "type": "checkboxes", "selected_options": checkbox_blocks[0]["element"]["options"][3:5]}},
    }
    record_ids, label = bk.parse_similar_submission(values, names)
    assert record_ids == [1003, 1004, 1010, 1011]
    assert label == names[120]
    assert bk.similar_errors(record_ids, label) is None

    empty: dict[str, Any] = {b["block_id"]: {ids.ACTION_SIMILAR_RECORDS: {"type": "checkboxes",
                                                                          "selected_options": []}}
                             for b in checkbox_blocks}
    empty[ids.BLOCK_SIMILAR_LABEL] = {ids.ACTION_SIMILAR_LABEL: {"type": "static_select",
                                                                 "selected_option": None}}
    record_ids, label = bk.parse_similar_submission(empty, names)
    assert (record_ids, label) == ([], None)
    errors = bk.similar_errors(record_ids, label)
    assert errors is not None and errors["response_action"] == "errors"
    assert set(errors["errors"]) <= input_ids and len(errors["errors"]) == 2
    assert errors["errors"][ids.BLOCK_SIMILAR_LABEL] == "Choose a label"
    only_label = bk.similar_errors([], "x")
    assert only_label is not None and list(only_label["errors"]) == [ids.similar_records_block_id(0)]
    assert bk.parse_similar_submission({}, names) == ([], None)

    with pytest.raises(ValueError):
        bk.parse_similar_submission(values, names[::-1])  # the label set changed while the modal was open
    first = checkbox_blocks[0]["block_id"]
    out_of_range = ids.encode_label_option(9999, "label_0")  # well-formed, but no such label
    for forged in [
        None, [],
        {first: "x"},
        {first: {ids.ACTION_SIMILAR_RECORDS: {"selected_options": "1"}}},
        {first: {ids.ACTION_SIMILAR_RECORDS: {"selected_options": [{"value": "-1"}]}}},
        {first: {ids.ACTION_SIMILAR_RECORDS: {"selected_options": ["1"]}}},
        {ids.BLOCK_SIMILAR_LABEL: {ids.ACTION_SIMILAR_LABEL: {"selected_option": {"value": out_of_range}}}},
        {ids.BLOCK_SIMILAR_LABEL: {ids.ACTION_SIMILAR_LABEL: {"selected_option": "label_0"}}},
        {ids.BLOCK_SIMILAR_RECORDS + ".x": {}},
    ]:
        with pytest.raises(ValueError):
            bk.parse_similar_submission(forged, names)  # type: ignore[arg-type]


def test_search_results_modal() -> None:
    project = make_project(10)
    view = bk.search_results_modal(project, "cards <!channel> " * 100, make_results(7))
    check_view(view)
    assert view["callback_id"] == ids.CALLBACK_SEARCH_MODAL
    assert view["title"]["text"] == "Search results"
    assert ids.parse_modal_metadata(view["private_metadata"]).record_id is None
    assert "&lt;!channel&gt;" in view["blocks"][0]["text"]["text"]
    (select,) = elements(view, "static_select")
    assert "initial_option" not in select


def test_similar_modal_long_title_and_project_name() -> None:
    view = bk.similar_modal(make_project(4, name="n" * 5000), None, None, make_results(3),
                            title="A title far longer than twenty-four characters")
    check_view(view)
    assert len(view["title"]["text"]) <= 24


# ------------------------------------------------------------------------------------------------ status


def make_status(n_labels: int = 250, n_annotators: int = 200, *, run: bool = True, total: int = 10_000
                ) -> ProjectStatus:
    names = [label.name for label in make_labels(n_labels)]
    counts = {name: (i * 37) % 500 + 1 for i, name in enumerate(names)}
    annotators = []
    for i in range(n_annotators):
        user = f"U{i:08d}" if i % 4 else ("<!channel>" if i % 8 == 0 else f"cli:alice&{i} " + "z" * 200)
        annotators.append(AnnotatorStats(user=user, answers=100_000 - i * 3, median_seconds=8.25 + i,
                                         agreement=0.91, estimated_accuracy=0.93 if i % 2 else None))
    latest = ModelRunInfo(id=7, project="p", created_at=NOW, n_labels=4321, strategy="margin-kmeans",
                          metrics={"cv_accuracy": 0.8123, "cv_macro_f1": 0.7431}, label_counts=counts,
                          duration_seconds=12.5) if run else None
    labeled = sum(counts.values()) if total else 0
    return ProjectStatus(project="banking <!channel> & co", total=total, labeled=min(labeled, total),
                         annotations=labeled * 2, label_counts=counts, annotators=tuple(annotators),
                         latest_run=latest, remaining=max(total - labeled, 0),
                         agreement={"krippendorff_alpha": 0.7123})


def section_texts(message: dict[str, Any]) -> str:
    return "\n".join(b["text"]["text"] for b in message["blocks"] if b["type"] == "section")


def test_status_message_with_many_labels_and_annotators() -> None:
    status = make_status()
    message = bk.status_message(status)
    check_message(message)
    assert len(message["blocks"]) <= bk.MAX_MESSAGE_BLOCKS
    text = section_texts(message)
    ranked = sorted(status.label_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    positions = [text.index(f"• {bk.escape_mrkdwn(name)} — {count:,}") for name, count in ranked[:20]]
    assert positions == sorted(positions)
    assert f"• {bk.escape_mrkdwn(ranked[20][0])} — " not in text
    assert "… and 230 more labels" in text
    assert "CV accuracy 81.2%" in text and "macro-F1 0.743" in text and "4,321 labels" in text
    assert "Krippendorff's α 0.71" in text
    assert "1. &lt;!channel&gt; — 100,000 answers" in text and "2. <@U00000001>" in text
    assert "… and 195 more" in text
    assert f"{status.labeled:,} of 10,000 records labeled" in text
    assert "&lt;!channel&gt;" in message["text"]


def test_status_message_splits_long_lists_and_stays_under_50_blocks() -> None:
    status = make_status(n_labels=250, n_annotators=5000)
    message = bk.status_message(status, top_n=5000, label_limit=250)
    check_message(message)
    text = section_texts(message)
    assert sum(b["type"] == "section" for b in message["blocks"]) > 3  # lists did not fit one section
    assert re.search(r"… and [0-9,]+ more", text)


def test_status_message_for_an_empty_project() -> None:
    status = ProjectStatus(project="new", total=0, labeled=0, annotations=0, label_counts={}, annotators=(),
                           latest_run=None, remaining=0)
    message = bk.status_message(status)
    check_message(message)
    text = section_texts(message)
    assert "not trained yet" in text and "nobody yet" in text and "0 of 0 records" in text


def test_status_message_without_cross_validation() -> None:
    run = ModelRunInfo(id=1, project="p", created_at=datetime(2024, 1, 1), n_labels=3, strategy="margin",
                       metrics={"cv_accuracy": float("nan")}, label_counts={}, duration_seconds=0.5)
    status = ProjectStatus(project="p", total=10, labeled=3, annotations=3, label_counts={"a": 2, "b": 1},
                           annotators=(AnnotatorStats("U1", 3),), latest_run=run, remaining=7)
    message = bk.status_message(status)
    check_message(message)
    assert "too few labels to cross-validate" in section_texts(message)
    assert "<!date^1704067200^" in section_texts(message)  # naive datetimes are taken as UTC


def test_leaderboard_ranks_ties_and_formats_stats() -> None:
    people = (AnnotatorStats("U1", 10, 8.24, 0.912), AnnotatorStats("U2", 7, 75.0, None),
              AnnotatorStats("<@U3>", 7, None, 0.5, 0.8), AnnotatorStats("U4", 3, 7200.0, 1.0))
    status = ProjectStatus(project="p", total=100, labeled=20, annotations=27, label_counts={"a": 20},
                           annotators=people, latest_run=None, remaining=80)
    message = bk.leaderboard_message(status, limit=10)
    check_message(message)
    lines = section_texts(message).splitlines()
    assert lines == [
        "1. <@U1> — 10 answers · median 8.2 s per answer · agreement 91%",
        "2. <@U2> — 7 answers · median 1 min 15 s per answer",
        "2. &lt;@U3&gt; — 7 answers · agreement 50% · est. accuracy 80%",
        "4. <@U4> — 3 answers · median 2.0 h per answer · agreement 100%",
    ]
    short = bk.leaderboard_message(status, limit=2)
    assert section_texts(short).splitlines()[-1] == "… and 2 more"


def test_leaderboard_with_many_annotators() -> None:
    status = make_status(n_annotators=200)
    for limit in (0, 10, 200, 10_000):
        message = bk.leaderboard_message(status, limit=limit)
        check_message(message)
    assert "No answers yet" in section_texts(bk.leaderboard_message(make_status(n_annotators=0)))


@pytest.mark.parametrize("is_admin", [True, False])
def test_help_message(is_admin: bool) -> None:
    message = bk.help_message(is_admin)
    check_message(message)
    text = section_texts(message)
    for command in ("/label next [n]", "/label status", "/label leaderboard", "/label search &lt;text&gt;",
                    "/label help"):
        assert f"`{command}`" in text
    for command in ("/label retrain", "/label export", "/label project NAME"):
        assert (f"`{command}`" in text) == is_admin


# -------------------------------------------------------------------------------------------------- home


def test_home_view_shows_progress_rank_and_start_buttons() -> None:
    projects = []
    for i in range(3):
        status = make_status(n_labels=5, n_annotators=6, run=i != 1, total=5000)
        projects.append((make_project(5, name=f"proj {i} <!here>", pid=10 + i), status))
    view = bk.home_view(projects, "U00000002")
    check_view(view)
    assert view["type"] == "home"
    buttons = [b for b in elements(view, "button") if b["action_id"] == ids.ACTION_START_LABELING]
    refs = [ids.parse_project_value(b["value"]) for b in buttons]
    assert [r.project_id for r in refs] == [10, 11, 12]
    assert all(r.matches(p.name) for r, (p, _) in zip(refs, projects, strict=True))
    text = section_texts(view)
    assert "You: 99,994 answers · rank #3 of 6" in text and "proj 0 &lt;!here&gt;" in text
    contexts = json.dumps([b for b in view["blocks"] if b["type"] == "context"], ensure_ascii=False)
    assert "CV accuracy 81.2%" in contexts and "not trained yet" in contexts
    assert "You have not labeled here yet." in section_texts(bk.home_view(projects, "U99"))


def test_home_view_edge_cases() -> None:
    check_view(bk.home_view([], "U1"))
    many = [(make_project(2, name=f"p{i}", pid=i), make_status(n_labels=2, n_annotators=2))
            for i in range(45)]
    view = bk.home_view(many, "U1")
    check_view(view)
    assert len(list(elements(view, "button"))) == bk.MAX_HOME_PROJECTS
    assert "15 more projects" in json.dumps(view)


# -------------------------------------------------------------------------------------------- validator


def _valid_message() -> dict[str, Any]:
    return bk.label_card(make_project(3), make_record(), nonce="v")


def _break(mutate: Any) -> list[str]:
    message = json.loads(json.dumps(_valid_message()))
    mutate(message)
    return bk.message_problems(message)


@pytest.mark.parametrize(("mutate", "problem"), [
    (lambda m: m["blocks"].extend({"type": "divider"} for _ in range(50)), "no more than 50 items"),
    (lambda m: m["blocks"][1].update(block_id=m["blocks"][0]["block_id"]), "duplicate block_id"),
    (lambda m: m["blocks"][1].update(block_id="b" * 256), "block_id cannot exceed 255"),
    (lambda m: m["blocks"][0]["text"].update(text="h" * 151), "cannot exceed 150 characters"),
    (lambda m: m["blocks"][0]["text"].update(type="mrkdwn"), "must be a plain_text"),
    (lambda m: m["blocks"][0].pop("text"), "text attribute must be specified"),
    (lambda m: m["blocks"][1]["text"].update(text="s" * 3001), "cannot exceed 3000 characters"),
    (lambda m: m["blocks"][1]["text"].update(text=""), "not be empty [json-pointer:/blocks/1/text/text]"),
    (lambda m: m["blocks"][1]["text"].update(type="markdown"), "read 'markdown' as 'mrkdwn'"),
    (lambda m: m["blocks"][1]["text"].update(verbatum=True), "unexpected keyword argument 'verbatum'"),
    (lambda m: m["blocks"][1].update(colour="red"), "slack_sdk's models [json-pointer:/blocks/1/colour]"),
    (lambda m: m["blocks"][1].update(type="secton"), "unsupported type: secton"),
    (lambda m: m["blocks"][2].update(elements=m["blocks"][2]["elements"] * 11), "cannot exceed 10 elements"),
    (lambda m: m["blocks"][3].update(elements=[]), "must not be empty [json-pointer:/blocks/3/elements]"),
    (lambda m: m["blocks"][3].update(elements=m["blocks"][3]["elements"] * 9), "cannot exceed 25 elements"),
    (lambda m: m["blocks"][3]["elements"][0].update(type="buton"), "[json-pointer:/blocks/3/elements/0]"),
    (lambda m: m["blocks"][3]["elements"][0]["text"].update(text="b" * 76), "cannot exceed 75 characters"),
    (lambda m: m["blocks"][3]["elements"][0].update(value="v" * 2001), "cannot exceed 2000 characters"),
    (lambda m: m["blocks"][3]["elements"][0].update(action_id="a" * 256), "action_id attribute cannot"),
    (lambda m: m["blocks"][3]["elements"][1].update(action_id=m["blocks"][3]["elements"][0]["action_id"]),
     "duplicate action_id"),
    (lambda m: m["blocks"][3]["elements"][0].update(style="green"), "style attribute must be one of"),
    (lambda m: m.update(text=""), "needs a notification text"),
])
def test_validator_catches_each_broken_limit(mutate: Any, problem: str) -> None:
    assert bk.message_problems(_valid_message()) == []
    assert problem in "\n".join(_break(mutate))


def _option(i: int, text: str = "o", value: str | None = None) -> dict[str, Any]:
    return {"text": {"type": "plain_text", "text": text}, "value": value or str(i)}


def _select_message(select: dict[str, Any]) -> dict[str, Any]:
    base = {"type": "static_select", "action_id": "s", "placeholder": {"type": "plain_text", "text": "p"}}
    return {"text": "t", "blocks": [{"type": "actions", "elements": [{**base, **select}]}]}


def _select_problems(select: dict[str, Any]) -> str:
    return "\n".join(bk.message_problems(_select_message(select)))


def test_validator_checks_selects_checkboxes_and_views() -> None:
    # slack_sdk's StaticSelectElement alone checks none of its options: blockkit validates them with Option.
    assert _select_problems({"options": [_option(i) for i in range(100)]}) == ""
    assert "cannot exceed 100 elements" in _select_problems({"options": [_option(i) for i in range(101)]})
    assert "cannot exceed 75 characters" in _select_problems({"options": [_option(0, text="x" * 76)]})
    assert "cannot exceed 150 characters" in _select_problems({"options": [_option(0, value="v" * 151)]})
    assert "duplicate value" in _select_problems({"options": [_option(0), _option(0)]})
    groups = [{"label": {"type": "plain_text", "text": "g"}, "options": [_option(g)]} for g in range(101)]
    assert "option_groups attribute cannot exceed 100" in _select_problems({"option_groups": groups})
    assert _select_problems({"option_groups": groups[:100]}) == ""
    assert "duplicate value" in _select_problems({"option_groups": groups[:2] + groups[:1]})
    groups[1]["options"][0]["text"]["text"] = "x" * 76
    assert "cannot exceed 75 characters" in _select_problems({"option_groups": groups[:2]})

    view = bk.similar_modal(make_project(3), None, "q", make_results(3))
    assert bk.view_problems(view) == []
    for key, value, problem in [
        ("title", {"type": "plain_text", "text": "t" * 25}, "title must be between 1 and 24"),
        ("submit", {"type": "plain_text", "text": "s" * 25}, "submit cannot exceed 24"),
        ("close", {"type": "mrkdwn", "text": "c"}, "must be a plain_text text object [json-pointer:/view/"),
        ("private_metadata", "m" * 3001, "private_metadata cannot exceed 3000"),
        ("type", "dialog", "type must be either"),
        ("callbak_id", "x", "unknown to slack_sdk's models [json-pointer:/view/callbak_id]"),
    ]:
        assert problem in "\n".join(bk.view_problems({**view, key: value}))
    no_submit = {k: v for k, v in view.items() if k != "submit"}
    assert bk.view_problems(no_submit) == ["a modal needs submit [json-pointer:/view/submit]"]
    checkbox_block = next(b for b in view["blocks"] if b["type"] == "input")
    too_many = json.loads(json.dumps(view))
    target = next(b for b in too_many["blocks"] if b["block_id"] == checkbox_block["block_id"])
    target["element"]["options"] = [_option(i) for i in range(11)]
    assert "no more than 10 options" in "\n".join(bk.view_problems(too_many))
    assert "no more than 100 items" in "\n".join(bk.view_problems({**view, "blocks": view["blocks"] * 40}))
    assert bk.message_problems({"text": "x", "blocks": "nope"}) == ["must be an array [json-pointer:/blocks]"]


def test_rule_lines_escape_what_admins_typed_and_say_each_figure() -> None:
    def rule(**kw: Any) -> RuleInfo:
        base = dict(id=3, project="p", label="<!channel> & co", kind="regex", created_by="U1", created_at=NOW,
                    pattern="/`a` <b> & " + "x" * 400 + "/", description="", total=200, matched=20)
        return RuleInfo(**{**base, **kw})  # type: ignore[arg-type]

    line = bk.rule_line(rule(labeled=10, agreeing=9, precision=0.9, conflicts=2, overlap=5))
    assert "<!channel>" not in line and "&lt;!channel&gt; &amp; co" in line
    assert "<b>" not in line and "`a`" not in line and "'a' &lt;b&gt; &amp;" in line
    assert "covers 10.0% (20 of 200)" in line and "precision 90% (9 of 10)" in line
    assert "2 in conflict with other labels' rules" in line and "also matched" not in line
    pattern = line.split("`")[1]
    assert len(pattern) <= 300  # cut after escaping
    assert "5 also matched by other rules" in bk.rule_line(rule(overlap=5))
    slow = bk.rule_line(rule(timed_out=True))
    assert "timed out" in slow and "covers" not in slow
    message = bk.rules_message("<!here>", [rule()])
    assert bk.message_problems(message) == [] and "<!here>" not in message["text"]
