"""Write one regex rule per label from the label's NAME only, checked against the TRAIN texts (never their
labels, never the test split): bench/rules/banking77.txt and bench/rules/hwu64.txt.

A label's name gives its words (``lost_or_stolen_card`` → lost, stolen, card); a word in 3 or more label
names says nothing about one label and is dropped (card, transfer, query), as are short function words.
Each word of 6 letters or more becomes a stem (``arrival`` → ``arriv\\w*``), so "arrived" matches too. A
word or stem is kept when it matches at least 3 train texts (it occurs at all) and at most 5% of them (it
is not a common word); the labels of those texts are never read. This is the rule an admin would write in
a minute from the label set, and it makes rules for only part of the labels.

    .venv/bin/python bench/rules/make_rules.py            # writes the rules
    .venv/bin/python bench/rules/make_rules.py --report   # then, separately, how good they are on TRAIN
"""

from __future__ import annotations

import csv
import re
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1].parent / "shared" / "datasets"
DATASETS = {  # name: (train file, text column, label column)
    "banking77": (SHARED / "banking77" / "train.csv", "text", "category"),
    "hwu64": (SHARED / "hwu64" / "train.csv", "text", "label"),
}
STOPWORDS = {"a", "an", "and", "or", "the", "to", "of", "in", "on", "is", "not", "my", "for", "by", "with",
             "from", "at", "it", "be", "do", "why", "what", "how", "get", "set", "up", "qa"}
MIN_TEXTS, MAX_SHARE = 3, 0.05


def words_of(label: str) -> list[str]:
    return [w for w in re.split(r"[_\W]+", label.lower()) if w and w not in STOPWORDS and not w.isdigit()]


def make(name: str) -> list[str]:
    path, text_column, label_column = DATASETS[name]
    with open(path, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    texts = [row[text_column] for row in rows]
    labels = sorted({row[label_column] for row in rows})  # the label SET (what a project is created with)
    in_names = Counter(w for label in labels for w in set(words_of(label)))
    out = [f"# {name}: one rule per label from its name (bench/rules/make_rules.py); "
           f"{len(texts):,} train texts, labels never read"]
    for label in labels:
        parts = []
        for word in words_of(label):
            if in_names[word] >= 3:
                continue
            part = rf"{re.escape(word[:-2])}\w*" if len(word) >= 6 else re.escape(word)
            hits = sum(1 for t in texts if re.search(rf"\b{part}\b", t, re.IGNORECASE))
            if MIN_TEXTS <= hits <= MAX_SHARE * len(texts):
                parts.append(part)
        if parts:
            out.append(rf"/\b(?:{'|'.join(dict.fromkeys(parts))})\b/i -> {label}")
    return out


def report(name: str) -> None:
    """After the rules are written: their precision and coverage on the train split (its labels read
    here only to describe the rules, never to write them)."""
    path, text_column, label_column = DATASETS[name]
    with open(path, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    lines = [line for line in (HERE / f"{name}.txt").read_text(encoding="utf-8").splitlines()
             if line and not line.startswith("#")]
    precisions, matched_any = [], set()
    for line in lines:
        pattern, label = line.rsplit(" -> ", 1)
        body = pattern[1:pattern.rindex("/")]
        hits = [i for i, row in enumerate(rows) if re.search(body, row[text_column], re.IGNORECASE)]
        matched_any.update(hits)
        if hits:
            precisions.append(sum(rows[i][label_column] == label for i in hits) / len(hits))
    labels = {row[label_column] for row in rows}
    print(f"{name}: {len(lines)} rules for {len(labels)} labels; mean precision on train "
          f"{sum(precisions) / len(precisions):.2f} (median {sorted(precisions)[len(precisions) // 2]:.2f}); "
          f"{len(matched_any) / len(rows):.0%} of train texts matched by some rule")


def main() -> None:
    if "--report" in sys.argv:
        for name in DATASETS:
            report(name)
        return
    for name in DATASETS:
        lines = make(name)
        (HERE / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"{name}: {len(lines) - 1} rules")


if __name__ == "__main__":
    main()
