"""Rules in the model's predictions through the real loop: ``labelbot simulate`` with and without
``--rules`` (official test splits), 3 seeds, up to 200 labels, on Banking77, HWU64 and XED multi-label;
the rules files come from bench/rules/make_rules.py. Embeddings are cached under bench/.cache/simulate/.

    .venv/bin/python bench/rules_simulate.py banking77 [--rules FILE] [--strengths 0.25 ...] [--cold-start]

Equivalent to ``labelbot simulate ../shared/datasets/banking77/train.csv --text-column text
--label-column category --test-file ../shared/datasets/banking77/test.csv --budget 200 --seeds 3
--rules bench/rules/banking77.txt`` (and without ``--rules``; ``LABELBOT_RULE_VOTE_STRENGTH`` and
``LABELBOT_RULE_COLD_START`` for the other conditions), with the embedding cache.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from core.config import load_settings
from core.embeddings import make_embedder
from core.simulate import CachingEmbedder, run_simulation

BENCH = Path(__file__).resolve().parent
SHARED = BENCH.parent.parent / "shared" / "datasets"
DATASETS = {"banking77": "category", "hwu64": "label", "xed_en_multilabel": "labels"}
POINTS = (50, 100, 200)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", choices=sorted(DATASETS))
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rules", type=Path, help="rules file (default bench/rules/DATASET.txt)")
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.25],
                        help="rule_vote_strength values to run with the rules")
    parser.add_argument("--cold-start", action="store_true",
                        help="also run each strength seeding the cold start")
    args = parser.parse_args()
    settings = load_settings()
    cache = BENCH / ".cache" / "simulate"
    embedder = CachingEmbedder(make_embedder(settings.embedding_model), cache_dir=cache)
    folder = SHARED / args.dataset
    out = {}
    rules_file = args.rules or BENCH / "rules" / f"{args.dataset}.txt"
    conditions = [("without rules", None, settings)] + [
        (f"with rules, strength {s:g}", rules_file, settings.model_copy(update={"rule_vote_strength": s}))
        for s in args.strengths
    ] + [
        (f"with rules, strength {s:g}, seeding the cold start", rules_file,
         settings.model_copy(update={"rule_vote_strength": s, "rule_cold_start": True}))
        for s in args.strengths if args.cold_start
    ]
    for condition, rules, condition_settings in conditions:
        started = time.perf_counter()
        result = run_simulation(
            folder / "train.csv", text_column="text", label_column=DATASETS[args.dataset],
            test_path=folder / "test.csv", budget=args.budget, seeds=args.seeds, settings=condition_settings,
            embedder=embedder, rules_path=rules,
        )
        out[condition] = {
            name: {p.labels: (p.accuracy, p.accuracy_std, p.macro_f1, p.micro_f1)
                   for p in curve if p.labels in POINTS}
            for name, curve in result.runs.items()
        }
        print(f"{args.dataset} {condition}: {time.perf_counter() - started:.0f} s, load average "
              f"{os.getloadavg()[0]:.2f}", flush=True)
        for name, points in out[condition].items():
            for labels, (acc, std, f1, micro) in sorted(points.items()):
                what = "accuracy" if micro is None else f"micro-F1 {micro:.3f}, subset accuracy"
                print(f"  {name:14s} {labels:4d} labels: {what} {acc:.3f} ± {std:.3f}, macro-F1 {f1:.3f}",
                      flush=True)
    results = BENCH / "results"
    results.mkdir(exist_ok=True)
    (results / f"rules_simulate_{args.dataset}_{rules_file.stem}.json").write_text(
        json.dumps({c: {n: {str(k): v for k, v in p.items()} for n, p in r.items()} for c, r in out.items()},
                   indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
