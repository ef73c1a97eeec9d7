"""The label-efficiency simulator: schedule, thresholds, split, caching, and a small real replay."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score

from core.embeddings import HashingEmbedder
from core.errors import LabelbotError
from core.learner import EmbeddingClassifier
from core.simulate import (
    CachingEmbedder,
    format_table,
    label_schedule,
    labels_to_reach,
    plot,
    run_simulation,
    stratified_split,
    write_json,
)
from tests.conftest import banking_rows, make_settings, write_csv

CATEGORIES = ("card_arrival", "exchange_rate", "lost_or_stolen_card", "top_up_failed",
              "Refund_not_showing_up", "terminate_account")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _subset(split: str, n: int) -> list[dict[str, object]]:
    return [{"text": r["text"], "category": r["category"]} for r in banking_rows(n, split=split)
            if r["category"] in CATEGORIES]


# ---------------------------------------------------------------------------------- pure helpers


def test_schedule_follows_the_documented_batches() -> None:
    assert label_schedule(60) == [10, 20, 30, 40, 50, 60]
    expected = [*range(10, 101, 10), *range(150, 501, 50), *range(600, 1001, 100)]
    assert label_schedule(1000) == expected
    # A budget off the grid is still the last step.
    assert label_schedule(130) == [*range(10, 101, 10), 130]
    assert label_schedule(10) == [10]
    with pytest.raises(LabelbotError, match="at least 10"):
        label_schedule(9)


def test_labels_to_reach_on_a_hand_built_curve() -> None:
    labels = [10, 20, 50, 100, 200]
    accuracy = [0.40, 0.70, 0.90, 0.85, 0.97]
    assert labels_to_reach(labels, accuracy, 0.90) == 50  # reached exactly
    assert labels_to_reach(labels, accuracy, 0.88) == 50
    assert labels_to_reach(labels, accuracy, 0.91) == 200  # first crossing, not the dip after it
    assert labels_to_reach(labels, accuracy, 0.30) == 10
    assert labels_to_reach(labels, accuracy, 0.98) is None
    with pytest.raises(ValueError):
        labels_to_reach(labels, accuracy[:-1], 0.5)


def test_stratified_split_holds_out_a_fifth_of_each_label() -> None:
    y = ["a"] * 50 + ["b"] * 10 + ["c"] * 1
    train, test = stratified_split(y, seed=3)
    assert sorted([*train, *test]) == list(range(len(y)))
    held = Counter(y[i] for i in test)
    assert held == {"a": 10, "b": 2}  # the single "c" must stay in training
    again_train, again_test = stratified_split(y, seed=3)
    assert np.array_equal(test, again_test) and np.array_equal(train, again_train)
    assert not np.array_equal(test, stratified_split(y, seed=4)[1])


class _CountingEmbedder(HashingEmbedder):
    def __init__(self) -> None:
        super().__init__(16)
        self.encoded: list[str] = []

    def encode(self, texts, *, progress=None):  # type: ignore[no-untyped-def]
        self.encoded.extend(texts)
        return super().encode(texts, progress=progress)


def test_caching_embedder_encodes_each_text_once_and_persists(tmp_path: Path) -> None:
    inner = _CountingEmbedder()
    cache = CachingEmbedder(inner, cache_dir=tmp_path)
    assert cache.name == inner.name and cache.dim == 16
    first = cache.encode(["a card", "a loan", "a card"])
    second = cache.encode(["a loan", "a fee"])
    assert sorted(inner.encoded) == ["a card", "a fee", "a loan"]
    assert np.allclose(first[1], second[0]) and np.allclose(first[0], first[2])
    assert np.allclose(first, HashingEmbedder(16).encode(["a card", "a loan", "a card"]))

    fresh_inner = _CountingEmbedder()
    reloaded = CachingEmbedder(fresh_inner, cache_dir=tmp_path).encode(["a fee", "a card"])
    assert fresh_inner.encoded == []  # served from the file
    assert np.allclose(reloaded, HashingEmbedder(16).encode(["a fee", "a card"]))


# ---------------------------------------------------------------------------------- input checks


def test_bad_inputs_are_rejected_with_clear_messages(tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", _subset("train", 600))
    test = write_csv(tmp_path / "test.csv", [{"text": "hello", "category": "no_such_intent"}])
    kwargs = {"text_column": "text", "label_column": "category", "embedder": HashingEmbedder(16),
              "settings": make_settings(tmp_path)}
    with pytest.raises(LabelbotError, match=r"Unknown strategy 'smartest'.*margin-kmeans"):
        run_simulation(train, strategy="smartest", **kwargs)
    with pytest.raises(LabelbotError, match="budget must be at least 10"):
        run_simulation(train, budget=5, **kwargs)
    with pytest.raises(LabelbotError, match="seeds must be at least 1"):
        run_simulation(train, seeds=0, **kwargs)
    with pytest.raises(LabelbotError, match="no_such_intent"):
        run_simulation(train, test_path=test, **kwargs)
    with pytest.raises(LabelbotError, match="no label column 'missing'"):
        run_simulation(train, text_column="text", label_column="missing", embedder=HashingEmbedder(16),
                       settings=make_settings(tmp_path))


# ---------------------------------------------------------------------------------- a real replay


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("simulate")
    train = write_csv(tmp / "train.csv", _subset("train", 1500))
    test = write_csv(tmp / "test.csv", _subset("test", 1500))
    messages: list[str] = []
    result = run_simulation(
        train, text_column="text", label_column="category", test_path=test, strategy="margin-kmeans",
        budget=60, seeds=2, settings=make_settings(tmp), embedder=HashingEmbedder(64),
        progress=messages.append,
    )
    return result, train, test, messages, tmp


def test_replay_runs_random_beside_the_strategy_on_the_schedule(replay) -> None:  # type: ignore[no-untyped-def]
    result, *_ = replay
    assert result.strategies == ("margin-kmeans", "random")
    for name in result.strategies:
        assert len(result.per_seed[name]) == 2
        for curve in result.per_seed[name]:
            assert [p.labels for p in curve] == [10, 20, 30, 40, 50, 60]
            assert all(0.0 <= p.accuracy <= 1.0 and 0.0 <= p.macro_f1 <= 1.0 for p in curve)
        assert [p.labels for p in result.runs[name]] == [10, 20, 30, 40, 50, 60]
    # Seeds change the import order, so random picks (hence scores) differ between seeds somewhere.
    random_runs = result.per_seed["random"]
    assert any(a.accuracy != b.accuracy for a, b in zip(*random_runs, strict=True))


def test_replay_means_and_thresholds_follow_the_seed_curves(replay) -> None:  # type: ignore[no-untyped-def]
    result, *_ = replay
    for name in result.strategies:
        for i, point in enumerate(result.runs[name]):
            seed_points = [curve[i] for curve in result.per_seed[name]]
            assert point.accuracy == pytest.approx(statistics.fmean(p.accuracy for p in seed_points))
            assert point.macro_f1 == pytest.approx(statistics.fmean(p.macro_f1 for p in seed_points))
            assert point.accuracy_std == pytest.approx(statistics.pstdev(p.accuracy for p in seed_points))
        for key, share in (("0.9", 0.9), ("0.95", 0.95), ("0.98", 0.98)):
            target = share * result.full_pool_accuracy
            reached = [p.labels for p in result.runs[name] if p.accuracy >= target]
            assert result.labels_to[name][key] == (reached[0] if reached else None)


def test_full_pool_accuracy_is_a_classifier_on_every_training_label(replay) -> None:  # type: ignore[no-untyped-def]
    result, train, test, *_ = replay
    import csv

    def read(path: Path) -> tuple[list[str], list[str]]:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        return [r["text"] for r in rows], [r["category"] for r in rows]

    (tr_x, tr_y), (te_x, te_y) = read(train), read(test)
    emb = HashingEmbedder(64)
    clf = EmbeddingClassifier(random_state=0).fit(emb.encode(tr_x), np.asarray(tr_y, dtype=object))
    assert result.full_pool_accuracy == pytest.approx(accuracy_score(te_y, clf.predict(emb.encode(te_x))))
    assert (result.n_train, result.n_test) == (len(tr_x), len(te_x))
    assert result.labels == tuple(sorted(set(tr_y)))


def test_json_table_and_plot_outputs(replay) -> None:  # type: ignore[no-untyped-def]
    result, _train, _test, messages, tmp = replay
    data = json.loads(write_json(result, tmp / "out" / "sim.json").read_text())
    assert isinstance(data["full_pool_accuracy"], float)
    assert set(data["runs"]) == set(data["labels_to"]) == {"margin-kmeans", "random"}
    for name, curve in data["runs"].items():
        assert [set(p) for p in curve] == [{"labels", "accuracy", "macro_f1"}] * 6
        assert [p["labels"] for p in curve] == [10, 20, 30, 40, 50, 60]
        assert [p["accuracy"] for p in curve] == [p.accuracy for p in result.runs[name]]
        assert set(data["labels_to"][name]) == {"0.9", "0.95", "0.98"}
        assert all(v is None or isinstance(v, int) for v in data["labels_to"][name].values())
        assert len(data["seeds"][name]) == 2 and len(data["std"][name]) == 6

    table = format_table(result)
    assert "margin-kmeans accuracy" in table and "random macro-F1" in table
    assert f"{result.full_pool_accuracy:.3f}" in table
    for n in (10, 20, 30, 40, 50, 60):
        assert f"|     {n} |" in table

    png = plot(result, tmp / "out" / "sim.png")
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5_000
    assert any("random seed 2/2: 60 labels" in m for m in messages)


def test_held_out_split_and_labeling_the_whole_pool(tmp_path: Path) -> None:
    """Without a test file a fifth is held out; once every training row is labeled, the service's model
    is the full-pool classifier, so the last point must equal the full-pool accuracy."""
    rows = _subset("train", 3000)[:70]
    assert len(rows) == 70
    train = write_csv(tmp_path / "train.csv", rows)
    result = run_simulation(train, text_column="text", label_column="category", strategy="random",
                            budget=1000, seeds=1, settings=make_settings(tmp_path),
                            embedder=HashingEmbedder(32))
    assert result.strategies == ("random",)
    assert result.n_train + result.n_test == 70 and 10 <= result.n_test <= 16
    assert "held-out" in result.test_source
    assert result.budget == result.n_train and any("capped" in note for note in result.notes)
    last = result.runs["random"][-1]
    assert last.labels == result.n_train
    assert last.accuracy == pytest.approx(result.full_pool_accuracy)
