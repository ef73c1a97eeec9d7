"""Crowd labeling end to end: the real App over loopback HTTP, signed requests, the Slack stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot import blocks, ids
from tests.slack_harness import ADMIN, ALICE, BOB, CHANNEL, SlackHarness, start_harness
from tests.test_bot import annotations, texts_of
from tests.test_crowd import TEXTS, TRUTH

CAROL = "UCAROL"


@pytest.fixture
def h(tmp_path: Path) -> Iterator[SlackHarness]:
    harness = start_harness(tmp_path, texts=TEXTS, service_settings={"answers_per_record": 2})
    harness.standin.add_user(CAROL, "carol")
    yield harness
    harness.close()


def rid(h: SlackHarness, index: int) -> int:
    return h.service.find_record("demo", str(index)).record_id


def reply(h: SlackHarness, count: int) -> str:
    """The ``count``-th response_url answer (1-based): ``/label status`` sends a second one (the trend),
    so the latest may already be a later one."""
    h.standin.wait_for("response_url", count=count)
    return texts_of(h.standin.responses[count - 1]["payload"])


def review_cards(h: SlackHarness, user: str) -> list[dict]:
    return [
        m
        for m in h.dm_messages(user)
        if any(
            e.get("action_id", "").startswith(ids.ACTION_REVIEW_CHOICE)
            for b in m.get("blocks", [])
            for e in b.get("elements", [])
        )
    ]


def click_review(h: SlackHarness, user: str, card: dict, label: str):  # type: ignore[no-untyped-def]
    for block in card["blocks"]:
        for element in block.get("elements", []):
            if element.get("type") == "button" and element["text"]["text"] == label:
                return h.click(user, card, element["action_id"], value=element["value"])
    raise LookupError(label)


# ---------------------------------------------------------------- hidden answers


def test_bob_sees_alices_label_only_once_the_record_is_complete(h: SlackHarness) -> None:
    target = rid(h, 1)
    h.service.record_answer("demo", target, ALICE, "spam")  # k = 2: bob's answer is still needed
    h.command("search free prize claim today", user=BOB)
    h.standin.wait_for("views.open")
    search = texts_of(h.standin.modal_stack(BOB)[-1])
    assert TEXTS[1] in search and "labeled spam" not in search and "labeled *spam*" not in search
    # Bob's card for that record: no trace of alice's answer.
    cards = h.service.next_records("demo", BOB, len(TEXTS))
    [record] = [r for r in cards if r.record_id == target]
    card = blocks.label_card(h.service.get_project("demo"), record, nonce="n1")
    assert "spam" not in texts_of([b for b in card["blocks"] if b["type"] != "actions"]).replace(TEXTS[1], "")
    h.command("status", user=BOB)
    assert "*Progress:* 0 of 24 records labeled" in reply(h, 1)  # alice's answer alone completes nothing
    h.service.record_answer("demo", target, BOB, "spam")
    h.command("search free prize claim today", user=BOB)
    h.standin.wait_for("views.open", count=2)
    assert "labeled *spam*" in texts_of(h.standin.modal_stack(BOB)[-1])


def test_show_similar_hides_a_partial_label(h: SlackHarness) -> None:
    h.service.record_answer("demo", rid(h, 2), ALICE, "spam")
    h.service.next_records("demo", BOB, len(TEXTS))
    card = blocks.label_card(
        h.service.get_project("demo"), h.service.get_record("demo", rid(h, 0)), nonce="n2"
    )
    h.click(BOB, {**card, "ts": "1.000001"}, ids.ACTION_SHOW_SIMILAR)
    h.standin.wait_for("views.open")
    modal = texts_of(h.standin.modal_stack(BOB)[-1])
    assert TEXTS[2] in modal and "labeled *spam*" not in modal


# ---------------------------------------------------------------- status, me, leaderboard, home


def _answer_ten_with_two_disagreements(h: SlackHarness) -> None:
    alice = ["spam"] * 5 + ["ham"] * 5
    bob = ["spam"] * 4 + ["ham"] * 5 + ["spam"]
    for i in range(10):
        h.service.record_answer("demo", rid(h, i), ALICE, alice[i])
        h.service.record_answer("demo", rid(h, i), BOB, bob[i])


def test_status_shows_alpha_and_kappa_per_pair(h: SlackHarness) -> None:
    _answer_ten_with_two_disagreements(h)
    h.command("status")
    status = reply(h, 1)
    assert "Krippendorff's α 0.62" in status
    assert "Cohen's κ" in status and f"<@{ALICE}> and <@{BOB}>: κ 0.60 over 10 records" in status


def test_label_me_shows_my_figures(h: SlackHarness) -> None:
    _answer_ten_with_two_disagreements(h)
    h.service.record_answer("demo", rid(h, 11), ALICE, "spam")
    h.command("me")
    mine = reply(h, 1)
    assert "11 answers" in mine and "rank #1 of 2" in mine
    assert "Agreement with the final labels of complete records: 100%" in mine
    assert f"with <@{BOB}>: κ 0.60 over 10 records" in mine
    assert h.standin.responses[-1]["action"] == "ephemeral"
    h.command("me", user=CAROL)
    assert "have not labeled" in reply(h, 2)


def test_leaderboard_and_home_show_speed_and_agreement(h: SlackHarness) -> None:
    for record in h.service.next_records("demo", ALICE, 3):  # cards handed out: seconds are measured
        h.service.record_answer("demo", record.record_id, ALICE, TRUTH[int(record.external_id)])
        h.service.record_answer("demo", record.record_id, BOB, TRUTH[int(record.external_id)])
    h.command("leaderboard")
    board = reply(h, 1)
    assert "per answer" in board and "agreement 100%" in board
    h.sender.app_home_opened(ALICE)
    h.standin.wait_for("views.publish")
    home = texts_of(h.standin.home_view(ALICE))
    assert "You: 3 answers" in home and "per answer" in home and "agreement 100%" in home


# ---------------------------------------------------------------- review


def test_admin_review_sends_cards_and_the_pick_becomes_gold(h: SlackHarness) -> None:
    _answer_ten_with_two_disagreements(h)  # records 4 and 9 are ties
    # Ties come first. (Labeled by the aggregate, they make 10 labels, enough for confident learning,
    # whose likely mislabels follow: records 5-8 are spam texts both called ham.)
    assert h.command("review 2", user=ADMIN).status == 200
    assert "Sent you 2 review cards" in reply(h, 1)
    cards = review_cards(h, ADMIN)
    assert len(cards) == 2 and all("split" in texts_of(c) for c in cards)
    first = texts_of(cards[0])
    assert "split" in first and f"<@{ALICE}> *spam*" in first and f"<@{BOB}> *ham*" in first
    assert blocks.message_problems(cards[0]) == [] and h.standin.errors() == []
    target = rid(h, 4)
    card = next(c for c in cards if TEXTS[4] in texts_of(c))
    assert click_review(h, ADMIN, card, "spam").status == 200
    h.standin.wait_for("chat.update")
    updated = h.standin.message(h.dm(ADMIN), card["ts"])
    assert "Gold label *spam*" in texts_of(updated)
    assert (target, ADMIN, "spam", "review") in annotations(h)
    assert h.service.final_labels("demo")[str(4)] == "spam"
    # The decision can be changed from the same card.
    click_review(h, ADMIN, updated, "ham")
    h.standin.wait_for("chat.update", count=2)
    assert h.service.final_labels("demo")[str(4)] == "ham"
    assert [r for r in annotations(h) if r[0] == target and r[3] == "review"] == [
        (target, ADMIN, "ham", "review")
    ]
    h.command("review 1", user=ADMIN)
    assert "Sent you 1 review card " in reply(h, 2)
    last = texts_of(review_cards(h, ADMIN)[-1])
    assert TEXTS[9] in last and "split" in last  # the other tie


def test_review_is_for_admins_and_forged_review_clicks_write_nothing(h: SlackHarness) -> None:
    _answer_ten_with_two_disagreements(h)
    h.command("review", user=BOB)
    assert "for labelbot admins" in reply(h, 1)
    assert review_cards(h, BOB) == []
    # Bob forges a click on an admin's review card.
    h.command("review", user=ADMIN)
    reply(h, 2)
    card = review_cards(h, ADMIN)[0]
    click_review(h, BOB, card, "ham")
    # (the refusal of bob's /label review above is an ephemeral too: wait for this one)
    h.standin.wait_until(lambda: "Only labelbot admins" in texts_of(h.standin.ephemerals(user=BOB)))
    assert [r for r in annotations(h) if r[3] == "review"] == []


def test_review_with_nothing_to_review(h: SlackHarness) -> None:
    h.command("review", user=ADMIN)
    assert "Nothing to review" in reply(h, 1)
    h.command("review 0", user=ADMIN)
    assert "between 1 and" in reply(h, 2)


def test_review_cards_with_many_labels_use_a_menu(tmp_path: Path) -> None:
    labels = [f"label_{i}" for i in range(12)]
    harness = start_harness(
        tmp_path, labels=labels, texts=TEXTS[:3], service_settings={"answers_per_record": 2}
    )
    try:
        record = harness.service.find_record("demo", "0").record_id
        harness.service.record_answer("demo", record, ALICE, "label_1")
        harness.service.record_answer("demo", record, BOB, "label_7")
        harness.command("review", user=ADMIN, channel=CHANNEL)
        harness.standin.wait_until(lambda: bool(harness.dm_messages(ADMIN)))
        [card] = harness.dm_messages(ADMIN)
        assert blocks.message_problems(card) == []
        option = next(
            o
            for b in card["blocks"]
            for e in b.get("elements", [])
            if e.get("action_id") == ids.ACTION_REVIEW_SELECT
            for o in e["options"]
            if o["text"]["text"] == "label_7"
        )
        harness.click(ADMIN, card, ids.ACTION_REVIEW_SELECT, selected_value=option["value"])
        harness.standin.wait_for("chat.update")
        assert harness.service.final_labels("demo") == {"0": "label_7"}
    finally:
        harness.close()


def test_help_lists_review_for_admins_and_me_for_everyone(h: SlackHarness) -> None:
    assert "/label review" in texts_of(blocks.help_message(True))
    assert "/label review" not in texts_of(blocks.help_message(False))
    assert "/label me" in texts_of(blocks.help_message(False))


# ---------------------------------------------------------------- rendering edge cases


@pytest.mark.parametrize("n_labels", [2, 5, 6, 150])
def test_review_and_me_renderers_are_valid_and_escaped(n_labels: int) -> None:
    from datetime import UTC, datetime

    from core.types import (
        AnnotatorStats,
        LabelDef,
        PairAgreement,
        ProjectInfo,
        ProjectStatus,
        RecordView,
        ReviewItem,
    )

    labels = tuple(LabelDef(f"<!here> label {i} & co" if i % 3 == 0 else f"l{i}") for i in range(n_labels))
    project = ProjectInfo(
        id=3,
        name="p <!channel>",
        labels=labels,
        answers_per_record=2,
        strategy="s",
        created_at=datetime.now(UTC),
    )
    answers = tuple((f"<!everyone> worker {i}", labels[i % n_labels].name) for i in range(15))
    item = ReviewItem(
        project=project.name,
        record_id=7,
        external_id="x<1>",
        text="<!channel> " + "t" * 5000,
        kind="tie",
        reason="split <@U1> & more",
        label=None,
        answers=answers,
        suggested_label=labels[0].name,
        confidence=0.9,
    )
    card = blocks.review_card(project, item, nonce="a1")
    assert blocks.message_problems(card) == []
    shown = mrkdwn_of(card)
    assert "<!channel>" not in shown and "<!everyone>" not in shown and "<!here>" not in shown
    assert "and 5 more" in shown
    record = RecordView(project=project.name, record_id=7, external_id="x", text="text")
    done = blocks.reviewed_card(project, record, label=labels[-1].name, user_id="UADMIN", nonce="a2")
    assert blocks.message_problems(done) == []
    stats = AnnotatorStats(user="U1", answers=3, median_seconds=4.5, agreement=0.5, estimated_accuracy=0.7)
    pairs = tuple(PairAgreement("U1", f"<!here>{i}", float("nan") if i == 0 else 0.5, 10) for i in range(30))
    status = ProjectStatus(
        project=project.name,
        total=5,
        labeled=1,
        annotations=3,
        label_counts={},
        annotators=(stats,),
        latest_run=None,
        remaining=4,
        pairs=pairs,
    )
    for message in (blocks.me_message(status, "U1"), blocks.status_message(status)):
        assert blocks.message_problems(message) == []
        text = mrkdwn_of(message)
        assert "<!here>" not in text and "and 20 more" in text
    assert "one label throughout" in texts_of(blocks.me_message(status, "U1")["blocks"])


def mrkdwn_of(obj: object) -> str:
    """The text Slack parses (mrkdwn objects and the fallback); plain_text is shown as it is."""
    if isinstance(obj, dict):
        own = [obj["text"]] if obj.get("type") == "mrkdwn" or "blocks" in obj else []
        return " ".join([*own, *(mrkdwn_of(v) for v in obj.values() if isinstance(v, dict | list))])
    if isinstance(obj, list):
        return " ".join(mrkdwn_of(v) for v in obj)
    return ""
