"""Review in multi-label projects (issue 13): a record is in review when any label's yes/no is a tie; the
review card shows the answers as sets and takes the gold set from checkboxes + Submit gold."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot import blocks, ids
from bot.standin.signing import action_from_blocks
from core.io import ImportRow
from core.service import LabelingService
from core.types import ReviewItem
from tests.slack_harness import ADMIN, ALICE, BOB, SlackHarness, start_harness
from tests.test_bot import annotations, texts_of

LABELS = ["billing", "urgent", "refund"]


def _split_project(service: LabelingService) -> list[int]:
    """k = 2; r0: alice {billing, urgent}, bob {billing} (a tie on urgent); r1: both {refund}."""
    service.create_project("p", LABELS, answers_per_record=2, multi_label=True)
    service.import_rows("p", [ImportRow(i + 2, f"r{i}", f"text {i}") for i in range(3)])
    return _split_project_answers(service)


def test_a_tie_on_one_label_is_in_review_and_the_gold_set_settles_it(service: LabelingService) -> None:
    ids_ = _split_project(service)
    [item] = service.review_queue("p")
    assert item.record_id == ids_[0] and item.kind == "tie"
    assert "split on urgent" in item.reason and "billing, urgent 1; billing 1" in item.reason
    assert sorted(item.answers) == [(ALICE, "billing|urgent"), (BOB, "billing")]
    service.record_answer("p", ids_[0], ADMIN, {"urgent", "billing"}, source="review")
    assert service.review_queue("p") == []
    assert service.final_labels("p") == {"r0": "billing|urgent", "r1": "refund"}


def _elements(message: dict) -> dict[str, dict]:
    return {e["action_id"]: e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]}


def test_review_card_shows_sets_and_offers_checkboxes_and_submit_gold(service: LabelingService) -> None:
    info = service.create_project("p", LABELS, multi_label=True)
    item = ReviewItem(project="p", record_id=5, external_id="r5", text="charged twice, fix today",
                      kind="tie", reason="The answers are split on urgent.", label="billing",
                      answers=((ALICE, "billing|urgent"), (BOB, "")), suggested_label="billing|urgent",
                      confidence=0.7)
    card = blocks.review_card(info, item, nonce="n1")
    assert blocks.message_problems(card) == []
    shown = texts_of(card)
    assert "*billing, urgent*" in shown and "*none of these*" in shown and "billing|urgent" not in shown
    elements = _elements(card)
    picker = elements[ids.ACTION_REVIEW_LABELS]
    assert picker["type"] == "checkboxes" and [o["text"]["text"] for o in picker["options"]] == LABELS
    assert "initial_options" not in picker
    assert elements[ids.ACTION_REVIEW_SUBMIT]["text"]["text"] == "Submit gold"
    assert elements[ids.ACTION_REVIEW_NONE]["text"]["text"] == "None of these"
    ref = ids.parse_record_value(elements[ids.ACTION_REVIEW_SUBMIT]["value"])
    assert (ref.project_id, ref.record_id) == (info.id, 5)
    assert not any(a.startswith(ids.ACTION_REVIEW_CHOICE) for a in elements)  # no single-label buttons
    record = service.get_project("p")
    done = blocks.reviewed_card(record, _record(item), label="billing|refund", user_id=ADMIN, nonce="n2")
    assert blocks.message_problems(done) == []
    assert "Gold labels *billing, refund*" in texts_of(done)
    ticked = _elements(done)[ids.ACTION_REVIEW_LABELS]["initial_options"]
    assert [o["text"]["text"] for o in ticked] == ["billing", "refund"]


def _record(item: ReviewItem):  # type: ignore[no-untyped-def]
    from core.types import RecordView

    return RecordView(project=item.project, record_id=item.record_id, external_id=item.external_id,
                      text=item.text)


# ---------------------------------------------------------------------------- through the harness


@pytest.fixture
def h(tmp_path: Path) -> Iterator[SlackHarness]:
    harness = start_harness(tmp_path, project="")
    harness.service.create_project("p", LABELS, answers_per_record=2, multi_label=True)
    harness.service.import_rows("p", [ImportRow(i + 2, f"r{i}", f"text {i}") for i in range(3)])
    yield harness
    harness.close()


def _review_cards(h: SlackHarness, user: str) -> list[dict]:
    return [m for m in h.dm_messages(user) if ids.ACTION_REVIEW_SUBMIT in _elements(m)]


def _press(h: SlackHarness, user: str, card: dict, names: list[str], action_id: str) -> int:
    """Tick ``names`` on a review card, then press ``action_id`` with the state Slack sends."""
    [(block_id, picker)] = [(b["block_id"], e) for b in card["blocks"] if b["type"] == "actions"
                            for e in b["elements"] if e["action_id"] == ids.ACTION_REVIEW_LABELS]
    chosen = [o for o in picker["options"] if o["text"]["text"] in names]
    state = {block_id: {ids.ACTION_REVIEW_LABELS: {"type": picker["type"], "selected_options": chosen}}}
    tick = {"action_id": ids.ACTION_REVIEW_LABELS, "block_id": block_id, "type": picker["type"],
            "selected_options": chosen}
    assert h.sender.block_actions(user, [tick], channel_id=h.dm(user), message=card,
                                  state_values=state).status == 200
    action = action_from_blocks(card, action_id, value=_elements(card)[action_id]["value"])
    return h.sender.block_actions(user, [action], channel_id=h.dm(user), message=card,
                                  state_values=state).status


def test_admin_picks_the_gold_set_on_a_review_card_end_to_end(h: SlackHarness) -> None:
    record_ids = _split_project_answers(h.service)
    h.command("review", user=ADMIN)
    h.standin.wait_until(lambda: len(_review_cards(h, ADMIN)) == 1)
    [card] = _review_cards(h, ADMIN)
    assert blocks.message_problems(card) == []
    assert "*billing, urgent*" in texts_of(card) and "split on urgent" in texts_of(card)
    # A forged click by a labeler writes nothing.
    assert _press(h, BOB, card, ["billing"], ids.ACTION_REVIEW_SUBMIT) == 200
    h.standin.wait_until(lambda: "Only labelbot admins" in texts_of(h.standin.ephemerals(user=BOB)))
    assert [a for a in annotations(h) if a[3] == "review"] == []
    # Nothing ticked: one line, nothing stored.
    assert _press(h, ADMIN, card, [], ids.ACTION_REVIEW_SUBMIT) == 200
    h.standin.wait_until(lambda: "before Submit gold" in texts_of(h.standin.ephemerals(user=ADMIN)))
    assert [a for a in annotations(h) if a[3] == "review"] == []
    assert _press(h, ADMIN, card, ["urgent", "billing"], ids.ACTION_REVIEW_SUBMIT) == 200
    h.standin.wait_until(lambda: any(a[3] == "review" for a in annotations(h)))
    gold = [a for a in annotations(h) if a[3] == "review"]
    assert gold == [(record_ids[0], ADMIN, "billing|urgent", "review")]
    decided = "Gold labels *billing, urgent*"
    h.standin.wait_until(lambda: any(decided in texts_of(m) for m in h.dm_messages(ADMIN)))
    updated = next(m for m in h.dm_messages(ADMIN) if decided in texts_of(m))
    assert updated["ts"] == card["ts"]
    # Changed to none of these from the decided card.
    assert _press(h, ADMIN, updated, ["urgent"], ids.ACTION_REVIEW_NONE) == 200
    h.standin.wait_until(lambda: [a[2] for a in annotations(h) if a[3] == "review"] == [""])
    assert h.service.final_labels("p")["r0"] == ""
    assert h.service.review_queue("p") == []


def _split_project_answers(service: LabelingService) -> list[int]:
    ids_ = [service.find_record("p", f"r{i}").record_id for i in range(3)]
    service.record_answer("p", ids_[0], ALICE, {"billing", "urgent"})
    service.record_answer("p", ids_[0], BOB, {"billing"})
    service.record_answer("p", ids_[1], ALICE, {"refund"})
    service.record_answer("p", ids_[1], BOB, {"refund"})
    return ids_
