"""The delivery outbox (core.deliveries, bot.deliveries): what a click owes a labeler — the clicked card's
update and the next card — is written with the answer, delivered after the ack, retried through Slack's
failures until delivered, given up after its time, and never holds a record it did not deliver.

Core tests drive the facade with a clock they move; end-to-end tests go through the real App over signed
HTTP with the Slack stand-in answering 429 / 5xx / errors, and assert on what reached Slack and the database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse
from sqlalchemy import select

from bot import deliveries as bot_deliveries
from bot import ids
from core.embeddings import HashingEmbedder
from core.errors import UnknownLabel
from core.io import ImportRow
from core.models import Annotation, Delivery, Lease
from core.service import LabelingService
from core.store import read_session
from tests.conftest import make_settings
from tests.slack_harness import ALICE, BOB, CHANNEL, SlackHarness, start_harness
from tests.test_crowd import Clock

ADDRESS = "DALICE 1700000000.000100"


def make_service(tmp_path: Path, clock: Clock, **settings: object) -> LabelingService:
    service = LabelingService(
        make_settings(tmp_path, **settings), embedder=HashingEmbedder(64), clock=clock
    )
    service.create_project("demo", ["spam", "ham"])
    rows = [ImportRow(line=i + 2, external_id=str(i), text=f"text {i}") for i in range(6)]
    service.import_rows("demo", rows)
    return service


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def svc(tmp_path: Path, clock: Clock) -> Iterator[LabelingService]:
    service = make_service(tmp_path, clock)
    yield service
    service.close()


def outbox(service: LabelingService) -> list[tuple]:
    """(kind, annotator, record_id, n, given up) of every outbox row, oldest first."""
    with read_session(service.engine) as session:
        rows = session.execute(
            select(Delivery.kind, Delivery.annotator, Delivery.record_id, Delivery.n, Delivery.gave_up_at)
            .order_by(Delivery.id)
        ).all()
    return [(kind, user, record, n, gave_up is not None) for kind, user, record, n, gave_up in rows]


def leases(service: LabelingService, user: str) -> set[int]:
    with read_session(service.engine) as session:
        return set(session.execute(select(Lease.record_id).where(Lease.annotator == user)).scalars())


# ------------------------------------------------------------------ core: written with the answer


def test_an_answer_writes_its_card_update_and_next_card_in_its_own_transaction(svc: LabelingService) -> None:
    record = svc.next_records("demo", ALICE)[0]
    result = svc.record_answer("demo", record.record_id, ALICE, "spam", card_address=ADDRESS)
    assert len(result.deliveries) == 2
    assert outbox(svc) == [("answered", ALICE, record.record_id, 0, False), ("cards", ALICE, None, 1, False)]
    # The same click again (Slack's retry) changes nothing: it owes the card's update, no second card.
    again = svc.record_answer("demo", record.record_id, ALICE, "spam", card_address=ADDRESS)
    assert not again.changed and len(again.deliveries) == 1
    kinds = [row[0] for row in outbox(svc)]
    assert kinds == ["cards", "answered"]  # the waiting update of the same card was replaced


def test_a_refused_answer_owes_nothing(svc: LabelingService) -> None:
    record = svc.next_records("demo", ALICE)[0]
    with pytest.raises(UnknownLabel):
        svc.record_answer("demo", record.record_id, ALICE, "eggs", card_address=ADDRESS)
    assert outbox(svc) == []


def test_skip_and_undo_owe_their_card_updates(svc: LabelingService) -> None:
    first, second = svc.next_records("demo", ALICE, 2)
    assert len(svc.skip("demo", first.record_id, ALICE, card_address=ADDRESS)) == 2
    svc.record_answer("demo", second.record_id, ALICE, "ham")
    undone = svc.undo("demo", ALICE, record_id=second.record_id, card_address="DALICE 1700000000.000200")
    assert len(undone.deliveries) == 1
    assert [row[0] for row in outbox(svc)] == ["skipped", "cards", "restored"]


def test_cards_are_handed_out_when_delivered_not_when_asked_for(svc: LabelingService) -> None:
    svc.request_cards("demo", ALICE, 3)
    assert leases(svc, ALICE) == set()
    assert outbox(svc) == [("cards", ALICE, None, 3, False)]


# ------------------------------------------------------------------ core: claims, retries, giving up


def test_each_row_is_claimed_by_one_process_until_its_claim_lapses(
    tmp_path: Path, svc: LabelingService, clock: Clock
) -> None:
    other = LabelingService(svc.settings, embedder=HashingEmbedder(64), clock=clock)  # a second replica
    try:
        owed = [svc.request_cards("demo", ALICE, 1) for _ in range(6)]
        got: dict[str, list] = {}

        def claim(name: str, service: LabelingService) -> None:
            got[name] = service.claim_deliveries(limit=4)

        threads = [threading.Thread(target=claim, args=(n, s)) for n, s in (("a", svc), ("b", other))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        a, b = ({d.id for d in got[name]} for name in "ab")
        assert not a & b and a | b == set(owed)
        assert svc.claim_deliveries(limit=10) == []  # all claimed
        clock.advance(61)  # the claims lapse (their process died): the rows can be taken over
        assert {d.id for d in other.claim_deliveries(limit=10)} == set(owed)
    finally:
        other.close()


def test_a_failed_delivery_backs_off_then_gives_up_and_releases_its_records(
    svc: LabelingService, clock: Clock
) -> None:
    svc.request_cards("demo", ALICE, 2)
    [delivery] = svc.claim_deliveries()
    handed = [r.record_id for r in svc.next_records(delivery.project_id, ALICE, 2)]  # as the bot does
    assert leases(svc, ALICE) == set(handed)
    assert not svc.delivery_failed(delivery, "ratelimited", retry_after=5, remaining=2, unsent=handed)
    assert leases(svc, ALICE) == set()  # released at once: another labeler may have them
    assert svc.next_records("demo", BOB, 6)[0].record_id in handed
    clock.advance(4)
    assert svc.claim_deliveries() == []  # not due before Retry-After
    clock.advance(1)
    [again] = svc.claim_deliveries()
    assert again.attempts == 2 and again.n == 2
    clock.advance(svc.settings.delivery_give_up_seconds)
    assert svc.delivery_failed(again, "Slack unreachable")  # too old: given up
    assert outbox(svc) == [("cards", ALICE, None, 2, True)]
    clock.advance(3600)
    assert svc.claim_deliveries() == []
    assert svc.delivery_counts("demo") == (0, 1)


def test_slacks_final_word_gives_up_at_once(svc: LabelingService) -> None:
    svc.request_cards("demo", ALICE, 1)
    [delivery] = svc.claim_deliveries()
    assert svc.delivery_failed(delivery, "user_not_found", permanent=True)
    assert svc.delivery_counts() == (0, 1)


def test_backoff_doubles_and_is_capped(svc: LabelingService, clock: Clock) -> None:
    svc.request_cards("demo", ALICE, 1)
    waits = []
    for _ in range(6):
        [delivery] = svc.claim_deliveries()
        failed_at = clock.now
        svc.delivery_failed(delivery, "fatal_error")
        with read_session(svc.engine) as session:
            due = session.execute(select(Delivery.due_at)).scalar_one()
        waits.append((due.replace(tzinfo=UTC) - failed_at).total_seconds())
        clock.advance(waits[-1])
    assert waits == [1.0, 2.0, 4.0, 8.0, 15.0, 15.0]


def test_failures_are_classified_as_slack_means_them() -> None:
    def api_error(status: int, data: dict, headers: dict | None = None) -> SlackApiError:
        response = SlackResponse(
            client=None, http_verb="POST", api_url="https://slack.com/api/conversations.open",
            req_args={}, data=data, headers=headers or {}, status_code=status,
        )
        return SlackApiError("failed", response)

    limited = bot_deliveries.classify(
        api_error(429, {"ok": False, "error": "ratelimited"}, {"retry-after": "7"})
    )
    assert (limited.permanent, limited.retry_after) == (False, 7.0)
    assert not bot_deliveries.classify(api_error(503, {"ok": False, "error": "fatal_error"})).permanent
    refused = bot_deliveries.classify(api_error(200, {"ok": False, "error": "missing_scope"}))
    assert refused.permanent and refused.method == "conversations.open"
    assert "im:write" in bot_deliveries.cannot_send_line(refused)
    assert not bot_deliveries.classify(ConnectionRefusedError(111, "Connection refused")).permanent


# ------------------------------------------------------------------ end to end through Slack's failures


@pytest.fixture
def h(tmp_path: Path) -> Iterator[SlackHarness]:
    harness = start_harness(tmp_path, texts=[f"text number {i}" for i in range(8)])
    yield harness
    harness.close()


def stored(h: SlackHarness) -> list[tuple[int, str, str]]:
    with read_session(h.service.engine) as session:
        rows = session.execute(select(Annotation.record_id, Annotation.annotator, Annotation.label)).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def record_of(card: dict) -> int:
    [value] = {
        e["value"] for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]
        if e.get("action_id") == ids.ACTION_SKIP
    }
    return ids.parse_record_value(value).record_id


def eventually(condition: Callable[[], bool], timeout: float = 60) -> None:
    """Wait for a condition on the database (the stand-in's waits wake only on its own changes)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {condition!r}")
        time.sleep(0.05)


def wait_for_empty_outbox(h: SlackHarness, timeout: float = 60) -> None:
    eventually(lambda: h.service.delivery_counts() == (0, 0), timeout)


def test_card_update_and_next_card_arrive_after_rate_limits_and_server_errors(h: SlackHarness) -> None:
    assert h.command("next").status == 200
    [card] = h.wait_for_cards(ALICE, 1)
    h.standin.fail_next("chat.update", status=500, times=2)
    h.standin.fail_next("chat.postMessage", status=429, retry_after=1, times=2)
    assert h.click_label(ALICE, card, "spam").status == 200
    assert stored(h) == [(record_of(card), ALICE, "spam")]  # committed before the 200
    wait_for_empty_outbox(h)
    answered = h.standin.message(h.dm(ALICE), card["ts"])
    assert "Labeled" in answered["text"]
    cards = h.cards(ALICE)
    assert len(cards) == 1 and record_of(cards[0]) != record_of(card)  # the next card, once
    assert [c.status for c in h.standin.calls_to("chat.update")] == [500, 500, 200]


def test_next_cards_asked_for_while_slack_is_down_hold_no_record_and_follow_when_it_is_back(
    h: SlackHarness,
) -> None:
    h.standin.fail_next("conversations.open", status=503, times=3)
    assert h.command("next 2").status == 200
    h.standin.wait_until(lambda: any(r["user"] == ALICE for r in h.standin.responses), timeout=30)
    assert "Slack did not take your cards just now" in str(h.standin.responses[0]["payload"])
    assert leases(h.service, ALICE) == set()  # nothing held while the cards wait
    wait_for_empty_outbox(h)
    cards = h.cards(ALICE)
    assert len(cards) == 2 and len({record_of(c) for c in cards}) == 2
    assert leases(h.service, ALICE) == {record_of(c) for c in cards}


def test_a_card_slack_refuses_for_good_is_given_up_and_its_record_released(h: SlackHarness) -> None:
    assert h.command("next").status == 200
    [card] = h.wait_for_cards(ALICE, 1)
    h.standin.fail_next("chat.postMessage", status=200, error="channel_not_found")
    assert h.click_label(ALICE, card, "ham").status == 200
    eventually(lambda: h.service.delivery_counts() == (0, 1), 30)
    assert h.cards(ALICE) == []  # the answered card is updated; the next one was refused
    assert leases(h.service, ALICE) == set()
    assert stored(h) == [(record_of(card), ALICE, "ham")]


def test_a_delivery_outliving_its_time_is_given_up(tmp_path: Path) -> None:
    harness = start_harness(
        tmp_path, texts=[f"text {i}" for i in range(4)], service_settings={"delivery_give_up_seconds": 6}
    )
    try:
        harness.standin.fail_next("conversations.open", status=503, times=50)
        assert harness.command("next").status == 200
        eventually(lambda: harness.service.delivery_counts() == (0, 1), 30)
        assert harness.cards(ALICE) == [] and leases(harness.service, ALICE) == set()
        opened = len(harness.standin.calls_to("conversations.open"))
        assert opened >= 2  # it was tried again before it was given up
    finally:
        harness.close()


def test_a_prompt_button_whose_cards_slack_refuses_tells_the_clicker_why(h: SlackHarness) -> None:
    from bot import blocks
    from bot.standin import action_from_blocks

    info = h.service.get_project("demo")
    prompt = blocks.prompt_message(info, waiting=8, accuracy=None, n=3, minutes=1)
    posted = h.standin.add_message(CHANNEL, prompt["text"], "U0BOT", blocks=prompt["blocks"])
    h.standin.fail_next("conversations.open", status=200, error="missing_scope")
    action = action_from_blocks(posted, ids.ACTION_LABEL_N_NOW)
    assert h.sender.block_actions(BOB, [action], channel_id=CHANNEL, message=posted).status == 200
    eventually(lambda: h.service.delivery_counts() == (0, 1), 30)
    h.standin.wait_until(lambda: any(r["user"] == BOB for r in h.standin.responses), timeout=30)
    [response] = [r for r in h.standin.responses if r["user"] == BOB]
    assert response["action"] == "ephemeral" and "im:write" in str(response["payload"])
    assert leases(h.service, BOB) == set() and h.cards(BOB) == []


def test_status_counts_deliveries_waiting_and_given_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from bot.cli import app
    from tests.conftest import use_cli_environment

    use_cli_environment(tmp_path, monkeypatch)
    runner = CliRunner()
    assert runner.invoke(app, ["init", "P", "--labels", "spam,ham"]).exit_code == 0
    quiet = runner.invoke(app, ["status", "P"])
    assert quiet.exit_code == 0 and "Card deliveries" not in quiet.output
    service = LabelingService(embedder=HashingEmbedder(64))
    try:
        service.request_cards("P", ALICE, 1)
        service.request_cards("P", BOB, 1)
        [first, _] = service.claim_deliveries()
        service.delivery_failed(first, "user_not_found", permanent=True)
    finally:
        service.close()
    shown = runner.invoke(app, ["status", "P"])
    assert "Card deliveries: 1 waiting for Slack, 1 given up" in shown.output  # BOB's is in flight
