"""Keyword/regex rules (core.rules): parsing and refusals, timeouts, statistics, cards and export."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from core import rules
from core.embeddings import HashingEmbedder
from core.errors import LabelbotError, UnknownLabel
from core.io import ImportRow
from core.learner import EmbeddingClassifier
from core.service import LabelingService
from tests.conftest import make_settings, write_csv

LABELS = ["refund", "card", "other"]
TEXTS = {
    "r1": "I want a refund please",
    "r2": "Refund my money back now",
    "r3": "my card never arrived",
    "r4": "refund for the card",
    "r5": "the cardboard box",  # "card" only inside a word
    "r6": "money \t back guarantee",  # a phrase across other whitespace
    "r7": "hello",
    "r8": "refunds are slow",  # the keyword "refund" is not "refunds"; /refund/i matches it
}
RULE_A = "refund, money back -> refund"
RULE_B = "card -> card"
RULE_C = "/refund/i -> refund"


def _project(service: LabelingService, tmp_path: Path) -> dict[str, int]:
    service.create_project("p", LABELS, answers_per_record=1)
    path = write_csv(tmp_path / "p.csv", [{"id": k, "text": v} for k, v in TEXTS.items()])
    service.import_file("p", path)
    return {k: service.find_record("p", k).record_id for k in TEXTS}


# ------------------------------------------------------------------ parsing


def test_keywords_and_regexes_parse_and_match_on_word_boundaries() -> None:
    keywords = rules.parse("  Refund ,money   back,, refund -> refund", LABELS)
    assert keywords == rules.ParsedRule("keywords", "Refund, money back", "refund")
    pattern = rules.compile_pattern(keywords.kind, keywords.pattern)
    found = {k for k, text in TEXTS.items() if rules.matches(pattern, text)}
    assert found == {"r1", "r2", "r4", "r6"}
    regex_rule = rules.parse("/refund(s)? -> x/i → refund", LABELS)  # the last arrow splits
    assert regex_rule == rules.ParsedRule("regex", "/refund(s)? -> x/i", "refund")
    assert rules.matches(rules.compile_pattern("regex", "/REFUNDS?/i"), "refunds are slow")
    assert not rules.matches(rules.compile_pattern("regex", "/REFUNDS?/"), "refunds are slow")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("refund please", "Write a rule as"),
        ("refund ->", "Name the label"),
        ("refund -> nope", "'nope' is not a label"),
        ("-> refund", "no keywords or pattern"),
        (" , ,  -> refund", "no keywords"),
        ("/(unclosed/ -> refund", "Not a valid regex"),
        ("/refund/q -> refund", "Unknown regex flag 'q'"),
        ("// -> refund", "is empty"),
        ("/refund -> refund", "between slashes"),
    ],
)
def test_a_bad_rule_is_refused_in_one_line(text: str, says: str) -> None:
    with pytest.raises(LabelbotError) as refused:
        rules.parse(text, LABELS)
    assert says in str(refused.value) and "\n" not in str(refused.value)


def test_an_unknown_label_is_an_unknown_label_error() -> None:
    with pytest.raises(UnknownLabel):
        rules.parse("card -> cards", LABELS)


@pytest.mark.timeout(60)
def test_a_pathological_regex_is_marked_timed_out_instead_of_hanging() -> None:
    pattern = rules.compile_pattern("regex", "/^(a|aa)+$/")
    texts = [(1, "aaa"), (2, "a" * 80 + "b"), (3, "aa")]
    assert rules.matches(pattern, "a" * 80 + "b", timeout=0.01) is None
    result = rules.evaluate(pattern, texts, per_record=0.01)
    assert result.timed_out and result.matched == frozenset()
    # The same pattern on texts it handles quickly is not marked.
    assert rules.evaluate(pattern, [(1, "aaa"), (3, "aa"), (4, "ab")]) == rules.Evaluation(frozenset({1, 3}))
    # A total budget: spent before the second record, the evaluation stops and says so.
    assert rules.evaluate(pattern, [(1, "aaa"), (3, "aa")], budget=-1.0).timed_out


# ------------------------------------------------------------------ the service


def test_statistics_on_a_small_project_match_a_count_by_hand(
    service: LabelingService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _project(service, tmp_path)
    a = service.add_rule("p", RULE_A, "U_ADMIN")
    b = service.add_rule("p", RULE_B, "U_ADMIN")
    c = service.add_rule("p", RULE_C, "U_ADMIN")
    assert (a.kind, a.pattern, a.label) == ("keywords", "refund, money back", "refund")
    assert a.created_by == "U_ADMIN"
    assert a.description == "refund, money back → refund"
    for key, label in {"r1": "refund", "r2": "refund", "r3": "card", "r4": "card"}.items():
        service.record_answer("p", ids[key], "U1", label)
    monkeypatch.setattr(rules, "MIN_PRECISION_SUPPORT", 3)
    listed = {r.id: r for r in service.list_rules("p")}
    assert list(listed) == [a.id, b.id, c.id]
    a, b, c = listed[a.id], listed[b.id], listed[c.id]
    # A: r1 r2 r4 r6; B: r3 r4; C: r1 r2 r4 r8.
    assert (a.matched, a.total, a.coverage) == (4, 8, 0.5)
    assert (a.overlap, a.conflicts) == (3, 1)  # r1 r2 r4 also by C; r4 also by B (card)
    assert (b.matched, b.overlap, b.conflicts) == (2, 1, 1)
    assert (c.matched, c.overlap, c.conflicts) == (4, 3, 1)
    assert (a.labeled, a.agreeing, a.precision) == (3, 2, pytest.approx(2 / 3))  # r4 is card
    assert (b.labeled, b.agreeing, b.precision) == (2, 2, None)  # 2 labeled: too few to tell
    assert not any(r.timed_out for r in (a, b, c))
    assert [r.description for r in service.status("p").rules] == [r.description for r in (a, b, c)]


def test_cards_show_the_rules_matching_their_record(service: LabelingService, tmp_path: Path) -> None:
    ids = _project(service, tmp_path)
    assert service.get_record("p", ids["r4"]).rules == ()
    service.add_rule("p", RULE_A, "U_ADMIN")
    service.add_rule("p", RULE_B, "U_ADMIN")
    expected = ("refund, money back → refund", "card → card")
    assert service.rule_matches("p", ids["r4"]) == expected
    assert service.get_record("p", ids["r4"]).rules == expected
    assert service.rule_matches("p", ids["r5"]) == ()
    cards = service.next_records("p", "U1", n=8)
    assert {c.external_id: c.rules for c in cards}["r6"] == ("refund, money back → refund",)
    assert service.card_update("p", ids["r3"], "U1").record.rules == ("card → card",)


def test_removing_a_rule_and_a_timed_out_rule(service: LabelingService, tmp_path: Path) -> None:
    ids = _project(service, tmp_path)
    service.import_rows("p", [ImportRow(line=1, external_id="slow", text="a" * 80 + "b")])
    slow = service.add_rule("p", "/^(a|aa)+$/ -> other", "U_ADMIN")
    assert slow.timed_out and slow.matched == 0
    assert service.rule_matches("p", service.find_record("p", "slow").record_id) == ()
    kept = service.add_rule("p", RULE_B, "U_ADMIN")
    removed = service.remove_rule("p", slow.id)
    assert removed.id == slow.id and removed.pattern == "/^(a|aa)+$/"
    assert [r.id for r in service.list_rules("p")] == [kept.id]
    with pytest.raises(rules.RuleNotFound):
        service.remove_rule("p", slow.id)
    assert service.rule_matches("p", ids["r3"]) == ("card → card",)


def test_an_import_is_matched_by_the_rules_it_arrives_under(service: LabelingService, tmp_path: Path) -> None:
    _project(service, tmp_path)
    rule = service.add_rule("p", RULE_B, "U_ADMIN")
    assert (rule.matched, rule.total) == (2, 8)
    service.import_rows("p", [ImportRow(line=1, external_id="r9", text="Card declined")])
    again = service.list_rules("p")[0]
    assert (again.matched, again.total) == (3, 9)


def test_export_has_the_rule_labels_and_keeps_the_human_answers(
    service: LabelingService, tmp_path: Path
) -> None:
    ids = _project(service, tmp_path)
    service.record_answer("p", ids["r4"], "U1", "other")  # a rule never overrides it
    service.record_answer("p", ids["r7"], "U1", "other")
    for text in (RULE_A, RULE_B, RULE_C):
        service.add_rule("p", text, "U_ADMIN")
    service.export("p", tmp_path / "out.csv")
    with open(tmp_path / "out.csv", encoding="utf-8") as handle:
        rows = {row["id"]: row for row in csv.DictReader(handle)}
    assert rows["r4"]["rule_labels"] == "refund|card" and rows["r4"]["label"] == "other"
    assert rows["r7"]["rule_labels"] == "" and rows["r7"]["label"] == "other"
    assert rows["r8"]["rule_labels"] == "refund" and rows["r8"]["label"] == ""
    assert rows["r5"]["rule_labels"] == ""
    service.export("p", tmp_path / "out.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    by_id = {line["id"]: line for line in lines}
    assert by_id["r4"]["rule_labels"] == "refund|card" and by_id["r4"]["label"] == "other"
    assert by_id["r5"]["rule_labels"] is None
    assert service.status("p").labeled == 2  # rules count toward nothing


def test_rules_follow_a_renamed_or_merged_label(service: LabelingService, tmp_path: Path) -> None:
    ids = _project(service, tmp_path)
    rule = service.add_rule("p", RULE_B, "U_ADMIN")
    service.edit_labels("p", "rename", "card", "cards")
    assert [r.label for r in service.list_rules("p")] == ["cards"]
    assert service.rule_matches("p", ids["r3"]) == ("card → cards",)
    service.edit_labels("p", "merge", "cards", "other")
    assert [(r.id, r.label) for r in service.list_rules("p")] == [(rule.id, "other")]


# ------------------------------------------------------------------ weak labels in the learner


def test_a_row_of_weight_zero_changes_nothing_and_weights_reach_the_fit() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 8)).astype(np.float32)
    y = np.asarray(["a", "b"] * 20, dtype=object)
    plain = EmbeddingClassifier(random_state=0).fit(X, y)
    flipped = np.asarray(["b", "a"] * 20, dtype=object)  # contradicting copies of every row
    both_X, both_y = np.vstack([X, X]), np.concatenate([y, flipped])
    zero = EmbeddingClassifier(random_state=0).fit(both_X, both_y, np.r_[np.ones(40), np.zeros(40)])
    np.testing.assert_allclose(zero.predict_proba(X), plain.predict_proba(X), atol=1e-4)
    heavy = EmbeddingClassifier(random_state=0).fit(both_X, both_y, np.r_[np.ones(40), np.full(40, 3.0)])
    assert np.mean(heavy.predict(X) == flipped) > max(0.5, np.mean(plain.predict(X) == flipped))


def test_simulate_takes_a_rules_file(tmp_path: Path) -> None:
    from core.simulate import read_rules, run_simulation
    from tests.conftest import banking_rows

    rows = [{"text": r["text"], "category": r["category"]} for r in banking_rows(2000)
            if r["category"] in ("card_arrival", "exchange_rate", "top_up_failed")]  # fmt: skip
    train = write_csv(tmp_path / "train.csv", rows)
    rules_file = tmp_path / "rules.txt"
    rules_file.write_text("# one rule a line\n\n/exchange|rate/i -> exchange_rate\narriv -> card_arrival\n",
                          encoding="utf-8")
    assert read_rules(rules_file) == ["/exchange|rate/i -> exchange_rate", "arriv -> card_arrival"]
    result = run_simulation(train, text_column="text", label_column="category", budget=20, seeds=1,
                            settings=make_settings(tmp_path), embedder=HashingEmbedder(64),
                            rules_path=rules_file)  # fmt: skip
    assert f"2 rules from {rules_file}" in result.notes
    assert [p.labels for p in result.runs["margin-kmeans"]] == [10, 20]
    rules_file.write_text("rate -> no_such_label\n", encoding="utf-8")
    with pytest.raises(UnknownLabel):
        run_simulation(train, text_column="text", label_column="category", budget=20, seeds=1,
                       settings=make_settings(tmp_path), embedder=HashingEmbedder(64), rules_path=rules_file)
    with pytest.raises(LabelbotError, match="cannot read the rules file"):
        read_rules(tmp_path / "missing.txt")


def test_a_retired_labels_rules_stay_listed_but_match_nothing(
    service: LabelingService, tmp_path: Path
) -> None:
    ids = _project(service, tmp_path)
    rule = service.add_rule("p", "hello -> other", "U_ADMIN")
    assert service.rule_matches("p", ids["r7"]) == ("hello → other",)
    service.edit_labels("p", "retire", "other")
    assert [(r.id, r.label, r.matched) for r in service.list_rules("p")] == [(rule.id, "other", 1)]
    assert service.rule_matches("p", ids["r7"]) == ()
    assert service.get_record("p", ids["r7"]).rules == ()
    service.export("p", tmp_path / "out.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {line["id"]: line["rule_labels"] for line in lines}["r7"] is None


def test_a_multi_label_rule_is_right_where_its_label_is_in_the_set(tmp_path: Path) -> None:
    service = LabelingService(make_settings(tmp_path), embedder=HashingEmbedder(64))
    try:
        service.create_project("m", LABELS, multi_label=True)
        rows = [{"id": k, "text": v} for k, v in TEXTS.items()]
        service.import_file("m", write_csv(tmp_path / "m.csv", rows))
        service.add_rule("m", "refund -> refund", "U_ADMIN")  # r1 r2 r4
        service.add_rule("m", "card -> card", "U_ADMIN")  # r3 r4
        for key, answer in {"r1": ["refund", "card"], "r2": ["refund"], "r4": ["card"], "r3": []}.items():
            service.record_answer("m", service.find_record("m", key).record_id, "U1", answer)
        refund, card = service.list_rules("m")
        assert (refund.agreeing, refund.labeled) == (2, 3)  # r1's set holds refund too
        assert (card.agreeing, card.labeled) == (1, 2)  # r4 yes, r3 "none of these"
        assert refund.conflicts == card.conflicts == 0  # r4 may be both
        assert refund.overlap == card.overlap == 1
    finally:
        service.close()
