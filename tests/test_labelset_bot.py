"""Guidelines and label-set edits through the signed-request harness: the Guidelines modal from a card
and from Show similar, `/label guide` (anyone reads, admins set), `/label labels`, and a card sent
before a rename going stale cleanly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot import blocks, ids
from bot.standin.signing import action_from_blocks
from core.types import LabelDef
from tests.slack_harness import ADMIN, ALICE, BOB, SlackHarness, start_harness
from tests.test_bot import TEXTS, annotations, first_card, texts_of

SPAM = LabelDef("spam", "Unsolicited offers and prizes", ("win a free cruise", "claim your reward now"))


@pytest.fixture
def h(tmp_path: Path) -> Iterator[SlackHarness]:
    harness = start_harness(tmp_path, labels=[SPAM, "ham"], texts=TEXTS)
    yield harness
    harness.close()


def _reply(h: SlackHarness, *, count: int) -> str:
    h.standin.wait_until(lambda: len(h.standin.responses) >= count)
    return texts_of(h.standin.responses[count - 1]["payload"])


def _has_guidelines_button(message: dict) -> bool:
    return any(e.get("action_id") == ids.ACTION_GUIDELINES for _, e in _elements(message["blocks"]))


def _elements(blocks_: list[dict]) -> Iterator[tuple[dict, dict]]:
    for block in blocks_:
        for element in block.get("elements", []) if block["type"] == "actions" else []:
            yield block, element
        if "accessory" in block:
            yield block, block["accessory"]


def test_the_guidelines_modal_opens_from_a_card(h: SlackHarness) -> None:
    card = first_card(h)
    assert _has_guidelines_button(card) and blocks.message_problems(card) == []
    h.click(ALICE, card, ids.ACTION_GUIDELINES)
    h.standin.wait_for("views.open")
    view = h.standin.modal_stack(ALICE)[-1]
    assert view["callback_id"] == ids.CALLBACK_GUIDELINES_MODAL
    shown = texts_of(view["blocks"])
    assert "Unsolicited offers and prizes" in shown and "win a free cruise" in shown
    assert "*ham*" in shown and "No description yet" in shown
    assert annotations(h) == []  # reading the guidelines stores nothing


def test_show_similar_links_to_the_guidelines(h: SlackHarness) -> None:
    card = first_card(h)
    h.click(ALICE, card, ids.ACTION_SHOW_SIMILAR)
    h.standin.wait_for("views.open")
    similar = h.standin.modal_stack(ALICE)[-1]
    assert similar["callback_id"] == ids.CALLBACK_SIMILAR_MODAL
    h.sender.block_actions(ALICE, [action_from_blocks(similar, ids.ACTION_GUIDELINES)], view=similar)
    h.standin.wait_for("views.push")
    stack = h.standin.modal_stack(ALICE)
    assert [v["callback_id"] for v in stack] == [ids.CALLBACK_SIMILAR_MODAL, ids.CALLBACK_GUIDELINES_MODAL]
    assert "claim your reward now" in texts_of(stack[-1]["blocks"])


def test_cards_of_a_project_without_guidelines_have_no_button(tmp_path: Path) -> None:
    harness = start_harness(tmp_path, texts=TEXTS)
    try:
        card = first_card(harness)
        assert not _has_guidelines_button(card)
    finally:
        harness.close()


def test_anyone_reads_the_guidelines_and_only_admins_set_them(h: SlackHarness) -> None:
    h.command("guide", user=BOB)
    shown = _reply(h, count=1)
    assert "Unsolicited offers and prizes" in shown and "claim your reward now" in shown
    h.command("guide ham Messages from people you know", user=BOB)
    assert "setting guidelines is for labelbot admins" in _reply(h, count=2)
    assert h.service.get_project("demo").labels[1] == LabelDef("ham")
    h.command(
        "guide ham Messages from people you know. Examples: see you at six; thanks for dinner", user=ADMIN
    )
    assert "Set the description and 2 examples of ham" in _reply(h, count=3)
    assert h.service.get_project("demo").labels[1] == LabelDef(
        "ham", "Messages from people you know.", ("see you at six", "thanks for dinner")
    )
    h.command("guide eggs what it means", user=ADMIN)
    assert "Start with one of demo's labels (spam, ham)" in _reply(h, count=4)


def test_a_guideline_change_leaves_cards_working(h: SlackHarness) -> None:
    card = first_card(h)
    h.command("guide spam Anything selling something", user=ADMIN)
    _reply(h, count=2)
    assert h.click_label(ALICE, card, "spam").status == 200
    h.standin.wait_until(lambda: len(annotations(h)) == 1)
    assert annotations(h)[0][1:3] == (ALICE, "spam")


def test_a_card_sent_before_a_rename_is_stale_and_stores_nothing(h: SlackHarness) -> None:
    card = first_card(h)
    h.command("labels rename spam junk", user=ADMIN)
    assert "Renamed 'spam' to 'junk' in demo" in _reply(h, count=2)
    assert h.service.get_project("demo").label_names == ("junk", "ham")
    assert h.click_label(ALICE, card, "spam").status == 200
    h.standin.wait_until(lambda: any("label set changed" in texts_of(m) for m in h.dm_messages(ALICE)))
    stale = next(m for m in h.dm_messages(ALICE) if "label set changed" in texts_of(m))
    assert "Traceback" not in texts_of(stale) and not any(True for _ in _elements(stale["blocks"]))
    assert annotations(h) == []
    # A new card offers the new name and takes answers.
    fresh = first_card(h, BOB)
    assert h.click_label(BOB, fresh, "junk").status == 200
    h.standin.wait_until(lambda: len(annotations(h)) == 1)
    assert annotations(h)[0][1:3] == (BOB, "junk")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("labels", "demo's labels: spam, ham"),
        ("labels merge spam into spam", "Cannot merge 'spam' into itself"),
        ("labels retire ham", "needs at least 2 active labels"),
        ("labels rename spam ham", "already has a label 'ham'"),
        ("labels rename spam", "Use `/label labels add NAME"),
        ("labels add “late fee” Charges for paying late", "Added label 'late fee' to demo"),
    ],
)
def test_label_edits_from_slack_answer_in_one_line(h: SlackHarness, text: str, says: str) -> None:
    h.command(text, user=ADMIN)
    reply = _reply(h, count=1)
    assert says in reply and "\n" not in reply.strip()


def test_a_non_admin_cannot_edit_the_label_set(h: SlackHarness) -> None:
    h.command("labels add eggs", user=BOB)
    assert "is for labelbot admins" in _reply(h, count=1)
    assert h.service.get_project("demo").label_names == ("spam", "ham")
