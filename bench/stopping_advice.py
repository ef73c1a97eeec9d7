"""Evidence for two defaults of the background loop: retrain every N answers, and the stopping advice.

Replays an oracle through the real ``LabelingService`` (as core/simulate.py does) on Banking77 and
SMS spam with cached all-MiniLM-L6-v2 embeddings, retraining after every N answers, and records per
retrain: labels, cross-validated accuracy / macro-F1, the stabilizing-predictions κ the service
stores (``stability_kappa``), test accuracy of the run's classifier and the retrain's seconds.

1. **N** (``LABELBOT_RETRAIN_EVERY``): test accuracy at equal label counts and total retrain time for
   N = 5, 10, 25, 50. Smaller N keeps the queue fresher; each retrain costs CPU on the serving box.
2. **Stopping advice**: on the N=10 trace, where ``core.stopping.advise`` first says "more labels are
   unlikely to help much", and how far test accuracy then is from the full-pool model's; the
   same for κ alone and for the plateau test alone.

    .venv/bin/python bench/stopping_advice.py                 # both datasets, ~10 min on 2 cores
    .venv/bin/python bench/stopping_advice.py --datasets sms  # one dataset

Writes bench/results/stopping_advice.json and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.choose_c import embed, load_banking77, load_sms_spam  # noqa: E402
from core import stopping  # noqa: E402
from core.config import Settings  # noqa: E402
from core.io import ImportRow  # noqa: E402
from core.learner import EmbeddingClassifier  # noqa: E402
from core.service import LabelingService  # noqa: E402
from core.types import ModelRunInfo  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "stopping_advice.json"
ORACLE = "oracle"
CACHE = ROOT / "bench" / ".cache"


class LookupEmbedder:
    """Precomputed vectors by text: the service embeds nothing during the replay."""

    name = "all-MiniLM-L6-v2 (cached)"

    def __init__(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        self.dim = int(vectors.shape[1])
        self._by_text = {t: vectors[i] for i, t in enumerate(texts)}

    def encode(self, texts: Sequence[str], *, progress=None) -> np.ndarray:  # type: ignore[no-untyped-def]
        return np.stack([self._by_text[t] for t in texts]).astype(np.float32)


def replay(texts: list[str], gold: np.ndarray, Xte: np.ndarray, yte: np.ndarray, vectors: np.ndarray,
           *, every: int, budget: int, seed: int) -> list[dict]:
    """Answer ``every`` records, retrain, score; until ``budget`` labels. One dict per retrain."""
    trace = []
    # A fixed stop set for the κ-gap table: 2,000 training rows, predicted by every model.
    stop_rows = np.random.default_rng(99).choice(len(texts), size=min(2000, len(texts)), replace=False)
    classes = sorted(set(gold.tolist()))
    with tempfile.TemporaryDirectory(prefix="labelbot-stop-") as tmp:
        settings = Settings(_env_file=None, database_url=f"sqlite:///{Path(tmp) / 'b.db'}",  # type: ignore[call-arg]
                            retrain_every=0, queue_size=max(every, 50))
        service = LabelingService(settings, embedder=LookupEmbedder(texts, vectors))
        try:
            service.create_project("p", classes)
            order = np.random.default_rng(seed).permutation(len(texts))
            service.import_rows("p", [ImportRow(line=int(i) + 1, external_id=str(int(i)), text=texts[i])
                                      for i in order])
            answered = 0
            while answered < budget:
                picked = service.next_records("p", ORACLE, min(every, budget - answered))
                if not picked:
                    break
                for record in picked:
                    service.record_answer("p", record.record_id, ORACLE, str(gold[int(record.external_id)]),
                                          source="cli")
                answered += len(picked)
                started = time.perf_counter()
                run = service.retrain("p")
                seconds = time.perf_counter() - started
                if run is None:
                    continue
                model = service.latest_classifier("p")
                trace.append({
                    "labels": run.n_labels,
                    "seconds": round(seconds, 4),
                    "test_accuracy": float(np.mean(model.predict(Xte) == yte)),
                    **{k: round(v, 5) for k, v in run.metrics.items()},
                    # in memory only (not written): this model's labels on the stop set, as indices
                    "stop_pred": np.searchsorted(classes, model.predict(vectors[stop_rows])),
                })
        finally:
            service.close()
    return trace


def _runs(trace: list[dict]) -> list[ModelRunInfo]:
    from datetime import UTC, datetime

    keys = ("cv_accuracy", "cv_macro_f1", "stability_kappa")
    return [ModelRunInfo(id=i, project="p", created_at=datetime.now(UTC), n_labels=t["labels"],
                         strategy="margin-kmeans", metrics={k: t[k] for k in keys if k in t},
                         label_counts={}, duration_seconds=t["seconds"]) for i, t in enumerate(trace)]


def first_fire(trace: list[dict], rule: str) -> dict | None:
    """The first retrain at which ``rule`` (advice / kappa / plateau) says stop."""
    runs = _runs(trace)
    for i in range(len(runs)):
        advice = stopping.advise("p", runs[: i + 1])
        fired = {"advice": advice.stop,
                 "kappa": advice.stable and advice.n_labels >= stopping.MIN_LABELS_FOR_ADVICE,
                 "plateau": bool(advice.plateau) and advice.n_labels >= stopping.MIN_LABELS_FOR_ADVICE}[rule]
        if fired:
            return {"labels": trace[i]["labels"], "test_accuracy": trace[i]["test_accuracy"],
                    "kappa": advice.kappa, "projected_gain": advice.projected_gain}
    return None


GAP_RULES = {
    "previous run": lambda n: 1,
    "50 labels": lambda n: 50,
    "100 labels": lambda n: 100,
    "10% of labels": lambda n: max(1, n // 10),
    "20% of labels": lambda n: max(1, n // 5),
    "max(50, 10%)": lambda n: max(50, n // 10),
    "max(100, 20%)": lambda n: max(100, n // 5),
}


def kappa_gap_table(trace: list[dict], full_acc: float, *, threshold: float = stopping.KAPPA_THRESHOLD,
                    window: int = stopping.KAPPA_WINDOW) -> dict[str, dict | None]:
    """Where mean κ >= threshold over ``window`` retrains first fires, when each model is compared with
    the latest one trained on at most ``n - gap`` labels (the service compares with ``stability_gap``)."""
    out: dict[str, dict | None] = {}
    for name, gap in GAP_RULES.items():
        kappas: list[float] = []
        out[name] = None
        for i, t in enumerate(trace):
            ref = [r for r in trace[:i] if r["labels"] <= t["labels"] - gap(t["labels"])]
            if not ref:
                continue
            kappas.append(stopping.prediction_kappa(ref[-1]["stop_pred"].tolist(), t["stop_pred"].tolist()))
            mean = float(np.mean(kappas[-window:]))
            if len(kappas) >= window and mean >= threshold and t["labels"] >= stopping.MIN_LABELS_FOR_ADVICE:
                out[name] = {"labels": t["labels"], "test_accuracy": t["test_accuracy"], "kappa": mean,
                             "points_below_full": round((full_acc - t["test_accuracy"]) * 100, 2)}
                break
    return out


def at(trace: list[dict], labels: int) -> float | None:
    """Test accuracy of the last run with at most ``labels`` labels."""
    before = [t for t in trace if t["labels"] <= labels]
    return before[-1]["test_accuracy"] if before else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["banking77", "sms"], choices=["banking77", "sms"])
    parser.add_argument("--every", nargs="+", type=int, default=[5, 10, 25, 50])
    args = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    plan = {
        # dataset: (loader, cache prefix, budget for the N comparison, budget for the stopping trace)
        "banking77": (load_banking77, "banking77", 1000, 2500),
        "sms": (load_sms_spam, "sms", 500, 1000),
    }
    out: dict = {"machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
                 "datasets": {}}
    for name in args.datasets:
        loader, prefix, budget, stop_budget = plan[name]
        texts, ytr, test_texts, yte = loader()
        Xtr = embed(texts, CACHE / f"{prefix}_train.npy")
        Xte = embed(test_texts, CACHE / f"{prefix}_test.npy")
        full = EmbeddingClassifier(random_state=0).fit(Xtr, ytr)
        full_acc = float(np.mean(full.predict(Xte) == yte))
        print(f"\n{name}: {len(texts)} training texts, {len(set(ytr))} labels, "
              f"full-pool accuracy {full_acc:.3f}",
              flush=True)
        result: dict = {"full_pool_accuracy": full_acc, "every": {}}
        for every in args.every:
            t0 = time.perf_counter()
            trace = replay(texts, ytr, Xte, yte, Xtr, every=every,
                           budget=stop_budget if every == 10 else budget, seed=0)
            comparable = [t for t in trace if t["labels"] <= budget]
            result["every"][str(every)] = {
                "trace": trace,
                "retrains": len(comparable),
                "retrain_seconds_total": round(sum(t["seconds"] for t in comparable), 2),
                "retrain_seconds_median": round(float(np.median([t["seconds"] for t in comparable])), 3),
                "wall_seconds": round(time.perf_counter() - t0, 1),
            }
            print(f"  N={every}: {len(comparable)} retrains up to {budget} labels, "
                  f"{result['every'][str(every)]['retrain_seconds_total']:.1f} s retraining", flush=True)
        checkpoints = [c for c in (100, 200, 300, 500, 1000) if c <= budget]
        print(f"\n  test accuracy at equal labels (retrain every N answers), {name}:")
        head = "".join(f"{c:>8}" for c in checkpoints)
        print("  " + "N".rjust(4) + head + "   retrain s total   per retrain")
        for every in args.every:
            r = result["every"][str(every)]
            cells = "".join(f"{at(r['trace'], c) or float('nan'):8.3f}" for c in checkpoints)
            print(f"  {every:>4}{cells}   {r['retrain_seconds_total']:15.1f}   "
                  f"{r['retrain_seconds_median']:11.3f}")
        result["accuracy_at"] = {str(e): {str(c): at(result["every"][str(e)]["trace"], c)
                                          for c in checkpoints}
                                 for e in args.every}
        if 10 in args.every:
            trace = result["every"]["10"]["trace"]
            result["stopping"] = {rule: first_fire(trace, rule) for rule in ("advice", "kappa", "plateau")}
            result["kappa_gap"] = kappa_gap_table(trace, full_acc)
            print(f"\n  κ >= {stopping.KAPPA_THRESHOLD} over {stopping.KAPPA_WINDOW} retrains, "
                  "each model compared "
                  f"with the one from `gap` labels earlier ({name}):")
            for rule, fire in result["kappa_gap"].items():
                print(f"    {rule:15} " + ("never fired" if fire is None else
                      f"fired at {fire['labels']:5} labels: test accuracy {fire['test_accuracy']:.3f} "
                      f"({fire['points_below_full']:+.1f} points below full pool)"))
            print(f"\n  stopping rules on the N=10 trace ({name}, full pool {full_acc:.3f}, "
                  f"final {trace[-1]['labels']} labels: {trace[-1]['test_accuracy']:.3f}):")
            for rule, fire in result["stopping"].items():
                if fire is None:
                    print(f"    {rule:8} never fired within {trace[-1]['labels']} labels")
                else:
                    print(f"    {rule:8} fired at {fire['labels']:5} labels: "
                          f"test accuracy {fire['test_accuracy']:.3f} "
                          f"({(full_acc - fire['test_accuracy']) * 100:+.1f} points below full pool)")
        out["datasets"][name] = result
    for result in out["datasets"].values():
        for entry in result["every"].values():
            for t in entry["trace"]:
                t.pop("stop_pred", None)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1))
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
