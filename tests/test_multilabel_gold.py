"""Gold questions in multi-label projects: gold sets mixed into labelers' cards with the guess of a held-out
multi-label model, graded as whole sets and per label (core.gold, core.training, core.reports)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot import blocks, ids
from core import multilabel
from core.embeddings import HashingEmbedder
from core.gold import label_decisions
from core.io import ImportRow
from core.service import LabelingService
from tests.conftest import make_settings
from tests.slack_harness import ALICE, SlackHarness, start_harness
from tests.test_bot import annotations
from tests.test_gold_questions import card_record_id
from tests.test_multilabel_bot import tick_and_press

LABELS = ["billing", "urgent", "bug", "praise"]
WORDS = {
    "billing": "charged invoice refund payment",
    "urgent": "asap immediately now emergency",
    "bug": "crash error broken fails",
    "praise": "love great thanks wonderful",
}
N_GOLD = 10
N_SEED = 30


def truth(i: int) -> list[str]:
    """Record i's labels: bit j of i % 16 says label j (0: none of these)."""
    return [label for j, label in enumerate(LABELS) if (i % 16) >> j & 1]


def text(i: int) -> str:
    return " ".join([WORDS[label] for label in truth(i)] + [f"ticket {i}"])


def make_service(tmp_path: Path, **settings: object) -> LabelingService:
    service = LabelingService(make_settings(tmp_path, **settings), embedder=HashingEmbedder(64))
    service.create_project("t", LABELS, multi_label=True)
    service.configure_project("t", gold_rate=0.2)
    service.import_rows("t", [ImportRow(line=i + 2, external_id=str(i), text=text(i)) for i in range(200)])
    return service


@pytest.fixture
def service(tmp_path: Path) -> Iterator[LabelingService]:
    svc = make_service(tmp_path)
    yield svc
    svc.close()


def rid(service: LabelingService, i: int) -> int:
    return service.find_record("t", str(i)).record_id


def seed_and_retrain(service: LabelingService) -> None:
    for i in range(N_GOLD, N_GOLD + N_SEED):
        service.record_answer("t", rid(service, i), "seed", truth(i))
    service.retrain("t")


def test_label_decisions_count_each_label_as_yes_or_no() -> None:
    assert label_decisions(LABELS, "billing|urgent", "billing|urgent") == (4, 4)
    assert label_decisions(LABELS, "billing", "billing|urgent") == (3, 4)
    assert label_decisions(LABELS, "", "bug") == (3, 4)
    assert label_decisions(LABELS, "bug|praise", "billing|urgent") == (0, 4)


def test_a_multi_label_gold_card_shows_the_set_guessed_by_a_model_that_never_saw_the_gold_set(
    service: LabelingService,
) -> None:
    # The admin's gold says "praise" on billing-only texts: a model fit without these gold sets calls them
    # billing, as the seed answers on billing texts do; the latest model (fit with them) would not.
    billing_only = [i for i in range(N_GOLD) if truth(i) == ["billing"]]
    assert billing_only
    for i in billing_only:
        service.record_answer("t", rid(service, i), "admin", ["praise"], source="review")
    seed_and_retrain(service)
    gold = {rid(service, i) for i in billing_only}
    cards = [c for c in service.next_records("t", "alice", 40) if c.record_id in gold]
    assert cards
    for card in cards:
        guessed = multilabel.split(card.predicted_label)
        assert set(guessed) <= set(LABELS) and "billing" in guessed and "praise" not in guessed
        assert card.confidence is not None and card.reason
        again = service.get_record("t", card.record_id)
        assert (again.predicted_label, again.confidence) == (card.predicted_label, card.confidence)
    # The gold set stands whatever the labeler answers.
    service.record_answer("t", cards[0].record_id, "alice", ["billing"])
    final = service.final_labels("t")[service.get_record("t", cards[0].record_id).external_id]
    assert final == "praise"


def test_gold_sets_are_graded_whole_and_per_label_in_status_and_leaderboard(service: LabelingService) -> None:
    gold = {}
    for i in range(N_GOLD):
        gold[rid(service, i)] = truth(i)
        service.record_answer("t", rid(service, i), "admin", truth(i), source="review")
    seed_and_retrain(service)
    exact = decisions = right = n_gold = 0
    for _ in range(30):
        [card] = service.next_records("t", "alice", 1)
        answer = ["bug"]
        if card.record_id in gold:  # right on the first gold question, then off by "urgent" on the rest
            answer = gold[card.record_id] if n_gold == 0 else sorted(
                set(gold[card.record_id]) ^ {"urgent"}, key=LABELS.index)
            n_gold += 1
            exact += answer == gold[card.record_id]
            r, n = label_decisions(LABELS, multilabel.SEPARATOR.join(answer),
                                   multilabel.SEPARATOR.join(gold[card.record_id]))
            right, decisions = right + r, decisions + n
        service.record_answer("t", card.record_id, "alice", answer)
    assert n_gold >= 2
    status = service.status("t")
    alice = next(a for a in status.annotators if a.user == "alice")
    seed = next(a for a in status.annotators if a.user == "seed")
    assert (alice.gold_correct, alice.gold_answers) == (exact, n_gold) == (1, n_gold)
    assert alice.gold_label_accuracy == pytest.approx(right / decisions)
    assert right / decisions == pytest.approx((4 + 3 * (n_gold - 1)) / (4 * n_gold))
    assert seed.gold_answers == 0 and seed.gold_label_accuracy is None
    board = " ".join(b["text"]["text"] for b in blocks.leaderboard_message(status)["blocks"] if "text" in b)
    assert f"gold 1/{n_gold} ({right / decisions:.0%} of labels)" in board
    me = " ".join(b["text"]["text"] for b in blocks.me_message(status, "alice")["blocks"] if "text" in b)
    assert f"1 of {n_gold} sets exactly right; {right / decisions:.0%} of label decisions right" in me


def test_gold_sets_lower_the_estimated_accuracy_of_who_gets_them_wrong(tmp_path: Path) -> None:
    """k = 3, per label as the multi-label aggregation: on the gold records the crowd (and "bad") answer
    the wrong set; "good" answers the gold set and is estimated above "bad" once the admin decides."""
    svc = LabelingService(make_settings(tmp_path), embedder=HashingEmbedder(64))
    try:
        svc.create_project("t", LABELS, multi_label=True, answers_per_record=3)
        goldens = range(1, 7)
        rows = []
        for i in range(1, 17):
            right = multilabel.SEPARATOR.join(truth(i))
            wrong = multilabel.SEPARATOR.join(label for label in LABELS if label not in truth(i))
            crowd = wrong if i in goldens else right
            for who, label in [("u1", crowd), ("u2", crowd), ("u3", crowd), ("good", right), ("bad", crowd)]:
                rows.append(ImportRow(line=len(rows) + 2, external_id=str(i), text=text(i), label=label,
                                      annotator=who))
        svc.import_rows("t", rows)
        before = {a.user: a.estimated_accuracy for a in svc.status("t").annotators}
        assert before["bad"] > before["good"]
        for i in goldens:
            svc.record_answer("t", svc.find_record("t", str(i)).record_id, "admin", truth(i), source="review")
        estimated = {a.user: a.estimated_accuracy for a in svc.status("t").annotators}
        assert estimated["good"] > estimated["bad"]
    finally:
        svc.close()


# ------------------------------------------------------------------------------------- through the bot


@pytest.fixture
def h(tmp_path: Path) -> Iterator[SlackHarness]:
    harness = start_harness(tmp_path, project="")
    service = harness.service
    service.create_project("tickets", LABELS, multi_label=True)
    service.import_rows("tickets", [ImportRow(line=i + 2, external_id=str(i), text=text(i))
                                    for i in range(40)])
    yield harness
    harness.close()


def test_a_labeler_answers_a_multi_label_gold_card_and_it_is_graded(h: SlackHarness) -> None:
    service = h.service
    service.configure_project("tickets", gold_rate=0.5)
    gold = {}
    for i in range(1, 5):
        record = service.find_record("tickets", str(i)).record_id
        gold[record] = truth(i)
        service.record_answer("tickets", record, "admin", truth(i), source="review")
    for i in range(5, 20):
        service.record_answer("tickets", service.find_record("tickets", str(i)).record_id, "seed", truth(i))
    service.retrain("tickets")
    assert h.command("next 4").status == 200
    cards = h.wait_for_cards(ALICE, 4)
    golden = [c for c in cards if card_record_id(c) in gold]
    assert len(golden) == 2  # floor(0.5 * 4) = ceil(0.5 * 4)
    card = golden[0]
    record = card_record_id(card)
    assert "Submit" in " ".join(str(b) for b in card["blocks"]) and "gold" not in str(card).lower()
    # One label more than the gold set: the set is wrong, three of four label decisions right.
    extra = next(label for label in LABELS if label not in gold[record])
    answer = sorted([*gold[record], extra], key=LABELS.index)
    assert tick_and_press(h, ALICE, card, answer, ids.ACTION_MULTI_SUBMIT) == 200
    h.standin.wait_until(lambda: any(a[0] == record and a[1] == ALICE for a in annotations(h)))
    stored = next(a for a in annotations(h) if a[0] == record and a[1] == ALICE)
    assert stored[2] == multilabel.SEPARATOR.join(answer)
    # The gold set stands, and the grading is in status.
    assert service.final_labels("tickets")[str(service.get_record("tickets", record).external_id)] == (
        multilabel.SEPARATOR.join(gold[record]))
    alice = next(a for a in service.status("tickets").annotators if a.user == ALICE)
    assert (alice.gold_correct, alice.gold_answers) == (0, 1)
    assert alice.gold_label_accuracy == pytest.approx(3 / 4)
