"""Stopping advice in multi-label projects: κ per label between successive models' yes/no predictions, the
plateau test on cross-validated micro-/macro-F1, weak labels by per-label F1 (core.stopping)."""

from __future__ import annotations

import csv
import pickle
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from core import multilabel, stopping
from core.embeddings import HashingEmbedder
from core.io import ImportRow
from core.multilabel_learner import MultiLabelClassifier, multilabel_cv_metrics
from core.service import LabelingService
from core.types import ModelRunInfo
from tests.conftest import SHARED, make_settings
from tests.test_stopping import stored_models_and_stop_set

LABELS = ["a", "b", "c"]
XED = SHARED / "datasets" / "xed_en_multilabel"


def ml_run(i: int, n: int, micro: float, macro: float, kappa: float | None) -> ModelRunInfo:
    metrics = {"cv_micro_f1": micro, "cv_macro_f1": macro, "cv_subset_accuracy": micro - 0.3}
    if kappa is not None:
        metrics["stability_kappa"] = kappa
    return ModelRunInfo(id=i, project="p", created_at=datetime(2024, 5, 1, tzinfo=UTC), n_labels=n,
                        strategy="max-uncertainty-kmeans", metrics=metrics, label_counts={},
                        duration_seconds=0.1)


def ml_curve(values: list[tuple[int, float, float]], kappa: float) -> list[ModelRunInfo]:
    return [ml_run(i, n, micro, macro, None if i == 0 else kappa)
            for i, (n, micro, macro) in enumerate(values)]


# ------------------------------------------------------------------------------------------------ κ


def test_multilabel_kappa_is_the_mean_of_per_label_kappas() -> None:
    rng = np.random.default_rng(3)
    before = ["|".join(x for x in LABELS if rng.random() < 0.4) for _ in range(300)]
    after = [t if rng.random() < 0.8 else "|".join(x for x in LABELS if rng.random() < 0.4) for t in before]
    expected = np.mean([
        cohen_kappa_score([multilabel.yes_no(t, x) for t in before], [multilabel.yes_no(t, x) for t in after])
        for x in LABELS
    ])
    assert stopping.multilabel_prediction_kappa(before, after, LABELS) == pytest.approx(expected)
    assert stopping.multilabel_prediction_kappa(before, before, LABELS) == 1.0


def test_one_label_changed_costs_less_per_label_than_the_set_taken_as_one_class() -> None:
    before = ["a|b", "a", "b|c", "", "c", "a|c"] * 20
    after = [("a|b|c" if t == "a|b" else t) for t in before]  # only label c changes, on a sixth of them
    per_label = stopping.multilabel_prediction_kappa(before, after, LABELS)
    as_classes = stopping.prediction_kappa(before, after)
    labels_a_b = stopping.multilabel_prediction_kappa(before, after, ["a", "b"])
    assert labels_a_b == 1.0 and per_label > as_classes


# ------------------------------------------------------------------------------------------ the advice


def test_the_plateau_test_reads_micro_and_macro_f1_for_multi_label_runs() -> None:
    wobble = [0.0005 if n % 20 else -0.0005 for n in range(100, 401, 10)]
    flat = [(n, 0.6 + w, 0.5 + w) for n, w in zip(range(100, 401, 10), wobble, strict=True)]
    advice = stopping.advise("p", ml_curve(flat, 0.96), multi_label=True)
    assert advice.plateau and advice.stop and not advice.stable
    assert "micro-/macro-F1" in advice.message and "per-label" in advice.message
    # Micro-F1 still rising while macro-F1 is flat (common labels improving): not a plateau. Read as a
    # single-label project's runs (cv_accuracy, which multi-label runs lack, and macro-F1) it would be.
    rising = [(n, 0.2 + 0.0015 * n, 0.5 + w) for n, w in zip(range(100, 401, 10), wobble, strict=True)]
    still = stopping.advise("p", ml_curve(rising, 0.96), multi_label=True)
    assert still.plateau is False and not still.stop and "should still help" in still.message
    assert still.projected_gain == pytest.approx(0.0015 * 200, rel=0.01)
    assert stopping.advise("p", ml_curve(rising, 0.96)).plateau is True


# ------------------------------------------------------------------------------------- per-label F1


def xed_rows(n: int) -> list[dict[str, str]]:
    with open(XED / "train.csv", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))[::20][:n]  # the file runs label by label: every 20th row


def test_multilabel_cv_report_gives_per_label_f1_with_the_run_metrics_folds() -> None:
    rows = xed_rows(120)
    labels = sorted({x for r in rows for x in multilabel.split(r["labels"])})
    X = HashingEmbedder(64).encode([r["text"] for r in rows])
    y = np.array([multilabel.SEPARATOR.join(x for x in labels if x in multilabel.split(r["labels"]))
                  for r in rows], dtype=object)

    def factory() -> MultiLabelClassifier:
        return MultiLabelClassifier(labels=labels, random_state=0)

    report = stopping.multilabel_cv_report(X, y, labels=labels, estimator_factory=factory)
    recorded = multilabel_cv_metrics(X, y, estimator_factory=factory)
    assert report.metrics["cv_micro_f1"] == pytest.approx(recorded["cv_micro_f1"])
    assert report.metrics["cv_macro_f1"] == pytest.approx(recorded["cv_macro_f1"])
    assert report.support == {x: sum(x in multilabel.split(t) for t in y) for x in labels}
    assert set(report.per_class_f1) == {x for x in labels if report.support[x] >= 2}
    assert np.mean([report.per_class_f1[x] for x in labels]) == pytest.approx(report.metrics["cv_macro_f1"])
    # A label without two examples gets no F1 (the advice lists it as "too few examples").
    more = [*labels, "zzz"]
    rare = stopping.multilabel_cv_report(
        X, y, labels=more, estimator_factory=lambda: MultiLabelClassifier(labels=more, random_state=0))
    assert "zzz" not in rare.per_class_f1 and rare.support["zzz"] == 0
    assert {x: rare.per_class_f1[x] for x in labels} == pytest.approx(report.per_class_f1)
    few = stopping.multilabel_cv_report(X[:5], y[:5], labels=labels, estimator_factory=factory)
    assert few.metrics == {} and few.per_class_f1 == {}


# ------------------------------------------------------------------------------------------ the facade


def test_multi_label_retrains_store_per_label_kappa_and_the_advice_names_weak_labels(tmp_path: Path) -> None:
    rows = xed_rows(400)
    service = LabelingService(make_settings(tmp_path), embedder=HashingEmbedder(64))
    try:
        labels = sorted({x for r in rows for x in multilabel.split(r["labels"])})
        service.create_project("x", labels, multi_label=True)
        service.import_rows("x", [ImportRow(line=i + 2, external_id=str(i), text=r["text"])
                                  for i, r in enumerate(rows)])
        for _ in range(7):
            for record in service.next_records("x", "oracle", 20):
                service.record_answer("x", record.record_id, "oracle",
                                      list(multilabel.split(rows[int(record.external_id)]["labels"])))
            service.retrain("x")
        runs = service.run_history("x")
        assert [r.n_labels for r in runs] == [20, 40, 60, 80, 100, 120, 140]
        assert ["stability_kappa" in r.metrics for r in runs] == [False] * 3 + [True] * 4
        # The last κ from the stored models (140 labels against 80), label by label.
        blobs, sample = stored_models_and_stop_set(service, "x")
        before, after = (pickle.loads(blobs[n]).predict(sample).tolist() for n in (80, 140))
        expected = stopping.multilabel_prediction_kappa(before, after, labels)
        assert runs[-1].metrics["stability_kappa"] == pytest.approx(expected)
        advice = service.stopping_advice("x")
        assert advice.n_labels == 140
        assert advice.kappas == tuple(r.metrics["stability_kappa"] for r in runs[-3:])
        # Weak labels are label names with per-label F1, never sets.
        assert advice.weak_labels and {w.label for w in advice.weak_labels} <= set(labels)
        assert all(w.f1 is None or 0.0 <= w.f1 < stopping.WEAK_F1 for w in advice.weak_labels)
        assert "per-label" in advice.message
    finally:
        service.close()
