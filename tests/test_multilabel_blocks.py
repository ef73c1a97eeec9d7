"""Multi-label cards and the multi-label Show similar modal (bot/blocks.py), checked by the Block Kit
validator (bot.blockkit) and by what Slack would send back for them."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot import blocks as bk
from bot import ids
from tests.test_blocks import make_project, make_record, make_results, text_objects


def multi_project(n_labels: int, **kwargs: object):  # type: ignore[no-untyped-def]
    return replace(make_project(n_labels, **kwargs), multi_label=True)  # type: ignore[arg-type]


def elements(message: dict, kind: str) -> list[dict]:
    return [e for b in message["blocks"] if b["type"] == "actions"
            for e in b["elements"] if e["type"] == kind]


def all_text(message: dict) -> str:
    return "\n".join(t["text"] for t in text_objects(message["blocks"]))


@pytest.mark.parametrize("n_labels", [1, 3, 10, 11, 100, 101, 250])
def test_multi_label_card_fits_slack_and_offers_every_label_once(n_labels: int) -> None:
    project = multi_project(n_labels)
    card = bk.label_card(project, make_record(guess="label_0|label_1", confidence=0.72), nonce="n1")
    assert bk.message_problems(card) == []
    kind = "checkboxes" if n_labels <= bk.CHECKBOX_OPTIONS_LIMIT else "multi_static_select"
    [picker] = elements(card, kind)
    assert picker["action_id"] == ids.ACTION_MULTI_LABELS
    assert "initial_options" not in picker  # the guess is not preset: it is on the context line
    options = picker.get("options") or [o for g in picker["option_groups"] for o in g["options"]]
    names = project.label_names
    assert [ids.parse_label_option(o["value"]).label(names) for o in options] == list(names)
    buttons = {e["text"]["text"]: e for e in elements(card, "button")}
    described = {"Guidelines"} if n_labels > 1 else set()  # make_labels describes label 1 on, not label 0
    assert set(buttons) == {"Submit", "None of these", "Skip", "Show similar"} | described
    for name in ("Submit", "None of these", "Skip"):
        ref = ids.parse_record_value(buttons[name]["value"])
        assert (ref.project_id, ref.record_id) == (project.id, 1234) and ref.matches(project.name)
    assert buttons["Submit"]["action_id"] == ids.ACTION_MULTI_SUBMIT
    assert buttons["None of these"]["action_id"] == ids.ACTION_MULTI_NONE
    assert elements(card, "static_select") == []  # no single-label controls
    assert "Guess: *label_0, label_1* (72%)" in all_text(card)
    assert "Why this record: uncertain between &lt;a&gt; and b&amp;c" in all_text(card)


def test_a_single_label_card_is_unchanged_by_the_flag() -> None:
    card = bk.label_card(make_project(3), make_record(), nonce="n1")
    assert elements(card, "checkboxes") == [] and "Submit" not in all_text(card)


@pytest.mark.parametrize(("guess", "shown"), [(None, "No model yet"), ("", "Guess: *none of these* (40%)"),
                                              ("<b>|a&c", "Guess: *&lt;b&gt;, a&amp;c* (40%)")])
def test_the_guess_line_reads_the_set(guess: str | None, shown: str) -> None:
    card = bk.label_card(multi_project(3), make_record(guess=guess, confidence=0.4), nonce="n1")
    assert shown in all_text(card)


@pytest.mark.parametrize(("label", "shown"), [("label_0|label_2", "*label_0, label_2*"),
                                              ("", "*none of these*"), ("<!channel>", "*&lt;!channel&gt;*")])
def test_the_answered_card_shows_the_chosen_set(label: str, shown: str) -> None:
    project = multi_project(3)
    card = bk.answered_card(project, make_record(), label=label, user_id="U012ABC", nonce="n2", complete=True)
    assert bk.message_problems(card) == []
    assert f"✅ Labeled {shown} by <@U012ABC>" in all_text(card)
    assert [e["text"]["text"] for e in elements(card, "button")] == ["Undo"]
    # The single-label card shows the stored text as it is, "|" and all.
    single = bk.answered_card(make_project(3), make_record(), label="a|b", user_id="U012ABC", nonce="n2",
                              complete=True)
    assert "Labeled *a|b*" in all_text(single)


def state_of(card: dict, ticked: list[str]) -> dict:
    """The ``state.values`` Slack sends with a click on ``card`` after the labels ``ticked`` were ticked."""
    [block] = [b for b in card["blocks"] if b["type"] == "actions"
               and b["elements"][0]["action_id"] == ids.ACTION_MULTI_LABELS]
    picker = block["elements"][0]
    options = picker.get("options") or [o for g in picker["option_groups"] for o in g["options"]]
    chosen = [o for o in options if o["text"]["text"] in ticked]
    entry = {"type": picker["type"], "selected_options": chosen}
    return {block["block_id"]: {ids.ACTION_MULTI_LABELS: entry},
            "other.block": {"x": {"type": "static_select", "selected_option": None}}}


@pytest.mark.parametrize("n_labels", [4, 30])
def test_ticked_labels_reads_the_cards_state(n_labels: int) -> None:
    project = multi_project(n_labels)
    card = bk.label_card(project, make_record(), nonce="n1")
    state = state_of(card, ["label_0", "label_2"])
    assert [o.label(project.label_names) for o in bk.ticked_labels(state)] == ["label_0", "label_2"]
    assert bk.ticked_labels(state_of(card, [])) == []
    assert bk.ticked_labels({}) == []


@pytest.mark.parametrize("state", [
    [], {"card.lbl.n1": []}, {"card.lbl.n1": {ids.ACTION_MULTI_LABELS: {"selected_options": "x"}}},
    {"card.lbl.n1": {ids.ACTION_MULTI_LABELS: {"selected_options": [{"value": "l1:forged"}]}}},
    {"card.lbl.n1": {ids.ACTION_MULTI_LABELS: {"selected_options": ["o1:0:00000000"]}}},
])
def test_ticked_labels_refuses_a_malformed_state(state: object) -> None:
    with pytest.raises(ValueError):
        bk.ticked_labels(state)


def test_a_ticked_label_that_was_renamed_is_stale() -> None:
    project = multi_project(3)
    [option] = bk.ticked_labels(state_of(bk.label_card(project, make_record(), nonce="n1"), ["label_1"]))
    with pytest.raises(ValueError, match="labels changed"):
        option.label(("label_0", "renamed", "label_2"))


@pytest.mark.parametrize("n_labels", [3, 10, 11, 120])
def test_the_similar_modal_of_a_multi_label_project_applies_a_set(n_labels: int) -> None:
    project = multi_project(n_labels)
    results = make_results(12)
    results[0] = replace(results[0], label="label_0|label_1")
    results[1] = replace(results[1], predicted_label="", confidence=0.9)
    view = bk.similar_modal(project, make_record(guess="label_1|label_2"), None, results)
    assert bk.view_problems(view) == []
    [block] = [b for b in view["blocks"] if b.get("block_id") == ids.BLOCK_SIMILAR_LABEL]
    picker = block["element"]
    assert picker["type"] == ("checkboxes" if n_labels <= 10 else "multi_static_select")
    assert picker["action_id"] == ids.ACTION_SIMILAR_LABEL
    # The source's guessed set is preset here: the person ticks the records, then checks the labels.
    assert [o["text"]["text"] for o in picker["initial_options"]] == ["label_1", "label_2"]
    assert view["submit"]["text"] == "Apply labels"
    shown = "\n".join(t["text"] for t in text_objects(view["blocks"]))
    assert "labeled *label_0, label_1*" in shown and "model guess: *none of these* (90%)" in shown
    # What Slack sends back: the ticked set.
    chosen = [o for o in picker.get("options") or [o for g in picker["option_groups"] for o in g["options"]]
              if o["text"]["text"] in ("label_0", "label_2")]
    values = {ids.BLOCK_SIMILAR_LABEL: {ids.ACTION_SIMILAR_LABEL: {"selected_options": chosen}}}
    assert bk.parse_similar_label_set(values, project.label_names) == ["label_0", "label_2"]
    assert bk.parse_similar_label_set({}, project.label_names) == []
    with pytest.raises(ValueError):
        bk.parse_similar_label_set(values, ("x", "y", "z"))

