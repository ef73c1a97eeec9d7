"""Write rules for Banking77 and HWU64 two ways, never reading the test split:

- ``<name>.txt``: one regex rule per label from the label's NAME only, checked against the TRAIN texts
  (never their labels): what an admin writes in a minute from the label set.
- ``<name>_read.txt``: keyword rules written after reading a sample of labeled TRAIN rows, as a team writes
  them once it has seen its data (see :func:`from_sample`).

A label's name gives its words (``lost_or_stolen_card`` → lost, stolen, card); a word in 3 or more label
names says nothing about one label and is dropped (card, transfer, query), as are short function words.
Each word of 6 letters or more becomes a stem (``arrival`` → ``arriv\\w*``), so "arrived" matches too. A
word or stem is kept when it matches at least 3 train texts (it occurs at all) and at most 5% of them (it
is not a common word); the labels of those texts are never read. This is the rule an admin would write in
a minute from the label set, and it makes rules for only part of the labels.

    .venv/bin/python bench/rules/make_rules.py            # writes both files per dataset
    .venv/bin/python bench/rules/make_rules.py --report   # then, separately, how good they are on TRAIN
"""

from __future__ import annotations

import csv
import random
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from core import rules  # after the path: run as a script from the repository root

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1].parent / "shared" / "datasets"
DATASETS = {  # name: (train file, text column, label column)
    "banking77": (SHARED / "banking77" / "train.csv", "text", "category"),
    "hwu64": (SHARED / "hwu64" / "train.csv", "text", "label"),
    "xed_en_multilabel": (SHARED / "xed_en_multilabel" / "train.csv", "text", "labels"),  # "|"-joined sets
}
STOPWORDS = {"a", "an", "and", "or", "the", "to", "of", "in", "on", "is", "not", "my", "for", "by", "with",
             "from", "at", "it", "be", "do", "why", "what", "how", "get", "set", "up", "qa"}
MIN_TEXTS, MAX_SHARE = 3, 0.05
#: The sample a reader labels before writing rules; a keyword must point at one label in at least
#: READ_MIN_HITS of its texts there, and at that label in READ_MIN_PRECISION of the sample's texts having it.
READ_SAMPLE, READ_MIN_HITS, READ_MIN_PRECISION, READ_KEYWORDS = 400, 2, 0.8, 2
READ_STOPWORDS = STOPWORDS | {"i", "me", "you", "your", "can", "this", "that", "are", "was", "have", "has",
                               "will", "there", "please", "im", "i'm", "am", "any", "does", "did", "if", "so",
                               "as", "just"}


def words_of(label: str) -> list[str]:
    return [w for w in re.split(r"[_\W]+", label.lower()) if w and w not in STOPWORDS and not w.isdigit()]


def make(name: str) -> list[str]:
    path, text_column, label_column = DATASETS[name]
    with open(path, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    texts = [row[text_column] for row in rows]
    labels = sorted({n for row in rows for n in row[label_column].split("|")})  # the label set
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


def from_sample(name: str) -> list[str]:
    """Keyword rules from a random sample of ``READ_SAMPLE`` labeled TRAIN rows (seed 1): per label, up
    to ``READ_KEYWORDS`` words (3 letters or more, no function words) that occur in at least
    ``READ_MIN_HITS`` of the label's sample texts and belong to that label in at least
    ``READ_MIN_PRECISION`` of the sample texts containing them, the most frequent first. A mechanical
    stand-in for a person who labeled a few hundred records and noticed which words give a label away:
    some rules are good (``refund -> request_refund``), some are accidents of the sample (``march ->
    calendar_remove``), as a person's would be. The rest of train and the test split are never read."""
    path, text_column, label_column = DATASETS[name]
    with open(path, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    sample = random.Random(1).sample(rows, READ_SAMPLE)
    by_word: dict[str, Counter] = defaultdict(Counter)
    texts_with: Counter = Counter()  # a word's sample texts (a multi-label text counts once)
    for row in sample:
        for word in set(re.findall(r"[a-z']+", row[text_column].lower())):
            if len(word) >= 3 and word not in READ_STOPWORDS:
                texts_with[word] += 1
                for label in row[label_column].split("|"):
                    by_word[word][label] += 1
    out = [f"# {name}: keyword rules written after reading {READ_SAMPLE} labeled train rows "
           f"(bench/rules/make_rules.py from_sample); the test split never read"]
    for label in sorted({n for row in rows for n in row[label_column].split("|")}):
        found = sorted(
            ((counts[label], word) for word, counts in by_word.items()
             if counts[label] >= max(READ_MIN_HITS, READ_MIN_PRECISION * texts_with[word])),
            reverse=True,
        )
        if found:
            out.append(f"{', '.join(word for _, word in found[:READ_KEYWORDS])} -> {label}")
    return out


def report(name: str, suffix: str = "") -> None:
    """After the rules are written: their precision and coverage on the train split (its labels read
    here only to describe the rules, never to write them)."""
    path, text_column, label_column = DATASETS[name]
    with open(path, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    lines = [line for line in (HERE / f"{name}{suffix}.txt").read_text(encoding="utf-8").splitlines()
             if line and not line.startswith("#")]
    labels = sorted({n for row in rows for n in row[label_column].split("|")})
    precisions, matched_any = [], set()
    for line in lines:
        rule = rules.parse(line, labels)
        pattern = rules.compile_pattern(rule.kind, rule.pattern)
        hits = [i for i, row in enumerate(rows) if rules.matches(pattern, row[text_column])]
        matched_any.update(hits)
        if hits:
            precisions.append(sum(rule.label in rows[i][label_column].split("|") for i in hits) / len(hits))
    print(f"{name}{suffix}: {len(lines)} rules for {len(labels)} labels; mean precision on train "
          f"{sum(precisions) / len(precisions):.2f} (median {sorted(precisions)[len(precisions) // 2]:.2f}); "
          f"{len(matched_any) / len(rows):.0%} of train texts matched by some rule")


def main() -> None:
    if "--report" in sys.argv:
        for name in DATASETS:
            report(name)
            report(name, "_read")
        return
    for name in DATASETS:
        for suffix, lines in (("", make(name)), ("_read", from_sample(name))):
            (HERE / f"{name}{suffix}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
            print(f"{name}{suffix}: {len(lines) - 1} rules")


if __name__ == "__main__":
    main()
