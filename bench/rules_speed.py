"""How long one rule takes over 100k records (core.rules.evaluate, what list_rules and status run once per
data version): Banking77's train texts repeated to 100,000 records, a keyword rule and a regex rule.

    .venv/bin/python bench/rules_speed.py
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

from core import rules

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "banking77"
N = 100_000
RULES = [
    "refund, money back, reimburse -> x", "/card (was |got |is )?(lost|stolen)/i -> x", "/^(a|aa)+$/ -> x",
]


def main() -> None:
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


if __name__ == "__main__":
    main()
