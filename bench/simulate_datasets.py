"""The label-efficiency benchmark on the four shared single-label datasets, with the real embedding model.

    .venv/bin/python bench/simulate_datasets.py                     # all four, ~40 min on 2 cores
    .venv/bin/python bench/simulate_datasets.py --dataset banking77 --seeds 1
    .venv/bin/python bench/simulate_datasets.py --strategy random --budget 3000   # random's own curve

Equivalent to ``labelbot simulate`` with the arguments listed in DATASETS. Writes, per dataset,
``bench/results/simulate_<name>.json``, ``.png`` and ``.md`` (the printed table). Embeddings are
cached by text hash under bench/.cache/simulate/ so a second run skips the model.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.simulate import format_table, plot, run_simulation, write_json

BENCH = Path(__file__).resolve().parent
DATA = Path(os.environ.get("LABELBOT_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
DATASETS = {
    "banking77": {
        "train_path": DATA / "banking77" / "train.csv",
        "test_path": DATA / "banking77" / "test.csv",
        "text_column": "text",
        "label_column": "category",
        "budget": 1000,
    },
    "hwu64": {
        "train_path": DATA / "hwu64" / "train.csv",
        "test_path": DATA / "hwu64" / "test.csv",
        "text_column": "text",
        "label_column": "label",
        "budget": 1000,
    },
    "xed_en": {
        "train_path": DATA / "xed_en" / "train.csv",
        "test_path": DATA / "xed_en" / "test.csv",
        "text_column": "text",
        "label_column": "label",
        "budget": 1000,
    },
    "xed_en_multilabel": {  # 8 emotions, "|"-joined sets: run with --strategy max-uncertainty-kmeans
        "train_path": DATA / "xed_en_multilabel" / "train.csv",
        "test_path": DATA / "xed_en_multilabel" / "test.csv",
        "text_column": "text",
        "label_column": "labels",
        "budget": 1000,
    },
    "sms_spam": {
        "train_path": DATA / "sms_spam" / "SMSSpamCollection",
        "test_path": None,  # no official split: stratified held-out 20%
        "text_column": "SMS",
        "label_column": "Label",
        "budget": 1000,
    },
}


def _code_versions() -> str:
    """Short hashes of the files that decide the curves, so a table can be matched to the code."""
    root = BENCH.parent
    parts = [f"{name} {hashlib.sha256((root / name).read_bytes()).hexdigest()[:10]}"
             for name in ("core/learner.py", "core/strategies.py", "core/service.py")]
    return "Code: " + ", ".join(parts)


# Hashed right after the imports: the code that runs, even if the files change during a long run.
CODE_VERSIONS = _code_versions()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=[*DATASETS, "all"], default="all")
    parser.add_argument("--strategy", default="margin-kmeans")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=None, help="override each dataset's budget")
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    args = parser.parse_args()

    for name in DATASETS if args.dataset == "all" else [args.dataset]:
        spec = dict(DATASETS[name])
        if args.budget is not None:
            spec["budget"] = args.budget
        result = run_simulation(
            **spec,  # type: ignore[arg-type]
            strategy=args.strategy,
            seeds=args.seeds,
            cache_dir=BENCH / ".cache" / "simulate",
            progress=lambda message: print(message, flush=True),
        )
        means = ", ".join(f"{s} {statistics.fmean(p.accuracy for p in curve):.4f}"
                          for s, curve in result.runs.items())
        mean_line = f"Mean accuracy over the evaluation points: {means}"
        if result.multi_label:  # accuracy is the subset accuracy there; micro- and macro-F1 beside it
            figures = ", ".join(
                f"{s} {statistics.fmean(p.micro_f1 or 0.0 for p in c):.4f} / "
                f"{statistics.fmean(p.macro_f1 for p in c):.4f} / "
                f"{statistics.fmean(p.accuracy for p in c):.4f}"
                for s, c in result.runs.items()
            )
            mean_line = f"Mean over the evaluation points (micro-F1 / macro-F1 / subset accuracy): {figures}"
        table = format_table(result) + f"\n\n{mean_line}\n\n" + CODE_VERSIONS
        print("\n" + table + "\n", flush=True)
        stem = args.out / f"simulate_{name}" if args.strategy == "margin-kmeans" else \
            args.out / f"simulate_{name}_{args.strategy}"
        write_json(result, stem.with_suffix(".json"))
        plot(result, stem.with_suffix(".png"))
        stem.with_suffix(".md").write_text(table + "\n", encoding="utf-8")
        print(f"Wrote {stem}.json, .png and .md", flush=True)


if __name__ == "__main__":
    main()
