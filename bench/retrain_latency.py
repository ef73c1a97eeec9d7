"""Click latency while a retrain runs, against idle: the real App over loopback HTTP.

The bot process (this one) holds what ``labelbot serve`` runs: a ``LabelingService`` with its
background training worker, the bolt App and the threaded HTTP server. The Slack side — the Web API
stand-in and the signed-request sender that plays a person clicking label buttons — runs in a child
process, as Slack does not share the bot's interpreter (in one process its threads would compete for
the same GIL as the bot and inflate the numbers).

The project has ``--records`` records (default 50,000) with precomputed 384-d vectors (a lookup
"embedder", so set-up is fast) in ``--classes`` clusters, ``--labels`` of them labeled (default 2,000).
The bot alternates phases of ``--phase`` seconds: idle, then retraining back to back on the training
worker (what ``request_retrain`` does). The child clicks all the time, one click after the other, and
measures per click:

* click → ack: until the HTTP answer to the signed ``block_actions`` request (Slack's 3-second limit)
* click → next card: until the stand-in receives the ``chat.postMessage`` of the next card

A click counts as "during retrain" when it started and ended inside one retrain, as "idle" when it
overlapped none. Prints a table and writes bench/results/retrain_latency.json.

    .venv/bin/python bench/retrain_latency.py                          # one run, ~2 min
    .venv/bin/python bench/retrain_latency.py --trainer both --repeat 3   # thread vs process, ~13 min
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results" / "retrain_latency.json"
SIGNING_SECRET = "bench-signing-secret"
BOT_TOKEN = "xoxb-bench"
USER = "UCLICKER"
CHANNEL = "CBENCH"


class LookupEmbedder:
    """Texts are ``"record <i>"``; their vectors are rows of a precomputed matrix."""

    name = "bench-lookup-384"

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = vectors
        self.dim = int(vectors.shape[1])

    def encode(self, texts: Sequence[str], *, progress: Any = None) -> np.ndarray:
        rows = [int(t.rsplit(" ", 1)[1]) if t.startswith("record ") else 0 for t in texts]
        return self.vectors[rows]


def make_vectors(n: int, classes: int, dim: int = 384, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, dim)).astype(np.float32)
    y = rng.integers(0, classes, size=n)
    x = centers[y] + rng.normal(scale=1.6, size=(n, dim)).astype(np.float32)  # overlapping clusters
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), y


class LookupEmbedderFactory:
    """Builds the lookup embedder in the trainer process (a class instance pickles; a closure would not)."""

    def __init__(self, records: int, classes: int) -> None:
        self.records, self.classes = records, classes

    def __call__(self) -> LookupEmbedder:
        return LookupEmbedder(make_vectors(self.records, self.classes)[0])


# ------------------------------------------------------------------------------ the Slack side (child)


def slack_side(conn: Any, n_clicks: int, seconds: float) -> None:
    """Runs in the child: stand-in + sender; clicks and measures; sends the samples back."""
    from bot.standin import SlackRequestSender, SlackStandIn
    from bot.standin.signing import action_from_blocks

    standin = SlackStandIn(bot_token=BOT_TOKEN).start()
    standin.add_user(USER, "clicker")
    standin.add_channel(CHANNEL, "bench")
    conn.send(standin.base_url)
    bot_url = conn.recv()
    sender = SlackRequestSender(bot_url, SIGNING_SECRET, standin=standin)
    dm = standin.dm_channel(USER)

    def posted() -> int:
        return sum(1 for c in standin.calls_to("chat.postMessage") if c.params.get("channel") == dm)

    def latest_card() -> dict:
        cards = [m for m in standin.messages(dm) if any(
            e.get("action_id") == "skip" for b in m.get("blocks", []) if b.get("type") == "actions"
            for e in b.get("elements", []))]
        return cards[-1]

    sender.slash_command("/label", "next", user_id=USER, channel_id=CHANNEL)
    standin.wait_until(lambda: posted() >= 1, timeout=60)
    samples = []
    deadline = time.monotonic() + seconds
    while len(samples) < n_clicks and time.monotonic() < deadline:
        card = latest_card()
        element = next(e for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]
                       if e["type"] in ("button", "static_select") and e.get("action_id") != "skip")
        if element["type"] == "static_select":
            options = element.get("options") or [o for g in element["option_groups"] for o in g["options"]]
            action = action_from_blocks(card, element["action_id"], selected_value=options[0]["value"])
        else:
            action = action_from_blocks(card, element["action_id"], value=element["value"])
        before = posted()
        t0 = time.monotonic()
        response = sender.block_actions(USER, [action], channel_id=dm, message=card)
        t_ack = time.monotonic()
        standin.wait_until(lambda before=before: posted() > before, timeout=60)
        t_card = time.monotonic()
        samples.append({"start": t0, "ack": t_ack - t0, "card": t_card - t0, "end": t_card,
                        "status": response.status})
    errors = [c.method for c in standin.errors()]
    standin.stop()
    conn.send({"samples": samples, "errors": errors})


# ------------------------------------------------------------------------------ the bot side (parent)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def summarise(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "median_ms": statistics.median(values) * 1000 if values else float("nan"),
            "p90_ms": percentile(values, 90) * 1000, "p95_ms": percentile(values, 95) * 1000,
            "mean_ms": statistics.fmean(values) * 1000 if values else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--labels", type=int, default=2_000)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--phase", type=float, default=12.0, help="seconds per idle / retraining phase")
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--switch-interval", type=float, default=None,
                        help="sys.setswitchinterval for the bot process (Python's default is 0.005 s)")
    parser.add_argument("--train-nice", type=int, default=None,
                        help="nice value added to the training worker thread (default: the service's, "
                             "LabelingService.training_nice)")
    parser.add_argument("--trainer", choices=["thread", "process", "both"], default="process",
                        help="where background retrains run: the service's training thread, or the worker "
                             "process of core.trainer.ProcessTrainer (what `labelbot serve` uses); both "
                             "alternates them")
    parser.add_argument("--repeat", type=int, default=1, help="runs per trainer (interleaved)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    trainers = ["thread", "process"] if args.trainer == "both" else [args.trainer]
    runs = [run_once(args, trainer) for _ in range(args.repeat) for trainer in trainers]
    summary = {}
    for trainer in trainers:
        mine = [r for r in runs if r["trainer"] == trainer]
        summary[trainer] = {
            key: {"runs": [round(r[key], 3) for r in mine],
                  "median": round(statistics.median(r[key] for r in mine), 3)}
            for key in ("ack_median_ratio", "ack_p95_ratio", "next_card_median_ratio", "next_card_p95_ratio")
        }
    print("\nduring retrain / idle, median over runs (each run: its median and p95 ratios):")
    for trainer, figures in summary.items():
        print(f"  {trainer:8}" + "  ".join(f"{key.replace('_ratio', '')} x{v['median']:.2f} {v['runs']}"
                                          for key, v in figures.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "runs": runs}, indent=2))
    print(f"wrote {args.out}")


def run_once(args: argparse.Namespace, trainer: str) -> dict[str, Any]:
    """One project, one Slack side, ``args.cycles`` idle/retraining phases; the figures of that run."""
    from bot.app import create_app, make_client
    from bot.server import EVENTS_PATH, SlackHTTPServer
    from bot.settings import BotSettings
    from core.config import Settings
    from core.io import ImportRow
    from core.service import LabelingService

    vectors, gold = make_vectors(args.records, args.classes)
    labels = [f"class_{i:02d}" for i in range(args.classes)]
    tmp = tempfile.TemporaryDirectory(prefix="labelbot-latency-")
    nice = {} if args.train_nice is None else {"training_nice": args.train_nice}
    settings = Settings(_env_file=None, database_url=f"sqlite:///{Path(tmp.name) / 'bench.db'}",  # type: ignore[call-arg]
                        retrain_every=0, queue_size=500, **nice)
    process_trainer = None
    if trainer == "process":
        from core.trainer import ProcessTrainer

        process_trainer = ProcessTrainer(settings,
                                         embedder_factory=LookupEmbedderFactory(args.records, args.classes))
    service = LabelingService(settings, embedder=LookupEmbedder(vectors), background=True,
                              trainer=process_trainer)
    t0 = time.perf_counter()
    service.create_project("bench", labels)
    labeled = set(np.random.default_rng(1).choice(args.records, size=args.labels, replace=False).tolist())
    service.import_rows("bench", [
        ImportRow(line=i + 2, external_id=str(i), text=f"record {i}",
                  label=labels[gold[i]] if i in labeled else None, annotator="seed" if i in labeled else None)
        for i in range(args.records)
    ])
    service.bind_context(CHANNEL, "bench")
    first = service.retrain("bench")
    build_s = time.perf_counter() - t0
    print(f"built {args.records:,} records, {args.labels:,} labels, {args.classes} classes "
          f"in {build_s:.1f} s; "
          f"first retrain {first.duration_seconds:.2f} s", flush=True)

    # A probe thread: how late does a 1 ms sleep wake up? Its lag is the wait for the GIL and a CPU,
    # the same wait every request thread of the bot pays after each socket or SQLite call.
    lags: list[tuple[float, float]] = []
    probing = threading.Event()

    def probe() -> None:
        while not probing.is_set():
            t = time.monotonic()
            time.sleep(0.001)
            lags.append((t, time.monotonic() - t - 0.001))

    threading.Thread(target=probe, daemon=True).start()

    ctx = mp.get_context("spawn")
    parent_conn, child_conn = ctx.Pipe()
    total = args.phase * 2 * args.cycles
    child = ctx.Process(target=slack_side, args=(child_conn, 100_000, total), daemon=True)
    child.start()
    api_url = parent_conn.recv()
    bot_settings = BotSettings(_env_file=None, slack_bot_token=BOT_TOKEN,  # type: ignore[call-arg]
                               slack_signing_secret=SIGNING_SECRET, slack_api_url=api_url)
    app = create_app(bot_settings, service, client=make_client(bot_settings))
    server = SlackHTTPServer(app, "127.0.0.1", 0).start()
    parent_conn.send(f"{server.url}{EVENTS_PATH}")

    retrains: list[tuple[float, float]] = []
    stop = threading.Event()

    def phases() -> None:
        time.sleep(2.0)  # let the first /label next arrive
        for _ in range(args.cycles):
            if stop.wait(args.phase):  # idle phase
                return
            until = time.monotonic() + args.phase
            while time.monotonic() < until and not stop.is_set():
                start = time.monotonic()
                service.request_retrain("bench")  # the training worker, as after N answers
                service.wait_for_retrains(timeout=120)
                retrains.append((start, time.monotonic()))

    driver = threading.Thread(target=phases, daemon=True)
    driver.start()
    result = parent_conn.recv()
    stop.set()
    probing.set()
    driver.join(timeout=120)
    child.join(timeout=30)
    server.stop()
    service.close()  # and its training worker
    tmp.cleanup()

    samples = result["samples"]

    def inside(s: dict) -> bool:
        return any(a <= s["start"] and s["end"] <= b for a, b in retrains)

    def overlaps(s: dict) -> bool:
        return any(s["start"] < b and a < s["end"] for a, b in retrains)

    # The first seconds warm caches (pool, predictions, bolt): leave the first 20 clicks out.
    measured = samples[20:]
    busy = [s for s in measured if inside(s)]
    idle = [s for s in measured if not overlaps(s)]
    out: dict[str, Any] = {
        "records": args.records, "labels": args.labels, "classes": args.classes, "dim": 384,
        "phase_s": args.phase, "cycles": args.cycles, "switch_interval_s": sys.getswitchinterval(),
        "retrains": len(retrains),
        "retrain_median_s": statistics.median(b - a for a, b in retrains) if retrains else None,
        "clicks": len(samples), "http_errors": sum(s["status"] != 200 for s in samples),
        # Where in its retrain each "during" click started (0 = start, 1 = end) and its click -> card ms:
        # shows whether the slow clicks bunch up at one stage (the queue swap, the guesses refresh).
        "during_position_card_ms": [
            [round(next((s["start"] - a) / (b - a) for a, b in retrains if a <= s["start"] <= b), 3),
             round(s["card"] * 1000, 1)] for s in busy
        ],
        "slack_errors": result["errors"],
        "idle": {"ack": summarise([s["ack"] for s in idle]),
                 "next_card": summarise([s["card"] for s in idle])},
        "during_retrain": {"ack": summarise([s["ack"] for s in busy]),
                           "next_card": summarise([s["card"] for s in busy])},
        "trainer": trainer,
        "train_nice": service.settings.training_nice,
        "probe_lag": {
            "idle": summarise([lag for t, lag in lags if not any(a <= t <= b for a, b in retrains)]),
            "during_retrain": summarise([lag for t, lag in lags if any(a <= t <= b for a, b in retrains)]),
        },
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_1m": os.getloadavg()[0]},
    }
    for what in ("ack", "next_card"):
        idle_m, busy_m = out["idle"][what]["median_ms"], out["during_retrain"][what]["median_ms"]
        out[f"{what}_median_ratio"] = busy_m / idle_m if idle_m else None
        out[f"{what}_p95_ratio"] = out["during_retrain"][what]["p95_ms"] / out["idle"][what]["p95_ms"]
    print(f"{out['retrains']} retrains (median {out['retrain_median_s']:.2f} s), {len(samples)} clicks, "
          f"trainer {trainer}, nice +{service.settings.training_nice}, "
          f"switch interval {sys.getswitchinterval() * 1000:g} ms, "
          f"load {out['machine']['load_average_1m']:.1f}")
    print(f"{'':22}{'n':>5}{'median ms':>11}{'p90 ms':>9}{'p95 ms':>9}")
    for phase in ("idle", "during_retrain"):
        for what in ("ack", "next_card"):
            s = out[phase][what]
            print(f"{phase + ' ' + what:22}{s['n']:>5}{s['median_ms']:>11.1f}{s['p90_ms']:>9.1f}"
                  f"{s['p95_ms']:>9.1f}")
    for phase in ("idle", "during_retrain"):
        s = out["probe_lag"][phase]
        print(f"{'probe lag ' + phase:22}{s['n']:>5}{s['median_ms']:>11.2f}{s['p90_ms']:>9.2f}"
              f"{s['p95_ms']:>9.2f}")
    for what in ("ack", "next_card"):
        print(f"{what}: during/idle median x{out[f'{what}_median_ratio']:.2f}, "
              f"p95 x{out[f'{what}_p95_ratio']:.2f}")
    return out


if __name__ == "__main__":
    main()
