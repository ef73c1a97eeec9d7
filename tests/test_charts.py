"""core.charts: the learning-curve figure has the expected series, and the PNG is a valid image."""

from __future__ import annotations

import struct
import zlib
from datetime import UTC, datetime

import numpy as np

from core.charts import SERIES, learning_curve_figure, learning_curve_png
from core.types import ModelRunInfo


def runs() -> list[ModelRunInfo]:
    out = []
    for i, n in enumerate((5, 20, 30, 40, 50)):
        metrics = {"stability_kappa": 0.9 + 0.01 * i} if i else {}
        if n >= 10:  # no cross-validation below 10 labels
            metrics |= {"cv_accuracy": 0.5 + 0.05 * i, "cv_macro_f1": 0.4 + 0.06 * i}
        out.append(ModelRunInfo(id=i + 1, project="p", created_at=datetime(2024, 5, 1, tzinfo=UTC),
                                n_labels=n, strategy="margin-kmeans", metrics=metrics, label_counts={},
                                duration_seconds=0.1))
    return out


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, after checking the signature and the chunk's CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    body = data[16:29]
    (crc,) = struct.unpack(">I", data[29:33])
    assert zlib.crc32(kind + body) == crc
    assert data.rstrip(b"\x00")[-8:] == b"IEND\xaeB`\x82"
    return struct.unpack(">II", body[:8])


def test_figure_has_accuracy_f1_and_kappa_against_labels() -> None:
    history = runs()
    fig = learning_curve_figure(history, {"spam": 30, "ham": 20}, title="demo")
    curve, bars = fig.axes
    lines = {line.get_label(): line for line in curve.get_lines()}
    assert set(lines) == set(SERIES.values())
    accuracy = lines[SERIES["cv_accuracy"]]
    assert accuracy.get_xdata().tolist() == [20, 30, 40, 50]
    assert np.allclose(accuracy.get_ydata(), [r.metrics["cv_accuracy"] for r in history[1:]])
    f1 = lines[SERIES["cv_macro_f1"]]
    assert np.allclose(f1.get_ydata(), [r.metrics["cv_macro_f1"] for r in history[1:]])
    assert lines[SERIES["stability_kappa"]].get_xdata().tolist() == [20, 30, 40, 50]
    assert curve.get_xlabel() == "labels"
    assert [t.get_text() for t in bars.get_yticklabels()] == ["ham", "spam"]  # most frequent on top
    assert sorted(p.get_width() for p in bars.patches) == [20, 30]
    assert fig.get_suptitle() == "demo: 50 labeled records, 5 retrains"


def test_many_labels_are_capped_and_summarised() -> None:
    counts = {f"label_{i:02d}": 100 - i for i in range(77)}
    fig = learning_curve_figure(runs(), counts, max_bars=25)
    bars = fig.axes[1]
    assert len(bars.patches) == 25
    assert bars.get_yticklabels()[-1].get_text() == "label_00"
    hidden = sum(100 - i for i in range(25, 77))
    assert f"+52 more, {hidden:,} records" in bars.get_title()


def test_png_is_valid_and_sized_like_the_figure() -> None:
    data = learning_curve_png(runs(), {"spam": 30, "ham": 20}, dpi=50)
    width, height = png_size(data)
    fig = learning_curve_figure(runs(), {"spam": 30, "ham": 20})
    expected_w, expected_h = fig.get_size_inches() * 50
    assert (width, height) == (round(expected_w), round(expected_h))


def test_empty_project_still_renders() -> None:
    fig = learning_curve_figure([], {})
    assert fig.axes[0].get_lines() == []
    assert "No cross-validated model yet" in " ".join(t.get_text() for t in fig.axes[0].texts)
    assert png_size(learning_curve_png([], {}))[0] > 0
