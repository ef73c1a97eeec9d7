"""How long one rule takes over 100k records (core.rules.evaluate, what list_rules and status run once per
data version): Banking77's train texts repeated to 100,000 records, a keyword rule and a regex rule. Then
what the rules' votes add to a retrain (core.rule_votes): fitting them and scoring the voted rows again,
against the classifier's own pass over the pool, for a pool of ``--pool`` random 384-d float16 vectors,
77 labels, 2,000 labeled, 30 rules each matching 1% of the pool.

    .venv/bin/python bench/rules_speed.py [--pool 100000]
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import numpy as np

from core import rule_votes, rules
from core.learner import EmbeddingClassifier

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "banking77"
N = 100_000
RULES = [
    "refund, money back, reimburse -> x", "/card (was |got |is )?(lost|stolen)/i -> x", "/^(a|aa)+$/ -> x",
]


def votes_cost(pool: int) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(pool, 384)).astype(np.float16)
    ids = np.arange(1, pool + 1, dtype=np.int64)
    labels = np.asarray([f"l{i}" for i in range(77)], dtype=object)
    labeled = rng.choice(pool, 2000, replace=False)
    classifier = EmbeddingClassifier(random_state=0).fit(vectors[labeled].astype(np.float32),
                                                         labels[rng.integers(0, 77, 2000)])
    spec = rule_votes.RuleVoting(
        tuple(rule_votes.WeightedRule("keywords", f"w{j}", str(labels[j]), 0.7) for j in range(30)),
        tuple(frozenset(rng.choice(ids, pool // 100, replace=False).tolist()) for _ in range(30)),
    )
    start = time.perf_counter()
    own = classifier.score_pool(vectors)
    plain = time.perf_counter() - start
    start = time.perf_counter()
    classifier.rule_votes_ = rule_votes.fit_votes(spec, classifier)
    fitted = time.perf_counter() - start
    start = time.perf_counter()
    rule_votes.with_votes(classifier, vectors, ids, own)
    voted = time.perf_counter() - start
    print(f"{pool:,} records, {len(classifier.rule_votes_.record_ids):,} voted: the classifier's pass "
          f"{plain:.2f} s; fitting the votes {fitted:.2f} s; scoring the voted rows again {voted:.2f} s; "
          f"load average {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pool", type=int, default=100_000)
    args = parser.parse_args()
    with open(SHARED / "train.csv", encoding="utf-8") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)]
    records = [(i, texts[i % len(texts)]) for i in range(N)]
    print(f"load average {os.getloadavg()[0]:.2f}; {N:,} records")
    for text in RULES:
        parsed = rules.parse(text, ["x"])
        compiled = rules.compile_pattern(parsed.kind, parsed.pattern)
        start = time.perf_counter()
        result = rules.evaluate(compiled, records)
        seconds = time.perf_counter() - start
        print(f"{parsed.pattern!r}: {len(result.matched):,} matched, timed out {result.timed_out}, "
              f"{seconds:.3f} s ({seconds / N * 1e6:.2f} µs per record)")
    votes_cost(args.pool)


if __name__ == "__main__":
    main()
