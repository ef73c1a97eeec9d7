"""Two bot replicas on one PostgreSQL database behind a round-robin load balancer, 20 labelers at human
pace, and clicks delivered twice as Slack retries them: nothing lost, nothing stored twice, no record
handed to more labelers than its answers-per-record, one retrain at a time.

Processes, as in production where Slack and its users are elsewhere (the layout of
``bench/slack_latency.py``, whose pieces this reuses):

- a throwaway PostgreSQL cluster (``initdb`` in a temporary directory, default durability settings:
  fsync and synchronous commit on), or a server given by ``--database-url``; each run gets a fresh
  database;
- two bot processes, each what ``labelbot serve --http`` runs: the service with its training worker
  process, the bolt App on ``SlackHTTPServer``, the leadership lease and the scheduler (the leader runs
  the jobs and the retrains; a follower hands its retrain requests to the leader);
- the Slack Web API stand-in (``bot.standin.SlackStandIn``);
- the labelers' Slack clients. The load balancer is the labelers' own: every request (of any labeler)
  goes to the next replica in turn, as a round-robin balancer would send it, without a proxy hop.

A fraction of the clicks (``--duplicates``) is delivered twice, the copy to the other replica with
``X-Slack-Retry-Num: 1``, as Slack does when an ack is slow or lost: half sent at once beside the
original, half right after its ack. At the end the database is checked: every acked click has its
answer (0 lost), no answer more than once and none without a click (0 duplicated), no record answered
by or handed to more than k labelers, each record's answer count right, and no two retrains overlapping
in time (``ModelRun``: created at the end of a retrain's critical path, ``duration_seconds`` long).

    .ci/with-postgres .venv/bin/python bench/replicas.py --database-url '$LABELBOT_TEST_POSTGRES_URL'
    .venv/bin/python bench/replicas.py                      # k=1 and k=2, its own cluster
    .venv/bin/python bench/replicas.py --k 2 --labelers 10 --clicks 10 --think-ms 1000

Writes bench/results/replicas.json. Everything (both replicas, their training workers, PostgreSQL, the
stand-in and the labelers) shares this machine's CPUs: say so beside the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import glob
import itertools
import json
import multiprocessing
import os
import platform
import queue
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import slack_latency as latency  # the bench's neighbour: data, stand-in, labeler pieces

from bot import ids
from bot.server import EVENTS_PATH
from bot.standin import SlackRequestSender
from core import io
from core.config import Settings
from core.models import Annotation, ModelRun, Record
from core.service import LabelingService
from core.store import reading

BENCH = Path(__file__).resolve().parent
PROJECT = latency.PROJECT
TARGETS = {"ack_p99": 50.0, "next_p95": 150.0}  # issue 10, at human pace
RETRY_HEADERS = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
_DEFAULTS = Settings(_env_file=None)  # type: ignore[call-arg]

# ------------------------------------------------------------------------------------------ PostgreSQL


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[str]:
    """A PostgreSQL cluster in a temporary directory, on a Unix socket only; removed afterwards.
    Default durability (fsync, synchronous commit), as a production server has."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    if not bins:
        raise SystemExit(
            "No PostgreSQL server binaries (apt-get install postgresql), or pass --database-url."
        )
    pg_bin = Path(bins[-1])
    root = Path(tempfile.mkdtemp(prefix="labelbot-replicas-pg-"))
    as_owner: list[str] = []
    if os.getuid() == 0:  # initdb refuses root: the cluster belongs to the postgres OS user
        shutil.chown(root, "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    data = root / "data"
    try:
        subprocess.run(
            [
                *as_owner,
                str(pg_bin / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *as_owner,
                str(pg_bin / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(root / "server.log"),
                "-w",
                "-s",
                "start",
                "-o",
                f"-p 5432 -k {root} -c listen_addresses= -c max_connections=200",
            ],
            check=True,
        )
        yield f"postgresql+psycopg://postgres@/postgres?host={root}&port=5432"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                [*as_owner, str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-s", "stop"],
                check=False,
            )
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(server_url: str, name: str, *, synchronous_commit: bool = True) -> Iterator[str]:
    """``synchronous_commit=False``: commits return before their WAL is flushed to disk (to tell the
    fsync's share of a click's time; a server crash may then lose the last acked answers)."""
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
            if not synchronous_commit:
                conn.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def settings_for(url: str, vector_dir: str, args: argparse.Namespace) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        vector_dir=vector_dir,
        retrain_every=args.retrain_every,
        retrain_cooldown=args.retrain_cooldown,
        queue_size=args.queue_size,
    )


def build_project(url: str, vector_dir: str, args: argparse.Namespace, k: int) -> tuple[dict[int, int], dict]:
    """Records and seed labels through ``import_rows`` (precomputed vectors), then a first retrain."""
    vectors, classes = latency.synthetic_pool(args.records, args.dim, args.labels, seed=args.seed)
    service = LabelingService(
        settings_for(url, vector_dir, args), embedder=latency.PrecomputedEmbedder(vectors)
    )
    try:
        names = [f"intent_{i:02d}" for i in range(args.labels)]
        service.create_project(PROJECT, names, answers_per_record=k)
        text_rng = random.Random(args.seed)
        seeded = set(
            random.Random(args.seed + 1).sample(range(args.records), min(args.seed_labels, args.records))
        )
        rows = [
            io.ImportRow(
                line=i + 2,
                external_id=str(i),
                text=latency.record_text(i, text_rng),
                label=names[classes[i]] if i in seeded else None,
                annotator="seed",
            )
            for i in range(args.records)
        ]
        started = time.perf_counter()
        service.import_rows(PROJECT, rows)
        service.retrain(PROJECT)
        setup_s = time.perf_counter() - started
        with reading(service.engine) as conn:
            classes_of = {
                rid: int(classes[int(eid)])
                for rid, eid in conn.execute(select(Record.id, Record.external_id)).all()
            }
    finally:
        service.close()
    return classes_of, {"import_and_first_retrain_s": round(setup_s, 1)}


# -------------------------------------------------------------------------------------- the replicas


def _bot_process(conn: Any, url: str, vector_dir: str, api_url: str, args: argparse.Namespace) -> None:
    """One replica, as ``labelbot serve --http`` builds it (bot/cli.py ``serve``), on a free port."""
    try:
        from bot.app import create_app, freeze_startup_objects, make_client
        from bot.scheduler import LabelScheduler
        from bot.server import SlackHTTPServer
        from bot.settings import BotSettings
        from core.trainer import ProcessTrainer

        settings = settings_for(url, vector_dir, args)
        embedder = functools.partial(latency.NamedEmbedder, args.dim)
        service = LabelingService(
            settings,
            embedder=embedder(),
            background=True,
            trainer=ProcessTrainer(settings, embedder_factory=embedder),
        )
        retrains: list[float] = []
        service.retrain_listeners.append(lambda run, project: retrains.append(time.time()))
        bot_settings = BotSettings(
            _env_file=None,
            slack_bot_token=latency.BOT_TOKEN,  # type: ignore[call-arg]
            slack_signing_secret=latency.SIGNING_SECRET,
            slack_api_url=api_url,
        )
        app = create_app(bot_settings, service, client=make_client(bot_settings))
        leadership = service.leadership().start()
        scheduler = LabelScheduler(service, app.client, leadership=leadership).attach(app).start()
        freeze_startup_objects()
        server = SlackHTTPServer(app, "127.0.0.1", 0).start()
        sql = latency.SQLCounter(service.engine)
        cpu_before = time.process_time()
        conn.send(server.url)
        conn.recv()  # the labelers are done
        sql.stop()
        cpu_s = time.process_time() - cpu_before
        role = scheduler.role
        server.stop()
        scheduler.shutdown(wait=False)
        service.close()  # waits for this replica's retrains, so their runs are in the database
        leadership.stop()
        conn.send(
            {
                "role": role,
                "retrains": len(retrains),
                "cpu_s": round(cpu_s, 1),
                "statements": sql.statements,
                "transactions": sql.transactions,
            }
        )
    except Exception:
        conn.send(traceback.format_exc())


# ------------------------------------------------------------------------------------- the labelers


class Balancer:
    """Round robin over the replicas for every request of every labeler, as a load balancer would."""

    def __init__(self, urls: list[str]) -> None:
        self.senders = [
            RetryingSender(f"{url}{EVENTS_PATH}", latency.SIGNING_SECRET, timeout=30) for url in urls
        ]
        self._turns = itertools.count()

    def next(self) -> tuple[int, RetryingSender]:
        i = next(self._turns) % len(self.senders)
        return i, self.senders[i]


class RetryingSender(SlackRequestSender):
    """Can build a request without sending it, and deliver one again as Slack's retry."""

    _local = threading.local()

    def send(self, body: bytes | str, content_type: str, **kwargs: Any) -> Any:
        if getattr(self._local, "building", False):
            self._local.request = (body, content_type)
            return None
        return super().send(body, content_type, **kwargs)

    def request_of(self, build: Callable[[], Any]) -> tuple[bytes | str, str]:
        """The (body, content type) that ``build()`` (a ``block_actions`` call) would send; unsent."""
        self._local.building = True
        try:
            build()
        finally:
            self._local.building = False
        return self._local.request

    def deliver(self, request: tuple[bytes | str, str], *, retry: bool = False) -> Any:
        """Send ``request``, signed now; ``retry``: with Slack's retry headers."""
        return super().send(request[0], request[1], headers=RETRY_HEADERS if retry else None)


@dataclass
class Click:
    user: str
    record_id: int
    replica: int
    ack_ms: float
    status: int
    next_ms: float | None = None
    copy: str = ""  # "" / "at once" / "after ack": how a second delivery was sent
    copy_status: int | None = None
    copy_ack_ms: float | None = None


def card_record(card: dict) -> int | None:
    """The record id a card's label controls name."""
    for block in card.get("blocks", []):
        for el in block.get("elements", []) if block.get("type") == "actions" else []:
            options = el.get("options") or [o for g in el.get("option_groups", []) for o in g["options"]]
            for value in [el.get("value"), *(o["value"] for o in options)]:
                with contextlib.suppress(ValueError, TypeError):
                    return ids.parse_label_value(value).record_id
    return None


def labeler(
    user: str,
    inbox: latency.Inbox,
    balancer: Balancer,
    classes_of: dict[int, int],
    args: argparse.Namespace,
    start: threading.Barrier,
    out: list[Click],
    problems: list[str],
    seed: int,
) -> None:
    rng = random.Random(seed)

    def next_card(after: float) -> tuple[dict | None, float | None]:
        deadline = time.monotonic() + latency.WAIT_SECONDS
        while True:
            try:
                kind, answered_at, message = inbox.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return None, None
            if answered_at < after or kind != "post":
                continue
            return (message, answered_at) if latency._has_controls(message) else (None, None)

    try:
        start.wait()
        sent = time.time()
        _, sender = balancer.next()
        if (
            sender.slash_command(
                "/label", "next", user_id=user, channel_id=latency.CHANNEL, response_url=inbox.response_url
            ).status
            != 200
        ):
            problems.append(f"{user}: /label next was refused")
            return
        card, _ = next_card(sent)
        for _ in range(args.clicks):
            if card is None:
                problems.append(f"{user}: no card within {latency.WAIT_SECONDS:.0f} s")
                return
            time.sleep(args.think_ms * rng.uniform(0.5, 1.5) / 1000)  # a person reading the card
            action = latency.label_action(card, classes_of)
            record_id = ids.parse_label_value(
                action.get("value") or action["selected_option"]["value"]
            ).record_id
            replica, sender = balancer.next()
            copy = (
                ("at once" if rng.random() < 0.5 else "after ack") if rng.random() < args.duplicates else ""
            )
            request = sender.request_of(
                lambda: sender.block_actions(user, [action], channel_id=inbox.channel, message=card)  # noqa: B023
            )
            other = balancer.senders[(replica + 1) % len(balancer.senders)]
            copy_response = copy_ms = None
            box: dict[str, Any] = {}
            copy_thread = threading.Thread(target=_deliver_copy, args=(other, request, box))
            clicked = time.time()
            started = time.perf_counter()
            if copy == "at once":
                copy_thread.start()
            response = sender.deliver(request)
            ack_ms = (time.perf_counter() - started) * 1000
            if copy == "after ack":
                copy_thread.start()
            if copy:
                copy_thread.join()
                copy_response, copy_ms = box["r"]
            click = Click(
                user,
                record_id,
                replica,
                ack_ms,
                response.status,
                copy=copy,
                copy_status=copy_response.status if copy_response else None,
                copy_ack_ms=copy_ms,
            )
            card, answered_at = next_card(clicked)
            if answered_at is not None:
                click.next_ms = (answered_at - clicked) * 1000
            out.append(click)
    except Exception as exc:
        problems.append(f"{user}: {type(exc).__name__}: {exc}")
        traceback.print_exc()


def _deliver_copy(sender: RetryingSender, request: tuple, box: dict[str, Any]) -> None:
    """Slack's retry of ``request``: its response and milliseconds into ``box["r"]``."""
    started = time.perf_counter()
    response = sender.deliver(request, retry=True)
    box["r"] = (response, (time.perf_counter() - started) * 1000)


def _labelers_process(conn: Any, events: Any, args: argparse.Namespace, classes_of: dict[int, int]) -> None:
    try:
        bot_urls, dms, urls = conn.recv()
        inboxes = {user: latency.Inbox(dm, urls[user]) for user, dm in dms.items()}
        user_of = {inbox.channel: user for user, inbox in inboxes.items()}
        handed: list[tuple[str, int]] = []  # (labeler, record) of every card posted, whoever reads it

        def forward() -> None:
            while (event := events.get()) is not None:
                channel, kind, at, message = event
                if kind == "post" and (rid := card_record(message)) is not None:
                    handed.append((user_of[channel], rid))
                inboxes[user_of[channel]].events.put((kind, at, message))

        threading.Thread(target=forward, name="events", daemon=True).start()
        balancer = Balancer(bot_urls)
        clicks: list[Click] = []
        problems: list[str] = []
        barrier = threading.Barrier(len(inboxes))
        threads = [
            threading.Thread(
                target=labeler,
                name=f"labeler-{user}",
                args=(user, inbox, balancer, classes_of, args, barrier, clicks, problems, args.seed + n),
            )
            for n, (user, inbox) in enumerate(inboxes.items())
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        time.sleep(2.0)  # the last cards' posts reach the event queue
        conn.send(([asdict(c) for c in clicks], problems, elapsed, list(handed)))
    except Exception:
        conn.send(([], [traceback.format_exc()], 0.0, []))


# ---------------------------------------------------------------------------------------------- a run


def run_once(server_url: str, args: argparse.Namespace, k: int) -> dict[str, Any]:
    name = f"replicas_k{k}_{secrets.token_hex(4)}"
    with (
        fresh_database(server_url, name, synchronous_commit=not args.no_synchronous_commit) as url,
        tempfile.TemporaryDirectory(prefix="labelbot-vectors-") as vdir,
    ):
        classes_of, setup = build_project(url, vdir, args, k)
        runs_before = last_run_id(url)
        load_before = os.getloadavg()
        context = multiprocessing.get_context("spawn")
        events = context.Queue()
        children: list[Any] = []

        def child(target: Any, *child_args: Any) -> Any:
            """Start ``target(pipe end, *child_args)`` in a process; the other end of the pipe."""
            here, there = context.Pipe()
            # Not daemonic: a replica starts its training worker process.
            process = context.Process(target=target, args=(there, *child_args))
            process.start()
            there.close()  # a child that dies ends recv() with EOFError instead of a hang
            children.append(process)
            return here

        try:
            to_standin = child(latency._standin_process, events, args)
            started = to_standin.recv()
            if isinstance(started, str):
                raise RuntimeError(f"the stand-in failed:\n{started}")
            api_url, dms, response_urls = started
            # One after the other: two replicas opening a fresh PostgreSQL database at once can both
            # create apscheduler's job table (bot.scheduler), and one then fails to start.
            bot_pipes, bot_urls = [], []
            for _ in range(args.replicas):
                bot_pipes.append(child(_bot_process, url, vdir, api_url, args))
                bot_urls.append(bot_pipes[-1].recv())
            for answer in bot_urls:
                if not answer.startswith("http"):
                    raise RuntimeError(f"a replica failed:\n{answer}")
            to_labelers = child(_labelers_process, events, args, classes_of)
            to_labelers.send((bot_urls, dms, response_urls))
            raw, problems, elapsed, handed = to_labelers.recv()
            load_after = os.getloadavg()
            replicas = []
            for pipe in bot_pipes:
                pipe.send("stop")
                replicas.append(pipe.recv())
            to_standin.send("stop")
            to_standin.recv()
            events.put(None)
            for process in children:
                process.join(timeout=60)
        finally:
            for process in children:
                if process.is_alive():
                    process.terminate()
                    process.join(timeout=10)
        for answer in replicas:
            if isinstance(answer, str):
                problems.append(f"a replica failed at shutdown:\n{answer}")
        clicks = [Click(**c) for c in raw]
        checks = check_database(url, clicks, handed, k, runs_before)
    replicas = [r for r in replicas if isinstance(r, dict)]
    return report(args, k, setup, clicks, problems, elapsed, checks, replicas, load_before, load_after)


def last_run_id(url: str) -> int:
    engine = create_engine(url)
    try:
        with reading(engine) as conn:
            return conn.execute(select(func.max(ModelRun.id))).scalar() or 0
    finally:
        engine.dispose()


def check_database(
    url: str, clicks: list[Click], handed: list[tuple[str, int]], k: int, runs_before: int
) -> dict[str, Any]:
    engine = create_engine(url)
    try:
        with reading(engine) as conn:
            answers = Counter(
                (rid, who)
                for rid, who in conn.execute(
                    select(Annotation.record_id, Annotation.annotator).where(Annotation.annotator != "seed")
                ).all()
            )
            per_record = Counter(rid for rid, _ in answers)
            counts = dict(conn.execute(select(Record.id, Record.n_answers)).all())
            all_answers = Counter(conn.execute(select(Annotation.record_id)).scalars())
            runs = conn.execute(
                select(ModelRun.id, ModelRun.created_at, ModelRun.duration_seconds)
                .where(ModelRun.id > runs_before)
                .order_by(ModelRun.created_at)
            ).all()
    finally:
        engine.dispose()
    acked = {(c.record_id, c.user) for c in clicks if c.status == 200 or c.copy_status == 200}
    handed_to = defaultdict(set)
    for user, rid in handed:
        handed_to[rid].add(user)
    intervals = [(created - timedelta(seconds=seconds), created) for _, created, seconds in runs]
    overlaps = sum(1 for (_, end), (start, _) in itertools.pairwise(intervals) if start < end)
    return {
        "lost": len(acked - set(answers)),
        "duplicated": sum(n - 1 for n in answers.values()) + len(set(answers) - acked),
        "answered_over_k": sum(n > k for n in per_record.values()),
        "handed_over_k": sum(len(users) > k for users in handed_to.values()),
        "handed_twice_to_one_labeler": sum(n > 1 for n in Counter(handed).values()),
        "wrong_answer_counts": sum(counts.get(rid, 0) != n for rid, n in all_answers.items())
        + sum(1 for rid, n in counts.items() if n and rid not in all_answers),
        "retrains": len(runs),
        "overlapping_retrains": overlaps,
    }


def report(
    args: argparse.Namespace,
    k: int,
    setup: dict,
    clicks: list[Click],
    problems: list[str],
    elapsed: float,
    checks: dict,
    replicas: list[dict],
    load_before: tuple,
    load_after: tuple,
) -> dict[str, Any]:
    ack = latency.percentiles([c.ack_ms for c in clicks])
    nxt = latency.percentiles([c.next_ms for c in clicks if c.next_ms is not None])
    copies = [c for c in clicks if c.copy]
    copy_ack = latency.percentiles([c.copy_ack_ms for c in copies if c.copy_ack_ms is not None])
    bad = sum(c.status != 200 for c in clicks) + sum(c.copy_status != 200 for c in copies)
    measured = {"ack_p99": ack.get("p99"), "next_p95": nxt.get("p95")}
    verdicts = {
        name: measured[name] is not None and measured[name] < limit for name, limit in TARGETS.items()
    }
    correct = all(
        checks[name] == 0
        for name in (
            "lost",
            "duplicated",
            "answered_over_k",
            "handed_over_k",
            "handed_twice_to_one_labeler",
            "wrong_answer_counts",
            "overlapping_retrains",
        )
    )
    statements = sum(r["statements"] for r in replicas)
    transactions = sum(r["transactions"] for r in replicas)
    print(
        f"\nk={k}: {len(clicks)} clicks by {args.labelers} labelers in {elapsed:.1f} s (think time "
        f"{args.think_ms:.0f} ms) on {args.replicas} replicas, round robin per request; {len(copies)} "
        f"delivered twice ({sum(c.copy == 'at once' for c in copies)} at once, "
        f"{sum(c.copy == 'after ack' for c in copies)} after the ack)"
    )
    print(
        f"load average (1, 5, 15 min) before {', '.join(f'{x:.1f}' for x in load_before)}, after "
        f"{', '.join(f'{x:.1f}' for x in load_after)}; {os.cpu_count()} CPUs shared by everything"
    )
    print(f"{'ms':<24}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}")
    for label, figures in (
        ("click -> ack", ack),
        ("click -> next card", nxt),
        ("second delivery -> ack", copy_ack),
    ):
        if figures:
            print(
                f"{label:<24}{figures['p50']:>9.1f}{figures['p95']:>9.1f}{figures['p99']:>9.1f}"
                f"{figures['max']:>9.1f}"
            )
    for i, r in enumerate(replicas):
        print(f"replica {i}: {r['role']}, {r['retrains']} retrains on its worker, CPU {r['cpu_s']} s")
    print(
        f"SQL per click, both replicas (second deliveries, leases and scheduler included): "
        f"{statements / max(1, len(clicks)):.1f} statements in {transactions / max(1, len(clicks)):.1f} "
        "transactions"
    )
    print(
        "database: "
        + ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in checks.items())
        + f" -> {'CORRECT' if correct else 'WRONG'}"
    )
    for name, limit in TARGETS.items():
        shown = "n/a" if measured[name] is None else f"{measured[name]:.1f}"
        print(f"{name} {shown} ms (target < {limit:g}): {'PASS' if verdicts[name] else 'FAIL'}")
    for problem in problems[:10]:
        print(f"problem: {problem}")
    if bad:
        print(f"problem: {bad} requests were not answered 200")
    return {
        "k": k,
        "setup": setup,
        "clicks": len(clicks),
        "second_deliveries": len(copies),
        "elapsed_s": round(elapsed, 1),
        "click_to_ack_ms": ack,
        "click_to_next_card_ms": nxt,
        "second_delivery_ack_ms": copy_ack,
        "non_200": bad,
        "checks": checks,
        "correct": correct,
        "verdicts": verdicts,
        "replicas": replicas,
        "problems": problems,
        "sql_per_click": {
            "statements": round(statements / max(1, len(clicks)), 2),
            "transactions": round(transactions / max(1, len(clicks)), 2),
        },
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--database-url",
        default="",
        help="a PostgreSQL server to make the runs' databases on (default: a throwaway cluster)",
    )
    parser.add_argument("--k", type=int, nargs="+", default=[1, 2], help="answers per record, one run each")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--labelers", type=int, default=20)
    parser.add_argument("--clicks", type=int, default=25, help="clicks per labeler")
    parser.add_argument(
        "--think-ms", type=float, default=3000.0, help="mean pause before each click (0.5x-1.5x)"
    )
    parser.add_argument("--duplicates", type=float, default=0.2, help="fraction of clicks delivered twice")
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--labels", type=int, default=77)
    parser.add_argument("--seed-labels", type=int, default=1_000)
    parser.add_argument("--retrain-every", type=int, default=_DEFAULTS.retrain_every)
    parser.add_argument("--retrain-cooldown", type=float, default=_DEFAULTS.retrain_cooldown)
    parser.add_argument("--queue-size", type=int, default=_DEFAULTS.queue_size)
    parser.add_argument(
        "--no-synchronous-commit", action="store_true", help="commits do not wait for the WAL flush"
    )
    parser.add_argument("--validate-slack", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "replicas.json")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        server = args.database_url or stack.enter_context(throwaway_cluster())
        runs = [run_once(server, args, k) for k in args.k]
    result = {
        "config": {
            key: (str(v) if isinstance(v, Path) else v)
            for key, v in vars(args).items()
            if key != "database_url"
        },
        "server": "given" if args.database_url else "throwaway cluster (fsync and synchronous commit on)",
        "runs": runs,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"Wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
