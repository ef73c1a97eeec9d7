"""Crowd labeling through the service: concurrent hand-out, leases, hidden answers, aggregation and
agreement in status, disagreement routing, the review queue and gold labels; plus core.review and the CLI."""

from __future__ import annotations

import csv
import json
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from bot.cli import app as cli_app
from core import review
from core.config import Settings
from core.embeddings import HashingEmbedder
from core.errors import StaleRecord
from core.io import ImportRow
from core.models import Annotation, Record, utcnow
from core.service import LabelingService
from core.store import read_session
from core.types import PairAgreement
from tests.conftest import database_url, make_settings, write_csv

SPAM = [
    "win a free cash prize now", "claim your free prize today", "free cash winner call now",
    "you won a free prize claim now", "urgent free cash prize waiting", "win cash now free entry",
    "free prize draw winner claim", "claim free cash today winner", "free entry win a prize now",
    "congratulations you won free cash", "prize winner claim your cash now", "free free cash prize call",
]  # fmt: skip
HAM = [
    "see you at lunch tomorrow", "are we meeting for dinner tonight",
    "can you call me after the meeting", "lunch tomorrow at the usual place",
    "running late see you at dinner", "meeting moved to tomorrow morning",
    "thanks for dinner last night", "see you at the station tonight", "call me when you get home",
    "are you coming to lunch today", "dinner at my place tomorrow", "the meeting is at noon see you",
]  # fmt: skip
TEXTS = SPAM + HAM
TRUTH = ["spam"] * len(SPAM) + ["ham"] * len(HAM)


class Clock:
    """A clock the test moves by hand (the service reads the time only through it)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def crowd(tmp_path: Path, clock: Clock) -> Iterator[LabelingService]:
    svc = LabelingService(make_settings(tmp_path), embedder=HashingEmbedder(64), clock=clock)
    yield svc
    svc.close()


def make_project(svc: LabelingService, k: int, texts: list[str] = TEXTS, name: str = "p") -> dict[int, int]:
    """A spam/ham project with answers_per_record k; returns {index in texts: record id}."""
    svc.create_project(name, ["spam", "ham"], answers_per_record=k)
    svc.import_rows(name, [ImportRow(line=i + 2, external_id=str(i), text=t) for i, t in enumerate(texts)])
    return {i: svc.find_record(name, str(i)).record_id for i in range(len(texts))}


def annotation_rows(svc: LabelingService) -> list[tuple[int, str, str, str]]:
    with read_session(svc.engine) as session:
        return [
            tuple(row)
            for row in session.execute(
                select(Annotation.record_id, Annotation.annotator, Annotation.label, Annotation.source)
            ).all()
        ]


# ---------------------------------------------------------------- concurrency and leases


@pytest.mark.parametrize("k", [2, 3])
def test_twenty_concurrent_labelers_never_exceed_k_and_lose_no_answer(tmp_path: Path, k: int) -> None:
    # A file database in WAL mode and one service shared by all threads, as in the bot.
    svc = LabelingService(make_settings(tmp_path, queue_size=200), embedder=HashingEmbedder(64))
    texts = [f"{TEXTS[i % len(TEXTS)]} number {i}" for i in range(40)]
    make_project(svc, k, texts)
    handed: dict[int, list[str]] = defaultdict(list)
    stored: list[tuple[int, str]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(20)

    def labeler(user: str) -> None:
        try:
            start.wait()
            while batch := svc.next_records("p", user, 2):
                with lock:
                    for record in batch:
                        handed[record.record_id].append(user)
                for record in batch:
                    result = svc.record_answer(
                        "p", record.record_id, user, "spam" if len(user) % 2 else "ham"
                    )
                    with lock:
                        stored.append((result.record_id, user))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=labeler, args=(f"user{i}",)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    try:
        assert errors == []  # a StaleRecord here would mean two labelers got the same last slot
        assert all(not thread.is_alive() for thread in threads)
        assert max(len(users) for users in handed.values()) <= k
        assert all(len(set(users)) == len(users) for users in handed.values())
        rows = annotation_rows(svc)
        assert sorted((rid, who) for rid, who, _, _ in rows) == sorted(stored)  # none lost
        assert len(rows) == 40 * k
        with read_session(svc.engine) as session:
            records = session.execute(select(Record.id, Record.n_answers, Record.complete)).all()
            actual = Counter(session.execute(select(Annotation.record_id)).scalars())
        assert all(complete and n == k == actual[rid] for rid, n, complete in records)
    finally:
        svc.close()


def test_lease_expiry_frees_the_record_and_a_late_answer_still_counts(crowd: LabelingService, clock: Clock):
    make_project(crowd, 1, TEXTS[:2])
    [held] = crowd.next_records("p", "alice", 1)
    [other] = crowd.next_records("p", "bob", 5)  # alice's lease keeps hers from bob
    assert other.record_id != held.record_id
    crowd.record_answer("p", other.record_id, "bob", "ham")
    clock.advance(crowd.settings.lease_seconds - 1)
    assert crowd.next_records("p", "carol", 5) == []
    clock.advance(2)  # alice's lease has expired
    assert [r.record_id for r in crowd.next_records("p", "carol", 5)] == [held.record_id]
    late = crowd.record_answer("p", held.record_id, "alice", "spam")  # still needed: it counts
    assert late.complete
    with pytest.raises(StaleRecord):  # now carol's answer is one too many
        crowd.record_answer("p", held.record_id, "carol", "ham")
    # Seconds per answer run from the hand-out to the answer, on the service's clock.
    alice = next(a for a in crowd.status("p").annotators if a.user == "alice")
    assert alice.median_seconds == pytest.approx(crowd.settings.lease_seconds + 1)


def test_lease_expiry_with_k_2_hands_the_free_slot_to_a_third_labeler(crowd: LabelingService, clock: Clock):
    make_project(crowd, 2, TEXTS[:1])
    assert len(crowd.next_records("p", "alice", 1)) == 1
    assert len(crowd.next_records("p", "bob", 1)) == 1
    assert crowd.next_records("p", "carol", 1) == []  # both slots leased
    crowd.record_answer("p", crowd.find_record("p", "0").record_id, "alice", "spam")
    clock.advance(crowd.settings.lease_seconds + 1)
    assert len(crowd.next_records("p", "carol", 1)) == 1  # bob's slot expired
    assert crowd.next_records("p", "alice", 1) == []  # never the same record twice


# ---------------------------------------------------------------- hidden answers


def test_others_answers_stay_hidden_until_the_record_is_complete(crowd: LabelingService, tmp_path: Path):
    ids = make_project(crowd, 2)
    # Complete every record but one, so a model exists; record 3 gets only alice's (wrong) answer.
    for i, rid in ids.items():
        if i != 3:
            for user in ("alice", "bob"):
                crowd.record_answer("p", rid, user, TRUTH[i])
    before = crowd.retrain("p")
    guess_before = crowd.get_record("p", ids[3])
    crowd.record_answer("p", ids[3], "alice", "ham")
    after = crowd.retrain("p")
    guess_after = crowd.get_record("p", ids[3])
    # The model never trains on a partial answer, so the guess on bob's card is unchanged by alice's.
    assert after.n_labels == before.n_labels == len(TEXTS) - 1
    assert (guess_after.predicted_label, guess_after.confidence) == (
        guess_before.predicted_label,
        guess_before.confidence,
    )
    near = [s for s in crowd.similar("p", record_id=ids[0], k=30) if s.record_id == ids[3]]
    search = [s for s in crowd.similar("p", text=TEXTS[3], k=30) if s.record_id == ids[3]]
    assert near and near[0].label is None and search and search[0].label is None
    status = crowd.status("p")
    assert status.labeled == len(TEXTS) - 1 and sum(status.label_counts.values()) == len(TEXTS) - 1
    assert status.label_counts["ham"] == len(HAM)  # alice's partial "ham" is not counted
    crowd.export("p", tmp_path / "partial.csv")
    with open(tmp_path / "partial.csv", encoding="utf-8") as handle:
        row = next(r for r in csv.DictReader(handle) if r["id"] == "3")
    assert (row["label"], row["n_annotations"], row["agreement"]) == ("", "1", "")

    crowd.record_answer("p", ids[3], "bob", "ham")  # complete now: everything shows
    near = [s for s in crowd.similar("p", record_id=ids[0], k=30) if s.record_id == ids[3]]
    assert near[0].label == "ham"
    assert crowd.status("p").label_counts["ham"] == len(HAM) + 1
    crowd.export("p", tmp_path / "done.csv")
    with open(tmp_path / "done.csv", encoding="utf-8") as handle:
        row = next(r for r in csv.DictReader(handle) if r["id"] == "3")
    assert (row["label"], row["n_annotations"], float(row["agreement"])) == ("ham", "2", 1.0)


# ---------------------------------------------------------------- aggregation and agreement


def test_status_agreement_matches_hand_computation(crowd: LabelingService) -> None:
    ids = make_project(crowd, 2)
    alice = ["spam"] * 5 + ["ham"] * 5
    bob = ["spam"] * 4 + ["ham"] * 5 + ["spam"]  # disagrees on items 4 and 9
    for i in range(10):
        crowd.record_answer("p", ids[i], "alice", alice[i])
        crowd.record_answer("p", ids[i], "bob", bob[i])
    crowd.record_answer("p", ids[10], "alice", "spam")  # incomplete: left out of every figure
    status = crowd.status("p")
    # kappa: p_o = 8/10; both say spam 5/10, so p_e = 0.5 * 0.5 + 0.5 * 0.5 = 0.5; (0.8 - 0.5) / 0.5.
    assert status.pairs == (PairAgreement("alice", "bob", pytest.approx(0.6), 10),)
    # alpha: coincidences o_ss = o_hh = 8, o_sh = o_hs = 2, n = 20, n_s = n_h = 10:
    # 1 - (n - 1) * (o_sh + o_hs) / (n^2 - n_s^2 - n_h^2) = 1 - 19 * 4 / 200.
    assert status.agreement["krippendorff_alpha"] == pytest.approx(0.62)
    # With k = 2 a disagreement is a tie: labeled by the aggregate, counted, and in review.
    assert (status.labeled, status.ties) == (10, 2)
    assert sum(status.label_counts.values()) == 10 and min(status.label_counts.values()) >= 4
    stats = {a.user: a for a in status.annotators}
    assert stats["alice"].answers == 11 and stats["bob"].answers == 10
    assert stats["alice"].agreement == stats["bob"].agreement == 1.0  # on the 8 records that are no tie
    assert stats["alice"].estimated_accuracy is None  # Dawid-Skene only from k = 3


def test_pairs_need_enough_overlap(crowd: LabelingService) -> None:
    ids = make_project(crowd, 2)
    for i in range(9):
        crowd.record_answer("p", ids[i], "alice", TRUTH[i])
        crowd.record_answer("p", ids[i], "bob", TRUTH[i])
    assert crowd.status("p").pairs == ()
    crowd.record_answer("p", ids[20], "alice", "ham")
    crowd.record_answer("p", ids[20], "bob", "ham")
    [pair] = crowd.status("p").pairs
    assert (pair.first, pair.second, pair.overlap) == ("alice", "bob", 10)
    assert pair.kappa == pytest.approx(1.0)


def test_dawid_skene_status_with_k_3_estimates_accuracy(crowd: LabelingService) -> None:
    ids = make_project(crowd, 3)
    rng = np.random.default_rng(0)
    for i, rid in ids.items():
        crowd.record_answer("p", rid, "good1", TRUTH[i])
        crowd.record_answer("p", rid, "good2", TRUTH[i])
        flip = rng.random() < 0.5
        crowd.record_answer(
            "p", rid, "noisy", ("ham" if TRUTH[i] == "spam" else "spam") if flip else TRUTH[i]
        )
    status = crowd.status("p")
    accuracy = {a.user: a.estimated_accuracy for a in status.annotators}
    assert accuracy["good1"] > accuracy["noisy"] and accuracy["good2"] > accuracy["noisy"]
    assert status.labeled == len(TEXTS)
    assert crowd.final_labels("p") == {str(i): TRUTH[i] for i in range(len(TEXTS))}


# ---------------------------------------------------------------- routing a tie to one more labeler


def test_tie_goes_to_one_more_labeler_when_configured(crowd: LabelingService) -> None:
    ids = make_project(crowd, 2, TEXTS[:2])
    crowd.configure_project("p", extra_answer_on_disagreement=True)
    for user, label in (("alice", "spam"), ("bob", "ham")):
        crowd.record_answer("p", ids[0], user, label)
    result = crowd.record_answer("p", ids[1], "alice", "spam")
    assert not result.complete
    assert crowd.record_answer("p", ids[1], "bob", "spam").complete  # agreement: complete at k
    assert crowd.status("p").remaining == 1  # the tie still needs an answer
    assert [r.record_id for r in crowd.next_records("p", "carol", 5)] == [ids[0]]
    assert crowd.next_records("p", "dave", 5) == []  # one extra answer, not more
    final = crowd.record_answer("p", ids[0], "carol", "spam")
    assert final.complete
    assert crowd.final_labels("p")[str(0)] == "spam"
    assert crowd.review_queue("p") == []  # the extra answer settled it


def test_undo_of_the_extra_answer_reopens_the_tie(crowd: LabelingService) -> None:
    ids = make_project(crowd, 2, TEXTS[:1])
    crowd.configure_project("p", extra_answer_on_disagreement=True)
    crowd.record_answer("p", ids[0], "alice", "spam")
    crowd.record_answer("p", ids[0], "bob", "ham")
    assert crowd.record_answer("p", ids[0], "carol", "ham").complete
    crowd.undo("p", "carol")
    assert crowd.status("p").remaining == 1
    # Bob changing his mind settles the tie without a third answer.
    assert crowd.record_answer("p", ids[0], "bob", "spam").complete
    assert crowd.final_labels("p") == {"0": "spam"}


def test_configuring_routing_reopens_and_closes_existing_ties(crowd: LabelingService) -> None:
    ids = make_project(crowd, 2, TEXTS[:3])
    for i, (a, b) in enumerate((("spam", "ham"), ("spam", "spam"), ("ham", "ham"))):
        crowd.record_answer("p", ids[i], "alice", a)
        crowd.record_answer("p", ids[i], "bob", b)
    assert crowd.status("p").remaining == 0
    assert [item.record_id for item in crowd.review_queue("p")] == [ids[0]]
    assert crowd.configure_project("p", extra_answer_on_disagreement=True).extra_answer_on_disagreement
    assert crowd.status("p").remaining == 1
    assert crowd.review_queue("p") == []  # not before the extra answer
    crowd.configure_project("p", extra_answer_on_disagreement=False)
    assert crowd.status("p").remaining == 0


def test_routing_applies_to_imported_long_format_answers(crowd: LabelingService, tmp_path: Path) -> None:
    crowd.create_project("p", ["spam", "ham"], answers_per_record=2)
    crowd.configure_project("p", extra_answer_on_disagreement=True)
    rows = [
        {"id": "a", "text": TEXTS[0], "worker": "w1", "label": "spam"},
        {"id": "a", "text": TEXTS[0], "worker": "w2", "label": "ham"},
        {"id": "b", "text": TEXTS[1], "worker": "w1", "label": "spam"},
        {"id": "b", "text": TEXTS[1], "worker": "w2", "label": "spam"},
    ]
    result = crowd.import_file(
        "p", write_csv(tmp_path / "long.csv", rows), label_column="label", annotator_column="worker"
    )
    assert (result.new_records, result.annotations) == (2, 4)
    status = crowd.status("p")
    assert (status.remaining, status.labeled) == (1, 1)
    assert [r.external_id for r in crowd.next_records("p", "w3", 5)] == ["a"]


# ---------------------------------------------------------------- review queue and gold labels


def _answer_all(svc: LabelingService, ids: dict[int, int], users: tuple[str, ...], wrong: dict[int, str]):
    for i, rid in ids.items():
        for user in users:
            svc.record_answer("p", rid, user, wrong.get(i, TRUTH[i]))


def test_review_queue_has_the_tie_and_the_injected_mislabel_only(crowd: LabelingService) -> None:
    ids = make_project(crowd, 2)
    _answer_all(crowd, {i: r for i, r in ids.items() if i != 20}, ("alice", "bob"), wrong={3: "ham"})
    crowd.record_answer("p", ids[20], "alice", "ham")
    crowd.record_answer("p", ids[20], "bob", "spam")  # a tie on a ham text
    crowd.retrain("p")
    items = crowd.review_queue("p", 10)
    assert [(item.record_id, item.kind) for item in items] == [(ids[20], "tie"), (ids[3], "label_issue")]
    tie, issue = items
    assert tie.label in ("ham", "spam") and tie.answers == (("alice", "ham"), ("bob", "spam"))
    assert tie.label == crowd.final_labels("p")["20"]  # the aggregate's pick stands until an admin decides
    assert "split" in tie.reason and tie.label in tie.reason and tie.text == TEXTS[20]
    assert issue.label == "ham" and issue.suggested_label == "spam" and issue.confidence > 0.5
    assert issue.answers == (("alice", "ham"), ("bob", "ham"))
    assert crowd.review_queue("p", 1) == items[:1]


def test_review_queue_reports_a_confident_model_that_disagrees(crowd: LabelingService) -> None:
    ids = make_project(crowd, 1)
    for i in (0, 1, 2, 4, 12, 13, 14, 15):
        crowd.record_answer("p", ids[i], "alice", TRUTH[i])
    crowd.retrain("p")  # the model never saw record 3
    crowd.record_answer("p", ids[3], "alice", "ham")  # a spam text labeled ham
    # 9 labels are too few for confident learning (it needs 10); the latest model still speaks up.
    [item] = crowd.review_queue("p")
    assert (item.record_id, item.kind, item.label, item.suggested_label) == (
        ids[3],
        "model_disagrees",
        "ham",
        "spam",
    )
    assert item.confidence >= review.MODEL_CONFIDENCE


def test_review_queue_low_agreement_with_k_3(crowd: LabelingService) -> None:
    crowd.create_project("p", ["a", "b", "c"], answers_per_record=3)
    crowd.import_rows("p", [ImportRow(line=2, external_id="x", text="some text")])
    rid = crowd.find_record("p", "x").record_id
    for user, label in (("u1", "a"), ("u2", "b"), ("u3", "c")):
        crowd.record_answer("p", rid, user, label)
    [item] = crowd.review_queue("p")
    assert item.kind in ("tie", "low_agreement") and item.record_id == rid
    assert sorted(label for _, label in item.answers) == ["a", "b", "c"]


def test_gold_label_wins_completes_the_record_and_leaves_the_queue(crowd: LabelingService, tmp_path: Path):
    ids = make_project(crowd, 2, TEXTS[:3])
    crowd.record_answer("p", ids[0], "alice", "spam")
    crowd.record_answer("p", ids[0], "bob", "ham")
    assert [item.record_id for item in crowd.review_queue("p")] == [ids[0]]
    gold = crowd.record_answer("p", ids[0], "admin", "ham", source="review")
    assert gold.complete
    assert crowd.review_queue("p") == []
    assert crowd.final_labels("p") == {"0": "ham"}
    assert ("admin", "ham", "review") in [
        (who, label, source) for rid, who, label, source in annotation_rows(crowd) if rid == ids[0]
    ]
    # Gold on a record with one answer completes it at once: nobody else is asked.
    crowd.record_answer("p", ids[1], "alice", "spam")
    crowd.record_answer("p", ids[1], "admin", "ham", source="review")
    with pytest.raises(StaleRecord):
        crowd.record_answer("p", ids[1], "bob", "spam")
    assert ids[1] not in [r.record_id for r in crowd.next_records("p", "bob", 5)]
    status = crowd.status("p")
    assert status.label_counts == {"spam": 0, "ham": 2}
    assert next(a for a in status.annotators if a.user == "admin").agreement is None  # gold is not scored
    crowd.export("p", tmp_path / "out.csv")
    with open(tmp_path / "out.csv", encoding="utf-8") as handle:
        labels = {r["id"]: r["label"] for r in csv.DictReader(handle)}
    assert labels == {"0": "ham", "1": "ham", "2": ""}


def test_gold_overrides_dawid_skene(crowd: LabelingService) -> None:
    ids = make_project(crowd, 3, TEXTS[:1])
    for user in ("u1", "u2", "u3"):
        crowd.record_answer("p", ids[0], user, "spam")
    crowd.record_answer("p", ids[0], "admin", "ham", source="review")
    assert crowd.final_labels("p") == {"0": "ham"}


# ---------------------------------------------------------------- core.review by hand


def test_is_tied_and_needs_extra_answer() -> None:
    assert (
        review.is_tied(["a", "b"])
        and review.is_tied(["a", "b", "c"])
        and review.is_tied(["a", "a", "b", "b"])
    )
    assert not review.is_tied(["a"]) and not review.is_tied(["a", "a", "b"]) and not review.is_tied([])
    assert review.needs_extra_answer(["a", "b"], 2)
    assert not review.needs_extra_answer(["a", "b", "a"], 2)  # already had its extra answer
    assert not review.needs_extra_answer(["a", "b"], 3)  # still collecting the regular answers


PROBA = np.array([[0.9, 0.1], [0.8, 0.2], [0.15, 0.85], [0.1, 0.9], [0.3, 0.7], [0.15, 0.85]])
GIVEN = np.array([0, 0, 0, 1, 1, 1])


def test_confident_joint_by_hand() -> None:
    # t0 = (0.9 + 0.8 + 0.15) / 3, t1 = (0.9 + 0.7 + 0.85) / 3.
    np.testing.assert_allclose(review.per_class_thresholds(GIVEN, PROBA), [1.85 / 3, 2.45 / 3])
    joint, confident = review.confident_joint(GIVEN, PROBA)
    # Row 4 (0.3, 0.7) clears neither threshold. Raw joint [[2, 1], [0, 2]]; row 1 scaled by 3/2.
    assert confident.tolist() == [0, 0, 1, 1, -1, 1]
    np.testing.assert_allclose(joint, [[2, 1], [0, 3]])


def test_find_label_issues_by_hand() -> None:
    assert review.find_label_issues(GIVEN, PROBA).tolist() == [2]
    # Three classes: the joint says one "0" is really "2" and one "1" is really "0"; ranked by how
    # little probability the model gives the given label.
    proba = np.array([
        [0.8, 0.1, 0.1], [0.7, 0.2, 0.1], [0.1, 0.1, 0.8],  # labeled 0; row 2 looks like a 2
        [0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1],  # labeled 1; row 5 looks like a 0
        [0.1, 0.1, 0.8], [0.1, 0.2, 0.7], [0.2, 0.1, 0.7],  # labeled 2
    ])  # fmt: skip
    given = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    assert review.find_label_issues(given, proba).tolist() == [2, 5]


def test_find_label_issues_never_flags_agreement_or_a_whole_label() -> None:
    # Every record looks like class 1, including the only "0": it is kept (a label never empties).
    proba = np.array([[0.1, 0.9], [0.2, 0.8], [0.1, 0.9]])
    assert review.find_label_issues(np.array([0, 1, 1]), proba).tolist() == []
    # Confident but agreeing records are never flagged.
    assert review.find_label_issues(np.array([0, 1]), np.array([[0.99, 0.01], [0.01, 0.99]])).tolist() == []
    assert review.find_label_issues(np.zeros(0, dtype=int), np.zeros((0, 2))).tolist() == []
    with pytest.raises(ValueError):
        review.find_label_issues(np.array([0, 2]), PROBA[:2])


# ---------------------------------------------------------------- the command line


def test_cli_status_annotators_review_and_gold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABELBOT_DATABASE_URL", database_url(tmp_path, "cli", with_tables=True))
    monkeypatch.setenv("LABELBOT_EMBEDDING_MODEL", "hashing-64")
    monkeypatch.setenv("LABELBOT_RETRAIN_EVERY", "0")
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(cli_app, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    run("init", "p", "--labels", "spam,ham", "--answers-per-record", "3")
    rows = []
    noisy = np.random.default_rng(1).random(len(TEXTS)) < 0.4
    for i, text in enumerate(TEXTS):
        other = "ham" if TRUTH[i] == "spam" else "spam"
        for worker, label in (("w1", TRUTH[i]), ("w2", TRUTH[i]), ("w3", other if noisy[i] else TRUTH[i])):
            rows.append({"id": f"r{i}", "text": text, "worker": worker, "label": label})
    # Record r1 (spam): the two reliable workers say ham, w3 says spam: a 2-1 split.
    rows[3]["label"], rows[4]["label"], rows[5]["label"] = "ham", "ham", "spam"
    data = write_csv(tmp_path / "long.csv", rows)
    run(
        "import",
        "p",
        str(data),
        "--annotator-column",
        "worker",
        "--label-column",
        "label",
        "--id-column",
        "id",
    )
    out = run("status", "p", "--annotators")
    assert "est. accuracy" in out and "Cohen's kappa" in out and "w3" in out
    status = json.loads(run("status", "p", "--json"))
    estimated = {a["user"]: a["estimated_accuracy"] for a in status["annotators"]}
    assert estimated["w1"] > estimated["w3"]
    assert {(p["first"], p["second"]) for p in status["pairs"]} == {("w1", "w2"), ("w1", "w3"), ("w2", "w3")}
    run("export", "p", "-o", str(tmp_path / "out.csv"))
    with open(tmp_path / "out.csv", encoding="utf-8") as handle:
        exported = {r["id"]: r for r in csv.DictReader(handle)}
    assert all(r["n_annotations"] == "3" and r["label"] for r in exported.values())
    assert float(exported["r1"]["agreement"]) == pytest.approx(2 / 3, abs=1e-4)
    listed = [json.loads(line) for line in run("review", "p", "--json").splitlines()]
    assert all(item["kind"] in ("tie", "low_agreement", "label_issue", "model_disagrees") for item in listed)
    assert "gold label spam" in run("gold", "p", "r1", "spam", "-u", "admin")
    run("export", "p", "-o", str(tmp_path / "out2.csv"))
    with open(tmp_path / "out2.csv", encoding="utf-8") as handle:
        assert next(r for r in csv.DictReader(handle) if r["id"] == "r1")["label"] == "spam"
    out = run("configure", "p", "--extra-answer-on-disagreement")
    assert "extra_answer_on_disagreement=True" in out


def test_service_clock_defaults_to_utcnow(settings: Settings) -> None:
    svc = LabelingService(settings, embedder=HashingEmbedder(64))
    try:
        assert svc.clock is utcnow
    finally:
        svc.close()
