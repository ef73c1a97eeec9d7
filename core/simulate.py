"""Label-efficiency benchmark: replay an oracle through the real active-learning loop.

``run_simulation`` hides the gold labels of a labeled file, imports the texts into a throwaway
``LabelingService`` (SQLite in a temporary directory), and then plays the annotator: it asks the
service for the next records exactly as the bot does (``retrain`` → ``next_records``), answers
each with its gold label and, after every step, scores the classifier the service trained on a
test set. The chosen strategy always runs beside ``random`` on the same seeds, so the table says
how many labels the strategy saves.

Over 400 lines because it is a whole benchmark (replay, scoring, curves, tables) run as one
command; it is a client of the facade only.

Schedule: 10 seed labels picked by the strategy's cold start, then batches of 10 up to 100, of 50
up to 500 and of 100 up to the budget. A seed permutes the order in which the records are
imported: the service seeds its own random choices by the number of labels, so the pool order is
what makes seeds differ.

Multi-label files (issue 13): labels joined by ``|`` (``core.multilabel.SEPARATOR``), detected when any
label contains it (or ``multi_label=True``). The oracle answers sets in a multi-label project, the
learner is the one-vs-rest classifier and the curves report micro-F1, macro-F1 and subset accuracy
(``CurvePoint.accuracy`` is then the subset accuracy; "labels to reach" is on micro-F1).
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from core import io, multilabel, rule_votes
from core.config import Settings, load_settings
from core.embeddings import Embedder, ProgressCallback, label_text, make_embedder
from core.errors import LabelbotError
from core.learner import DEFAULT_C, EmbeddingClassifier, choose_c, cross_validated_metrics
from core.multilabel_learner import MultiLabelClassifier, multilabel_metrics
from core.projects import check_strategy
from core.service import LabelingService

__all__ = [
    "BASELINE",
    "THRESHOLDS",
    "CachingEmbedder",
    "CurvePoint",
    "SimulationResult",
    "format_table",
    "label_schedule",
    "labels_to_reach",
    "plot",
    "run_simulation",
    "stratified_split",
    "write_json",
]

BASELINE = "random"
SEED_LABELS = 10
# (batch size, up to this many labels); the last batch size continues up to the budget.
_SCHEDULE = ((10, 100), (50, 500), (100, None))
THRESHOLDS = (0.9, 0.95, 0.98)
HELD_OUT_SHARE = 0.2
ORACLE = "oracle"

SimulationProgress = Callable[[str], None]


# ---------------------------------------------------------------------------------- pure helpers


def label_schedule(budget: int) -> list[int]:
    """Label counts at which the model is evaluated: 10, 20, ..., 100, 150, ..., 500, 600, ..., budget.

    The budget itself is always the last step, even when it is off the grid.
    """
    if budget < SEED_LABELS:
        raise LabelbotError(f"The label budget must be at least {SEED_LABELS} (got {budget}).")
    steps = [SEED_LABELS]
    for batch, limit in _SCHEDULE:
        while steps[-1] < budget and (limit is None or steps[-1] < limit):
            steps.append(min(steps[-1] + batch, budget, limit or budget))
    return steps


def labels_to_reach(labels: Sequence[int], accuracy: Sequence[float], target: float) -> int | None:
    """The first label count whose accuracy reaches ``target``; None if the curve never does."""
    if len(labels) != len(accuracy):
        raise ValueError("labels and accuracy differ in length")
    for n, acc in zip(labels, accuracy, strict=True):
        if acc >= target:
            return int(n)
    return None


def stratified_split(labels: Sequence[str], *, share: float = HELD_OUT_SHARE, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(train, test)``: about ``share`` of each label held out, never a label's last row."""
    y = np.asarray(labels, dtype=object)
    rng = np.random.default_rng(seed)
    test: list[int] = []
    for label in sorted(set(y.tolist())):
        rows = np.flatnonzero(y == label)
        rng.shuffle(rows)
        # A label needs at least one training example, or no classifier could ever predict it.
        test.extend(rows[: min(round(share * len(rows)), len(rows) - 1)].tolist())
    test_rows = np.sort(np.asarray(test, dtype=np.int64))
    train_rows = np.setdiff1d(np.arange(len(y)), test_rows)
    return train_rows, test_rows


class CachingEmbedder:
    """Wraps an embedder so each distinct text is encoded once (the 2 × seeds projects share them).

    With ``cache_dir`` the vectors also persist across runs in ``<cache_dir>/<model>.npz``, keyed by
    a hash of the text; use a git-ignored folder.
    """

    def __init__(self, inner: Embedder, *, cache_dir: str | Path | None = None) -> None:
        self.inner = inner
        self.name = inner.name  # the service stores vectors under the model name: keep the inner one
        self._vectors: dict[bytes, np.ndarray] = {}
        self._file: Path | None = None
        if cache_dir is not None:
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", inner.name)
            self._file = Path(cache_dir) / f"{safe}.npz"
            if self._file.exists():
                with np.load(self._file) as saved:
                    # numpy's fixed-width bytes drop trailing zero bytes: pad the digests back to 20.
                    keys = [key.ljust(20, b"\0") for key in saved["keys"].tolist()]
                    self._vectors = dict(zip(keys, saved["vectors"], strict=True))

    @property
    def dim(self) -> int:
        return int(self.inner.dim)

    @staticmethod
    def _key(text: str) -> bytes:
        return hashlib.sha1(text.encode("utf-8")).digest()

    def encode(self, texts: Sequence[str], *, progress: ProgressCallback | None = None) -> np.ndarray:
        keys = [self._key(t) for t in texts]
        missing: dict[bytes, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in self._vectors and key not in missing:
                missing[key] = text
        if missing:
            vectors = self.inner.encode(list(missing.values()), progress=progress)
            self._vectors.update(zip(missing, np.asarray(vectors, dtype=np.float32), strict=True))
            self._save()
        elif progress is not None:
            progress(len(texts), len(texts))
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._vectors[k] for k in keys]).astype(np.float32, copy=False)

    def _save(self) -> None:
        if self._file is None:
            return
        self._file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._file.with_suffix(".tmp.npz")
        keys = np.array(list(self._vectors), dtype="S20")
        np.savez(tmp, keys=keys, vectors=np.stack(list(self._vectors.values())))
        tmp.replace(self._file)


# ---------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class CurvePoint:
    """One evaluation: test scores after ``labels`` answers (a mean over seeds carries its std)."""

    labels: int
    accuracy: float
    macro_f1: float
    accuracy_std: float = 0.0
    macro_f1_std: float = 0.0
    micro_f1: float | None = None  # multi-label only (``accuracy`` is then the subset accuracy)
    micro_f1_std: float = 0.0

    def as_dict(self) -> dict[str, float | int]:
        point = {"labels": self.labels, "accuracy": self.accuracy, "macro_f1": self.macro_f1}
        return point if self.micro_f1 is None else {**point, "micro_f1": self.micro_f1}


@dataclass(frozen=True)
class SimulationResult:
    """Learning curves of each strategy (mean over seeds) against the full-pool classifier."""

    train_path: str
    test_source: str  # the test file, or how the held-out split was made
    embedding_model: str
    strategy: str
    strategies: tuple[str, ...]  # the chosen strategy first, then the baseline
    seeds: int
    budget: int  # effective: never more than the training rows
    n_train: int
    n_test: int
    labels: tuple[str, ...]
    full_pool_accuracy: float
    full_pool_macro_f1: float
    runs: dict[str, list[CurvePoint]]  # mean ± std over seeds per step
    per_seed: dict[str, list[list[CurvePoint]]]
    labels_to: dict[str, dict[str, int | None]]  # strategy → {"0.9": labels or None, ...}
    seconds: float
    notes: tuple[str, ...] = field(default_factory=tuple)
    full_pool_micro_f1: float | None = None  # multi-label only

    @property
    def multi_label(self) -> bool:
        return self.full_pool_micro_f1 is not None

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON shape plus ``std``, ``seeds`` (per-seed curves) and ``config``."""
        return {
            "full_pool_accuracy": self.full_pool_accuracy,
            "runs": {s: [p.as_dict() for p in curve] for s, curve in self.runs.items()},
            "labels_to": self.labels_to,
            # Over the run's evaluation points (10 to the budget): one figure per learning curve.
            "mean_accuracy": {s: statistics.fmean(p.accuracy for p in c) for s, c in self.runs.items()},
            "full_pool_macro_f1": self.full_pool_macro_f1,
            **({"full_pool_micro_f1": self.full_pool_micro_f1} if self.multi_label else {}),
            "std": {
                s: [{"labels": p.labels, "accuracy": p.accuracy_std, "macro_f1": p.macro_f1_std}
                    for p in curve]
                for s, curve in self.runs.items()
            },
            "seeds": {s: [[p.as_dict() for p in run] for run in runs] for s, runs in self.per_seed.items()},
            "config": {
                "train": self.train_path,
                "test": self.test_source,
                "embedding_model": self.embedding_model,
                "strategy": self.strategy,
                "strategies": list(self.strategies),
                "seeds": self.seeds,
                "budget": self.budget,
                "n_train": self.n_train,
                "n_test": self.n_test,
                "n_labels": len(self.labels),
                "multi_label": self.multi_label,
                "seconds": round(self.seconds, 1),
                "notes": list(self.notes),
            },
        }


# ---------------------------------------------------------------------------------- the run


def _read_labeled(path: str | Path, text_column: str, label_column: str, what: str
                  ) -> tuple[list[str], list[str], int]:
    rows = io.read_records(path, text_column=text_column, id_column=None, label_column=label_column)
    texts = [r.text for r in rows if r.label is not None]
    labels = [r.label for r in rows if r.label is not None]
    if not texts:
        raise LabelbotError(f"{path}: no row of the {what} file has a label in column {label_column!r}.")
    return texts, labels, len(rows) - len(texts)  # type: ignore[return-value]


def _emit(progress: SimulationProgress | None, message: str) -> None:
    if progress is not None:
        progress(message)


def _scores(y_true: Sequence[str], y_pred: Sequence[str], set_labels: Sequence[str] | None = None
            ) -> tuple[float, float, float | None]:
    """Accuracy and macro-F1 (single-label); subset accuracy, macro-F1 and micro-F1 of ``|``-joined sets
    over ``set_labels`` (multi-label)."""
    if set_labels is None:
        return (float(accuracy_score(y_true, y_pred)),
                float(f1_score(y_true, y_pred, average="macro", zero_division=0)), None)
    truth = np.asarray(multilabel.indicator(list(y_true), set_labels), dtype=bool)
    guess = np.asarray(multilabel.indicator([str(p) for p in y_pred], set_labels), dtype=bool)
    scores = multilabel_metrics(truth, guess)
    return scores["subset_accuracy"], scores["macro_f1"], scores["micro_f1"]


def run_simulation(
    train_path: str | Path,
    *,
    text_column: str = "text",
    label_column: str = "label",
    test_path: str | Path | None = None,
    strategy: str | None = None,
    budget: int = 1000,
    seeds: int = 3,
    settings: Settings | None = None,
    embedder: Embedder | None = None,
    progress: SimulationProgress | None = None,
    cache_dir: str | Path | None = None,
    rules_path: str | Path | None = None,
    multi_label: bool | None = None,
) -> SimulationResult:
    """Replay an oracle through ``LabelingService`` for ``strategy`` and ``random``, ``seeds`` times each.

    Parameters
    ----------
    train_path : labeled CSV/TSV/JSONL file; its labels are hidden and revealed one answer at a time.
    text_column, label_column : columns of both files. Rows without a label are left out.
    test_path : labeled file to evaluate on; None holds out a stratified 20% of ``train_path`` (seed 0).
    strategy : a name from ``core.strategies.STRATEGIES``; None: a new project's default (the settings'
        strategy; ``core.multilabel.DEFAULT_STRATEGY`` for multi-label files).
    budget : labels to reach (at least 10; capped at the number of training rows).
    seeds : runs per strategy; seed i imports the records in its own random order.
    settings : service settings (embedding model, batch size); the database is always a temporary one.
    embedder : overrides the settings' embedding model (tests pass ``HashingEmbedder``).
    progress : called with one human-readable line per step.
    cache_dir : keep embeddings across runs in this (git-ignored) folder.
    rules_path : keyword/regex rules, one ``<pattern> -> LABEL`` a line (``#`` comments), added to every
        simulated project after its import: they vote in the model's predictions (core.rule_votes).
    multi_label : labels are ``|``-joined sets; None: when any training label contains ``|``.
    """
    started = time.perf_counter()
    if strategy is not None:
        check_strategy(strategy)  # before reading the files; the multi-label check follows them
    if seeds < 1:
        raise LabelbotError(f"--seeds must be at least 1 (got {seeds}).")
    if budget < SEED_LABELS:
        raise LabelbotError(f"--budget must be at least {SEED_LABELS} labels (got {budget}).")

    texts, gold, skipped = _read_labeled(train_path, text_column, label_column, "training")
    if multi_label is None:
        multi_label = any(multilabel.SEPARATOR in label for label in gold)
    notes: list[str] = []
    if skipped:
        notes.append(f"{skipped} unlabeled training rows left out")
    if test_path is not None:
        test_texts, test_gold, test_skipped = _read_labeled(test_path, text_column, label_column, "test")
        if test_skipped:
            notes.append(f"{test_skipped} unlabeled test rows left out")
        unknown = sorted(_names(test_gold, multi_label) - _names(gold, multi_label))
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            raise LabelbotError(
                f"{test_path}: {len(unknown)} test label(s) never occur in the training file: {shown}. "
                "A classifier trained on it could never predict them."
            )
        test_source = str(test_path)
    else:
        if len(texts) < 2 * SEED_LABELS:
            raise LabelbotError(
                f"{train_path}: {len(texts)} labeled rows are too few to hold out a test set; "
                "pass a test file."
            )
        # A multi-label file is stratified by each row's first label: sets are too many to stratify by.
        strata = [(multilabel.split(g) or ("",))[0] for g in gold] if multi_label else gold
        train_rows, test_rows = stratified_split(strata, seed=0)
        test_texts = [texts[i] for i in test_rows]
        test_gold = [gold[i] for i in test_rows]
        texts = [texts[i] for i in train_rows]
        gold = [gold[i] for i in train_rows]
        test_source = f"stratified held-out {HELD_OUT_SHARE:.0%} of {Path(train_path).name} (seed 0)"
    labels = tuple(sorted(_names(gold, multi_label) | _names(test_gold, multi_label)))
    set_labels = labels if multi_label else None
    if multi_label:  # each set as the project stores it: its labels in the project's (sorted) order
        gold = ["|".join(n for n in labels if n in multilabel.split(g)) for g in gold]
        test_gold = ["|".join(n for n in labels if n in multilabel.split(g)) for g in test_gold]
        if len(labels) > multilabel.MAX_MULTI_LABELS:
            raise LabelbotError(f"{train_path}: {len(labels)} labels; a multi-label project has at most "
                                f"{multilabel.MAX_MULTI_LABELS}.")
    if len(labels) < 2:
        raise LabelbotError(f"{train_path}: the simulation needs at least two labels, found {list(labels)}.")
    if budget > len(texts):
        notes.append(f"budget {budget} capped at the {len(texts)} training rows")
        budget = len(texts)
    steps = label_schedule(budget)
    rule_lines = read_rules(rules_path) if rules_path is not None else []
    if rule_lines:
        notes.append(f"{len(rule_lines)} rules from {rules_path}")

    base = settings or load_settings()
    if strategy is None:
        strategy = multilabel.DEFAULT_STRATEGY if multi_label else base.strategy
    check_strategy(strategy, multi_label=multi_label)
    if embedder is None:
        embedder = make_embedder(base.embedding_model, batch_size=base.embedding_batch_size,
                                 device=base.embedding_device)
    cached = CachingEmbedder(embedder, cache_dir=cache_dir)
    unique = list(dict.fromkeys([*texts, *test_texts]))
    _emit(progress, f"Embedding {len(unique)} distinct texts with {cached.name} ...")
    cached.encode(unique, progress=lambda done, total: _emit(progress, f"  embedded {done}/{total}"))
    train_X = cached.encode(texts)
    test_X = cached.encode(test_texts)

    # The project's learner on every training label: the label-name prior and the C cross-validation
    # chooses, as the service's retrains fit it.
    label_vectors = dict(zip(labels, cached.encode([label_text(label) for label in labels]), strict=True))

    def learner(C: float = DEFAULT_C) -> EmbeddingClassifier:
        return EmbeddingClassifier(
            C=C, random_state=0, label_vectors=label_vectors, label_weight=base.label_name_weight
        )

    all_labels = np.asarray(gold, dtype=object)
    if multi_label:  # the service's multi-label learner: one-vs-rest, the prior, balanced, fixed C
        full: Any = MultiLabelClassifier(labels=labels, random_state=0, label_vectors=label_vectors,
                                         label_weight=base.label_name_weight).fit(train_X, all_labels)
        c = full.C
    else:
        metrics = cross_validated_metrics(train_X, all_labels, estimator_factory=learner)
        c = choose_c(train_X, all_labels, estimator_factory=learner, current=DEFAULT_C,
                     current_metrics=metrics)
        full = learner(c).fit(train_X, all_labels)
    full_acc, full_f1, full_micro = _scores(test_gold, full.predict(test_X), set_labels)
    shown = f"micro-F1 {full_micro:.3f}, subset accuracy" if full_micro is not None else "accuracy"
    _emit(progress, f"Full-pool {shown} {full_acc:.3f} (macro-F1 {full_f1:.3f}) on {len(texts)} labels "
                    f"(C={c:g})")

    strategies = (strategy,) if strategy == BASELINE else (strategy, BASELINE)
    per_seed: dict[str, list[list[CurvePoint]]] = {s: [] for s in strategies}
    with tempfile.TemporaryDirectory(prefix="labelbot-simulate-") as tmp:
        sim_settings = base.model_copy(update={
            "database_url": f"sqlite:///{Path(tmp) / 'simulate.db'}",
            "retrain_every": 0,  # the oracle drives retraining itself, step by step
            "answers_per_record": 1,
        })
        service = LabelingService(sim_settings, embedder=cached)
        try:
            for seed in range(seeds):
                order = np.random.default_rng(seed).permutation(len(texts))
                for name in strategies:
                    project = f"simulate-{name}-seed{seed}"
                    service.create_project(project, labels, strategy=name, multi_label=multi_label)
                    # Gold labels stay here; the service only sees texts. External id = training row.
                    service.import_rows(project, [io.ImportRow(line=int(i) + 1, external_id=str(int(i)),
                                                               text=texts[i]) for i in order])
                    for line in rule_lines:
                        service.add_rule(project, line, "simulate")
                    curve = _replay(service, project, gold, (test_X, test_texts), test_gold, steps,
                                    lambda p, name=name, seed=seed: _emit(
                                        progress, f"{name} seed {seed + 1}/{seeds}: {p.labels} labels, "
                                        + (f"micro-F1 {p.micro_f1:.3f}, subset accuracy "
                                           if p.micro_f1 is not None else "accuracy ")
                                        + f"{p.accuracy:.3f}, macro-F1 {p.macro_f1:.3f}"),
                                    set_labels)
                    per_seed[name].append(curve)
        finally:
            service.close()

    runs = {name: _mean_curve(curves) for name, curves in per_seed.items()}
    headline = full_micro if full_micro is not None else full_acc  # multi-label: micro-F1

    def figure(p: CurvePoint) -> float:
        return p.micro_f1 if p.micro_f1 is not None else p.accuracy

    labels_to = {
        name: {str(t): labels_to_reach([p.labels for p in curve], [figure(p) for p in curve], t * headline)
               for t in THRESHOLDS}
        for name, curve in runs.items()
    }
    return SimulationResult(
        train_path=str(train_path),
        test_source=test_source,
        embedding_model=cached.name,
        strategy=strategy,
        strategies=strategies,
        seeds=seeds,
        budget=budget,
        n_train=len(texts),
        n_test=len(test_texts),
        labels=labels,
        full_pool_accuracy=full_acc,
        full_pool_macro_f1=full_f1,
        runs=runs,
        per_seed=per_seed,
        labels_to=labels_to,
        seconds=time.perf_counter() - started,
        notes=tuple(notes),
        full_pool_micro_f1=full_micro,
    )


def _names(gold: Sequence[str], multi_label: bool) -> set[str]:
    """The label names a file's labels use: each ``|``-joined set's names when multi-label."""
    return {n for g in gold for n in multilabel.split(g)} if multi_label else set(gold)


def read_rules(path: str | Path) -> list[str]:
    """The rules of a rules file: one ``<keywords or /regex/flags> -> LABEL`` a line; blank lines and
    lines starting with ``#`` are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise LabelbotError(f"{path}: cannot read the rules file ({exc.strerror or exc}).") from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _replay(
    service: LabelingService,
    project: str,
    gold: Sequence[str],
    test: tuple[np.ndarray, Sequence[str]],
    test_gold: Sequence[str],
    steps: Sequence[int],
    on_point: Callable[[CurvePoint], None],
    set_labels: Sequence[str] | None = None,
) -> list[CurvePoint]:
    """Answer the service's picks with gold labels, scoring its model at every step of ``steps``
    (``test``: the test set's embeddings and texts, which the project's rules vote on; ``set_labels``: a
    multi-label project's labels; its gold labels are ``|``-joined sets)."""
    answered: list[str] = []
    curve: list[CurvePoint] = []

    def evaluate(run_exists: bool) -> None:
        classifier = service.latest_classifier(project) if run_exists else None
        if classifier is not None:
            predicted = rule_votes.predict(classifier, *test)
        else:
            # One label seen so far: the service trains nothing; the only sensible guess is that label.
            predicted = np.full(len(test_gold), max(set(answered), key=answered.count), dtype=object)
        accuracy, macro_f1, micro_f1 = _scores(test_gold, predicted, set_labels)
        point = CurvePoint(len(answered), accuracy, macro_f1, micro_f1=micro_f1)
        curve.append(point)
        on_point(point)

    for target in steps:
        # One retrain both trains on the labels so far (scored below) and ranks the next batch.
        run = service.retrain(project, queue_size=target - len(answered))
        if answered:
            evaluate(run is not None)
        picked = service.next_records(project, ORACLE, target - len(answered))
        for record in picked:
            label = gold[int(record.external_id)]
            answer = multilabel.split(label) if set_labels is not None else label
            service.record_answer(project, record.record_id, ORACLE, answer, source="cli")
            answered.append(label)
        if not picked:  # the pool ran dry
            return curve
    run = service.retrain(project, queue_size=1)
    evaluate(run is not None)
    return curve


def _mean_curve(curves: Sequence[Sequence[CurvePoint]]) -> list[CurvePoint]:
    """Mean ± population std per label count, over the seeds that reached it."""
    by_labels: dict[int, list[CurvePoint]] = {}
    for curve in curves:
        for point in curve:
            by_labels.setdefault(point.labels, []).append(point)
    out = []
    for n in sorted(by_labels):
        acc = [p.accuracy for p in by_labels[n]]
        f1 = [p.macro_f1 for p in by_labels[n]]
        micro = [p.micro_f1 for p in by_labels[n] if p.micro_f1 is not None]
        out.append(CurvePoint(n, statistics.fmean(acc), statistics.fmean(f1),
                              statistics.pstdev(acc), statistics.pstdev(f1),
                              statistics.fmean(micro) if micro else None,
                              statistics.pstdev(micro) if micro else 0.0))
    return out


# ---------------------------------------------------------------------------------- output


def format_table(result: SimulationResult) -> str:
    """A plain-text (Markdown-compatible) table: accuracy and macro-F1, mean ± std, per step."""
    names = result.strategies
    multi = result.multi_label  # micro-F1, macro-F1, subset accuracy
    head = ["labels"]
    for name in names:
        head += ([f"{name} micro-F1", f"{name} macro-F1", f"{name} subset acc."] if multi
                 else [f"{name} accuracy", f"{name} macro-F1"])
    points = {name: {p.labels: p for p in curve} for name, curve in result.runs.items()}
    rows = []
    for n in sorted({p.labels for curve in result.runs.values() for p in curve}):
        row = [str(n)]
        for name in names:
            p = points[name].get(n)
            if p is None:
                row += ["", "", ""] if multi else ["", ""]
                continue
            cells = [f"{p.accuracy:.3f} ± {p.accuracy_std:.3f}", f"{p.macro_f1:.3f} ± {p.macro_f1_std:.3f}"]
            row += [f"{p.micro_f1:.3f} ± {p.micro_f1_std:.3f}", cells[1], cells[0]] if multi else cells
        rows.append(row)
    headline = result.full_pool_micro_f1 if multi else result.full_pool_accuracy
    assert headline is not None
    full = (
        f"Full-pool micro-F1 {headline:.3f} (macro-F1 {result.full_pool_macro_f1:.3f}, subset accuracy "
        f"{result.full_pool_accuracy:.3f})" if multi
        else f"Full-pool accuracy {headline:.3f} (macro-F1 {result.full_pool_macro_f1:.3f})"
    )
    lines = [
        f"Label efficiency: {Path(result.train_path).name} ({result.n_train} training rows, "
        f"{len(result.labels)} labels), test: {result.test_source} ({result.n_test} rows)",
        f"Embeddings {result.embedding_model}; {result.seeds} seed(s); mean ± std over seeds; "
        f"{result.seconds:.0f} s",
        "",
        *_markdown(head, rows),
        "",
        f"{full}, classifier trained on all {result.n_train} training labels.",
        "",
        *_markdown(
            ["labels to reach",
             *(f"{t:.0%} of full pool ({t * headline:.3f})" for t in THRESHOLDS)],
            [[name, *(_cell(result.labels_to[name][str(t)], result.budget) for t in THRESHOLDS)]
             for name in names],
        ),
    ]
    if result.notes:
        lines += ["", *(f"Note: {note}." for note in result.notes)]
    return "\n".join(lines)


def _cell(value: int | None, budget: int) -> str:
    return str(value) if value is not None else f"not within {budget}"


def _markdown(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max([len(head[i])] + [len(r[i]) for r in rows]) for i in range(len(head))]

    def fmt(cells: list[str]) -> str:
        # Figures right-aligned, names left-aligned.
        return "| " + " | ".join(c.rjust(w) if c[:1].isdigit() else c.ljust(w)
                                 for c, w in zip(cells, widths, strict=True)) + " |"

    return [fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(fmt(r) for r in rows)]


def write_json(result: SimulationResult, path: str | Path) -> Path:
    """Write ``result.to_dict()`` as indented JSON (NaN-free: every figure is a finite float)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def plot(result: SimulationResult, path: str | Path) -> Path:
    """Learning curves (accuracy and macro-F1 vs labels, mean ± std band) with the full-pool line, as PNG."""
    # The object-oriented API with the Agg canvas: no pyplot global state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    first = (("micro_f1", "Micro-F1", result.full_pool_micro_f1) if result.multi_label
             else ("accuracy", "Accuracy", result.full_pool_accuracy))
    metrics = (first, ("macro_f1", "Macro-F1", result.full_pool_macro_f1))
    for ax, (key, title, full) in zip(axes, metrics, strict=True):
        for name in result.strategies:
            curve = result.runs[name]
            x = np.array([p.labels for p in curve])
            mean = np.array([getattr(p, key) for p in curve])
            std = np.array([getattr(p, f"{key}_std") for p in curve])
            (line,) = ax.plot(x, mean, marker="o", markersize=3, label=name)
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.axhline(full, color="black", linestyle="--", linewidth=1, label=f"full pool ({full:.3f})")
        ax.set_xlabel("labels")
        ax.set_ylabel(f"test {title}")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle(f"{Path(result.train_path).name}: {result.seeds} seed(s), mean ± std")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=110)
    return path
