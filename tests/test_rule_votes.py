"""Rules in the model's predictions (core.rule_votes): the weights, the votes over a pool and over texts,
and a retrain through the facade."""

from __future__ import annotations

import math
import pickle
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from core import rule_votes, rules
from core.embeddings import HashingEmbedder
from core.learner import EmbeddingClassifier, PoolScores
from core.multilabel_learner import MultiLabelClassifier, MultiLabelScores
from core.service import LabelingService
from core.types import RuleInfo
from tests.conftest import make_settings, write_csv
from tests.test_rules import LABELS, TEXTS

# ------------------------------------------------------------------ weights


def test_log_odds_by_hand() -> None:
    assert rule_votes.log_odds(0.8, 4, 1.0) == pytest.approx(math.log(0.8 * 3 / 0.2))
    assert rule_votes.log_odds(0.8, 4, 0.25) == pytest.approx(0.25 * math.log(12))
    assert rule_votes.log_odds(0.1, 4, 1.0) == 0.0  # below chance (1/4): no vote, never one against
    assert rule_votes.log_odds(1.0, 4, 1.0) == pytest.approx(math.log(0.99 * 3 / 0.01))  # clipped
    assert rule_votes.log_odds(0.9, 4, 0.0) == 0.0
    assert rule_votes.log_odds(0.9, 1, 1.0) == 0.0


def _info(rule_id: int, label: str, *, agreeing: int = 0, labeled: int = 0, timed_out: bool = False,
          pattern: str = "x") -> RuleInfo:  # fmt: skip
    return RuleInfo(id=rule_id, project="p", label=label, kind="keywords", pattern=pattern, created_by="u",
                    created_at=datetime.now(UTC), description="", agreeing=agreeing, labeled=labeled,
                    timed_out=timed_out)  # fmt: skip


def test_voting_weighs_rules_by_their_shrunk_precision_and_leaves_out_what_cannot_vote() -> None:
    found = [
        _info(1, "refund", agreeing=5, labeled=5),  # shrunk (5 + 3.5) / 10 = 0.85
        _info(2, "card"),  # no labeled matches: the prior, 0.7
        _info(3, "other", agreeing=0, labeled=30),  # (0 + 3.5) / 35 = 0.1, below chance (1/3)
        _info(4, "card", timed_out=True),
        _info(5, "gone"),  # a label no longer in the set
        _info(6, "card"),  # matches nothing
    ]
    evaluations = {
        1: rules.Evaluation(frozenset({1, 2, 3})),
        2: rules.Evaluation(frozenset({3, 4})),
        3: rules.Evaluation(frozenset({30})),
        4: rules.Evaluation(frozenset(), timed_out=True),
        5: rules.Evaluation(frozenset({40})),
        6: rules.Evaluation(frozenset()),
    }
    spec = rule_votes.voting(found, evaluations, LABELS, 0.5)
    assert spec is not None
    assert [r.label for r in spec.rules] == ["refund", "card"]
    assert spec.rules[0].log_odds == pytest.approx(0.5 * math.log(0.85 * 2 / 0.15))
    assert spec.rules[1].log_odds == pytest.approx(0.5 * math.log(0.7 * 2 / 0.3))
    assert spec.matched == (frozenset({1, 2, 3}), frozenset({3, 4}))
    assert rule_votes.voting(found[2:], evaluations, LABELS, 0.5) is None
    assert rule_votes.voting(found, evaluations, LABELS, 0.0) is None


# ------------------------------------------------------------------ votes over a pool and over texts


def _toy() -> tuple[EmbeddingClassifier, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 8))
    y = np.repeat(np.asarray(LABELS, dtype=object), 10)
    X = (np.repeat(centers, 10, axis=0) + rng.normal(scale=0.8, size=(30, 8))).astype(np.float32)
    return EmbeddingClassifier(random_state=0).fit(X, y), X, y


def test_a_vote_moves_only_the_records_its_rules_match_toward_their_label() -> None:
    classifier, X, _ = _toy()
    ids = np.arange(100, 130)
    spec = rule_votes.RuleVoting(
        (rule_votes.WeightedRule("keywords", "a", "refund", 1.0),
         rule_votes.WeightedRule("keywords", "b", "refund", 0.5),
         rule_votes.WeightedRule("keywords", "c", "unknown", 5.0)),  # a class the model does not know
        (frozenset({101, 125}), frozenset({125, 999}), frozenset({102})),
    )  # fmt: skip
    plain = classifier.score_pool(X)
    classifier.rule_votes_ = rule_votes.fit_votes(spec, classifier)
    voted = rule_votes.score_pool(classifier, X, ids)
    proba = classifier.predict_proba(X)
    column = list(classifier.classes_).index("refund")
    for row, bias in ((1, 1.0), (25, 1.5)):  # two rules of one label add up
        expected = proba[row].copy()
        expected[column] *= math.exp(bias)
        expected /= expected.sum()
        by_hand = PoolScores.from_proba(expected[None, :].astype(np.float32))
        np.testing.assert_array_equal(voted.top_classes[row], by_hand.top_classes[0])
        np.testing.assert_allclose(voted.top_proba[row], by_hand.top_proba[0], rtol=1e-5)
        np.testing.assert_allclose(voted.entropy[row], by_hand.entropy[0], rtol=1e-4)
    others = np.setdiff1d(np.arange(30), [1, 25])  # 102's rule names a class the model lacks
    np.testing.assert_array_equal(voted.top_classes[others], plain.top_classes[others])
    np.testing.assert_array_equal(voted.top_proba[others], plain.top_proba[others])
    # The votes travel with the pickled classifier: another process scores the pool the same way.
    again = rule_votes.score_pool(pickle.loads(pickle.dumps(classifier)), X, ids)
    np.testing.assert_array_equal(again.top_proba, voted.top_proba)


def test_predict_runs_the_rules_on_texts() -> None:
    classifier, X, _ = _toy()
    assert list(rule_votes.predict(classifier, X, [""] * 30)) == list(classifier.predict(X))  # no votes
    spec = rule_votes.RuleVoting((rule_votes.WeightedRule("regex", "/zzz/i", "other", 50.0),), (frozenset(),))
    classifier.rule_votes_ = rule_votes.fit_votes(spec, classifier)
    texts = ["ZZZ" if i % 2 else "nothing" for i in range(30)]
    predicted = rule_votes.predict(classifier, X, texts)
    assert set(predicted[1::2]) == {"other"}  # an overwhelming vote wins wherever the rule matches
    assert list(predicted[0::2]) == list(classifier.predict(X[0::2]))


def test_seed_rows_spread_over_the_labels() -> None:
    rows = np.asarray([10, 11, 12, 13, 20, 21, 30])
    labels = np.asarray(["a", "a", "a", "a", "b", "b", "c"], dtype=object)
    seeds = rule_votes.seed_rows(rows, labels, 3, np.random.default_rng(0))
    assert sorted(label for _, label in seeds) == ["a", "b", "c"]
    assert all(dict(zip(rows.tolist(), labels, strict=True))[row] == label for row, label in seeds)
    assert len(rule_votes.seed_rows(rows, labels, 10, np.random.default_rng(0))) == 7


def test_cold_start_rows_leave_out_records_whose_rules_disagree() -> None:
    spec = rule_votes.RuleVoting(
        (rule_votes.WeightedRule("keywords", "a", "refund", 1.0),
         rule_votes.WeightedRule("keywords", "b", "card", 1.0)),
        (frozenset({1, 2}), frozenset({2, 3, 4})),
    )  # fmt: skip
    rows, labels = rule_votes.cold_start_rows(spec, np.asarray([1, 2, 3, 4, 5]), np.asarray([0, 1, 2, 4]),
                                              LABELS)  # fmt: skip
    # Record 2 is claimed by both labels; record 4 (row 3) is no candidate: it was answered.
    assert dict(zip(rows.tolist(), labels.tolist(), strict=True)) == {0: "refund", 2: "card"}


# ------------------------------------------------------------------ through the facade


def _project(service: LabelingService, tmp_path: Path) -> dict[str, int]:
    service.create_project("p", LABELS, answers_per_record=1)
    path = write_csv(tmp_path / "p.csv", [{"id": k, "text": v} for k, v in TEXTS.items()])
    service.import_file("p", path)
    return {k: service.find_record("p", k).record_id for k in TEXTS}


def test_a_retrain_votes_with_the_rules_and_a_cold_start_asks_about_their_matches(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, label_name_weight=0, rule_vote_strength=1.0)
    service = LabelingService(settings, embedder=HashingEmbedder(64))
    try:
        ids = _project(service, tmp_path)
        service.add_rule("p", "refund -> refund", "U_ADMIN")  # r1 r2 r4 ("Refund" too)
        service.add_rule("p", "hello -> other", "U_ADMIN")  # r7
        service.settings = settings.model_copy(update={"rule_cold_start": True})
        service.retrain("p", queue_size=4)  # no answers: the cold start, seeded by the rules
        first = service.next_records("p", "U1", 4)
        assert {c.reason for c in first if c.reason.startswith("a rule says")} == {
            "a rule says refund", "a rule says other"}  # fmt: skip
        for key, label in {"r1": "refund", "r3": "card", "r5": "card", "r6": "refund"}.items():
            service.record_answer("p", ids[key], "U1", label)
        run = service.retrain("p")
        assert run is not None and run.n_labels == 4  # rules vote, but are no labels
        classifier = service.latest_classifier("p")
        votes = rule_votes.votes_of(classifier)
        assert votes is not None and [r.label for r in votes.rules] == ["refund"]  # "other" is no class yet
        assert set(votes.record_ids.tolist()) == {ids["r1"], ids["r2"], ids["r4"]}
        voted = service.get_record("p", ids["r4"])
        service.settings = settings.model_copy(update={"rule_vote_strength": 0.0})
        service.retrain("p")
        assert rule_votes.votes_of(service.latest_classifier("p")) is None
        plain = service.get_record("p", ids["r4"])
        assert (plain.predicted_label, voted.predicted_label) == ("card", "refund")  # the vote turned it
        assert service.status("p").labeled == 4
    finally:
        service.close()


def test_by_default_the_cold_start_is_the_strategy_s_own(tmp_path: Path) -> None:
    service = LabelingService(make_settings(tmp_path, label_name_weight=0), embedder=HashingEmbedder(64))
    try:
        _project(service, tmp_path)
        service.add_rule("p", "refund -> refund", "U_ADMIN")
        service.retrain("p", queue_size=4)
        first = service.next_records("p", "U1", 4)
        assert len(first) == 4 and not [c for c in first if c.reason.startswith("a rule says")]
    finally:
        service.close()


def test_another_process_guesses_with_the_votes_of_the_run(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, label_name_weight=0, rule_vote_strength=1.0)
    trainer = LabelingService(settings, embedder=HashingEmbedder(64))
    reader = None
    try:
        ids = _project(trainer, tmp_path)
        trainer.add_rule("p", "hello, cardboard -> other", "U_ADMIN")
        for key, label in {"r1": "refund", "r3": "card", "r7": "other", "r2": "refund"}.items():
            trainer.record_answer("p", ids[key], "U1", label)
        trainer.retrain("p")
        reader = LabelingService(settings, embedder=HashingEmbedder(64))  # never retrained: loads the run
        for key in ("r5", "r8"):
            mine, theirs = trainer.get_record("p", ids[key]), reader.get_record("p", ids[key])
            assert (theirs.predicted_label, theirs.confidence) == (mine.predicted_label,
                                                                   pytest.approx(mine.confidence))
        assert trainer.get_record("p", ids["r5"]).predicted_label == "other"
    finally:
        trainer.close()
        if reader is not None:
            reader.close()


def test_label_log_odds_by_hand() -> None:
    assert rule_votes.label_log_odds(0.8, 0.2, 1.0) == pytest.approx(math.log(4) - math.log(0.25))
    assert rule_votes.label_log_odds(0.8, 0.2, 0.25) == pytest.approx(0.25 * math.log(16))
    assert rule_votes.label_log_odds(0.3, 0.4, 1.0) == 0.0  # rarer where the rule fires: no vote


def test_a_multi_label_vote_moves_its_label_s_yes_no_only() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 8)).astype(np.float32)
    y = np.asarray([["refund", "card", "refund|card", "other"][i % 4] for i in range(40)], dtype=object)
    classifier = MultiLabelClassifier(labels=LABELS, random_state=0).fit(X, y)
    card_rule = rule_votes.WeightedRule("keywords", "a", "card", 2.0)
    spec = rule_votes.RuleVoting((card_rule,), (frozenset({7, 9}),))
    classifier.rule_votes_ = rule_votes.fit_votes(spec, classifier)
    assert classifier.rule_votes_.multi_label and classifier.rule_votes_.classes == tuple(LABELS)
    ids = np.arange(40)
    own = classifier.score_pool(X)
    voted = rule_votes.with_votes(classifier, X, ids, own)
    P = classifier.predict_proba(X[[7, 9]])
    logit = np.log(P[:, 1] / (1 - P[:, 1])) + 2.0
    P[:, 1] = 1 / (1 + np.exp(-logit))
    by_hand = MultiLabelScores.from_label_proba(P)
    np.testing.assert_array_equal(voted.best[[7, 9]], by_hand.best)
    np.testing.assert_allclose(voted.uncertainty[[7, 9]], by_hand.uncertainty, rtol=1e-5)
    others = np.setdiff1d(ids, [7, 9])
    np.testing.assert_array_equal(voted.best[others], own.best[others])
    assert isinstance(voted, MultiLabelScores) and voted.uncertainty is not own.uncertainty
    texts = ["a" if i in (7, 9) else "" for i in range(40)]
    assert list(rule_votes.predict(classifier, X, texts)) == [classifier.classes_[m] for m in voted.best]


def test_rules_vote_per_label_in_a_multi_label_project(tmp_path: Path) -> None:
    service = LabelingService(make_settings(tmp_path, rule_vote_strength=1.0), embedder=HashingEmbedder(64))
    try:
        service.create_project("m", LABELS, multi_label=True)
        path = write_csv(tmp_path / "m.csv", [{"id": k, "text": v} for k, v in TEXTS.items()])
        service.import_file("m", path)
        service.add_rule("m", "refund -> refund", "U_ADMIN")  # r1 r2 r4
        for key, answer in {"r1": ["refund"], "r3": ["card"], "r4": ["refund", "card"], "r7": []}.items():
            service.record_answer("m", service.find_record("m", key).record_id, "U1", answer)
        service.retrain("m")
        votes = rule_votes.votes_of(service.latest_classifier("m"))
        assert votes is not None and votes.multi_label
        matched = {service.find_record("m", key).record_id for key in ("r1", "r2", "r4")}
        assert set(votes.record_ids.tolist()) == matched
        # Right on both labeled matches: (2 + 3.5) / 7; refund is in 2 of 4 sets: (2 + 1) / (4 + 2).
        assert votes.rules[0].log_odds == pytest.approx(rule_votes.label_log_odds(5.5 / 7, 0.5, 1.0))
    finally:
        service.close()
