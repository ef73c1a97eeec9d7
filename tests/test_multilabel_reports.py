"""Multi-label projects (issue 13) in reports: the digest, status and chart show micro-F1, macro-F1 and
subset accuracy where single-label projects show accuracy."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from bot import blocks
from bot.digests import build_digest
from core.agreement import cohen_kappa_pairs, krippendorff_alpha_nominal
from core.charts import MULTI_LABEL_SERIES, SERIES, learning_curve_figure
from core.io import ImportRow
from core.service import LabelingService
from core.types import ModelRunInfo, ProjectStatus
from tests.test_bot import texts_of

LABELS = ["billing", "urgent", "refund"]
NOW = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)


def multi_run(i: int, n: int, micro: float, macro: float, subset: float, days_ago: float) -> ModelRunInfo:
    metrics = {"cv_micro_f1": micro, "cv_macro_f1": macro, "cv_subset_accuracy": subset,
               "stability_kappa": 0.8 + 0.01 * i}
    return ModelRunInfo(id=i, project="tags", created_at=NOW - timedelta(days=days_ago), n_labels=n,
                        strategy="max-uncertainty-kmeans", metrics=metrics, label_counts={},
                        duration_seconds=0.5)


def multi_status(latest: ModelRunInfo | None = None) -> ProjectStatus:
    return ProjectStatus(project="tags", total=100, labeled=40, annotations=45,
                         label_counts={"billing": 20, "urgent": 12, "refund": 9}, annotators=(),
                         latest_run=latest, remaining=60, multi_label=True)


def test_chart_of_a_multi_label_project_plots_micro_f1_and_subset_accuracy() -> None:
    runs = [multi_run(1, 20, 0.40, 0.30, 0.20, 10), multi_run(2, 40, 0.55, 0.45, 0.31, 5),
            multi_run(3, 60, 0.62, 0.50, 0.38, 1)]
    fig = learning_curve_figure(runs, {"billing": 20, "urgent": 12}, title="tags")
    curve = fig.axes[0]
    lines = {line.get_label(): line for line in curve.get_lines()}
    assert set(lines) == set(MULTI_LABEL_SERIES.values())
    assert SERIES["cv_accuracy"] not in lines
    micro = lines[MULTI_LABEL_SERIES["cv_micro_f1"]]
    assert micro.get_xdata().tolist() == [20, 40, 60]
    assert np.allclose(micro.get_ydata(), [r.metrics["cv_micro_f1"] for r in runs])
    subset = lines[MULTI_LABEL_SERIES["cv_subset_accuracy"]]
    assert np.allclose(subset.get_ydata(), [r.metrics["cv_subset_accuracy"] for r in runs])


def test_digest_trend_and_status_show_micro_f1_macro_f1_and_subset_accuracy() -> None:
    runs = [multi_run(1, 50, 0.40, 0.30, 0.20, 10), multi_run(2, 80, 0.50, 0.41, 0.25, 5),
            multi_run(3, 120, 0.62, 0.50, 0.38, 1)]
    message = blocks.digest_message(multi_status(), week={"UALICE": 3}, runs=runs, advice=None,
                                    since=NOW - timedelta(days=7))
    assert blocks.message_problems(message) == []
    shown = texts_of(message)
    # From the last run before the week (50 labels) to the latest.
    assert "micro-F1 0.400 → 0.620 (+0.220)" in shown
    assert "macro-F1 0.300 → 0.500 (+0.200)" in shown
    assert "subset accuracy 20.0% → 38.0% (+18.0 points)" in shown
    assert "from 50 labels to 120" in shown
    assert "micro-F1, macro-F1 and subset accuracy against labels" in shown
    assert "no cross-validated model yet" not in shown
    status = texts_of(blocks.status_message(multi_status(runs[-1])))
    assert "CV micro-F1 0.620" in status and "macro-F1 0.500" in status and "subset accuracy 38.0%" in status
    assert "CV accuracy" not in status


def test_digest_of_a_multi_label_project_without_runs_says_so() -> None:
    shown = texts_of(blocks.digest_message(multi_status(), week={}, runs=[], advice=None))
    assert "no cross-validated model yet" in shown


def test_build_digest_reports_the_trained_multi_label_model(service: LabelingService) -> None:
    info = service.create_project("p", LABELS, multi_label=True)
    words = {"billing": "invoice charge billed", "urgent": "urgent asap now", "refund": "refund money back"}
    rows, given = [], {}
    for i in range(40):
        chosen = [name for j, name in enumerate(LABELS) if (i >> j) & 1] or ["billing"]
        rows.append(ImportRow(i + 2, f"r{i}", " ".join(words[name] for name in chosen) + f" {i}"))
        given[f"r{i}"] = chosen
    service.import_rows("p", rows)
    for eid, chosen in given.items():
        service.record_answer("p", service.find_record("p", eid).record_id, "ann", chosen)
    run = service.retrain("p")
    assert run is not None and "cv_accuracy" not in run.metrics
    message, png = build_digest(service, info, now=datetime.now(UTC))
    shown = texts_of(message)
    assert f"micro-F1 {run.metrics['cv_micro_f1']:.3f}" in shown
    assert f"subset accuracy {run.metrics['cv_subset_accuracy']:.1%}" in shown
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    curve = learning_curve_figure(service.run_history("p"), service.status("p").label_counts).axes[0]
    micro = {line.get_label(): line for line in curve.get_lines()}[MULTI_LABEL_SERIES["cv_micro_f1"]]
    assert np.allclose(micro.get_ydata(), [run.metrics["cv_micro_f1"]])


def test_agreement_is_per_label_and_averaged_over_labels(service: LabelingService) -> None:
    service.create_project("p", LABELS, answers_per_record=2, multi_label=True)
    service.import_rows("p", [ImportRow(i + 2, f"r{i}", f"text {i}") for i in range(12)])
    ids = [service.find_record("p", f"r{i}").record_id for i in range(12)]
    # billing: both say the same throughout; urgent: they differ on 6 records; refund: never chosen.
    sets = {
        "A": [{"billing"} if i % 2 else set() for i in range(12)],
        "B": [{"billing"} if i % 2 else set() for i in range(12)],
    }
    for i in range(12):
        if i < 6:
            sets["A"][i] = sets["A"][i] | {"urgent"}
        if i < 3 or 6 <= i < 9:
            sets["B"][i] = sets["B"][i] | {"urgent"}
    for who, chosen in sets.items():
        for rid, labels in zip(ids, chosen, strict=True):
            service.record_answer("p", rid, who, labels)
    status = service.status("p")
    assert status.labeled == 12
    urgent = [(i, who, "yes" if "urgent" in chosen[i] else "no") for who, chosen in sets.items()
              for i in range(12)]
    urgent_alpha = krippendorff_alpha_nominal(urgent)
    assert urgent_alpha is not None and urgent_alpha < 0.5
    # billing's alpha is 1, refund has none (one answer throughout): the mean of billing and urgent.
    assert status.agreement["krippendorff_alpha"] == pytest.approx((1.0 + urgent_alpha) / 2)
    whole_sets = [(i, who, "|".join(sorted(chosen[i]))) for who, chosen in sets.items() for i in range(12)]
    assert status.agreement["krippendorff_alpha"] != pytest.approx(krippendorff_alpha_nominal(whole_sets))
    [pair] = status.pairs
    [(urgent_kappa, overlap)] = cohen_kappa_pairs(urgent, min_overlap=1).values()
    assert overlap == 12 and pair.overlap == 12
    assert pair.kappa == pytest.approx((1.0 + urgent_kappa) / 2)
    shown = texts_of(blocks.status_message(status))
    assert "(mean over labels)" in shown and "Cohen's κ by pair* (mean over labels)" in shown
    single = texts_of(blocks.status_message(dataclasses.replace(status, multi_label=False)))
    assert "mean over labels" not in single
