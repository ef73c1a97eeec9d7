"""The real bolt App over HTTP on loopback, signed requests, and a Slack stand-in recording every call."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bot import blocks, ids
from bot.listeners import commands as command_listeners
from core.models import Annotation, Skip
from core.store import read_session
from tests.conftest import banking_labels, banking_rows
from tests.slack_harness import ADMIN, ALICE, BOB, CHANNEL, SlackHarness, start_harness

TEXTS = [
    "win a free prize now, click the link",
    "are we still meeting for lunch tomorrow",
    "urgent: your account won a cash prize",
    "can you send me the report tonight",
    "free entry in a weekly competition",
    "see you at the station at six",
    "claim your free ringtone now",
    "thanks for dinner yesterday",
]


def texts_of(obj: Any) -> str:
    """Every text string in a message or view, joined (what a person would read)."""
    if isinstance(obj, dict):
        return " ".join(texts_of(v) for k, v in obj.items() if k not in ("action_id", "block_id", "value"))
    if isinstance(obj, list):
        return " ".join(texts_of(v) for v in obj)
    return obj if isinstance(obj, str) else ""


def annotations(h: SlackHarness) -> list[tuple[int, str, str, str]]:
    with read_session(h.service.engine) as session:
        return [
            tuple(row)
            for row in session.execute(
                select(Annotation.record_id, Annotation.annotator, Annotation.label, Annotation.source)
            ).all()
        ]


@pytest.fixture
def h(tmp_path: Path) -> Iterator[SlackHarness]:
    harness = start_harness(tmp_path, texts=TEXTS)
    yield harness
    harness.close()


def first_card(h: SlackHarness, user: str = ALICE) -> dict:
    assert h.command("next", user=user).status == 200
    return h.wait_for_cards(user, 1)[0]


# ---------------------------------------------------------------- request verification


@pytest.mark.parametrize("signature", ["bad", "expired", "none"])
def test_unsigned_or_forged_requests_are_rejected_and_change_nothing(h: SlackHarness, signature: str) -> None:
    assert h.command("next", signature=signature).status == 401
    card = first_card(h, BOB)  # a genuine card, to forge a click on
    response = h.click(BOB, card, ids.label_choice_action_id(0), value=None, signature=signature)
    assert response.status == 401
    assert annotations(h) == []
    assert h.cards(ALICE) == []


# ---------------------------------------------------------------- cards


def test_label_next_sends_a_card_to_the_dm(h: SlackHarness) -> None:
    response = h.command("next 2")
    assert response.status == 200
    cards = h.wait_for_cards(ALICE, 2)
    assert all(texts_of(card).count("Skip") == 1 for card in cards)
    assert any(t in texts_of(cards[0]) for t in TEXTS)
    assert "demo" in texts_of(cards[0]["blocks"][0])
    h.standin.wait_for("response_url")
    assert "Sent you 2 cards" in texts_of(h.standin.responses[-1]["payload"])


def test_button_click_stores_answer_updates_card_and_sends_next(h: SlackHarness) -> None:
    card = first_card(h)
    assert h.click_label(ALICE, card, "spam").status == 200
    h.standin.wait_for("chat.update")
    updated = h.standin.message(h.dm(ALICE), card["ts"])
    assert "spam" in texts_of(updated) and f"<@{ALICE}>" in texts_of(updated)
    assert any(
        e.get("action_id") == ids.ACTION_UNDO for b in updated["blocks"] for e in b.get("elements", [])
    )
    assert {b["block_id"] for b in updated["blocks"]}.isdisjoint({b["block_id"] for b in card["blocks"]})
    [(_record_id, user, label, source)] = annotations(h)
    assert (user, label, source) == (ALICE, "spam", "slack")
    next_cards = h.wait_for_cards(ALICE, 1)
    assert next_cards[-1]["ts"] != card["ts"]


def test_double_delivery_of_a_click_stores_one_answer_and_one_next_card(h: SlackHarness) -> None:
    card = first_card(h)
    for _ in range(2):
        assert h.click_label(ALICE, card, "ham").status == 200
    h.standin.wait_until(lambda: len(h.standin.calls_to("chat.update")) == 2)
    h.standin.wait_until(lambda: len(h.dm_messages(ALICE)) >= 2)
    assert len(annotations(h)) == 1
    assert len(h.dm_messages(ALICE)) == 2  # the answered card and exactly one next card


def test_select_menu_answer_with_77_labels(tmp_path: Path) -> None:
    rows = banking_rows(40)
    harness = start_harness(tmp_path, labels=banking_labels(), texts=[r["text"] for r in rows])
    try:
        card = first_card(harness)
        selects = [e for b in card["blocks"] for e in b.get("elements", []) if e["type"] == "static_select"]
        assert len(selects) == 1 and len(selects[0]["options"]) == 77
        assert not any(
            e["type"] == "button" and e["text"]["text"] == "card_arrival"
            for b in card["blocks"]
            for e in b.get("elements", [])
        )
        harness.click_label(ALICE, card, "card_arrival")
        harness.standin.wait_for("chat.update")
        assert [a[2] for a in annotations(harness)] == ["card_arrival"]
    finally:
        harness.close()


def test_skip_marks_the_card_and_never_shows_it_again(h: SlackHarness) -> None:
    card = first_card(h)
    h.click(ALICE, card, ids.ACTION_SKIP)
    h.standin.wait_for("chat.update")
    assert "Skipped" in texts_of(h.standin.message(h.dm(ALICE), card["ts"]))
    with read_session(h.service.engine) as session:
        assert session.execute(select(func.count(Skip.id))).scalar_one() == 1
    skipped = ids.parse_record_value(
        next(e for b in card["blocks"] for e in b.get("elements", []) if e.get("action_id") == "skip")[
            "value"
        ]
    ).record_id
    offered = [r.record_id for r in h.service.next_records("demo", ALICE, 20)]
    assert skipped not in offered


def test_undo_restores_the_card_and_removes_the_answer(h: SlackHarness) -> None:
    card = first_card(h)
    h.click_label(ALICE, card, "spam")
    h.standin.wait_for("chat.update")
    answered = h.standin.message(h.dm(ALICE), card["ts"])
    h.click(ALICE, answered, ids.ACTION_UNDO)
    h.standin.wait_for("chat.update", count=2)
    restored = h.standin.message(h.dm(ALICE), card["ts"])
    assert annotations(h) == []
    assert any(
        e["text"]["text"] == "spam"
        for b in restored["blocks"]
        for e in b.get("elements", [])
        if e["type"] == "button"
    )
    # The restored card works again.
    h.click_label(ALICE, restored, "ham")
    h.standin.wait_for("chat.update", count=3)
    assert [a[2] for a in annotations(h)] == ["ham"]


def test_click_on_a_card_someone_else_completed_says_so_and_writes_nothing(h: SlackHarness) -> None:
    card = first_card(h)
    record_id = ids.parse_label_value(
        next(e for b in card["blocks"] for e in b.get("elements", []) if e["type"] == "button")["value"]
    ).record_id
    h.service.record_answer("demo", record_id, BOB, "ham")  # bob got there first (k = 1)
    h.click_label(ALICE, card, "spam")
    h.standin.wait_for("chat.update")
    stale = h.standin.message(h.dm(ALICE), card["ts"])
    assert "already has all the answers" in texts_of(stale)
    assert not any(b["type"] == "actions" for b in stale["blocks"])
    assert [(a[1], a[2]) for a in annotations(h)] == [(BOB, "ham")]


def test_click_on_a_card_of_a_deleted_project(h: SlackHarness) -> None:
    card = first_card(h)
    h.service.delete_project("demo")
    h.click_label(ALICE, card, "spam")
    h.standin.wait_for("chat.update")
    assert "no longer exists" in texts_of(h.standin.message(h.dm(ALICE), card["ts"]))
    assert annotations(h) == []


def test_record_text_is_escaped_so_it_never_pings(tmp_path: Path) -> None:
    harness = start_harness(tmp_path, texts=["<!channel> look at <https://evil.example|this> & that"])
    try:
        card = first_card(harness)
        shown = texts_of(card["blocks"])
        assert "&lt;!channel&gt;" in shown and "<!channel>" not in shown
        assert "<https://evil.example|this>" not in shown and "&amp; that" in shown
        assert "<!channel>" not in card["text"]
    finally:
        harness.close()


def test_rate_limited_post_is_retried_and_the_card_arrives_after_the_ack(h: SlackHarness) -> None:
    h.standin.fail_next("chat.postMessage", status=429, retry_after=1)
    response = h.command("next")
    assert response.status == 200
    # The ack came back while the card was still waiting out Retry-After.
    assert [c for c in h.standin.calls_to("chat.postMessage") if c.ok] == []
    cards = h.wait_for_cards(ALICE, 1)
    assert len(cards) == 1
    statuses = [c.status for c in h.standin.calls_to("chat.postMessage")]
    assert statuses == [429, 200]


def test_server_error_on_update_is_retried(h: SlackHarness) -> None:
    card = first_card(h)
    h.standin.fail_next("chat.update", status=500)
    h.click_label(ALICE, card, "spam")
    h.standin.wait_until(lambda: any(c.ok for c in h.standin.calls_to("chat.update")))
    assert [c.status for c in h.standin.calls_to("chat.update")] == [500, 200]


# ---------------------------------------------------------------- similar and search


def _submit_modal(h: SlackHarness, user: str, view: dict, record_ids: list[int], label: str | None) -> Any:
    state: dict[str, dict] = {}
    options = {}
    for block in view["blocks"]:
        element = block.get("element") or {}
        if element.get("type") == "checkboxes":
            chosen = [o for o in element["options"] if ids.parse_record_option(o["value"]) in record_ids]
            options[block["block_id"]] = chosen
            state[block["block_id"]] = {
                element["action_id"]: {"type": "checkboxes", "selected_options": chosen}
            }
        if element.get("type") == "static_select":
            all_options = element.get("options") or [
                o for g in element["option_groups"] for o in g["options"]
            ]
            chosen_label = [o for o in all_options if o["text"]["text"] == label]
            state[block["block_id"]] = {
                element["action_id"]: {
                    "type": "static_select",
                    "selected_option": chosen_label[0] if chosen_label else None,
                }
            }
    return h.sender.view_submission(user, view, state)


def test_show_similar_opens_a_modal_and_bulk_labels(h: SlackHarness) -> None:
    card = first_card(h)
    h.click(ALICE, card, ids.ACTION_SHOW_SIMILAR)
    h.standin.wait_for("views.open")
    view = h.standin.modal_stack(ALICE)[-1]
    assert view["callback_id"] == ids.CALLBACK_SIMILAR_MODAL
    listed = [
        ids.parse_record_option(o["value"])
        for b in view["blocks"]
        if (b.get("element") or {}).get("type") == "checkboxes"
        for o in b["element"]["options"]
    ]
    assert 5 <= len(listed) <= 8
    # No label chosen: an inline error, nothing written.
    response = _submit_modal(h, ALICE, view, listed[:2], None)
    assert response.body["response_action"] == "errors"
    assert ids.BLOCK_SIMILAR_LABEL in response.body["errors"]
    assert annotations(h) == []
    response = _submit_modal(h, ALICE, view, listed[:3], "spam")
    assert response.status == 200 and response.body == ""
    h.standin.wait_until(lambda: len(annotations(h)) == 3)
    assert sorted(a[0] for a in annotations(h)) == sorted(listed[:3])
    h.standin.wait_until(lambda: any("Labeled 3 records" in texts_of(m) for m in h.dm_messages(ALICE)))


def test_label_search_lists_nearest_records_with_bulk_label(h: SlackHarness) -> None:
    h.command("search free prize")
    h.standin.wait_for("views.open")
    view = h.standin.modal_stack(ALICE)[-1]
    assert view["callback_id"] == ids.CALLBACK_SEARCH_MODAL
    listed = [
        ids.parse_record_option(o["value"])
        for b in view["blocks"]
        if (b.get("element") or {}).get("type") == "checkboxes"
        for o in b["element"]["options"]
    ]
    # The nearest record is the only one with both words, listed and shown first.
    nearest = h.service.find_record("demo", "0")
    assert nearest.text == TEXTS[0] and listed[0] == nearest.record_id
    assert f"*1.* {TEXTS[0]}" in texts_of(view["blocks"])
    _submit_modal(h, ALICE, view, listed[:1], "spam")
    h.standin.wait_until(lambda: len(annotations(h)) == 1)
    assert annotations(h) == [(nearest.record_id, ALICE, "spam", "slack")]


# ---------------------------------------------------------------- status, leaderboard, admin


def _response_with(h: SlackHarness, header: str) -> dict:
    """The response_url answer whose text contains ``header``, once it arrived."""
    h.standin.wait_until(lambda: any(header in texts_of(r["payload"]) for r in h.standin.responses))
    return next(r for r in h.standin.responses if header in texts_of(r["payload"]))


def test_status_and_leaderboard_content(h: SlackHarness) -> None:
    answers = ((ALICE, "spam"), (ALICE, "ham"), (BOB, "spam"))
    for user, label in answers:
        record = h.service.next_records("demo", user, 1)[0]
        h.service.record_answer("demo", record.record_id, user, label)
    n, total = len(answers), len(TEXTS)  # one answer completes a record here (k = 1)
    h.command("status")
    # /label status answers twice (the status, then the trend and chart): pick the status itself.
    response = _response_with(h, "Status: demo")
    status = texts_of(response["payload"])
    assert f"*Progress:* {n} of {total} records labeled ({n / total:.1%})" in status
    assert f"{total - n} still need answers · {n} answers in all" in status
    assert "• spam — 2" in status and "• ham — 1" in status
    assert f"1. <@{ALICE}> — 2 answers" in status and f"2. <@{BOB}> — 1 answer" in status
    assert response["action"] == "ephemeral"
    h.command("leaderboard", user=BOB)
    response = _response_with(h, "Leaderboard: demo")
    board = texts_of(response["payload"])
    first, second = f"1. <@{ALICE}> — 2 answers", f"2. <@{BOB}> — 1 answer"
    assert first in board and second in board and board.index(first) < board.index(second)
    assert response["action"] == "ephemeral"


def test_unknown_subcommand_gets_help(h: SlackHarness) -> None:
    h.command("frobnicate")
    h.standin.wait_for("response_url")
    assert "/label next" in texts_of(h.standin.responses[-1]["payload"])


@pytest.mark.parametrize("sub", ["retrain", "export", "project other"])
def test_admin_commands_refuse_non_admins(h: SlackHarness, sub: str) -> None:
    # Enough for each command to have an effect: answers of both labels to retrain on, a second
    # project to rebind the channel to.
    for record, label in zip(h.service.next_records("demo", ALICE, 2), ["spam", "ham"], strict=True):
        h.service.record_answer("demo", record.record_id, ALICE, label)
    h.service.create_project("other", ["a", "b"])
    h.service.bind_context(CHANNEL, "demo")
    h.command(sub, user=BOB)
    h.standin.wait_for("response_url")
    assert "for labelbot admins" in texts_of(h.standin.responses[-1]["payload"])

    def acted() -> bool:  # what each command would do after (or instead of) the refusal
        return (
            len(h.standin.responses) > 1  # "Retraining…", "This channel now labels…"
            or bool(h.standin.calls_to("files.getUploadURLExternal"))  # the export's upload
            or h.service.default_project(CHANNEL) != "demo"
        )

    with pytest.raises(TimeoutError):  # the listener runs after the ack: give it time to misbehave
        h.standin.wait_until(acted, timeout=0.5)
    h.service.wait_for_retrains(timeout=30)
    assert h.service.run_history("demo") == []


def test_admin_export_uploads_a_csv(h: SlackHarness) -> None:
    record = h.service.next_records("demo", ALICE, 1)[0]
    h.service.record_answer("demo", record.record_id, ALICE, "spam")
    h.command("export", user=ADMIN)
    h.standin.wait_for("files.completeUploadExternal")
    [done] = h.standin.calls_to("files.completeUploadExternal")
    assert done.params["channel_id"] == CHANNEL
    [uploaded] = h.standin.files()
    rows = list(csv.DictReader(io.StringIO(h.standin.file_content(uploaded["id"]).decode("utf-8"))))
    assert len(rows) == len(TEXTS)
    assert [r["label"] for r in rows if r["label"]] == ["spam"]


def test_admin_project_binds_the_channel(tmp_path: Path) -> None:
    harness = start_harness(tmp_path, texts=TEXTS)
    try:
        harness.service.create_project("other", ["a", "b"])
        harness.command("next")
        harness.standin.wait_for("response_url")
        assert "several projects" in texts_of(harness.standin.responses[-1]["payload"])
        harness.command("project other", user=ADMIN)
        harness.standin.wait_for("response_url", count=2)
        assert harness.standin.responses[-1]["action"] == "in_channel"
        assert harness.service.default_project(CHANNEL) == "other"
    finally:
        harness.close()


def test_admin_retrain_runs_in_the_background(h: SlackHarness) -> None:
    for record, label in zip(
        h.service.next_records("demo", ALICE, 4), ["spam", "ham", "spam", "ham"], strict=True
    ):
        h.service.record_answer("demo", record.record_id, ALICE, label)
    h.command("retrain", user=ADMIN)
    h.standin.wait_for("response_url")
    assert "Retraining demo in the background" in texts_of(h.standin.responses[-1]["payload"])
    h.service.wait_for_retrains(timeout=30)
    [run] = h.service.run_history("demo")
    assert run.n_labels == 4


def test_app_home_shows_progress_and_start_button(h: SlackHarness) -> None:
    record = h.service.next_records("demo", ALICE, 1)[0]
    h.service.record_answer("demo", record.record_id, ALICE, "spam")
    assert h.sender.app_home_opened(ALICE).status == 200
    h.standin.wait_for("views.publish")
    home = h.standin.home_view(ALICE)
    shown = texts_of(home)
    assert "demo" in shown and "1 of 8" in shown
    h.sender.block_actions(ALICE, [blocks_action(home, ids.ACTION_START_LABELING)], view=home)
    assert len(h.wait_for_cards(ALICE, 1)) == 1


def blocks_action(view: dict, action_id: str) -> dict:
    from bot.standin.signing import action_from_blocks

    return action_from_blocks(view, action_id)


# ---------------------------------------------------------------- Block Kit validity end to end


@pytest.mark.parametrize("n_labels", [2, 10, 77, 150])
def test_cards_for_label_sets_of_every_size_are_valid_block_kit(tmp_path: Path, n_labels: int) -> None:
    labels = [f"label <{i}> & co" if i % 7 == 0 else f"label_{i}" for i in range(n_labels)]
    harness = start_harness(tmp_path, labels=labels, texts=TEXTS)
    try:
        card = first_card(harness)
        assert blocks.message_problems(card) == []
        # The stand-in validates like Slack: a rejected message would be a non-ok call.
        assert harness.standin.errors() == []
        harness.click_label(ALICE, card, labels[-1])
        harness.standin.wait_for("chat.update")
        assert [a[2] for a in annotations(harness)] == [labels[-1]]
        harness.click(ALICE, card, ids.ACTION_SHOW_SIMILAR)
        harness.standin.wait_for("views.open")
        assert blocks.view_problems(harness.standin.modal_stack(ALICE)[-1]) == []
        assert harness.standin.errors() == []
    finally:
        harness.close()


def test_subcommand_tables_have_help_entries() -> None:
    helped = texts_of(blocks.help_message(True))
    for name in [*command_listeners.SUBCOMMANDS, *command_listeners.ADMIN_SUBCOMMANDS]:
        assert f"/label {name}" in helped
