"""Multi-label cards in Slack: the listener called directly (tests/test_listeners.py style) and the real
App through the signed-request harness (Submit, "None of these", a tick, an empty Submit, a card sent
before a rename, Show similar applying a set)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from unittest.mock import Mock

import pytest
from slack_bolt import BoltContext

from bot import blocks, ids
from bot.listeners import actions, views
from bot.listeners import multilabel as listener
from bot.standin.signing import action_from_blocks
from core.embeddings import HashingEmbedder
from core.io import ImportRow
from core.service import LabelingService
from tests.conftest import make_settings
from tests.slack_harness import ALICE, BOB, SlackHarness, start_harness
from tests.test_bot import annotations, first_card, texts_of
from tests.test_listeners import (
    DM,
    card_update,
    click_body,
    fake_ack,
    make_labeling,
    stored,
    watching_ack,
)

LABELS = ["billing", "urgent", "bug", "praise"]
TEXTS = [
    "I was charged twice this month, please fix it today",
    "The app crashes when I open settings",
    "Love the new dashboard, great work",
    "Refund my subscription, the export is broken",
    "Where can I download my invoice?",
    "Your support team was very helpful",
    "Login fails with error 500 since this morning",
    "Can I change the card I pay with?",
]


def make_service(tmp_path: Path) -> LabelingService:
    service = LabelingService(make_settings(tmp_path), embedder=HashingEmbedder(64))
    service.create_project("tickets", LABELS, multi_label=True)
    service.import_rows("tickets", [ImportRow(line=i + 2, external_id=str(i), text=t)
                                    for i, t in enumerate(TEXTS)])
    return service


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[LabelingService]:
    service = make_service(tmp_path)
    yield service
    service.close()


@pytest.fixture
def client() -> Mock:
    from slack_sdk import WebClient

    client = Mock(WebClient)
    client.conversations_open.side_effect = lambda users: {"ok": True, "channel": {"id": DM[users]}}
    return client


@pytest.fixture
def context(svc: LabelingService, client: Mock) -> BoltContext:
    return BoltContext({"labeling": make_labeling(svc, client)})


def card_of(service: LabelingService, user: str = ALICE) -> tuple[int, dict]:
    [record] = service.next_records("tickets", user, 1)
    return record.record_id, blocks.label_card(service.get_project("tickets"), record, nonce="n1")


def ticked_state(card: dict, names: list[str]) -> dict:
    """``state.values`` of the card as Slack sends it once ``names`` are ticked."""
    for block in card["blocks"]:
        for element in block.get("elements", []) if block["type"] == "actions" else []:
            if element["action_id"] == ids.ACTION_MULTI_LABELS:
                chosen = [o for o in element["options"] if o["text"]["text"] in names]
                return {block["block_id"]: {ids.ACTION_MULTI_LABELS: {"type": element["type"],
                                                                        "selected_options": chosen}}}
    raise LookupError("no labels on the card")


def press(
    svc_context: BoltContext, client: Mock, card: dict, action_id: str, ticked: list[str], *,
    ack: Mock | None = None,
) -> Mock:
    """Submit or None of these on ``card`` with ``ticked`` ticked, through the listener as bolt calls it."""
    ack = ack or fake_ack()
    body = dict(click_body(), state={"values": ticked_state(card, ticked)})
    value = next(e["value"] for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]
                 if e.get("action_id") == action_id)
    fn = listener.on_submit if action_id == ids.ACTION_MULTI_SUBMIT else listener.on_none
    fn(ack=ack, body=body, action=action_from_blocks(card, action_id, value=value), client=client,
       context=svc_context)
    return ack


# ------------------------------------------------------------------------------------- the listener


def test_submit_stores_the_ticked_set_before_the_ack_then_answers_the_card(
    svc: LabelingService, context: BoltContext, client: Mock
) -> None:
    record_id, card = card_of(svc)
    ack, seen = watching_ack(client, lambda: stored(svc))
    press(context, client, card, ids.ACTION_MULTI_SUBMIT, ["bug", "billing"], ack=ack)
    ack.assert_called_once_with()
    # Stored in the project's label order, "|"-joined, before Slack got its 200 and before any card went.
    assert seen == [({(record_id, ALICE, "billing|bug", "slack")}, [])]
    update = card_update(client)
    assert f"Labeled *billing, bug* by <@{ALICE}>" in texts_of(update)
    client.chat_postMessage.assert_called_once()  # the next card
    following = client.chat_postMessage.call_args.kwargs
    assert blocks.message_problems(following) == [] and "Submit" in texts_of(following)


def test_undo_after_submit_brings_the_checkboxes_back(
    svc: LabelingService, context: BoltContext, client: Mock
) -> None:
    record_id, card = card_of(svc)
    press(context, client, card, ids.ACTION_MULTI_SUBMIT, ["praise"])
    answered = card_update(client)
    client.chat_update.reset_mock()
    undo = next(e for b in answered["blocks"] if b["type"] == "actions" for e in b["elements"])
    ack = fake_ack()
    actions.on_undo(ack=ack, body=click_body(), action=action_from_blocks(answered, undo["action_id"],
                    value=undo["value"]), client=client, context=context)
    ack.assert_called_once_with()
    assert stored(svc) == set()
    restored = card_update(client)
    assert "Submit" in texts_of(restored) and "None of these" in texts_of(restored)
    [picker] = [e for b in restored["blocks"] if b["type"] == "actions" for e in b["elements"]
                if e["action_id"] == ids.ACTION_MULTI_LABELS]
    assert [o["text"]["text"] for o in picker["options"]] == LABELS and "initial_options" not in picker
    assert ids.parse_record_value(undo["value"]).record_id == record_id


def test_none_of_these_stores_the_empty_set_whatever_is_ticked(
    svc: LabelingService, context: BoltContext, client: Mock
) -> None:
    record_id, card = card_of(svc)
    press(context, client, card, ids.ACTION_MULTI_NONE, ["urgent"])
    assert stored(svc) == {(record_id, ALICE, "", "slack")}
    assert f"Labeled *none of these* by <@{ALICE}>" in texts_of(card_update(client))


def test_submit_with_nothing_ticked_stores_nothing_and_says_what_to_do(
    svc: LabelingService, context: BoltContext, client: Mock
) -> None:
    _, card = card_of(svc)
    ack = press(context, client, card, ids.ACTION_MULTI_SUBMIT, [])
    ack.assert_called_once_with()
    assert stored(svc) == set()
    client.chat_update.assert_not_called()  # the card keeps its ticks and buttons
    client.chat_postEphemeral.assert_called_once()
    said = client.chat_postEphemeral.call_args.kwargs
    assert (said["channel"], said["user"]) == (DM[ALICE], ALICE) and said["text"] == listener.NOTHING_TICKED


def test_a_card_sent_before_a_rename_is_stale_with_nothing_stored(
    svc: LabelingService, context: BoltContext, client: Mock
) -> None:
    _, card = card_of(svc)  # sent while "bug" is "bug"
    svc.edit_labels("tickets", "rename", "bug", "defect")
    press(context, client, card, ids.ACTION_MULTI_SUBMIT, ["bug"])
    assert stored(svc) == set()
    update = card_update(client)
    assert "label set changed" in texts_of(update)
    assert not [b for b in update["blocks"] if b["type"] == "actions"]
    client.chat_postMessage.assert_not_called()


def test_a_card_sent_before_a_label_was_added_still_takes_answers(
    svc: LabelingService, context: BoltContext, client: Mock
) -> None:
    record_id, card = card_of(svc)
    svc.edit_labels("tickets", "add", "refund")
    press(context, client, card, ids.ACTION_MULTI_SUBMIT, ["praise", "urgent"])
    assert stored(svc) == {(record_id, ALICE, "urgent|praise", "slack")}
    assert "Labeled *urgent, praise*" in texts_of(card_update(client))


def test_a_forged_submit_value_is_stale(svc: LabelingService, context: BoltContext, client: Mock) -> None:
    _, card = card_of(svc)
    ack = fake_ack()
    body = dict(click_body(), state={"values": ticked_state(card, ["bug"])})
    listener.on_submit(ack=ack, body=body, action={"action_id": ids.ACTION_MULTI_SUBMIT, "value": "r1:x"},
                       client=client, context=context)
    ack.assert_called_once_with()
    assert stored(svc) == set() and "out of date" in texts_of(card_update(client))


def test_a_tick_is_only_acked() -> None:
    ack = fake_ack()
    listener.on_tick(ack=ack)
    ack.assert_called_once_with()


def test_the_listeners_are_registered_before_the_catch_all(tmp_path: Path) -> None:
    from slack_bolt import App

    from bot.listeners import register

    app = App(token="xoxb-x", signing_secret="s", token_verification_enabled=False)
    register(app)
    names = [lst.ack_function.__name__ for lst in app._listeners]
    assert {"on_submit", "on_none", "on_tick"} <= set(names)
    assert names.index("on_tick") < names.index("on_unknown_action")


def test_bulk_label_of_a_multi_label_project_applies_the_ticked_set(
    svc: LabelingService, context: BoltContext, client: Mock
) -> None:
    project = svc.get_project("tickets")
    [record] = svc.next_records("tickets", ALICE, 1)
    results = svc.similar("tickets", record_id=record.record_id, k=3)
    view = blocks.similar_modal(project, record, None, results)
    picker = next(b for b in view["blocks"] if b.get("block_id") == ids.BLOCK_SIMILAR_LABEL)["element"]
    chosen = [o for o in picker["options"] if o["text"]["text"] in ("urgent", "praise")]
    ticked = [ids.encode_record_option(r.record_id) for r in results[:2]]
    values = {
        ids.similar_records_block_id(0): {ids.ACTION_SIMILAR_RECORDS: {"selected_options": [
            {"value": v} for v in ticked]}},
        ids.BLOCK_SIMILAR_LABEL: {ids.ACTION_SIMILAR_LABEL: {"selected_options": chosen}},
    }
    ack = fake_ack()
    views.on_bulk_label(ack=ack, body={"user": {"id": ALICE}},
                        view={**view, "state": {"values": values}}, client=client, context=context)
    ack.assert_called_once_with()
    assert stored(svc) == {(r.record_id, ALICE, "urgent|praise", "slack") for r in results[:2]}
    assert "as urgent, praise" in client.chat_postMessage.call_args.kwargs["text"]
    # Nothing ticked among the labels: the form says so, and nothing more is stored.
    values[ids.BLOCK_SIMILAR_LABEL][ids.ACTION_SIMILAR_LABEL]["selected_options"] = []
    ack = fake_ack()
    views.on_bulk_label(ack=ack, body={"user": {"id": BOB}},
                        view={**view, "state": {"values": values}}, client=client, context=context)
    assert ack.call_args.kwargs["response_action"] == "errors"
    assert len(stored(svc)) == 2


# ---------------------------------------------------------------------------- through the harness


@pytest.fixture
def h(tmp_path: Path) -> Iterator[SlackHarness]:
    harness = start_harness(tmp_path, project="")
    harness.service.create_project("tickets", LABELS, multi_label=True)
    harness.service.import_rows("tickets", [ImportRow(line=i + 2, external_id=str(i), text=t)
                                            for i, t in enumerate(TEXTS)])
    yield harness
    harness.close()


def tick_and_press(h: SlackHarness, user: str, card: dict, names: list[str], action_id: str) -> int:
    """Tick ``names`` one by one (Slack sends a block_actions per tick), then press ``action_id``
    with the card's state as Slack sends it; the HTTP statuses of every request, all 200 or the first
    that is not."""
    [block_id] = ticked_state(card, [])
    for name in names:
        state = ticked_state(card, names[: names.index(name) + 1])
        tick = {"action_id": ids.ACTION_MULTI_LABELS, "block_id": block_id, "type": "checkboxes",
                "selected_options": state[block_id][ids.ACTION_MULTI_LABELS]["selected_options"]}
        answer = h.sender.block_actions(user, [tick], channel_id=h.dm(user), message=card, state_values=state)
        if answer.status != 200:
            return answer.status
    value = next(e["value"] for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]
                 if e.get("action_id") == action_id)
    action = action_from_blocks(card, action_id, value=value)
    return h.sender.block_actions(user, [action], channel_id=h.dm(user), message=card,
                                  state_values=state).status


def test_submit_and_none_of_these_end_to_end(h: SlackHarness) -> None:
    card = first_card(h)
    assert blocks.message_problems(card) == [] and "Submit" in texts_of(card)
    shown = "Labeled *billing, urgent*"
    assert tick_and_press(h, ALICE, card, ["urgent", "billing"], ids.ACTION_MULTI_SUBMIT) == 200
    h.standin.wait_until(lambda: len(annotations(h)) == 1)
    assert annotations(h)[0][1:3] == (ALICE, "billing|urgent")
    # The card shows the set, with Undo; the next card arrives.
    h.standin.wait_until(lambda: any(shown in texts_of(m) for m in h.dm_messages(ALICE)))
    answered = next(m for m in h.dm_messages(ALICE) if shown in texts_of(m))
    assert answered["ts"] == card["ts"] and "Undo" in texts_of(answered)
    assert "Submit" not in texts_of(answered)
    [second] = h.wait_for_cards(ALICE, 1)
    assert second["ts"] != card["ts"]
    assert tick_and_press(h, ALICE, second, ["bug"], ids.ACTION_MULTI_NONE) == 200
    h.standin.wait_until(lambda: len(annotations(h)) == 2)
    assert sorted(a[2] for a in annotations(h)) == ["", "billing|urgent"]
    h.standin.wait_until(lambda: any("Labeled *none of these*" in texts_of(m) for m in h.dm_messages(ALICE)))
    assert h.service.get_record("tickets", annotations(h)[0][0]).text in TEXTS


def test_a_card_sent_before_a_rename_goes_stale_end_to_end(h: SlackHarness) -> None:
    card = first_card(h)
    h.service.edit_labels("tickets", "rename", "bug", "defect")
    assert tick_and_press(h, ALICE, card, ["urgent", "bug"], ids.ACTION_MULTI_SUBMIT) == 200
    h.standin.wait_until(lambda: any("label set changed" in texts_of(m) for m in h.dm_messages(ALICE)))
    stale = next(m for m in h.dm_messages(ALICE) if "label set changed" in texts_of(m))
    assert stale["ts"] == card["ts"] and "Traceback" not in texts_of(stale)
    assert not [b for b in stale["blocks"] if b["type"] == "actions"]
    assert annotations(h) == []
    # A fresh card offers the current names and takes the set.
    fresh = first_card(h, BOB)
    assert tick_and_press(h, BOB, fresh, ["defect"], ids.ACTION_MULTI_SUBMIT) == 200
    h.standin.wait_until(lambda: len(annotations(h)) == 1)
    assert annotations(h)[0][1:3] == (BOB, "defect")
