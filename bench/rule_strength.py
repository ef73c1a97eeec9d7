"""How strongly rules should vote (``rule_vote_strength``, core.rule_votes): test accuracy of the classifier
with the votes of a rules file at several strengths, on random labeled subsets of the train split.

No active learning and no database: for each seed and budget, ``n`` random train rows are the labels, the
learner (with the label-name prior, as a project's) fits them, each rule's precision is measured on them
(core.rules.statistics, shrunk as the product shrinks it) and the votes are fitted as a retrain fits them;
the test split is predicted with ``core.rule_votes.predict``. Fast (seconds), so it can sweep strengths;
``bench/rules_simulate.py`` then measures the chosen one through the real loop. Embeddings come from
``bench/.cache/simulate/``.

    .venv/bin/python bench/rule_strength.py banking77 bench/rules/banking77_read.txt
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path

import numpy as np

from core import rule_votes, rules
from core.config import load_settings
from core.embeddings import label_text, make_embedder
from core.learner import EmbeddingClassifier
from core.models import Rule
from core.simulate import CachingEmbedder

BENCH = Path(__file__).resolve().parent
SHARED = BENCH.parent.parent / "shared" / "datasets"
DATASETS = {"banking77": "category", "hwu64": "label"}
BUDGETS = (50, 100, 200)
STRENGTHS = (0.0, 0.25, 0.5, 1.0)


def _read(path: Path, label_column: str) -> tuple[list[str], np.ndarray]:
    with open(path, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [r["text"] for r in rows], np.asarray([r[label_column] for r in rows], dtype=object)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", choices=sorted(DATASETS))
    parser.add_argument("rules_file", type=Path)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    folder = SHARED / args.dataset
    train_texts, train_y = _read(folder / "train.csv", DATASETS[args.dataset])
    test_texts, test_y = _read(folder / "test.csv", DATASETS[args.dataset])
    labels = sorted(set(train_y))
    cache = BENCH / ".cache" / "simulate"
    embedder = CachingEmbedder(make_embedder(load_settings().embedding_model), cache_dir=cache)
    train_X, test_X = embedder.encode(train_texts), embedder.encode(test_texts)
    label_vectors = dict(zip(labels, embedder.encode([label_text(n, "") for n in labels]), strict=True))
    text = args.rules_file.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    found = []
    for i, line in enumerate(lines, start=1):
        parsed = rules.parse(line, labels)
        found.append(Rule(id=i, project_id=1, label=parsed.label, kind=parsed.kind, pattern=parsed.pattern,
                          created_by="bench"))  # fmt: skip
    evaluations = {  # over the train rows, by row number (the "records")
        rule.id: rules.evaluate(rules.compiled(rule.kind, rule.pattern), enumerate(train_texts), budget=600)
        for rule in found
    }
    results: dict[str, dict[str, list[float]]] = {}
    for seed in range(args.seeds):
        order = np.random.default_rng(seed).permutation(len(train_y))
        for n in BUDGETS:
            labeled = order[:n]
            classifier = EmbeddingClassifier(random_state=0, label_vectors=label_vectors).fit(
                train_X[labeled], train_y[labeled])
            finals = {int(i): str(train_y[i]) for i in labeled}
            stats = rules.statistics("bench", found, evaluations, total=len(train_y), finals=finals)
            for strength in STRENGTHS:
                spec = rule_votes.voting(stats, evaluations, labels, strength)
                if spec is None:
                    classifier.rule_votes_ = None
                else:
                    classifier.rule_votes_ = rule_votes.fit_votes(spec, classifier.classes_)
                predicted = rule_votes.predict(classifier, test_X, test_texts)
                accuracy = float(np.mean(predicted == test_y))
                results.setdefault(str(n), {}).setdefault(f"{strength:g}", []).append(accuracy)
    patterns = [rules.compiled(r.kind, r.pattern) for r in found]
    covered = np.mean([any(rules.matches(p, t) for p in patterns) for t in test_texts])
    print(f"{args.dataset}, {args.rules_file.name}: {len(found)} rules, {covered:.0%} of test texts matched; "
          f"load average {os.getloadavg()[0]:.2f}")
    print("labels  " + "  ".join(f"{'strength ' + format(s, 'g'):<17}" for s in STRENGTHS))
    for n, by_strength in results.items():
        print(f"{n:>6}  " + "  ".join(f"{np.mean(v):.3f} ± {np.std(v):.3f}   " for v in by_strength.values()))
    out = BENCH / "results"
    out.mkdir(exist_ok=True)
    (out / f"rule_strength_{args.dataset}_{args.rules_file.stem}.json").write_text(
        json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
