"""Click latency of the Slack bot: N labelers clicking through cards at once on a 100k-record project.

The real App (``bot.app.create_app``) is served by ``bot.server.SlackHTTPServer`` on loopback, its
WebClient pointed at the Slack stand-in (``bot.standin.SlackStandIn``), as in ``tests/slack_harness.py``.
Each simulated labeler sends ``/label next``, then, for every card that arrives in its DM, clicks the
card's label (a signed ``block_actions`` request, ``SlackRequestSender``) and waits for the next card.
Per click:

- click → ack: the HTTP response time of the click's POST to ``/slack/events`` (Slack allows 3 s);
- click → card updated / next card: from sending the click to the stand-in answering the
  ``chat.update`` of that card / the ``chat.postMessage`` of the next card in the labeler's DM
  (``RecordedCall.time``).

Background retrains run during the run as in production (``--retrain-every``, default the service's
default). The project is built through ``LabelingService.import_rows`` with a fake embedder returning
precomputed synthetic unit vectors (384-d, clustered by class), so set-up needs no model.

By default the bot (service, App, HTTP server) runs in this process, the Web API stand-in in a
child process and the labelers' clients in another, as in production where Slack and its users are
elsewhere: they share the CPUs but not a GIL, so a click's timing never waits for the stand-in's
threads. ``--one-process`` puts everything in one process, exactly like the test harness.

    .venv/bin/python bench/slack_latency.py                      # 20 labelers x 25 clicks, 100k records
    .venv/bin/python bench/slack_latency.py --think-ms 3000      # labelers read each card for ~3 s
    .venv/bin/python bench/slack_latency.py --labelers 5 --records 20000 --clicks 10

Prints p50/p95/p99 with PASS/FAIL against the targets (``TARGETS``: with no think time / at human
pace; and bot CPU per click with ``--labelers 1 --retrain-every 0``), SQL statements and transactions
per click, and
writes bench/results/slack_latency.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import platform
import queue
import random
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import event, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot import ids
from bot.app import create_app, freeze_startup_objects, make_client
from bot.server import EVENTS_PATH, SlackHTTPServer
from bot.settings import BotSettings
from bot.standin import SlackRequestSender, SlackStandIn, action_from_blocks
from core import io
from core.config import Settings
from core.models import Record
from core.service import LabelingService
from core.store import read_session

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
PROJECT = "latency"
SIGNING_SECRET = "bench-signing-secret"
BOT_TOKEN = "xoxb-bench"
CHANNEL = "CBENCH"
# Targets (issue "one clear core"): with no think time / at human pace (--think-ms > 0).
TARGETS = {
    "busy": {"ack_p99": 50.0, "next_p95": 300.0, "clicks_per_s": 80.0},
    "human": {"ack_p99": 30.0, "next_p95": 100.0, "next_p99": 300.0},
}
CPU_PER_CLICK_TARGET_MS = 8.0  # one labeler, no retrains (--labelers 1 --retrain-every 0)
WAIT_SECONDS = 60.0  # a card that takes longer than this counts as lost
_DEFAULTS = Settings(_env_file=None)  # type: ignore[call-arg]

# ------------------------------------------------------------------------------------------ the data


def synthetic_pool(n: int, dim: int, n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit float32 vectors around one random direction per class, and each row's class."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    classes = rng.integers(0, n_classes, n)
    vectors = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 20_000):  # bounded temporaries
        stop = min(start + 20_000, n)
        noise = rng.standard_normal((stop - start, dim)).astype(np.float32)
        part = centres[classes[start:stop]] + 0.08 * noise
        vectors[start:stop] = part / np.linalg.norm(part, axis=1, keepdims=True)
    return vectors, classes


class PrecomputedEmbedder:
    """Row ``i`` of a fixed matrix for a text starting ``"record i "`` (no model, so set-up is fast)."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = vectors
        self.dim = int(vectors.shape[1])
        self.name = f"synthetic-{self.dim}"

    def encode(self, texts: Sequence[str], *, progress: Any = None) -> np.ndarray:
        rows = np.fromiter((int(t.split(" ", 2)[1]) for t in texts), dtype=np.int64, count=len(texts))
        if progress is not None:
            progress(len(texts), len(texts))
        return self.vectors[rows]


class NamedEmbedder:
    """What the training worker needs of the embedder: its name (a retrain never encodes)."""

    def __init__(self, dim: int) -> None:
        self.dim, self.name = dim, f"synthetic-{dim}"

    def encode(self, texts: Sequence[str], *, progress: Any = None) -> np.ndarray:
        raise RuntimeError("the training worker never embeds")


_WORDS = ("card", "arrived", "payment", "pending", "refund", "transfer", "exchange", "rate", "limit",
          "account", "top", "up", "failed", "why", "my", "still", "not", "working", "charged", "twice")


def record_text(i: int, rng: random.Random) -> str:
    # ~100 characters, about a Banking77 message, so cards carry realistic text.
    return f"record {i} " + " ".join(rng.choice(_WORDS) for _ in range(14))


def build_service(args: argparse.Namespace, db_path: Path) -> tuple[LabelingService, dict[int, int], dict]:
    """The project through the service: records (+ seed labels) by ``import_rows``, then a first retrain."""
    vectors, classes = synthetic_pool(args.records, args.dim, args.labels, seed=args.seed)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite:///{db_path}",
        retrain_every=args.retrain_every,
        queue_size=args.queue_size,
        retrain_cooldown=args.retrain_cooldown,
    )
    trainer = None
    if args.trainer == "process":  # as `labelbot serve`: retrains in a worker process
        from core.trainer import ProcessTrainer

        trainer = ProcessTrainer(settings, embedder_factory=functools.partial(NamedEmbedder, args.dim))
    service = LabelingService(settings, embedder=PrecomputedEmbedder(vectors), background=True,
                              trainer=trainer)
    names = [f"intent_{i:02d}" for i in range(args.labels)]
    service.create_project(PROJECT, names)
    text_rng = random.Random(args.seed)
    n_seeded = min(args.seed_labels, args.records)
    seeded = set(random.Random(args.seed + 1).sample(range(args.records), n_seeded))
    rows = [
        io.ImportRow(line=i + 2, external_id=str(i), text=record_text(i, text_rng),
                     label=names[classes[i]] if i in seeded else None, annotator="seed")
        for i in range(args.records)
    ]
    started = time.perf_counter()
    service.import_rows(PROJECT, rows)
    import_s = time.perf_counter() - started
    started = time.perf_counter()
    service.wait_for_retrains(timeout=600)  # the cold-start queue the import asked for
    service.retrain(PROJECT)  # the model and queue a project in progress has
    retrain_s = time.perf_counter() - started
    # Which label each record truly has, so labelers click it and the model learns.
    with read_session(service.engine) as session:
        classes_of = {
            rid: int(classes[int(eid)])
            for rid, eid in session.execute(select(Record.id, Record.external_id)).all()
        }
    return service, classes_of, {"import_s": round(import_s, 2), "initial_retrain_s": round(retrain_s, 2)}


# ------------------------------------------------------------------------------------- the labelers


@dataclass
class Click:
    user: str
    ack_ms: float
    status: int
    updated_ms: float | None = None  # click → chat.update of the clicked card
    next_ms: float | None = None  # click → chat.postMessage of the next card


@dataclass
class Inbox:
    """What the stand-in answered for one labeler's DM: (kind, time answered, message)."""

    channel: str
    response_url: str | None = None  # for /label next (None: the sender asks the stand-in for one)
    events: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)


def _has_controls(message: dict) -> bool:
    return any(
        el.get("action_id") == ids.ACTION_SKIP
        for b in message.get("blocks", []) if b.get("type") == "actions" for el in b.get("elements", [])
    )


def label_action(card: dict, classes_of: dict[int, int]) -> dict:
    """The ``actions[0]`` of choosing the record's true label on a card (a button or a menu option)."""
    for block in card.get("blocks", []):
        for el in block.get("elements", []) if block.get("type") == "actions" else []:
            if el.get("type") == "button":
                values = [el.get("value")]
            else:
                options = el.get("options") or [o for g in el.get("option_groups", []) for o in g["options"]]
                values = [o["value"] for o in options]
            for value in values:
                try:
                    choice = ids.parse_label_value(value)
                except ValueError:
                    continue  # Skip / Show similar
                if choice.label_index == classes_of[choice.record_id]:
                    if el.get("type") == "button":
                        return action_from_blocks(card, el["action_id"], value=value)
                    return action_from_blocks(card, el["action_id"], selected_value=value)
    raise LookupError("no control for the record's label on the card")


def labeler(
    user: str, inbox: Inbox, sender: SlackRequestSender, classes_of: dict[int, int], args: argparse.Namespace,
    start: threading.Barrier, out: list[Click], problems: list[str], seed: int,
) -> None:
    rng = random.Random(seed)

    def next_card(after: float) -> tuple[dict | None, float | None, float | None]:
        """The next card answered after ``after`` (time.time()), when it was, and when the update was."""
        updated = None
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            try:
                kind, answered_at, message = inbox.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return None, None, updated
            if answered_at < after:
                continue
            if kind == "update":
                updated = updated or answered_at
            elif _has_controls(message):
                return message, answered_at, updated
            else:  # "nothing left to label"
                return None, None, updated

    try:
        start.wait()
        sent = time.time()
        opened = sender.slash_command("/label", "next", user_id=user, channel_id=CHANNEL,
                                      response_url=inbox.response_url)
        if opened.status != 200:
            problems.append(f"{user}: /label next was refused")
            return
        card, _, _ = next_card(sent)
        for _ in range(args.clicks):
            if card is None:
                problems.append(f"{user}: no card within {WAIT_SECONDS:.0f} s")
                return
            if args.think_ms > 0:
                time.sleep(args.think_ms * rng.uniform(0.5, 1.5) / 1000)  # a person reading the card
            action = label_action(card, classes_of)
            clicked = time.time()
            started = time.perf_counter()
            response = sender.block_actions(user, [action], channel_id=inbox.channel, message=card)
            click = Click(user, (time.perf_counter() - started) * 1000, response.status)
            card, answered_at, updated = next_card(clicked)
            if answered_at is not None:
                click.next_ms = (answered_at - clicked) * 1000
            if updated is not None:
                click.updated_ms = (updated - clicked) * 1000
            out.append(click)
    except Exception as exc:  # a dead labeler must show in the results, not just on stderr
        problems.append(f"{user}: {type(exc).__name__}: {exc}")
        traceback.print_exc()


def start_standin(
    users: list[str], args: argparse.Namespace, deliver: Any
) -> tuple[SlackStandIn, dict[str, str]]:
    """The Web API stand-in with the labelers and their DMs; ``deliver(channel, kind, time, message)``
    gets every message posted or updated, when the stand-in answered it. Returns user -> DM channel."""
    # Block Kit is validated by the tests; here the stand-in's CPU (Slack's, in production) would
    # only compete with the bot for this machine's two cores.
    standin = SlackStandIn(bot_token=BOT_TOKEN, validate=args.validate_slack).start()
    for user in users:
        standin.add_user(user, user.lower())
    standin.add_channel(CHANNEL, "labeling")
    dms = {user: standin.dm_channel(user) for user in users}
    wanted = set(dms.values())

    def on_event(event: dict) -> None:
        # The stand-in's dispatcher thread; call.time is when the stand-in answered the call.
        call = event.get("call") if event.get("type") == "api_call" else None
        if call is None or not call.ok or call.method not in ("chat.postMessage", "chat.update"):
            return
        channel = call.response.get("channel")
        if channel in wanted:
            kind = "post" if call.method == "chat.postMessage" else "update"
            deliver(channel, kind, call.time, call.response.get("message") or {})

    standin.subscribe(on_event)
    return standin, dms


def _deliver_to(inboxes: dict[str, Inbox]) -> Any:
    by_channel = {inbox.channel: inbox for inbox in inboxes.values()}
    return lambda channel, kind, at, message: by_channel[channel].events.put((kind, at, message))


def drive_labelers(
    standin: SlackStandIn | None, inboxes: dict[str, Inbox], bot_url: str, classes_of: dict[int, int],
    args: argparse.Namespace,
) -> tuple[list[Click], list[str], float]:
    """Run every labeler to the end; returns the clicks, any problems and the seconds it took."""
    sender = SlackRequestSender(f"{bot_url}{EVENTS_PATH}", SIGNING_SECRET, standin=standin, timeout=30)
    clicks: list[Click] = []
    problems: list[str] = []
    barrier = threading.Barrier(len(inboxes))
    threads = [
        threading.Thread(
            target=labeler, name=f"labeler-{user}",
            args=(user, inbox, sender, classes_of, args, barrier, clicks, problems, args.seed + n),
        )
        for n, (user, inbox) in enumerate(inboxes.items())
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return clicks, problems, time.perf_counter() - started


def _standin_process(conn: Any, events: Any, args: argparse.Namespace) -> None:
    """Slack's Web API: the stand-in, forwarding each labeler's DM traffic to the labelers' process."""
    try:
        standin, dms = start_standin(users_for(args), args, lambda *event: events.put(event))
        urls = {user: standin.new_response_url(CHANNEL, user, None) for user in dms}
        conn.send((standin.base_url, dms, urls))
        cpu_before = time.process_time()
        conn.recv()  # the run is over
        conn.send(time.process_time() - cpu_before)
        standin.stop()
    except Exception:
        conn.send(traceback.format_exc())


def _labelers_process(conn: Any, events: Any, args: argparse.Namespace, classes_of: dict[int, int]) -> None:
    """The labelers' Slack clients, in a process of their own: timing a click must not wait for the
    stand-in's threads to release a shared GIL."""
    try:
        bot_url, dms, urls = conn.recv()
        inboxes = {user: Inbox(dm, urls[user]) for user, dm in dms.items()}
        deliver = _deliver_to(inboxes)

        def forward() -> None:
            while (event := events.get()) is not None:
                deliver(*event)

        threading.Thread(target=forward, name="events", daemon=True).start()
        cpu_before = time.process_time()
        clicks, problems, elapsed = drive_labelers(None, inboxes, bot_url, classes_of, args)
        conn.send(([asdict(c) for c in clicks], problems, elapsed, time.process_time() - cpu_before))
    except Exception:
        conn.send(([], [traceback.format_exc()], 0.0, 0.0))


def _run_apart(
    service: LabelingService, classes_of: dict[int, int], args: argparse.Namespace
) -> tuple[list[Click], list[str], float, float]:
    """Bot here; the Web API stand-in and the labelers in two child processes. Returns the clicks,
    problems, seconds, and the CPU seconds of both children together."""
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    to_standin, standin_end = context.Pipe()
    to_labelers, labelers_end = context.Pipe()
    children = [
        context.Process(target=_standin_process, args=(standin_end, events, args), daemon=True),
        context.Process(target=_labelers_process, args=(labelers_end, events, args, classes_of), daemon=True),
    ]
    for child in children:
        child.start()
    standin_end.close()  # so a child that dies ends recv() with EOFError instead of a hang
    labelers_end.close()
    started = to_standin.recv()
    if isinstance(started, str):
        raise RuntimeError(f"the stand-in process failed:\n{started}")
    api_url, dms, urls = started
    server = start_bot(service, api_url)
    try:
        to_labelers.send((server.url, dms, urls))
        raw, problems, elapsed, labelers_cpu = to_labelers.recv()
    finally:
        server.stop()
        to_standin.send("stop")
        standin_cpu = to_standin.recv()
        events.put(None)
    for child in children:
        child.join(timeout=30)
    cpu = labelers_cpu + (standin_cpu if isinstance(standin_cpu, float) else 0.0)
    return [Click(**c) for c in raw], problems, elapsed, cpu


def users_for(args: argparse.Namespace) -> list[str]:
    return [f"ULAB{i:04d}" for i in range(args.labelers)]


# ---------------------------------------------------------------------------------------- the run


def percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    a = np.asarray(values, dtype=np.float64)
    return {
        "n": len(values), "mean": round(float(a.mean()), 1), "p50": round(float(np.percentile(a, 50)), 1),
        "p95": round(float(np.percentile(a, 95)), 1), "p99": round(float(np.percentile(a, 99)), 1),
        "max": round(float(a.max()), 1),
    }


class SQLCounter:
    """SQL statements and transactions the bot's request and listener threads run (not the training
    thread's), from SQLAlchemy's engine events."""

    def __init__(self, engine: Any) -> None:
        self.engine, self.statements, self.transactions = engine, 0, 0
        self._lock = threading.Lock()
        event.listen(engine, "before_cursor_execute", self._on_statement)
        event.listen(engine, "begin", self._on_begin)

    @staticmethod
    def _counted() -> bool:
        return not threading.current_thread().name.startswith("labelbot-train")

    def _on_statement(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if self._counted() and statement.split(None, 1)[0].upper() not in ("BEGIN", "COMMIT", "ROLLBACK"):
            with self._lock:
                self.statements += 1

    def _on_begin(self, conn: Any) -> None:
        if self._counted():
            with self._lock:
                self.transactions += 1

    def stop(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._on_statement)
        event.remove(self.engine, "begin", self._on_begin)


def start_bot(service: LabelingService, api_url: str) -> SlackHTTPServer:
    settings = BotSettings(
        _env_file=None,  # type: ignore[call-arg]
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=api_url,
    )
    app = create_app(settings, service, client=make_client(settings))
    freeze_startup_objects()  # as `labelbot serve` does before serving
    return SlackHTTPServer(app, "127.0.0.1", 0).start()


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="labelbot-latency-") as tmp:
        started = time.perf_counter()
        service, classes_of, setup = build_service(args, Path(tmp) / "latency.db")
        setup["total_s"] = round(time.perf_counter() - started, 2)
        print(f"Set-up: {args.records:,} records x {args.dim} dims, {args.labels} labels, "
              f"{args.seed_labels:,} labeled: import_rows {setup['import_s']:.1f} s, "
              f"first retrain {setup['initial_retrain_s']:.1f} s, total {setup['total_s']:.1f} s", flush=True)
        runs_before = len(service.run_history(PROJECT))
        sql = SQLCounter(service.engine)
        slack_cpu_s = None
        cpu_before = time.process_time()
        try:
            if args.one_process:
                route: dict[str, Any] = {}  # set before the first message can arrive
                standin, dms = start_standin(users_for(args), args, lambda *event: route["to"](*event))
                inboxes = {user: Inbox(dm) for user, dm in dms.items()}
                route["to"] = _deliver_to(inboxes)
                server = start_bot(service, standin.base_url)
                clicks, problems, elapsed = drive_labelers(standin, inboxes, server.url, classes_of, args)
                server.stop()
                standin.stop()
            else:
                clicks, problems, elapsed, slack_cpu_s = _run_apart(service, classes_of, args)
            sql.stop()
            service.wait_for_retrains(timeout=300)
            # CPU of this process (all threads) over the clicks: the bot's, plus Slack's with --one-process.
            cpu_s = time.process_time() - cpu_before
            new_runs = service.run_history(PROJECT)[runs_before:]
            retrains = {"count": len(new_runs),
                        "median_s": round(float(np.median([r.duration_seconds for r in new_runs])), 2)
                        if new_runs else None}
        finally:
            service.close()
    return report(args, setup, clicks, problems, elapsed, retrains, cpu_s, sql, slack_cpu_s)


def report(args: argparse.Namespace, setup: dict, clicks: list[Click], problems: list[str], elapsed: float,
           retrains: dict, cpu_s: float, sql: SQLCounter, slack_cpu_s: float | None) -> dict[str, Any]:
    ack = percentiles([c.ack_ms for c in clicks])
    nxt = percentiles([c.next_ms for c in clicks if c.next_ms is not None])
    upd = percentiles([c.updated_ms for c in clicks if c.updated_ms is not None])
    bad = sum(c.status != 200 for c in clicks)
    rate = len(clicks) / elapsed if elapsed else 0.0
    mode = "human" if args.think_ms > 0 else "busy"
    targets = TARGETS[mode]
    measured = {"ack_p99": ack.get("p99"), "next_p95": nxt.get("p95"), "next_p99": nxt.get("p99"),
                "clicks_per_s": rate}
    verdicts = {
        name: measured[name] is not None
        and (measured[name] >= limit if name == "clicks_per_s" else measured[name] < limit)
        for name, limit in targets.items()
    }
    ack_ok = all(v for k, v in verdicts.items() if k.startswith("ack")) and bad == 0
    next_ok = all(v for k, v in verdicts.items() if not k.startswith("ack")) and not problems
    # Per click (the labelers' opening /label next commands are counted too: one each).
    per_click = {"statements": round(sql.statements / max(1, len(clicks)), 2),
                 "transactions": round(sql.transactions / max(1, len(clicks)), 2)}
    layout = "one process" if args.one_process else "bot, Web API stand-in and labelers in three processes"
    print(f"\n{len(clicks)} clicks by {args.labelers} labelers in {elapsed:.1f} s ({rate:.1f} clicks/s, "
          f"think time {args.think_ms:.0f} ms, {layout}); {retrains['count']} background retrains "
          f"(retrain every {args.retrain_every} answers, median {retrains['median_s']} s each)")
    cpu_ms = 1000 * cpu_s / len(clicks) if clicks else float("nan")
    whose = "the whole" if args.one_process else "the bot's"
    print(f"CPU time of {whose} process: {cpu_s:.1f} s, {cpu_ms:.1f} ms per click (retrains on the "
          f"{args.trainer} trainer{' included' if args.trainer == 'thread' else ' not included'})")
    if slack_cpu_s is not None and clicks:
        print(f"CPU time of the Slack side (stand-in + labelers): {1000 * slack_cpu_s / len(clicks):.1f} ms "
              f"per click (Block Kit validation {'on' if args.validate_slack else 'off'})")
    print(f"{'ms':<24}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}")
    for name, figures in (("click -> ack", ack), ("click -> card updated", upd), ("click -> next card", nxt)):
        if figures:
            print(f"{name:<24}{figures['p50']:>9.1f}{figures['p95']:>9.1f}{figures['p99']:>9.1f}"
                  f"{figures['max']:>9.1f}")
    print(f"SQL per click on the bot's request/listener threads: {per_click['statements']} statements in "
          f"{per_click['transactions']} transactions")
    for name, limit in targets.items():
        value = measured[name]
        shown = "n/a" if value is None else f"{value:.1f}"
        relation = ">=" if name == "clicks_per_s" else "<"
        print(f"{name} {shown} (target {relation} {limit:g}): {'PASS' if verdicts[name] else 'FAIL'}")
    if args.labelers == 1 and args.retrain_every == 0:
        print(f"CPU per click {cpu_ms:.1f} ms (target <= {CPU_PER_CLICK_TARGET_MS:g} ms, one labeler, "
              f"no retrains): {'PASS' if cpu_ms <= CPU_PER_CLICK_TARGET_MS else 'FAIL'}")
    for problem in problems[:10]:
        print(f"problem: {problem}")
    if bad:
        print(f"problem: {bad} clicks were not answered 200")
    return {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "setup_s": setup,
        "clicks": len(clicks), "elapsed_s": round(elapsed, 2), "clicks_per_s": round(rate, 2),
        "background_retrains": retrains,
        "process_cpu_s": round(cpu_s, 2), "process_cpu_ms_per_click": round(cpu_ms, 1),
        "slack_side_cpu_ms_per_click": round(1000 * slack_cpu_s / len(clicks), 1)
        if slack_cpu_s is not None and clicks else None,
        "click_to_ack_ms": ack, "click_to_card_updated_ms": upd, "click_to_next_card_ms": nxt,
        "sql_per_click": per_click,
        "targets": targets, "verdicts": verdicts,
        "pass": {"ack": ack_ok, "next_card": next_ok},
        "non_200_clicks": bad, "problems": problems,
        "machine": {
            "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "load_average_1m_after": round(os.getloadavg()[0], 2),
        },
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labelers", type=int, default=20)
    parser.add_argument("--clicks", type=int, default=25, help="clicks per labeler")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--labels", type=int, default=77, help="label set size (over 5: a menu on each card)")
    parser.add_argument("--seed-labels", type=int, default=1_000, help="records labeled at import")
    parser.add_argument("--retrain-every", type=int, default=_DEFAULTS.retrain_every)
    parser.add_argument("--retrain-cooldown", type=float, default=_DEFAULTS.retrain_cooldown,
                        help="pause after a retrain, as a multiple of its duration (see core.policy)")
    parser.add_argument("--trainer", choices=("process", "thread"), default="process",
                        help="where retrains run: a worker process as `labelbot serve`, or a thread")
    parser.add_argument("--queue-size", type=int, default=_DEFAULTS.queue_size)
    parser.add_argument("--think-ms", type=float, default=0.0,
                        help="mean pause before each click (uniform 0.5x-1.5x); 0: click at once")
    parser.add_argument("--one-process", action="store_true",
                        help="run the stand-in and the labelers in the bot's process (as the tests do)")
    parser.add_argument("--validate-slack", action="store_true",
                        help="let the stand-in check every message's Block Kit (costs its process CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "slack_latency.json")
    args = parser.parse_args(argv)
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"Wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
