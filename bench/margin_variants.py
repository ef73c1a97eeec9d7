"""Margin-k-means and learner variants through the real loop: ``bench/simulate_datasets.py`` with one change
patched in, so a variant is measured exactly as the default is (docs/benchmarks.md, issue 11, "Tried after
the issue closed").

    .venv/bin/python bench/margin_variants.py --no-balance --late-after 99999 -- --dataset banking77
    .venv/bin/python bench/margin_variants.py --late-after 300 -- --dataset hwu64 --budget 900
    .venv/bin/python bench/margin_variants.py --names-below 5 -- --dataset xed_en
    .venv/bin/python bench/margin_variants.py --c-choices 3,30,100 -- --dataset banking77 --budget 900

Everything after ``--`` goes to bench/simulate_datasets.py (pass ``--out`` to keep the default's results).
"""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import core.learner as learner  # noqa: E402
import core.strategies as strategies  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-balance", action="store_true", help="margins not weighed by label coverage")
    parser.add_argument("--late-after", type=int, default=None, help="labeled records, then the band narrows")
    parser.add_argument("--late-factor", type=int, default=None, help="the narrowed band's factor")
    parser.add_argument("--names-below", type=int, default=0,
                        help="keep a label's name as an example only while it has fewer labeled records")
    parser.add_argument("--c-choices", default=None, help="the C values choose_c compares, e.g. 3,30,100")
    args, rest = parser.parse_known_args()
    rest = [a for a in rest if a != "--"]
    if args.no_balance:
        strategies.MarginKMeans.balance_labels = False
    if args.late_after is not None:
        strategies.LATE_BAND_LABELED = args.late_after
    if args.late_factor is not None:
        strategies.LATE_UNCERTAIN_POOL_FACTOR = args.late_factor
    if args.c_choices:
        learner.C_CHOICES = tuple(float(c) for c in args.c_choices.split(","))
    if args.names_below:
        prior = learner.EmbeddingClassifier._label_prior

        def names_below(self: learner.EmbeddingClassifier, X: np.ndarray, y: np.ndarray) -> tuple:
            names, vectors = prior(self, X, y)
            labels, counts = np.unique(y, return_counts=True)
            have = dict(zip(labels, counts, strict=True))
            keep = np.array([have.get(n, 0) < args.names_below for n in names], dtype=bool)
            self.label_names_used_ = bool(keep.any())
            return names[keep], vectors[keep]

        learner.EmbeddingClassifier._label_prior = names_below
    print(f"Variant: {vars(args)}", flush=True)
    sys.argv = [str(ROOT / "bench" / "simulate_datasets.py"), *rest]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
