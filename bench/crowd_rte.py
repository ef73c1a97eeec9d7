"""Real crowd benchmark: RTE (Snow et al. 2008), 800 items, 10 MTurk answers each, independent gold.

Run through ``bench/crowd.py --dataset rte_crowd`` (also part of ``--dataset all``), or alone:

    .venv/bin/python bench/crowd_rte.py                 # ~1 min of aggregation + two CLI imports

For k = 3 and 5 answers per item (sampled per item without replacement, 10 seeded samples, mean and
minimum over them) and all 10 answers, accuracy against the RTE-1 gold of:

* majority vote, ties broken at random (the expected value: a tie between two labels counts 1/2);
* Dawid-Skene with Laplace smoothing 1.0 and 50 iterations, started from the soft majority vote
  (``dawid_skene(..., smoothing=1.0)``; the reference of the data set's SOURCE.md: 0.930 / 0.898 at 10);
* Dawid-Skene with smoothing 0.01, the project's rule from k = 3 before issue 11;
* ``aggregate()``, the project's rule (hierarchical MACE, strength 8), and the same model with other
  strengths, to show how much the choice of strength matters.

Then the CLI path, for all 10 answers and for the k = 3 sample of seed 0: the answers are written as
a long-format CSV (id,text,worker,label) to a temporary folder, imported with ``labelbot init`` and
``labelbot import --label-column label --annotator-column worker`` into a project with default
settings (the real embedding model, offline), and read back with ``labelbot export``: records
labeled / total, accuracy against gold, and how many labels equal the library call's on the same
answers.

The data stay in shared/datasets/rte_crowd (no licence: never copied into the repository); only
figures are written, to bench/results/crowd_rte.json and crowd_rte.md.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import aggregate as agg

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
DATA = Path(os.environ.get("LABELBOT_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
LABELS = ("entailed", "not_entailed")
KS = (3, 5, 10)
SAMPLES = 10  # seeded samples per k below 10
STRENGTHS = (2.0, 4.0, 6.0, 12.0, 16.0)  # besides the default, agg.SHRINKAGE

Triple = tuple[str, str, str]


def load() -> tuple[list[Triple], dict[str, str], dict[str, str]]:
    """(id, worker, label) answers in file order, id -> text, id -> gold label."""
    folder = DATA / "rte_crowd"
    answers, texts = [], {}
    with open(folder / "answers.csv", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            answers.append((row["id"], row["worker"], row["label"]))
            texts[row["id"]] = row["text"]
    with open(folder / "gold.csv", encoding="utf-8", newline="") as handle:
        gold = {row["id"]: row["label"] for row in csv.DictReader(handle)}
    return answers, texts, gold


def sample(answers: Sequence[Triple], k: int, seed: int) -> list[Triple]:
    """k answers per item, drawn without replacement (all of them when k is 10)."""
    by_item: dict[str, list[Triple]] = {}
    for answer in answers:
        by_item.setdefault(answer[0], []).append(answer)
    rng = np.random.default_rng(seed)
    picked = []
    for item_answers in by_item.values():
        chosen = rng.choice(len(item_answers), size=min(k, len(item_answers)), replace=False)
        picked += [item_answers[j] for j in sorted(chosen)]
    return picked


def majority_expected(triples: Sequence[Triple], gold: dict[str, str]) -> float:
    """Majority vote accuracy with ties broken at random: a tie among n labels counts 1/n if right."""
    votes: dict[str, Counter[str]] = {}
    for item, _, label in triples:
        votes.setdefault(item, Counter())[label] += 1
    scores = []
    for item, truth in gold.items():
        ranked = votes[item].most_common()
        tied = [label for label, n in ranked if n == ranked[0][1]]
        scores.append((truth in tied) / len(tied))
    return float(np.mean(scores))


def accuracy(labels: dict[Any, agg.AggregateLabel], gold: dict[str, str]) -> float:
    """Share of gold items whose label is right (an item without a label counts as a miss)."""
    return float(np.mean([labels[item].label == truth for item, truth in gold.items()]))


def methods() -> dict[str, Callable[[list[Triple]], dict[Any, agg.AggregateLabel]]]:
    """Name -> aggregation, in the order of the table."""
    table: dict[str, Callable[[list[Triple]], dict[Any, agg.AggregateLabel]]] = {
        "Dawid-Skene, Laplace 1.0 (reference)": lambda t: agg.dawid_skene(
            t, LABELS, smoothing=1.0, max_iter=50
        ).labels,
        "Dawid-Skene, smoothing 0.01 (project rule before issue 11)": lambda t: agg.dawid_skene(
            t, LABELS
        ).labels,
        f"aggregate(): hierarchical MACE, strength {agg.SHRINKAGE:g}": lambda t: agg.aggregate(
            t, LABELS, answers_per_record=3
        ),
    }
    for strength in STRENGTHS:
        table[f"hierarchical MACE, strength {strength:g}"] = lambda t, s=strength: agg.hierarchical_mace(
            t, LABELS, strength=s
        ).labels
    return table


def library_figures(answers: list[Triple], gold: dict[str, str]) -> dict[str, dict[str, Any]]:
    """k -> method -> mean, min and per-sample accuracies (and seconds)."""
    out: dict[str, dict[str, Any]] = {}
    for k in KS:
        seeds = range(SAMPLES) if k < 10 else range(1)
        samples = [sample(answers, k, seed) for seed in seeds]
        row: dict[str, Any] = {}
        values = [majority_expected(t, gold) for t in samples]
        row["majority vote (random tie-break)"] = {"mean": float(np.mean(values)), "min": min(values),
                                                   "values": values}  # fmt: skip
        for name, method in methods().items():
            started = time.perf_counter()
            values = [accuracy(method(t), gold) for t in samples]
            row[name] = {
                "mean": float(np.mean(values)),
                "min": min(values),
                "values": values,
                "seconds": round(time.perf_counter() - started, 2),
            }
        out[str(k)] = row
        summary = ", ".join(f"{name} {v['mean']:.4f}" for name, v in row.items())
        print(f"rte_crowd k={k}: {summary}", flush=True)
    return out


def _labelbot(args: list[str], env: dict[str, str], cwd: Path) -> str:
    command = [str(Path(sys.executable).with_name("labelbot")), *args]
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    return done.stdout.strip()


def cli_figures(triples: list[Triple], texts: dict[str, str], gold: dict[str, str]) -> dict[str, Any]:
    """Import the answers through the CLI into a default project, export, and score the export."""
    with tempfile.TemporaryDirectory(prefix="labelbot-rte-") as tmp:
        folder = Path(tmp)
        answers_csv = folder / "answers.csv"
        with open(answers_csv, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "text", "worker", "label"])
            writer.writerows([item, texts[item], worker, label] for item, worker, label in triples)
        env = {
            key: value for key, value in os.environ.items() if not key.startswith("LABELBOT_")
        } | {"LABELBOT_DATABASE_URL": f"sqlite:///{folder / 'rte.db'}", "HF_HUB_OFFLINE": "1"}
        started = time.perf_counter()
        _labelbot(["init", "rte", "--labels", ",".join(LABELS)], env, folder)
        imported = _labelbot(
            ["import", "rte", str(answers_csv), "--label-column", "label", "--annotator-column", "worker"],
            env,
            folder,
        )
        _labelbot(["export", "rte", "-o", str(folder / "export.csv")], env, folder)
        seconds = time.perf_counter() - started
        with open(folder / "export.csv", encoding="utf-8", newline="") as handle:
            exported = {row["id"]: row for row in csv.DictReader(handle)}
    library = agg.aggregate(triples, LABELS, answers_per_record=3)
    labeled = {item: row["label"] for item, row in exported.items() if row.get("label")}
    return {
        "records": len(exported),
        "labeled": len(labeled),
        "accuracy": float(np.mean([labeled.get(item) == truth for item, truth in gold.items()])),
        "library_accuracy": accuracy(library, gold),
        "same_as_library": sum(labeled.get(item) == library[item].label for item in gold),
        "ties_exported": sum(str(row.get("tie", "")).lower() in ("true", "1") for row in exported.values()),
        "ties_library": sum(label.tie for label in library.values()),
        "import_summary": imported,
        "seconds": round(seconds, 1),
    }


def table(figures: dict[str, Any]) -> str:
    names = list(figures["library"][str(KS[0])])
    header = "| method | " + " | ".join(f"k = {k}" if k < 10 else "all 10" for k in KS) + " |"
    lines = [
        "rte_crowd: accuracy against gold (k = 3, 5: mean over 10 samples, min in brackets)",
        "",
        header,
        "| --- |" + " --- |" * len(KS),
    ]
    for name in names:
        cells = []
        for k in KS:
            v = figures["library"][str(k)][name]
            cells.append(f"{v['mean']:.4f} ({v['min']:.3f})" if k < 10 else f"{v['mean']:.4f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "CLI: labelbot init, import --label-column label --annotator-column worker "
              "(default settings), export", "",
              "| answers | records labeled / total | accuracy (export) | accuracy (library) "
              "| labels equal to the library's | ties (export / library) |",
              "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for name, c in figures["cli"].items():
        lines.append(
            f"| {name} | {c['labeled']} / {c['records']} | {c['accuracy']:.4f} | {c['library_accuracy']:.4f} "
            f"| {c['same_as_library']} / {len(figures['gold_items'])} "
            f"| {c['ties_exported']} / {c['ties_library']} |"
        )
    return "\n".join(lines)


def run(out: Path = RESULTS, cli: bool = True) -> dict[str, Any]:
    answers, texts, gold = load()
    started = time.perf_counter()
    figures: dict[str, Any] = {"library": library_figures(answers, gold), "cli": {}}
    figures["gold_items"] = sorted(gold)
    if cli:
        for name, triples in (("all 10", answers), ("k = 3, sample of seed 0", sample(answers, 3, 0))):
            figures["cli"][name] = cli_figures(triples, texts, gold)
            print(f"rte_crowd CLI {name}: {figures['cli'][name]}", flush=True)
    text = table(figures)
    print("\n" + text)
    load_average = os.getloadavg()
    payload = {
        "seconds": round(time.perf_counter() - started, 1),
        "load_average": [round(x, 2) for x in load_average],
        "samples": SAMPLES,
        **{key: value for key, value in figures.items() if key != "gold_items"},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "crowd_rte.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
    footer = f"\n\nLoad average at the end: {load_average}\n"
    (out / "crowd_rte.md").write_text(text + footer, encoding="utf-8")
    print(f"\nWrote {out / 'crowd_rte.json'} and crowd_rte.md ({payload['seconds']} s, load {load_average})")
    return payload


if __name__ == "__main__":
    run(cli="--no-cli" not in sys.argv)
