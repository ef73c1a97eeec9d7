"""Tests for core.aggregate and core.agreement: hand-computed cases, seeded and built crowds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from core.aggregate import AggregateLabel, aggregate, dawid_skene, hierarchical_mace, majority_vote
from core.agreement import (
    agreement_with_aggregate,
    cohen_kappa,
    cohen_kappa_pairs,
    krippendorff_alpha_nominal,
)
from core.errors import UnknownLabel

CLASSES = ("a", "b", "c")


def _noisy(
    rng: np.random.Generator, truth: int, accuracy: float, confusion_row: np.ndarray | None = None
) -> str:
    """The true class with probability ``accuracy``, else another class (uniform or per row)."""
    if rng.random() < accuracy:
        return CLASSES[truth]
    others = [c for c in range(len(CLASSES)) if c != truth]
    p = None if confusion_row is None else confusion_row[others] / confusion_row[others].sum()
    return CLASSES[rng.choice(others, p=p)]


def _synthetic_crowd(
    seed: int = 0, n_items: int = 300, accuracies: tuple[float, ...] = (0.95, 0.9, 0.8, 0.7, 0.6)
) -> tuple[list[tuple[int, str, str]], dict[int, str]]:
    """Every annotator labels every item; errors follow an annotator-specific random confusion."""
    rng = np.random.default_rng(seed)
    truth = rng.choice(len(CLASSES), size=n_items, p=[0.5, 0.3, 0.2])
    # Random off-diagonal weights per annotator and true class: errors are not uniform.
    error_weights = rng.dirichlet(np.ones(len(CLASSES)), size=(len(accuracies), len(CLASSES)))
    answers = []
    for i, t in enumerate(truth):
        for j, acc in enumerate(accuracies):
            answers.append((i, f"w{j}", _noisy(rng, int(t), acc, error_weights[j, t])))
    return answers, {i: CLASSES[t] for i, t in enumerate(truth)}


def _accuracy(result: dict[int, AggregateLabel], truth: dict[int, str]) -> float:
    # A tie (label None) counts as a miss: the record would not get a label.
    return float(np.mean([result[i].label == label for i, label in truth.items()]))


# --------------------------------------------------------------------------- majority vote


def test_majority_vote_picks_most_frequent_label_with_shares():
    answers = [(1, "u1", "x"), (1, "u2", "x"), (1, "u3", "y"), (2, "u1", "y")]
    result = majority_vote(answers)
    assert result[1] == AggregateLabel(label="x", confidence=2 / 3, n_answers=3, tie=False, agreement=2 / 3)
    assert result[2] == AggregateLabel(label="y", confidence=1.0, n_answers=1, tie=False, agreement=1.0)


def test_majority_vote_flags_ties_with_no_label():
    answers = [
        ("r1", "u1", "x"), ("r1", "u2", "y"),  # 2 answers that disagree: a tie
        ("r2", "u1", "x"), ("r2", "u2", "y"), ("r2", "u3", "x"), ("r2", "u4", "y"),  # 2-2
        ("r3", "u1", "x"), ("r3", "u2", "y"), ("r3", "u3", "z"),  # 1-1-1
    ]  # fmt: skip
    result = majority_vote(answers)
    for item, share in (("r1", 0.5), ("r2", 0.5), ("r3", 1 / 3)):
        assert result[item].tie
        assert result[item].label is None
        assert result[item].confidence == pytest.approx(share)
        assert result[item].agreement == pytest.approx(share)


def test_last_answer_of_an_annotator_counts_once():
    # u1 changed their mind: only "y" counts, so the item is a 2-0 vote for y, not a tie.
    answers = [(1, "u1", "x"), (1, "u2", "y"), (1, "u1", "y")]
    result = majority_vote(answers)
    assert result[1] == AggregateLabel(label="y", confidence=1.0, n_answers=2, tie=False, agreement=1.0)


def test_majority_vote_empty_and_bad_input():
    assert majority_vote([]) == {}
    with pytest.raises(ValueError):
        majority_vote([(1, "u1")])


# --------------------------------------------------------------------------- Dawid-Skene


def test_dawid_skene_one_iteration_matches_hand_computation():
    # Item 1: A=x, B=x. Item 2: A=x, B=y. Classes (x, y), smoothing s = 1.
    # Soft majority init: T1 = (1, 0), T2 = (0.5, 0.5).
    # M-step: priors = (T.sum + 1) / (2 + 2) = (2.5, 1.5) / 4 = (0.625, 0.375).
    #   A counts [true, given] = [[1.5, 0], [0.5, 0]] + 1 -> rows x: (5/7, 2/7), y: (0.6, 0.4).
    #   B counts = [[1, 0.5], [0, 0.5]] + 1 -> rows x: (4/7, 3/7), y: (0.4, 0.6).
    # E-step, item 1 (A=x, B=x): x: 0.625 * 5/7 * 4/7, y: 0.375 * 0.6 * 0.4.
    #         item 2 (A=x, B=y): x: 0.625 * 5/7 * 3/7, y: 0.375 * 0.6 * 0.6.
    answers = [(1, "A", "x"), (1, "B", "x"), (2, "A", "x"), (2, "B", "y")]
    result = dawid_skene(answers, max_iter=1, smoothing=1.0)
    x1, y1 = 0.625 * 5 / 7 * 4 / 7, 0.375 * 0.6 * 0.4
    x2, y2 = 0.625 * 5 / 7 * 3 / 7, 0.375 * 0.6 * 0.6
    assert result.classes == ("x", "y")
    np.testing.assert_allclose(
        result.posteriors, [[x1 / (x1 + y1), y1 / (x1 + y1)], [x2 / (x2 + y2), y2 / (x2 + y2)]]
    )
    assert result.labels[2].label == "x"
    assert result.labels[2].confidence == pytest.approx(x2 / (x2 + y2))  # 0.5863
    assert result.labels[2].agreement == pytest.approx(0.5)
    assert result.n_iter == 1
    assert not result.converged


def test_dawid_skene_beats_majority_vote_on_synthetic_crowd():
    true_accuracy = (0.95, 0.9, 0.8, 0.7, 0.6)
    answers, truth = _synthetic_crowd(seed=0, accuracies=true_accuracy)
    result = dawid_skene(answers, max_iter=100)
    assert result.converged
    assert result.n_iter < 100
    assert _accuracy(result.labels, truth) >= _accuracy(majority_vote(answers), truth)

    estimated = [result.annotator_accuracy[f"w{j}"] for j in range(len(true_accuracy))]
    np.testing.assert_allclose(estimated, true_accuracy, atol=0.07)
    assert int(np.argmax(estimated)) == 0  # the 0.95 annotator is ranked best
    assert int(np.argmin(estimated)) == len(true_accuracy) - 1  # the 0.6 annotator worst

    for annotator, matrix in result.confusion.items():
        assert matrix.shape == (3, 3)
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
        # The reported accuracy is the prior-weighted diagonal of the confusion matrix.
        priors = np.array([result.priors[c] for c in result.classes])
        assert result.annotator_accuracy[annotator] == pytest.approx(float(priors @ np.diag(matrix)))
    np.testing.assert_allclose(result.posteriors.sum(axis=1), 1.0)
    assert sum(result.priors.values()) == pytest.approx(1.0)


def test_dawid_skene_overrules_two_bad_annotators_against_a_proven_good_one():
    rng = np.random.default_rng(1)
    answers = []
    # Track record: 60 items where "good" is always right, two reliable helpers are right 85% of
    # the time and "bad1", "bad2" only 40% (chance is 33%).
    for i in range(60):
        t = int(rng.integers(3))
        for annotator, acc in (("good", 1.0), ("bad1", 0.4), ("bad2", 0.4), ("h1", 0.85), ("h2", 0.85)):
            answers.append((i, annotator, _noisy(rng, t, acc)))
    answers += [("x", "good", "a"), ("x", "bad1", "b"), ("x", "bad2", "b")]

    assert majority_vote(answers)["x"].label == "b"
    result = dawid_skene(answers)
    assert result.labels["x"].label == "a"
    assert result.labels["x"].agreement == pytest.approx(1 / 3)
    assert result.annotator_accuracy["good"] > max(
        result.annotator_accuracy["bad1"], result.annotator_accuracy["bad2"]
    )


def test_dawid_skene_is_deterministic():
    answers, _ = _synthetic_crowd(seed=5, n_items=100)
    first, second = dawid_skene(answers), dawid_skene(answers)
    assert first.labels == second.labels
    assert first.annotator_accuracy == second.annotator_accuracy
    assert first.n_iter == second.n_iter
    np.testing.assert_array_equal(first.posteriors, second.posteriors)


def test_dawid_skene_respects_max_iter():
    answers, _ = _synthetic_crowd(seed=2, n_items=100)
    result = dawid_skene(answers, max_iter=2)
    assert result.n_iter == 2
    assert not result.converged


@pytest.mark.parametrize("sequence", ["abcabc", "aaaaaaab", "aaaaaaabc"])
def test_dawid_skene_with_one_answer_per_item_keeps_the_answer(sequence):
    # Single answers say nothing about reliability; the result must stay the answers themselves,
    # also for a rare class (the likelihood is flat, so EM must not drift towards the prior).
    answers = [(f"{annotator}-{k}", annotator, label) for annotator in ("u1", "u2", "u3")
               for k, label in enumerate(sequence)]  # fmt: skip
    result = dawid_skene(answers)
    assert result.converged
    for item, _, label in answers:
        assert result.labels[item].label == label
        assert result.labels[item].confidence > 0.9
        assert result.labels[item].n_answers == 1
        assert result.labels[item].agreement == 1.0


def test_dawid_skene_items_with_unanimous_answers():
    answers = [(i, u, "a" if i % 2 else "b") for i in range(10) for u in ("u1", "u2", "u3")]
    result = dawid_skene(answers)
    for i in range(10):
        assert result.labels[i].label == ("a" if i % 2 else "b")
        assert result.labels[i].agreement == 1.0
        assert result.labels[i].confidence > 0.99
        assert not result.labels[i].tie


def test_unused_label_gets_prior_mass_from_smoothing():
    answers = [(i, u, "a" if i % 3 else "b") for i in range(9) for u in ("u1", "u2", "u3")]
    result = dawid_skene(answers, labels=["a", "b", "c"], smoothing=0.01)
    assert result.classes == ("a", "b", "c")
    assert 0.0 < result.priors["c"] < 0.01
    assert all(matrix.shape == (3, 3) and np.all(matrix > 0) for matrix in result.confusion.values())
    assert all(label.label != "c" for label in result.labels.values())


def test_dawid_skene_exact_posterior_tie_has_no_label():
    # One item, two annotators who disagree, nothing else: the model is symmetric in x and y.
    result = dawid_skene([(1, "A", "x"), (1, "B", "y")])
    assert result.labels[1].tie
    assert result.labels[1].label is None
    assert result.labels[1].confidence == pytest.approx(0.5)


def test_dawid_skene_validates_input():
    with pytest.raises(UnknownLabel):
        dawid_skene([(1, "A", "z")], labels=["x", "y"])
    with pytest.raises(ValueError):
        dawid_skene([(1, "A", "x")], smoothing=0.0)
    empty = dawid_skene([], labels=["x", "y"])
    assert empty.labels == {} and empty.n_iter == 0 and empty.priors == {"x": 0.5, "y": 0.5}


# --------------------------------------------------------------------------- the project's crowd model


def _spammer_crowd(seed: int = 0) -> tuple[list[tuple[str | int, str, str]], dict[str | int, str]]:
    """Three good annotators, two spammers who always answer "a", and a sparse annotator.

    On even items two good annotators outvote one spammer (the majority is right); on odd items
    both spammers outvote one good annotator, so the majority says "a" on every odd item whose
    truth is "b" or "c". On "x1" and "x2" the sparse annotator (two answers in all) sides with a
    spammer against a good annotator: the majority errs there too.
    """
    rng = np.random.default_rng(seed)
    answers: list[tuple[str | int, str, str]] = []
    truth: dict[str | int, str] = {}
    good = ("g1", "g2", "g3")
    for i in range(90):
        truth[i] = CLASSES[i % 3]
        picked = rng.permutation(3)
        if i % 2 == 0:
            answers += [(i, good[picked[0]], truth[i]), (i, good[picked[1]], truth[i])]
            answers.append((i, ("spam1", "spam2")[int(rng.integers(2))], "a"))
        else:
            answers += [(i, good[picked[0]], truth[i]), (i, "spam1", "a"), (i, "spam2", "a")]
    answers += [("x1", "g1", "b"), ("x1", "spam1", "a"), ("x1", "sparse", "a")]
    answers += [("x2", "g2", "c"), ("x2", "spam2", "a"), ("x2", "sparse", "a")]
    truth.update(x1="b", x2="c")
    return answers, truth


def test_crowd_model_is_right_where_spammers_and_a_sparse_annotator_fool_the_majority():
    answers, truth = _spammer_crowd()
    majority = majority_vote(answers)
    fooled = {item for item, label in truth.items() if majority[item].label != label}
    # The majority errs on every odd item that is not "a" (30) and on x1 and x2.
    assert fooled == {i for i in range(1, 90, 2) if i % 3} | {"x1", "x2"}

    result = hierarchical_mace(answers, CLASSES)
    assert {item: result.labels[item].label for item in truth} == truth
    assert result.converged
    # The fooled items are no ties: one label had the most votes, the model chose another.
    assert not any(result.labels[item].tie for item in fooled)
    assert result.labels["x1"].agreement == pytest.approx(1 / 3)
    accuracy = result.annotator_accuracy
    assert min(accuracy[g] for g in ("g1", "g2", "g3")) > max(accuracy["spam1"], accuracy["spam2"]) + 0.3
    # Two answers, both wrong: judged mostly as a typical annotator, not as a spammer.
    assert accuracy["spam1"] < accuracy["sparse"] < accuracy["g1"]
    assert aggregate(answers, CLASSES, answers_per_record=3) == result.labels


def test_few_answers_are_shrunk_towards_the_crowd_more_than_many():
    # Five reliable annotators answer every item; "few" and "many" are both right half the time,
    # "few" on 2 items and "many" on 200.
    rng = np.random.default_rng(7)
    answers = []
    for i in range(200):
        t = int(rng.integers(3))
        answers += [(i, f"w{j}", _noisy(rng, t, 0.9)) for j in range(5)]
        answers.append((i, "many", CLASSES[t] if i % 2 else CLASSES[(t + 1) % 3]))
        if i < 2:
            answers.append((i, "few", CLASSES[t] if i % 2 else CLASSES[(t + 1) % 3]))
    result = hierarchical_mace(answers)
    accuracy = result.annotator_accuracy
    crowd = float(np.mean([accuracy[f"w{j}"] for j in range(5)]))
    assert crowd > 0.8
    assert accuracy["many"] == pytest.approx(0.5, abs=0.06)  # its own record decides
    assert abs(accuracy["few"] - crowd) < abs(accuracy["many"] - crowd)
    assert accuracy["many"] < accuracy["few"] < crowd


def test_crowd_model_recovers_annotator_accuracy_on_synthetic_crowd():
    true_accuracy = (0.95, 0.9, 0.8, 0.7, 0.6)
    answers, truth = _synthetic_crowd(seed=0, accuracies=true_accuracy)
    result = hierarchical_mace(answers)
    assert _accuracy(result.labels, truth) > _accuracy(majority_vote(answers), truth)
    estimated = [result.annotator_accuracy[f"w{j}"] for j in range(len(true_accuracy))]
    np.testing.assert_allclose(estimated, true_accuracy, atol=0.07)
    assert estimated == sorted(estimated, reverse=True)
    np.testing.assert_allclose(result.posteriors.sum(axis=1), 1.0)
    for matrix in result.confusion.values():
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
    priors = np.array([result.priors[c] for c in result.classes])
    for annotator, matrix in result.confusion.items():
        assert result.annotator_accuracy[annotator] == pytest.approx(float(priors @ np.diag(matrix)))


def test_aggregate_is_the_crowd_model_for_every_k():
    answers, _ = _synthetic_crowd(seed=4, n_items=60, accuracies=(0.9, 0.8, 0.55))
    expected = hierarchical_mace(answers).labels
    for k in (1, 2, 3, 5):
        assert aggregate(answers, answers_per_record=k) == expected


def test_tie_gets_a_label_and_the_flag_comes_from_the_vote_count():
    answers = [
        ("r1", "u1", "x"), ("r1", "u2", "y"), ("r1", "u3", "x"), ("r1", "u4", "y"),  # 2-2
        ("r2", "u1", "x"), ("r2", "u2", "y"), ("r2", "u3", "z"),  # 1-1-1
        ("r3", "u1", "x"), ("r3", "u2", "x"), ("r3", "u3", "y"),  # 2-1: no tie
    ]  # fmt: skip
    result = aggregate(answers, ["x", "y", "z"], answers_per_record=3)
    for item, given, share in (("r1", {"x", "y"}, 0.5), ("r2", {"x", "y", "z"}, 1 / 3)):
        assert result[item].tie
        assert result[item].label in given
        assert result[item].agreement == pytest.approx(share)
        assert 0.0 < result[item].confidence <= 1.0
    assert not result["r3"].tie and result["r3"].label == "x"
    assert result["r3"].agreement == pytest.approx(2 / 3)
    assert majority_vote(answers)["r1"].label is None  # the reference still leaves ties open


def test_one_answer_is_taken_as_it_is():
    # A proven spammer's single answer, and single answers of a rare class: still the answer itself.
    answers, _ = _spammer_crowd()
    singles = [("s1", "spam1", "a"), ("s2", "g1", "c"), ("s3", "newcomer", "b"), ("s4", "sparse", "c")]
    result = aggregate(answers + singles, CLASSES, answers_per_record=1)
    for item, _, label in singles:
        assert result[item] == AggregateLabel(
            label=label, confidence=result[item].confidence, n_answers=1, tie=False, agreement=1.0
        )
    # With nobody overlapping there is nothing to learn: the answers, with confidence 1.
    alone = aggregate([(i, f"u{i % 3}", "abc"[i % 3]) for i in range(9)], answers_per_record=1)
    assert {i: (v.label, v.confidence, v.tie) for i, v in alone.items()} == {
        i: ("abc"[i % 3], 1.0, False) for i in range(9)
    }


def test_two_answers_that_disagree_go_to_the_more_reliable_annotator():
    answers, _ = _spammer_crowd()
    disputes = [("d1", "g1", "c"), ("d1", "spam1", "a"), ("d2", "spam2", "a"), ("d2", "g3", "b")]
    result = aggregate(answers + disputes, CLASSES, answers_per_record=2)
    assert (result["d1"].label, result["d1"].tie, result["d1"].agreement) == ("c", True, 0.5)
    assert (result["d2"].label, result["d2"].tie) == ("b", True)
    # Two unknown annotators who disagree on a lone item: an exact tie, broken by label order.
    for labels, expected in ((["x", "y"], "x"), (["y", "x"], "y")):
        lone = aggregate([(1, "u1", "y"), (1, "u2", "x")], labels, answers_per_record=2)
        assert lone[1].label == expected and lone[1].tie and lone[1].confidence == pytest.approx(0.5)


def test_crowd_model_is_deterministic_and_ignores_the_order_of_answers():
    answers, _ = _synthetic_crowd(seed=5, n_items=100)
    first, second = hierarchical_mace(answers), hierarchical_mace(answers)
    assert first.labels == second.labels
    assert first.annotator_accuracy == second.annotator_accuracy
    np.testing.assert_array_equal(first.posteriors, second.posteriors)
    shuffled = [answers[i] for i in np.random.default_rng(0).permutation(len(answers))]
    again = hierarchical_mace(shuffled)
    assert {i: v.label for i, v in again.labels.items()} == {i: v.label for i, v in first.labels.items()}
    for annotator, value in first.annotator_accuracy.items():
        assert again.annotator_accuracy[annotator] == pytest.approx(value)


def test_crowd_model_validates_input_and_handles_nothing():
    with pytest.raises(UnknownLabel):
        hierarchical_mace([(1, "A", "z")], labels=["x", "y"])
    with pytest.raises(UnknownLabel):
        hierarchical_mace([(1, "A", "x")], labels=["x", "y"], gold={1: "z"})
    with pytest.raises(ValueError):
        hierarchical_mace([(1, "A", "x")], strength=0.0)
    with pytest.raises(ValueError):
        hierarchical_mace([(1, "A", "x")], max_iter=0)
    empty = hierarchical_mace([], labels=["x", "y"])
    assert empty.labels == {} and empty.annotator_accuracy == {} and empty.priors == {"x": 0.5, "y": 0.5}


def test_gold_labels_give_the_track_record_without_other_annotators():
    rng = np.random.default_rng(3)
    answers, gold = [], {}
    for i in range(60):
        t = int(rng.integers(3))
        gold[i] = CLASSES[t]  # reviewed by an admin
        for annotator, acc in (("good", 1.0), ("bad1", 0.4), ("bad2", 0.4)):
            answers.append((i, annotator, _noisy(rng, t, acc)))
    answers += [("x", "good", "a"), ("x", "bad1", "b"), ("x", "bad2", "b")]

    assert majority_vote(answers)["x"].label == "b"
    result = aggregate(answers, CLASSES, answers_per_record=3, gold=gold)
    assert result["x"].label == "a"
    assert result["x"].confidence < 1.0  # decided by the model, not by gold
    assert all(result[i].label == label and result[i].confidence == 1.0 for i, label in gold.items())
    assert not any(result[i].tie for i in gold)


@pytest.mark.parametrize("answers_per_record", [1, 2, 3])
def test_gold_overrides_everything(answers_per_record):
    answers = [(1, "u1", "x"), (1, "u2", "y"), (2, "u1", "x"), (2, "u2", "x"), (2, "u3", "y"), (3, "u3", "y")]
    gold = {1: "y", 2: "y", 4: "x"}  # 1 was a tie, 2 a clear majority for x, 4 has no answers
    result = aggregate(answers, ["x", "y"], answers_per_record=answers_per_record, gold=gold)
    assert result[1] == AggregateLabel(label="y", confidence=1.0, n_answers=2, tie=False, agreement=0.5)
    assert result[2] == AggregateLabel(label="y", confidence=1.0, n_answers=3, tie=False, agreement=1 / 3)
    assert result[4].label == "x" and result[4].confidence == 1.0 and result[4].n_answers == 0
    assert math.isnan(result[4].agreement)
    assert result[3].label == "y"  # no gold: the crowd's answer stands


def test_aggregate_validates_input():
    with pytest.raises(UnknownLabel):
        aggregate([(1, "u1", "x")], ["x", "y"], answers_per_record=3, gold={1: "z"})
    with pytest.raises(UnknownLabel):
        aggregate([(1, "u1", "z")], ["x", "y"], answers_per_record=1)
    with pytest.raises(ValueError):
        aggregate([(1, "u1", "x")], answers_per_record=0)


# --------------------------------------------------------------------------- Krippendorff


def _from_rows(rows: dict[str, list[int | None]]) -> list[tuple[int, str, str]]:
    return [
        (unit, coder, str(v))
        for coder, values in rows.items()
        for unit, v in enumerate(values)
        if v is not None
    ]


def test_krippendorff_alpha_reproduces_the_2011_paper_example():
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", nominal data with
    # missing values: 4 observers, 12 units, values 1..5.
    rows = {
        "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    }
    # Coincidences, each unit adding n_uc * n_uk / (m_u - 1) (minus self-pairs on the diagonal):
    #   u1 (1,1,1): o11 += 3   u2 (2,2,3,2): o22 += 2, o23 = o32 += 1   u3, u4 (3 x4): o33 += 4 each
    #   u5, u9 (2 x4): o22 += 4 each   u6 (1,2,3,4): every off-diagonal pair += 1/3   u7: o44 += 4
    #   u8 (1,1,2,1): o11 += 2, o12 = o21 += 1   u10 (5,5,5): o55 += 3   u11 (1,1): o11 += 2
    #   u12 has one value and is not pairable.
    # Diagonal: o11 = 7, o22 = 10, o33 = 8, o44 = 4, o55 = 3 (sum 32). Margins n_c = 9, 13, 10, 5, 3; n = 40.
    # alpha = 1 - (n - 1) * (n - sum o_cc) / (n^2 - sum n_c^2) = 1 - 39 * 8 / (1600 - 384) = 0.743.
    alpha = krippendorff_alpha_nominal(_from_rows(rows))
    assert alpha == pytest.approx(1 - 39 * 8 / 1216)
    assert round(alpha, 3) == 0.743


def test_krippendorff_alpha_small_hand_example():
    # Units: u0 (a,a), u1 (a,b), u2 (b,b), u3 (b,b), u4 (a,a,b) with three coders, u5 (a) alone.
    # m = 2 units add 1 per ordered pair: o_aa = 2 (u0), o_ab = o_ba = 1 (u1), o_bb = 2 + 2 (u2, u3).
    # u4 has m = 3, weight 1/2: ordered (a,a) pairs 2 -> o_aa += 1; (a,b) pairs 2 -> o_ab += 1, o_ba += 1.
    # o = [[3, 2], [2, 4]], n_a = 5, n_b = 6, n = 11 (u5 is not pairable).
    # alpha = 1 - (n - 1) * (o_ab + o_ba) / (n^2 - n_a^2 - n_b^2) = 1 - 10 * 4 / (121 - 25 - 36) = 1/3.
    answers = [
        (0, "c1", "a"), (0, "c2", "a"),
        (1, "c1", "a"), (1, "c2", "b"),
        (2, "c1", "b"), (2, "c2", "b"),
        (3, "c1", "b"), (3, "c2", "b"),
        (4, "c1", "a"), (4, "c2", "a"), (4, "c3", "b"),
        (5, "c1", "a"),
    ]  # fmt: skip
    assert krippendorff_alpha_nominal(answers) == pytest.approx(1 / 3)
    # Dropping the unpairable unit changes nothing.
    assert krippendorff_alpha_nominal(answers[:-1]) == pytest.approx(1 / 3)


def test_krippendorff_alpha_edge_cases():
    perfect = [(i, c, "ab"[i % 2]) for i in range(6) for c in ("c1", "c2", "c3")]
    assert krippendorff_alpha_nominal(perfect) == pytest.approx(1.0)
    # Only one category in use: expected disagreement 0, alpha undefined.
    assert krippendorff_alpha_nominal([(i, c, "a") for i in range(4) for c in ("c1", "c2")]) is None
    # No unit with two values.
    assert krippendorff_alpha_nominal([(0, "c1", "a"), (1, "c1", "b")]) is None
    assert krippendorff_alpha_nominal([]) is None


# --------------------------------------------------------------------------- Cohen's kappa


def _wikipedia_raters() -> tuple[list[str], list[str]]:
    # 50 items: 20 yes/yes, 5 A-yes/B-no, 10 A-no/B-yes, 15 no/no.
    # p_o = 35/50 = 0.7; A says yes 25/50, B 30/50 -> p_e = 0.5*0.6 + 0.5*0.4 = 0.5; kappa = 0.2/0.5 = 0.4.
    a = ["yes"] * 20 + ["yes"] * 5 + ["no"] * 10 + ["no"] * 15
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    return a, b


def test_cohen_kappa_textbook_example_and_sklearn():
    a, b = _wikipedia_raters()
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.choice(["p", "q", "r"], size=40).tolist()
        y = [v if rng.random() < 0.6 else str(rng.choice(["p", "q", "r", "s"])) for v in x]
        assert cohen_kappa(x, y) == pytest.approx(cohen_kappa_score(x, y))


def test_cohen_kappa_degenerate_and_invalid():
    assert math.isnan(cohen_kappa(["a"] * 5, ["a"] * 5))  # both raters use one category
    assert cohen_kappa(["a"] * 5, ["b"] * 5) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        cohen_kappa(["a"], ["a", "b"])
    with pytest.raises(ValueError):
        cohen_kappa([], [])


def test_cohen_kappa_pairs():
    a, b = _wikipedia_raters()
    answers = [(i, "A", label) for i, label in enumerate(a)] + [(i, "B", label) for i, label in enumerate(b)]
    answers += [(i, "C", "no") for i in range(5)]  # overlaps A and B on 5 items only
    answers += [(i, "D", "yes") for i in range(20)]  # on items 0..19 A and B also said "yes"
    pairs = cohen_kappa_pairs(answers, min_overlap=10)
    assert set(pairs) == {("A", "B"), ("A", "D"), ("B", "D")}
    assert pairs[("A", "B")][0] == pytest.approx(0.4)
    assert pairs[("A", "B")][1] == 50
    kappa, overlap = pairs[("A", "D")]
    assert math.isnan(kappa) and overlap == 20
    assert set(cohen_kappa_pairs(answers, min_overlap=5)) >= {("A", "C"), ("B", "C")}
    with pytest.raises(ValueError):
        cohen_kappa_pairs(answers, min_overlap=0)


# --------------------------------------------------------------------------- agreement


def test_agreement_with_aggregate():
    answers = [
        (1, "u1", "x"), (1, "u2", "x"), (1, "u3", "y"),
        (2, "u1", "y"), (2, "u2", "x"), (2, "u3", "y"),
        (3, "u1", "x"), (3, "u2", "y"),  # a tie: skipped
        (4, "u4", "x"),  # item missing from the aggregate: skipped
    ]  # fmt: skip
    decided = majority_vote(answers[:-1])
    assert agreement_with_aggregate(answers, decided) == pytest.approx({"u1": 1.0, "u2": 0.5, "u3": 0.5})


@pytest.mark.parametrize("group_size", [3, 70])  # rank passes below 65 answers per key, reduceat above
def test_grouped_sums_equal_add_at(group_size):
    from core.aggregate import _Grouped

    rng = np.random.default_rng(group_size)
    keys = rng.integers(0, 4000 // group_size, size=4000)
    rows = np.flatnonzero(rng.random(4000) < 0.9)
    values = rng.random((4000, 5))
    expected = np.zeros((keys.max() + 1, 5))
    np.add.at(expected, keys[rows], values[rows])
    grouped = _Grouped(keys, rows)
    assert (grouped.by_rank is None) == (np.bincount(keys[rows]).max() > 64)
    np.testing.assert_allclose(grouped.sums(lambda r: values[r], keys.max() + 1, 5), expected)
