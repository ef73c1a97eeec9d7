"""`labelbot simulate` on a multi-label file: XED's "|"-joined emotions through the real loop."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bot.cli import app
from core.embeddings import HashingEmbedder, label_text
from core.multilabel import indicator
from core.multilabel_learner import MultiLabelClassifier, multilabel_metrics
from core.simulate import format_table, run_simulation, write_json
from tests.conftest import SHARED, make_settings, use_cli_environment, write_csv

XED = SHARED / "datasets" / "xed_en_multilabel"


def _rows(split: str, n: int) -> list[dict[str, object]]:
    with open(XED / f"{split}.csv", encoding="utf-8", newline="") as handle:
        return [{"text": r["text"], "labels": r["labels"]} for r in list(csv.DictReader(handle))[:n]]


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("simulate-ml")
    train = write_csv(tmp / "train.csv", _rows("train", 300))
    test = write_csv(tmp / "test.csv", _rows("test", 120))
    result = run_simulation(
        train, label_column="labels", test_path=test, strategy="max-uncertainty-kmeans", budget=30, seeds=1,
        settings=make_settings(tmp), embedder=HashingEmbedder(64),
    )
    return result, train, test, tmp


def test_a_joined_label_column_is_simulated_as_multi_label(replay) -> None:  # type: ignore[no-untyped-def]
    result, _, _, _ = replay
    assert result.multi_label
    assert set(result.labels) == {"anger", "anticipation", "disgust", "fear", "joy", "sadness", "surprise",
                                  "trust"}
    assert result.strategies == ("max-uncertainty-kmeans", "random")
    for curve in result.runs.values():
        assert [p.labels for p in curve] == [10, 20, 30]
        for p in curve:
            assert p.micro_f1 is not None and 0.0 < p.micro_f1 <= 1.0
            assert 0.0 <= p.accuracy <= 1.0 and 0.0 <= p.macro_f1 <= 1.0


def test_full_pool_figures_are_the_one_vs_rest_learner_on_every_label(replay) -> None:  # type: ignore[no-untyped-def]
    result = replay[0]
    embedder = HashingEmbedder(64)
    labels = result.labels
    rows, test_rows = _rows("train", 300), _rows("test", 120)
    canonical = ["|".join(n for n in labels if n in str(r["labels"]).split("|")) for r in rows]
    names = dict(zip(labels, embedder.encode([label_text(name) for name in labels]), strict=True))
    model = MultiLabelClassifier(labels=labels, random_state=0, label_vectors=names)
    model.fit(embedder.encode([str(r["text"]) for r in rows]), canonical)
    chosen = np.asarray(indicator(list(model.predict(embedder.encode([str(r["text"]) for r in test_rows]))),
                                  labels), dtype=bool)
    truth = np.asarray(indicator([str(r["labels"]) for r in test_rows], labels), dtype=bool)
    expected = multilabel_metrics(truth, chosen)
    assert result.full_pool_micro_f1 == pytest.approx(expected["micro_f1"])
    assert result.full_pool_macro_f1 == pytest.approx(expected["macro_f1"])
    assert result.full_pool_accuracy == pytest.approx(expected["subset_accuracy"])


def test_table_and_json_name_the_multi_label_metrics(replay) -> None:  # type: ignore[no-untyped-def]
    result, _, _, tmp = replay
    table = format_table(result)
    assert "max-uncertainty-kmeans micro-F1" in table and "random subset acc." in table
    assert f"Full-pool micro-F1 {result.full_pool_micro_f1:.3f}" in table
    data = json.loads(write_json(result, tmp / "out.json").read_text())
    assert data["config"]["multi_label"] is True
    assert data["full_pool_micro_f1"] == pytest.approx(result.full_pool_micro_f1)
    assert data["runs"]["random"][0]["micro_f1"] == pytest.approx(result.runs["random"][0].micro_f1)


def test_cli_help_states_the_separator_and_the_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_cli_environment(tmp_path, monkeypatch)
    result = CliRunner().invoke(app, ["simulate", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--multi-label" in result.output and 'joined by "|"' in result.output


def test_a_multi_label_file_takes_the_multi_label_default_and_its_rules_vote(tmp_path: Path) -> None:
    from core.errors import LabelbotError

    train = write_csv(tmp_path / "train.csv", _rows("train", 200))
    rules = tmp_path / "rules.txt"
    rules.write_text("thank, love -> joy\n/\\bkill/i -> fear\n", encoding="utf-8")
    result = run_simulation(train, label_column="labels", budget=20, seeds=1, rules_path=rules,
                            settings=make_settings(tmp_path), embedder=HashingEmbedder(64))  # fmt: skip
    assert result.strategy == "max-uncertainty-kmeans" and result.multi_label
    assert f"2 rules from {rules}" in result.notes
    with pytest.raises(LabelbotError, match="multi-label project"):
        run_simulation(train, label_column="labels", strategy="margin-kmeans", budget=20, seeds=1,
                       settings=make_settings(tmp_path), embedder=HashingEmbedder(64))  # fmt: skip
