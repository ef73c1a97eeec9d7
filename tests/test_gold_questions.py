"""Gold questions: records with an admin's gold label mixed into labelers' cards at the project's rate,
scored against the gold label, never changing it (core.gold, core.handout)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot import blocks, ids
from bot.cli import app as cli_app
from core.embeddings import HashingEmbedder
from core.errors import LabelbotError
from core.gold import gold_order, gold_slots
from core.io import ImportRow
from core.service import LabelingService
from core.types import RecordView
from tests.conftest import database_url, make_settings, write_csv
from tests.slack_harness import ADMIN, ALICE, SlackHarness, start_harness

RATE = 0.2
N_GOLD = 10
N_SEED = 20  # answers the first model trains on
TEXTS = [f"message {i} about {'money' if i % 2 else 'weather'} number {i}" for i in range(200)]


def topic(i: int) -> str:
    return "money" if i % 2 else "weather"


def window(rate: float, cards: int) -> tuple[int, int]:
    """The rule's bounds: after m cards floor(rate * m) or ceil(rate * m) gold cards, so any stretch of
    ``cards`` of them holds rate * cards rounded either way, give or take one."""
    return math.floor(rate * cards) - 1, math.ceil(rate * cards) + 1


@pytest.fixture
def service(tmp_path: Path) -> Iterator[LabelingService]:
    svc = LabelingService(make_settings(tmp_path), embedder=HashingEmbedder(64))
    svc.create_project("p", ["money", "weather"])
    svc.configure_project("p", gold_rate=RATE)
    svc.import_rows("p", [ImportRow(line=i, external_id=str(i), text=t) for i, t in enumerate(TEXTS)])
    yield svc
    svc.close()


def rid(service: LabelingService, external_id: int) -> int:
    return service.find_record("p", str(external_id)).record_id


def set_gold(service: LabelingService, externals: range | list[int]) -> dict[int, str]:
    """Gold labels (the admin's) on ``externals``, and answers from "seed" on the next N_SEED records,
    then a retrain: record id -> gold label."""
    gold = {}
    for i in externals:
        gold[rid(service, i)] = topic(i)
        service.record_answer("p", rid(service, i), "admin", topic(i), source="review")
    for i in range(N_GOLD, N_GOLD + N_SEED):
        service.record_answer("p", rid(service, i), "seed", topic(i))
    service.retrain("p")
    return gold


def label_one_by_one(service: LabelingService, user: str, n: int, label: str = "money") -> list[RecordView]:
    """``user`` asks for one card at a time and answers each with ``label``, ``n`` times."""
    cards = []
    for _ in range(n):
        [card] = service.next_records("p", user, 1)
        cards.append(card)
        service.record_answer("p", card.record_id, user, label)
    return cards


# ---------------------------------------------------------------------------------------------- the rate


def test_gold_slots_keep_every_prefix_within_one_of_the_rate() -> None:
    for rate in (0.05, 0.1, 0.2, 0.3, 0.5):
        for user in ("alice", "bob", "U0123"):
            slots = gold_slots(7, user, rate, 0, 400)
            assert slots == sorted(set(slots))
            for m in range(1, 401):
                had = sum(1 for s in slots if s < m)
                assert math.floor(rate * m) <= had <= math.ceil(rate * m), (rate, user, m)
            # Asked in pieces, the same cards are gold.
            pieces = [start + s for start in range(0, 399, 7) for s in gold_slots(7, user, rate, start, 7)]
            assert pieces == [s for s in slots if s < 399]
    assert gold_slots(7, "alice", 0.0, 0, 100) == []
    assert gold_slots(7, "alice", 0.2, 0, 400) != gold_slots(7, "bob", 0.2, 0, 400)


def test_gold_order_is_fixed_per_labeler_and_differs_between_them() -> None:
    records = list(range(1, 41))
    assert gold_order(1, "alice", records) == gold_order(1, "alice", list(reversed(records)))
    assert sorted(gold_order(1, "alice", records)) == records
    assert gold_order(1, "alice", records) != gold_order(1, "bob", records)


def test_a_labeler_gets_gold_questions_at_the_rate_never_twice_never_one_they_answered(
    service: LabelingService,
) -> None:
    # Alice answered record 0 before the admin decided it: it is gold, but never a question for her.
    service.record_answer("p", rid(service, 0), "alice", "money")
    gold = set_gold(service, range(N_GOLD))
    cards = label_one_by_one(service, "alice", 20)
    got = [c.record_id for c in cards if c.record_id in gold]
    low, high = window(RATE, 20)
    assert low <= len(got) <= high
    assert len(got) == len(set(got))
    assert rid(service, 0) not in got
    # Bob, from his first card, asks for 20 at once: floor(0.2 * 20) = ceil(0.2 * 20) = 4 of them gold.
    batch = service.next_records("p", "bob", 20)
    assert len(batch) == 20
    assert sum(1 for c in batch if c.record_id in gold) == 4
    assert len({c.record_id for c in batch}) == 20


def test_gold_questions_stop_when_none_is_left_and_a_skipped_one_never_comes_back(
    service: LabelingService,
) -> None:
    gold = set_gold(service, range(N_GOLD))
    handed, skipped = [], None
    for _ in range(100):  # 20 gold slots for 10 gold records
        [card] = service.next_records("p", "alice", 1)
        handed.append(card.record_id)
        if card.record_id in gold and skipped is None:
            service.skip("p", card.record_id, "alice")
            skipped = card.record_id
        else:
            service.record_answer("p", card.record_id, "alice", "money")
    got = [r for r in handed if r in gold]
    assert sorted(got) == sorted(gold)  # each gold record once, the skipped one too, then no more
    assert skipped in got


def test_no_gold_questions_at_rate_zero_or_without_gold_records(service: LabelingService) -> None:
    gold = set_gold(service, range(N_GOLD))
    service.configure_project("p", gold_rate=0)
    assert not any(c.record_id in gold for c in service.next_records("p", "alice", 30))
    with pytest.raises(LabelbotError):
        service.configure_project("p", gold_rate=0.6)
    assert service.get_project("p").gold_rate == 0.0


def test_no_gold_card_when_no_record_needs_answers(tmp_path: Path) -> None:
    svc = LabelingService(make_settings(tmp_path), embedder=HashingEmbedder(64))
    try:
        svc.create_project("p", ["money", "weather"])
        svc.configure_project("p", gold_rate=0.5)
        svc.import_rows("p", [ImportRow(line=i, external_id=str(i), text=t) for i, t in enumerate(TEXTS[:6])])
        for i in range(6):
            svc.record_answer("p", svc.find_record("p", str(i)).record_id, "admin", topic(i), source="review")
        svc.retrain("p")
        # Gold questions only come with work to do (whoever asks, wherever their gold cards fall).
        assert all(svc.next_records("p", f"user{i}", 4) == [] for i in range(10))
    finally:
        svc.close()


# ------------------------------------------------------------------------------------ answers and labels


def test_a_gold_answer_is_stored_and_changes_neither_label_nor_completeness(service: LabelingService) -> None:
    gold = set_gold(service, range(N_GOLD))
    labeled_before = service.status("p").labeled
    card = next(c for c in service.next_records("p", "alice", 10) if c.record_id in gold)
    wrong = "money" if gold[card.record_id] == "weather" else "weather"
    result = service.record_answer("p", card.record_id, "alice", wrong)
    assert result.changed and result.complete
    assert service.final_labels("p")[card.external_id] == gold[card.record_id]
    status = service.status("p")
    assert status.labeled == labeled_before
    assert card.record_id not in [item.record_id for item in service.review_queue("p")]
    # Someone it was never handed to cannot answer it (it needs no answers).
    with pytest.raises(LabelbotError):
        service.record_answer("p", card.record_id, "bob", wrong)


def test_a_gold_card_shows_the_guess_of_a_model_that_never_saw_its_gold_label(
    service: LabelingService,
) -> None:
    # The admin labels money texts "weather" (their gold says so): a model fit without these gold labels
    # calls them money, as the seed answers on money texts do.
    odd = [1, 3, 5, 7, 9]
    for i in odd:
        service.record_answer("p", rid(service, i), "admin", "weather", source="review")
    for i in range(N_GOLD, N_GOLD + N_SEED):
        service.record_answer("p", rid(service, i), "seed", topic(i))
    service.retrain("p")
    gold = {rid(service, i) for i in odd}
    cards = [c for c in service.next_records("p", "alice", 25) if c.record_id in gold]
    assert cards
    for card in cards:
        assert card.predicted_label == "money" and card.confidence is not None
        assert card.reason and "gold" not in card.reason.lower()
        # The same card again (after an undo, say) shows the same guess.
        again = service.get_record("p", card.record_id)
        assert (again.predicted_label, again.confidence) == (card.predicted_label, card.confidence)


# -------------------------------------------------------------------------------- leaderboard, estimates


def test_the_leaderboard_shows_gold_right_out_of_answered(service: LabelingService) -> None:
    gold = set_gold(service, range(N_GOLD))
    right = wrong = 0
    for _ in range(20):
        [card] = service.next_records("p", "alice", 1)
        label = "money"
        if card.record_id in gold:  # right on the first gold question, then wrong and right by turns
            truth = gold[card.record_id]
            label = truth if right <= wrong else ("weather" if truth == "money" else "money")
            right, wrong = right + (label == truth), wrong + (label != truth)
        service.record_answer("p", card.record_id, "alice", label)
    status = service.status("p")
    alice = next(a for a in status.annotators if a.user == "alice")
    seed = next(a for a in status.annotators if a.user == "seed")
    assert (alice.gold_correct, alice.gold_answers) == (right, right + wrong)
    assert right + wrong > 0 and seed.gold_answers == 0
    board = " ".join(b["text"]["text"] for b in blocks.leaderboard_message(status)["blocks"] if "text" in b)
    assert "alice — 20 answers" in board and f"gold {right}/{right + wrong}" in board
    assert f"seed — {N_SEED} answers · agreement 100%" in board
    me = " ".join(b["text"]["text"] for b in blocks.me_message(status, "alice")["blocks"] if "text" in b)
    assert f"{right} of {right + wrong} right" in me


def test_gold_answers_lower_the_estimated_accuracy_of_who_gets_them_wrong(tmp_path: Path) -> None:
    """k = 3: on the gold records the crowd sides with "bad", who would look the better labeler without
    the gold labels; with them, "good" (right on every gold record) is estimated above "bad"."""
    svc = LabelingService(make_settings(tmp_path), embedder=HashingEmbedder(64))
    try:
        svc.create_project("p", ["money", "weather"], answers_per_record=3)
        goldens = range(6)
        rows = []
        for i in range(16):
            truth = topic(i)
            crowd = ("money" if truth == "weather" else "weather") if i in goldens else truth
            # The crowd errs on the records the admin decides; good is right there, bad sides with the
            # crowd; elsewhere good and bad answer alike.
            answers = [("u1", crowd), ("u2", crowd), ("u3", crowd), ("good", truth), ("bad", crowd)]
            rows += [ImportRow(line=len(rows) + 2, external_id=str(i), text=TEXTS[i], label=label,
                               annotator=who) for who, label in answers]
        svc.import_rows("p", rows)
        record = {i: svc.find_record("p", str(i)).record_id for i in range(16)}
        before = {a.user: a.estimated_accuracy for a in svc.status("p").annotators}
        assert before["bad"] > before["good"]
        for i in goldens:
            svc.record_answer("p", record[i], "admin", topic(i), source="review")
        after = svc.status("p")
        estimated = {a.user: a.estimated_accuracy for a in after.annotators}
        assert estimated["good"] > estimated["bad"]
        # Their answers came before the admin's decisions: part of the dispute, not gold questions.
        gold_scores = {a.user: (a.gold_correct, a.gold_answers) for a in after.annotators}
        assert gold_scores["good"] == gold_scores["bad"] == (0, 0)
    finally:
        svc.close()


# ------------------------------------------------------------------------------------- through the bot


@pytest.fixture
def h(tmp_path: Path) -> Iterator[SlackHarness]:
    texts = [f"{'win a free prize' if i % 2 else 'lunch tomorrow'} message {i}" for i in range(40)]
    harness = start_harness(tmp_path, texts=texts)
    yield harness
    harness.close()


def card_record_id(card: dict) -> int:
    for block in card["blocks"]:
        for element in block.get("elements", []) if block["type"] == "actions" else []:
            if element.get("action_id") == ids.ACTION_SKIP:
                return ids.parse_record_value(element["value"]).record_id
    raise AssertionError("no Skip button on the card")


def shape(card: dict) -> list[tuple[str, str]]:
    """Block types and the part of each block id (the nonce differs per card), button ids by kind."""
    return [(b["type"], b.get("block_id", "").rsplit(".", 1)[0]) for b in card["blocks"]]


def test_a_gold_card_is_posted_like_any_other_and_takes_the_answer(h: SlackHarness) -> None:
    service = h.service
    service.configure_project("demo", gold_rate=0.5)
    gold = {}
    for i in range(4):
        record = service.find_record("demo", str(i)).record_id
        gold[record] = "spam" if i % 2 else "ham"
        service.record_answer("demo", record, ADMIN, gold[record], source="review")
    for i in range(4, 12):
        service.record_answer("demo", service.find_record("demo", str(i)).record_id, "seed",
                              "spam" if i % 2 else "ham")
    service.retrain("demo")
    assert h.command("next 6").status == 200
    cards = h.wait_for_cards(ALICE, 6)
    by_record = {card_record_id(c): c for c in cards}
    golden = [c for r, c in by_record.items() if r in gold]
    regular = [c for r, c in by_record.items() if r not in gold]
    assert len(golden) == 3  # floor(0.5 * 6) = ceil(0.5 * 6)
    for card in golden:
        text = " ".join(str(e) for e in _texts(card))
        assert "gold" not in text.lower()
        assert "Model guess:" in text and "Why this record:" in text
        assert shape(card) == shape(regular[0])
    # Answered like any card: stored, the gold label stands, a next card comes.
    card = golden[0]
    record = card_record_id(card)
    wrong = "spam" if gold[record] == "ham" else "ham"
    assert h.click_label(ALICE, card, wrong).status == 200
    h.wait_for_messages(ALICE, 7)
    assert service.final_labels("demo")[service.get_record("demo", record).external_id] == gold[record]
    alice = next(a for a in service.status("demo").annotators if a.user == ALICE)
    assert (alice.gold_correct, alice.gold_answers) == (0, 1)


def _texts(obj: object) -> list[str]:
    if isinstance(obj, dict):
        return [t for k, v in obj.items() if k not in ("action_id", "block_id", "value") for t in _texts(v)]
    if isinstance(obj, list):
        return [t for v in obj for t in _texts(v)]
    return [obj] if isinstance(obj, str) else []


# ------------------------------------------------------------------------------------------------ the CLI


def test_the_cli_sets_and_lists_the_gold_rate_and_hands_out_and_scores_gold_questions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LABELBOT_DATABASE_URL", database_url(tmp_path, "cli", with_tables=True))
    monkeypatch.setenv("LABELBOT_EMBEDDING_MODEL", "hashing-64")
    monkeypatch.setenv("LABELBOT_RETRAIN_EVERY", "0")

    def run(*args: str, code: int = 0) -> str:
        result = CliRunner().invoke(cli_app, list(args))
        assert result.exit_code == code, result.output
        return result.output

    data = write_csv(tmp_path / "data.csv", [{"id": str(i), "text": TEXTS[i]} for i in range(60)])
    run("init", "p", "--labels", "money,weather")
    run("import", "p", str(data))
    assert "gold_rate=0.1" in run("projects")  # the default
    assert "gold_rate=0.5" in run("configure", "p", "--gold-rate", "0.5")
    assert "gold_rate=0.5" in run("projects")
    assert "between 0 and 0.5" in run("configure", "p", "--gold-rate", "0.9", code=1)
    for i in range(4):
        run("gold", "p", str(i), topic(i), "-u", "admin")
    for i in range(4, 14):
        run("answer", "p", str(i), topic(i), "-u", "seed")
    run("retrain", "p")
    listed = [json.loads(line) for line in run("next", "p", "-n", "8", "--json", "-u", "ann").splitlines()]
    golds = [item["id"] for item in listed if int(item["id"]) < 4]
    assert len(listed) == 8 and len(golds) == 4  # 0.5 x 8 cards: floor = ceil = 4
    for item in listed:
        run("answer", "p", item["id"], "money", "-u", "ann")
    status = json.loads(run("status", "p", "--json"))
    ann = next(a for a in status["annotators"] if a["user"] == "ann")
    assert (ann["gold_correct"], ann["gold_answers"]) == (sum(topic(int(g)) == "money" for g in golds), 4)


def test_a_project_from_before_gold_questions_hands_out_no_gold_until_a_rate_is_set(
    service: LabelingService,
) -> None:
    from sqlalchemy import select, update

    from core.models import Project

    assert service.get_project("p").gold_rate == RATE
    pid = service.get_project("p").id
    with service.engine.begin() as conn:  # settings as an older release stored them: no gold_rate
        stored = conn.execute(select(Project.settings).where(Project.id == pid)).scalar_one()
        old = {k: v for k, v in stored.items() if k != "gold_rate"}
        conn.execute(
            update(Project).where(Project.id == pid).values(settings=old, version=Project.version + 1)
        )
    assert service.get_project("p").gold_rate == 0.0
    golds = set(set_gold(service, range(0, 10)))
    cards = label_one_by_one(service, "alice", 20)
    assert len(cards) == 20 and not {card.record_id for card in cards} & golds
    service.configure_project("p", gold_rate=RATE)
    service.retrain("p")
    assert {card.record_id for card in label_one_by_one(service, "alice", 20)} & golds
