"""Crowd benchmark: simulated annotators answer Banking77 and SMS records through the real service.

Five simulated annotators with known accuracies (0.95, 0.9, 0.8, 0.7, 0.6) answer a random sample
of records (2,000 per data set by default) of Banking77 (77 intents) and SMS spam (2 labels).
Each record gets k answers (k = 2 and 3: annotators drawn at random per record; k = 5: all five).
The answers enter a fresh project through ``LabelingService.import_rows`` in long format (one row per
answer, as ``labelbot import --annotator-column`` does), and everything after that is the project's
own code: ``final_labels`` (the aggregate the classifier trains on: ``core.aggregate.aggregate``),
``status`` (per-annotator estimated accuracy) and, after ``retrain``, ``review_queue`` (the
label-error flags). At k = 2 the project routes ties to one more labeler
(``extra_answer_on_disagreement``): the annotators then ask ``next_records`` for work in a random
order and answer what the service hands them with ``record_answer``.

Annotators (seeded):

* class-dependent accuracy: annotator j answers a record of true class c correctly with
  probability ``clip(a_j + u_jc, 0.05, 0.995)``, where ``u_jc ~ U(-0.1, 0.1)`` is centred per
  annotator (some classes are easier for some people);
* class-dependent confusions: a wrong answer is drawn from an annotator- and class-specific
  Dirichlet(1) distribution over the 5 classes whose MiniLM centroids are nearest to c (80% of
  the error mass: people confuse similar intents) and uniformly over all other classes (20%).
  With two labels (SMS) the wrong answer is simply the other label.

Injected label errors: on ``--inject`` (default 5%) of the records *every* answer is replaced by
one and the same wrong label, drawn uniformly from the other labels: a misleading text or a wrong
guideline that fools the whole crowd. No aggregation can recover these (majority vote and
Dawid-Skene both adopt the wrong label), so they measure the model-based flags alone: the review
queue's ``label_issue`` (confident learning on out-of-fold probabilities) and ``model_disagrees``
(the latest model, >= 80% sure, contradicts the aggregate) items. Precision = flagged records that
were injected / flagged records; recall = injected records flagged / injected records. Aggregation
accuracy is measured against the data set's labels on the records *without* injected errors.

    .venv/bin/python bench/crowd.py                    # both data sets, 3 seeds, ~3 min on 2 cores
    .venv/bin/python bench/crowd.py --dataset sms_spam --seeds 1 --records 500
    .venv/bin/python bench/crowd.py --dataset rte_crowd    # the real crowd (see bench/crowd_rte.py)

Results are printed and written to bench/results/crowd.json and bench/results/crowd.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import crowd_rte  # bench/ is on the path when this script runs

from core import aggregate as agg
from core.config import Settings
from core.embeddings import make_embedder
from core.io import ImportRow
from core.service import LabelingService
from core.simulate import CachingEmbedder

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
DATA = Path(os.environ.get("LABELBOT_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
ACCURACIES = {"ann95": 0.95, "ann90": 0.90, "ann80": 0.80, "ann70": 0.70, "ann60": 0.60}
NEAREST = 5  # confusable classes per class
NEAR_SHARE = 0.8  # of the error mass, on the confusable classes
SPREAD = 0.1  # per-class accuracy = a_j +- up to this much
MODEL_FLAGS = ("label_issue", "model_disagrees")


def load_dataset(name: str) -> tuple[list[str], list[str]]:
    """All (text, label) pairs of the training file."""
    if name == "banking77":
        with open(DATA / "banking77" / "train.csv", encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        return [r["text"] for r in rows], [r["category"] for r in rows]
    with open(DATA / "sms_spam" / "SMSSpamCollection", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["SMS"] for r in rows], [r["Label"] for r in rows]


def nearest_classes(vectors: np.ndarray, y: np.ndarray, n_classes: int, m: int) -> np.ndarray:
    """(K, m) the m classes whose mean embedding is nearest (cosine) to each class's."""
    centroids = np.stack([vectors[y == c].mean(axis=0) for c in range(n_classes)])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    similarity = centroids @ centroids.T
    np.fill_diagonal(similarity, -np.inf)
    return np.argsort(-similarity, axis=1)[:, : min(m, n_classes - 1)]


class Annotator:
    """A simulated labeler with per-class accuracy and per-class confusion."""

    def __init__(
        self, name: str, accuracy: float, n_classes: int, near: np.ndarray, rng: np.random.Generator
    ):
        self.name = name
        offsets = rng.uniform(-SPREAD, SPREAD, size=n_classes)
        self.accuracy = np.clip(accuracy + offsets - offsets.mean(), 0.05, 0.995)
        self.errors = np.zeros((n_classes, n_classes))
        for c in range(n_classes):
            if n_classes == 2:
                self.errors[c, 1 - c] = 1.0
                continue
            others = np.setdiff1d(np.arange(n_classes), [c])
            self.errors[c, others] = (1 - NEAR_SHARE) / len(others)
            self.errors[c, near[c]] += NEAR_SHARE * rng.dirichlet(np.ones(len(near[c])))

    def answer(self, truth: int, rng: np.random.Generator) -> int:
        if rng.random() < self.accuracy[truth]:
            return truth
        return int(rng.choice(len(self.errors), p=self.errors[truth]))


def simulate(
    truth: np.ndarray,
    k: int,
    annotators: Sequence[Annotator],
    inject: float,
    n_classes: int,
    rng: np.random.Generator,
) -> tuple[list[tuple[int, str, int]], set[int]]:
    """(record, annotator, class) answers and the set of records with an injected error."""
    injected = set(rng.choice(len(truth), size=round(inject * len(truth)), replace=False).tolist())
    answers = []
    for i, t in enumerate(truth):
        who = rng.choice(len(annotators), size=k, replace=False)
        wrong = None
        if i in injected:
            wrong = int(rng.choice(np.setdiff1d(np.arange(n_classes), [t])))
        for j in sorted(who):
            answers.append(
                (i, annotators[j].name, wrong if wrong is not None else annotators[j].answer(t, rng))
            )
    return answers, injected


def mv_accuracies(triples: list[tuple[int, str, str]], truth: dict[int, str]) -> tuple[float, float]:
    """Majority vote accuracy with ties counted as misses, and with ties broken at random (expected)."""
    votes = agg.majority_vote(triples)
    strict, broken = [], []
    per_item: dict[int, Counter[str]] = {}
    for item, _, label in triples:
        per_item.setdefault(item, Counter())[label] += 1
    for item, label in truth.items():
        strict.append(votes[item].label == label)
        top = per_item[item].most_common()
        tied = [lab for lab, n in top if n == top[0][1]]
        broken.append((label in tied) / len(tied))
    return float(np.mean(strict)), float(np.mean(broken))


def run_one(
    name: str,
    texts: list[str],
    labels: list[str],
    classes: list[str],
    k: int,
    seed: int,
    inject: float,
    embedder: CachingEmbedder,
    near: np.ndarray,
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    class_index = {c: i for i, c in enumerate(classes)}
    truth = np.array([class_index[label] for label in labels])
    annotators = [Annotator(a, acc, len(classes), near, rng) for a, acc in ACCURACIES.items()]
    answers, injected = simulate(truth, k, annotators, inject, len(classes), rng)
    base_answers = list(answers)
    extra = 0
    rows = [
        ImportRow(line=n + 2, external_id=str(i), text=texts[i], label=classes[c], annotator=who)
        for n, (i, who, c) in enumerate(answers)
    ]
    clean = {i: labels[i] for i in range(len(texts)) if i not in injected}
    with tempfile.TemporaryDirectory(prefix="labelbot-crowd-") as tmp:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=f"sqlite:///{tmp}/crowd.db",
            embedding_model=embedder.name,
            retrain_every=0,
            queue_size=100,
        )
        service = LabelingService(settings, embedder=embedder)
        try:
            project = f"{name}-k{k}"
            service.create_project(project, classes, answers_per_record=k)
            started = time.perf_counter()
            service.import_rows(project, rows)
            import_s = time.perf_counter() - started
            if k == 2:
                # Route ties to one more labeler: the service reopens them and hands each to whoever
                # asks next (annotators ask in a random order, one record at a time).
                service.configure_project(project, extra_answer_on_disagreement=True)
                asking = True
                while asking:
                    asking = False
                    for j in rng.permutation(len(annotators)):
                        for record in service.next_records(project, annotators[j].name, 1):
                            i = int(record.external_id)
                            c = annotators[j].answer(int(truth[i]), rng)
                            service.record_answer(project, record.record_id, annotators[j].name, classes[c])
                            answers.append((i, annotators[j].name, c))
                            extra += 1
                            asking = True
            finals = {int(eid): label for eid, label in service.final_labels(project).items()}
            status = service.status(project)
            started = time.perf_counter()
            service.retrain(project)
            retrain_s = time.perf_counter() - started
            started = time.perf_counter()
            queue = service.review_queue(project, limit=len(texts))
            review_s = time.perf_counter() - started
        finally:
            service.close()
    triples = [(i, who, classes[c]) for i, who, c in base_answers]
    mv_strict, mv_broken = mv_accuracies([t for t in triples if t[0] not in injected], clean)
    aggregate_acc = float(np.mean([finals.get(i) == label for i, label in clean.items()]))
    flagged = {int(item.external_id) for item in queue if item.kind in MODEL_FLAGS}
    wrong_aggregate = {i for i in range(len(texts)) if finals.get(i) != labels[i]}
    realized = {
        a.name: float(
            np.mean([c == truth[i] for i, who, c in answers if who == a.name and i not in injected])
        )
        for a in annotators
    }
    return {
        "seed": seed,
        "majority_vote": mv_strict,
        "majority_vote_random_tiebreak": mv_broken,
        "aggregate": aggregate_acc,
        "aggregate_method": "hierarchical MACE" + (", ties get one extra answer" if k == 2 else ""),
        "extra_answers": extra,
        "injected": len(injected),
        "flagged": len(flagged),
        "flag_precision": len(flagged & injected) / len(flagged) if flagged else None,
        "flag_recall": len(flagged & injected) / len(injected) if injected else None,
        "flag_precision_any_error": len(flagged & wrong_aggregate) / len(flagged) if flagged else None,
        "review_kinds": dict(Counter(item.kind for item in queue)),
        "flags_by_kind": {
            kind: {
                "n": len(ids),
                "precision_injected": len(ids & injected) / len(ids) if ids else None,
                "precision_any_error": len(ids & wrong_aggregate) / len(ids) if ids else None,
            }
            for kind in sorted({item.kind for item in queue} | set(MODEL_FLAGS))
            for ids in [{int(item.external_id) for item in queue if item.kind == kind}]
        },
        "krippendorff_alpha": status.agreement.get("krippendorff_alpha"),
        "annotators": {
            a.user: {
                "realized_accuracy": realized.get(a.user),
                "estimated_accuracy": a.estimated_accuracy,
                "agreement_with_aggregate": a.agreement,
            }
            for a in status.annotators
        },
        "seconds": {
            "import": round(import_s, 2),
            "retrain": round(retrain_s, 2),
            "review_queue": round(review_s, 2),
        },
    }


def _mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    present = [v for v in values if v is not None]
    if not present:
        return None, None
    return statistics.fmean(present), (statistics.stdev(present) if len(present) > 1 else 0.0)


def _fmt(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.3f} ± {std:.3f}" if std else f"{mean:.3f}"


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = (
        "extra_answers",
        "majority_vote",
        "majority_vote_random_tiebreak",
        "aggregate",
        "flagged",
        "flag_precision",
        "flag_recall",
        "flag_precision_any_error",
        "krippendorff_alpha",
    )
    summary: dict[str, Any] = {key: _mean_std([run[key] for run in runs]) for key in keys}
    summary["annotators"] = {
        name: {
            field: _mean_std([run["annotators"][name][field] for run in runs if name in run["annotators"]])
            for field in ("realized_accuracy", "estimated_accuracy")
        }
        for name in ACCURACIES
    }
    return summary


def table(results: dict[str, dict[int, dict[str, Any]]], n_records: int, seeds: int, inject: float) -> str:
    lines = [
        f"Crowd aggregation and label-error flags ({n_records:,} records per data set, mean ± std over "
        f"{seeds} seed{'s' if seeds != 1 else ''}, {inject:.0%} injected errors)",
        "",
        "| data set | k | majority vote (ties = miss) | majority vote (random tie-break) | project aggregate "
        "| extra answers | flags | flag precision (injected) | flag recall (injected) | "
        "flag precision (any wrong label) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, by_k in results.items():
        for k, entry in by_k.items():
            s = entry["summary"]
            cells = [_fmt(*s[key]) for key in ("majority_vote", "majority_vote_random_tiebreak", "aggregate")]
            cells.append(f"{s['extra_answers'][0]:.0f}")
            cells.append(f"{s['flagged'][0]:.0f}")
            cells += [_fmt(*s[key]) for key in ("flag_precision", "flag_recall", "flag_precision_any_error")]
            lines.append(f"| {name} | {k} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Per-annotator accuracy: simulated (realized on the records without injected errors) vs "
        "the crowd model's estimate in `labelbot status --annotators`",
        "",
        "| data set | k | " + " | ".join(ACCURACIES) + " |",
        "| --- | --- |" + " --- |" * len(ACCURACIES),
    ]
    for name, by_k in results.items():
        for k, entry in by_k.items():
            cells = []
            for who in ACCURACIES:
                a = entry["summary"]["annotators"][who]
                real, est = a["realized_accuracy"][0], a["estimated_accuracy"][0]
                cells.append(f"{real:.3f} vs {est:.3f}" if real is not None and est is not None else "n/a")
            lines.append(f"| {name} | {k} | " + " | ".join(cells) + " |")
    lines += ["", "Project aggregate: hierarchical MACE for every k (since issue 11; before it majority vote "
              "for k <= 2 and Dawid-Skene from k = 3); at k = 2 each tie is routed to one more labeler "
              "(`extra_answer_on_disagreement`). Flags: review-queue items of kind "
              "`label_issue` or `model_disagrees`."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=["banking77", "sms_spam", "rte_crowd", "all"], default="all")
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--inject", type=float, default=0.05)
    parser.add_argument("--ks", default="2,3,5")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    ks = [int(k) for k in args.ks.split(",")]
    if args.dataset in ("rte_crowd", "all"):
        crowd_rte.run(args.out)  # a real crowd: its own sampling, table and result files
        if args.dataset == "rte_crowd":
            return

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    cache = BENCH / ".cache" / "crowd"
    shared = BENCH / ".cache" / "simulate"
    safe = settings.embedding_model.replace("/", "_")
    if not (cache / f"{safe}.npz").exists() and (shared / f"{safe}.npz").exists():
        cache.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared / f"{safe}.npz", cache / f"{safe}.npz")  # vectors bench/simulate made
    embedder = CachingEmbedder(make_embedder(settings.embedding_model), cache_dir=cache)

    started = time.perf_counter()
    results: dict[str, dict[int, dict[str, Any]]] = {}
    for name in ["banking77", "sms_spam"] if args.dataset == "all" else [args.dataset]:
        all_texts, all_labels = load_dataset(name)
        sample = np.random.default_rng(12345).choice(
            len(all_texts), size=min(args.records, len(all_texts)), replace=False
        )
        texts = [all_texts[i] for i in sample]
        labels = [all_labels[i] for i in sample]
        classes = sorted(set(all_labels))
        vectors = embedder.encode(texts)
        y = np.array([classes.index(label) for label in labels])
        near = nearest_classes(vectors, y, len(classes), NEAREST)
        results[name] = {}
        for k in ks:
            runs = []
            for seed in range(args.seeds):
                run = run_one(name, texts, labels, classes, k, seed, args.inject, embedder, near)
                runs.append(run)
                print(
                    f"{name} k={k} seed={seed}: MV {run['majority_vote']:.3f} "
                    f"(random tie-break {run['majority_vote_random_tiebreak']:.3f}), "
                    f"aggregate {run['aggregate']:.3f}, {run['flagged']} flags, "
                    f"precision {run['flag_precision']}, recall {run['flag_recall']}, {run['review_kinds']}",
                    flush=True,
                )
            results[name][k] = {"runs": runs, "summary": summarize(runs)}
    text = table(results, args.records, args.seeds, args.inject)
    print("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {
        "config": {
            "records": args.records,
            "seeds": args.seeds,
            "inject": args.inject,
            "ks": ks,
            "accuracies": ACCURACIES,
            "nearest": NEAREST,
            "near_share": NEAR_SHARE,
            "spread": SPREAD,
            "embedding_model": settings.embedding_model,
        },
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "seconds": round(time.perf_counter() - started, 1),
        "results": {name: {str(k): v for k, v in by_k.items()} for name, by_k in results.items()},
    }
    (args.out / "crowd.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
    (args.out / "crowd.md").write_text(text + "\n", encoding="utf-8")
    print(f"\nWrote {args.out / 'crowd.json'} and crowd.md ({payload['seconds']} s)")


if __name__ == "__main__":
    main()
