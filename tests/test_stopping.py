"""core.stopping: stabilizing predictions, the plateau test, the advice, and its wiring into retrains."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from sqlalchemy import select

from core import stopping
from core.learner import EmbeddingClassifier, cross_validated_metrics
from core.models import Annotation, Embedding, ModelRun
from core.service import LabelingService
from core.store import read_session
from core.types import ModelRunInfo
from tests.conftest import banking_labels, banking_rows, write_csv


def run(i: int, n: int, acc: float | None, f1: float | None, kappa: float | None = None) -> ModelRunInfo:
    metrics = {k: v for k, v in (("cv_accuracy", acc), ("cv_macro_f1", f1), ("stability_kappa", kappa))
               if v is not None}
    return ModelRunInfo(id=i, project="p", created_at=datetime(2024, 5, 1, tzinfo=UTC), n_labels=n,
                        strategy="margin-kmeans", metrics=metrics, label_counts={}, duration_seconds=0.1)


def curve(values: list[tuple[int, float]], kappas: list[float | None]) -> list[ModelRunInfo]:
    return [run(i, n, v, v - 0.02, k) for i, ((n, v), k) in enumerate(zip(values, kappas, strict=True))]


# ------------------------------------------------------------------------------ stable sample / kappa


def test_stable_sample_depends_on_ids_not_order_and_survives_growth() -> None:
    ids = np.arange(1, 20_001, dtype=np.int64)
    rows = stable_rows = stopping.stable_sample(ids, 2000, seed=7)
    assert len(rows) == 2000 and len(set(rows.tolist())) == 2000
    chosen = set(ids[rows].tolist())
    shuffled = np.random.default_rng(0).permutation(ids)
    assert set(shuffled[stopping.stable_sample(shuffled, 2000, seed=7)].tolist()) == chosen
    # Labeling 5,000 records (they leave the unlabeled pool) keeps every chosen record still unlabeled.
    remaining = ids[5000:]
    kept = set(remaining[stopping.stable_sample(remaining, 2000, seed=7)].tolist())
    assert chosen & set(remaining.tolist()) <= kept
    # Another project (seed) gets another sample; a small pool is taken whole.
    assert set(ids[stopping.stable_sample(ids, 2000, seed=8)].tolist()) != chosen
    assert stopping.stable_sample(ids[:10], 2000).tolist() == list(range(10))
    assert stable_rows.tolist() == sorted(stable_rows.tolist())


def test_prediction_kappa_matches_sklearn_and_handles_one_class() -> None:
    rng = np.random.default_rng(0)
    a = rng.choice(["x", "y", "z"], size=500).tolist()
    b = [v if rng.random() < 0.8 else "z" for v in a]
    assert stopping.prediction_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    assert stopping.prediction_kappa(["x"] * 5, ["x"] * 5) == 1.0  # κ would be 0/0
    with pytest.raises(ValueError):
        stopping.prediction_kappa(["x"], ["x", "y"])


def test_cv_report_metrics_equal_cross_validated_metrics() -> None:
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(4, 16))
    y = np.repeat(np.array(["a", "b", "c", "d"]), 30)
    X = centers[np.repeat(np.arange(4), 30)] + rng.normal(scale=0.2, size=(120, 16))
    X[y == "d"] = centers[2] + rng.normal(scale=0.6, size=(30, 16))  # "d" overlaps "c"
    report = stopping.cv_report(X, y, estimator_factory=EmbeddingClassifier)
    expected = cross_validated_metrics(X, y, estimator_factory=EmbeddingClassifier)
    assert report.metrics == {key: expected[key] for key in stopping.METRICS}
    assert report.support == {"a": 30, "b": 30, "c": 30, "d": 30}
    assert np.mean(list(report.per_class_f1.values())) == pytest.approx(report.metrics["cv_macro_f1"])
    assert min(report.per_class_f1, key=report.per_class_f1.get) in ("c", "d")
    assert report.per_class_f1["a"] > report.per_class_f1["d"]
    assert stopping.cv_report(X[:5], y[:5], estimator_factory=EmbeddingClassifier).metrics == {}


# ------------------------------------------------------------------------------------- plateau


def test_plateau_gain_extrapolates_the_recent_slope() -> None:
    rising = [(n, 0.5 + 0.001 * n) for n in range(100, 401, 20)]  # +0.1 per 100 labels
    gain, window = stopping.plateau_gain(rising)
    assert window == 200 and gain == pytest.approx(0.2)
    flat = [(n, 0.9) for n in range(100, 401, 20)]
    assert stopping.plateau_gain(flat)[0] == pytest.approx(0.0, abs=1e-12)
    assert stopping.plateau_gain([(300, 0.5), (310, 0.6)]) is None  # too few points in the window
    assert stopping.plateau_gain([(n, 0.9) for n in range(10, 191, 10)]) is None  # too few labels yet


def test_stability_gap_is_ten_percent_and_at_least_fifty() -> None:
    assert [stopping.stability_gap(n) for n in (10, 400, 501, 2000)] == [50, 50, 51, 200]


# ------------------------------------------------------------------------------------- advice


def test_advice_fires_on_a_synthetic_plateau() -> None:
    values = [(n, 0.88 + (0.0005 if n % 20 else -0.0005)) for n in range(100, 401, 10)]
    runs = curve(values, [None] + [0.996] * (len(values) - 1))
    advice = stopping.advise("p", runs)
    assert advice.stop and advice.stable and advice.plateau
    assert advice.kappa == pytest.approx(0.996)
    assert "unlikely to help much" in advice.message


def test_advice_does_not_fire_on_a_rising_curve() -> None:
    values = [(n, 0.4 + 0.0015 * n) for n in range(100, 401, 10)]
    runs = curve(values, [None] + [0.93] * (len(values) - 1))
    advice = stopping.advise("p", runs)
    assert not advice.stop and advice.plateau is False and not advice.stable
    assert advice.projected_gain > 0.1
    assert "should still help" in advice.message


def test_a_flat_curve_alone_is_not_enough_but_stable_predictions_are() -> None:
    flat = [(n, 0.7) for n in range(100, 401, 10)]
    unstable = stopping.advise("p", curve(flat, [None] + [0.85] * (len(flat) - 1)))
    assert unstable.plateau and not unstable.stop  # active learning can hold the CV score down
    near = stopping.advise("p", curve(flat, [None] + [0.96] * (len(flat) - 1)))
    assert near.stop and not near.stable
    rising = [(n, 0.4 + 0.0015 * n) for n in range(100, 401, 10)]
    stable = stopping.advise("p", curve(rising, [None] + [0.995] * (len(rising) - 1)))
    assert stable.stop and stable.stable


def test_too_early_and_no_runs() -> None:
    values = [(n, 0.9) for n in range(10, 41, 10)]
    early = stopping.advise("p", curve(values, [None, 0.999, 0.999, 0.999]))
    assert not early.stop and "Too early" in early.message
    assert not stopping.advise("p", []).stop


def test_weak_labels_lowest_first_and_missing_examples_first() -> None:
    advice = stopping.advise(
        "p", [run(0, 100, 0.8, 0.7)], label_names=["a", "b", "c", "d", "e"],
        per_class_f1={"a": 0.95, "b": 0.41, "c": 0.62}, support={"a": 40, "b": 12, "c": 30, "d": 1},
    )
    assert [w.label for w in advice.weak_labels] == ["e", "d", "b", "c"]
    assert advice.weak_labels[0].examples == 0 and advice.weak_labels[0].f1 is None
    assert "b (F1 0.41, 12 examples)" in advice.weak_text


# ------------------------------------------------------------------------------ wiring in the service


def stored_models_and_stop_set(service: LabelingService, project: str) -> tuple[dict[int, bytes], np.ndarray]:
    """The project's stored models by label count, and the vectors of its stop set (the stable sample of
    its unlabeled records the stability check predicts on): to recompute a stored κ by hand."""
    with read_session(service.engine) as session:
        blobs = dict(session.execute(select(ModelRun.n_labels, ModelRun.model_blob)).all())
        vectors = session.execute(
            select(Embedding.record_id, Embedding.vector).order_by(Embedding.record_id)
        ).all()
        labeled = set(session.execute(select(Annotation.record_id)).scalars())
    unlabeled = [(rid, np.frombuffer(v, dtype=np.float32)) for rid, v in vectors if rid not in labeled]
    ids = np.array([rid for rid, _ in unlabeled])
    rows = stopping.stable_sample(ids, seed=service.get_project(project).id)
    return blobs, np.stack([v for _, v in unlabeled])[rows]


def test_retrains_store_stability_kappa_and_the_service_advises(
    service: LabelingService, tmp_path: Path
) -> None:
    labels = banking_labels()[:6]
    rows = [r for r in banking_rows(3000) if r["category"] in labels][:300]
    service.create_project("b", labels)
    path = write_csv(tmp_path / "b.csv", [{"id": i, "text": r["text"]} for i, r in enumerate(rows)])
    service.import_file("b", path)
    for _ in range(7):
        for record in service.next_records("b", "oracle", 20):
            service.record_answer("b", record.record_id, "oracle", rows[int(record.external_id)]["category"])
        service.retrain("b")
    runs = service.run_history("b")
    assert [r.n_labels for r in runs] == [20, 40, 60, 80, 100, 120, 140]
    # A model is compared with the latest one trained on max(50, 10%) fewer labels: none before 80.
    assert ["stability_kappa" in r.metrics for r in runs] == [False] * 3 + [True] * 4
    # Recompute the last κ from the stored models: 140 labels, compared with the 80-label model.
    blobs, sample = stored_models_and_stop_set(service, "b")
    before, after = (pickle.loads(blobs[n]).predict(sample).tolist() for n in (80, 140))
    assert runs[-1].metrics["stability_kappa"] == pytest.approx(stopping.prediction_kappa(before, after))
    advice = service.stopping_advice("b")
    assert advice.n_labels == 140 and advice.kappas == tuple(r.metrics["stability_kappa"] for r in runs[-3:])
    assert {w.label for w in advice.weak_labels} <= set(labels)
    assert [r.id for r in service.run_history("b")] == [r.id for r in service.run_history("b")]
