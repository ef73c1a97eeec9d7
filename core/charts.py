"""The learning-curve chart of a project: model quality against labels, and labels per class, as PNG.

Pure rendering: run history and label counts in, a matplotlib ``Figure`` or PNG bytes out. It draws on
``matplotlib.figure.Figure`` with the Agg canvas directly, never through ``pyplot``: no global figure
state, no GUI backend, safe to call from the bot's worker threads at the same time.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from core.types import ModelRunInfo

__all__ = ["MULTI_LABEL_SERIES", "SERIES", "learning_curve_figure", "learning_curve_png", "series_for"]

#: metric key -> legend label, in drawing order
SERIES = {
    "cv_accuracy": "accuracy (cross-validated)",
    "cv_macro_f1": "macro-F1 (cross-validated)",
    "stability_kappa": "prediction stability (κ)",
}
#: a multi-label project's runs (multilabel_learner.multilabel_cv_metrics): micro-F1 takes accuracy's place
MULTI_LABEL_SERIES = {
    "cv_micro_f1": "micro-F1 (cross-validated)",
    "cv_macro_f1": "macro-F1 (cross-validated)",
    "cv_subset_accuracy": "subset accuracy (cross-validated)",
    "stability_kappa": "prediction stability (κ)",
}
_STYLES = {
    "cv_accuracy": ("-", "o"), "cv_micro_f1": ("-", "o"), "cv_macro_f1": ("-", "s"),
    "cv_subset_accuracy": ("--", "^"), "stability_kappa": (":", None),
}  # fmt: skip
MAX_BARS = 25


def _points(runs: Sequence[ModelRunInfo], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for run in runs:
        value = run.metrics.get(key)
        if value is not None and math.isfinite(value):
            xs.append(run.n_labels)
            ys.append(float(value))
    return xs, ys


def series_for(runs: Sequence[ModelRunInfo]) -> dict[str, str]:
    """The series to draw: a multi-label project's runs carry micro-F1 and subset accuracy, not accuracy."""
    multi = any("cv_micro_f1" in run.metrics for run in runs)
    return MULTI_LABEL_SERIES if multi else SERIES


def learning_curve_figure(
    runs: Sequence[ModelRunInfo],
    label_counts: Mapping[str, int],
    *,
    title: str | None = None,
    max_bars: int = MAX_BARS,
) -> Figure:
    """Left: cross-validated accuracy and macro-F1 (and κ) against labels; right: labels per class.

    For a multi-label project (runs with ``cv_micro_f1``) the left side shows micro-F1, macro-F1 and
    subset accuracy instead (:data:`MULTI_LABEL_SERIES`).

    ``runs`` oldest first (``LabelingService.run_history``); ``label_counts`` the final labels per class.
    At most ``max_bars`` classes are drawn (the most frequent); the rest are summed in the axis title.
    """
    counts = sorted(label_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = counts[:max(max_bars, 1)]
    height = max(3.6, 0.9 + 0.22 * len(shown))
    fig = Figure(figsize=(10, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    curve, bars = fig.subplots(1, 2, width_ratios=[3, 2])

    drawn = 0
    for key, label in series_for(runs).items():
        xs, ys = _points(runs, key)
        if not xs:
            continue
        style, marker = _styles(key, len(xs))
        curve.plot(xs, ys, linestyle=style, marker=marker, markersize=3, label=label)
        drawn += 1
    curve.set_xlabel("labels")
    curve.set_ylabel("score")
    curve.set_ylim(0, 1.02)
    curve.grid(True, alpha=0.3)
    curve.set_title("Learning curve")
    if drawn:
        curve.legend(loc="lower right", fontsize="small")
    else:
        curve.text(0.5, 0.5, "No cross-validated model yet:\nkeep labeling", ha="center", va="center",
                   transform=curve.transAxes)

    if shown:
        names = [_short(name) for name, _ in shown][::-1]
        values = [count for _, count in shown][::-1]
        bars.barh(range(len(values)), values, color="tab:blue")
        bars.set_yticks(range(len(values)), names, fontsize="small")
        bars.set_xlabel("records")
    else:
        bars.text(0.5, 0.5, "No labels yet", ha="center", va="center", transform=bars.transAxes)
        bars.set_yticks([])
    hidden = counts[len(shown):]
    extra = f" (+{len(hidden)} more, {sum(c for _, c in hidden):,} records)" if hidden else ""
    bars.set_title(f"Labels per class{extra}", fontsize="medium")
    total = sum(c for _, c in counts)
    fig.suptitle(f"{title + ': ' if title else ''}{total:,} labeled records, {len(runs)} retrain"
                 f"{'s' if len(runs) != 1 else ''}")
    return fig


def learning_curve_png(
    runs: Sequence[ModelRunInfo],
    label_counts: Mapping[str, int],
    *,
    title: str | None = None,
    max_bars: int = MAX_BARS,
    dpi: int = 100,
) -> bytes:
    """:func:`learning_curve_figure` rendered to PNG bytes with the Agg backend."""
    fig = learning_curve_figure(runs, label_counts, title=title, max_bars=max_bars)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _styles(key: str, n_points: int) -> tuple[str, str | None]:
    style, marker = _STYLES.get(key, ("-", None))
    # Markers on hundreds of retrains turn the line into a smudge.
    return style, marker if n_points <= 40 else None


def _short(name: str, limit: int = 28) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"
