"""Fault injection against the real ``labelbot serve`` (issue 12's "Done when" figures).

Every scenario runs ``labelbot serve --http`` as a subprocess on a fresh SQLite database (hashing
embedder, a few thousand synthetic records), its WebClient pointed at the Slack Web API stand-in
(``bot.standin.SlackStandIn``) in this process. Simulated labelers send signed ``/label next`` and
label-button clicks (``SlackRequestSender``) for the cards that reach their DMs in the stand-in.

- ``kill9``: labelers click while serve is killed with SIGKILL at random moments (``--kills`` times)
  and restarted; every click that got HTTP 200 must be in the database afterwards (lost = 0).
- ``webapi_faults``: a 429 storm, 5xx bursts and a 15 s outage of the Web API (a TCP proxy here
  between serve and the stand-in resets every connection) while labelers click; ack latency of every
  click, then, with labelers paused once Slack is back, how many received a fresh card within
  ``--recovery`` seconds, and how many were sent the same record twice.
- ``stalled``: 40 connections send part of their headers and stall while other users click; when the
  server closed each one, and the others' ack latency meanwhile.
- ``big_body``: a 20 MB unsigned POST: the answer, how much the client could send before the server
  answered or closed (loopback socket buffers included), serve's RSS before and after.
- ``sigterm``: SIGTERM to serve with its workers running: exit code, time to exit, processes left.

    .venv/bin/python bench/reliability.py                      # all scenarios, writes bench/results/
    .venv/bin/python bench/reliability.py --scenario kill9 --kills 8
    .venv/bin/python bench/reliability.py --quick              # fewer labelers and kills
    .venv/bin/python bench/reliability.py --code HEAD          # serve runs a commit, not the working tree

Ack latencies are measured in this process, which also runs the stand-in and the labelers' threads, on
a shared machine: read them beside the load average printed with the table. A rerun of one scenario
replaces only that scenario's entry in the JSON; each entry records the code serve ran and the load.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from bot import ids  # noqa: E402
from bot.server import EVENTS_PATH  # noqa: E402
from bot.standin import SlackRequestSender, SlackStandIn  # noqa: E402
from bot.standin.signing import action_from_blocks  # noqa: E402
from tests.processes import descendants, free_port  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "reliability.json"
CODE = ROOT  # the source tree serve runs: this checkout, or a commit exported by --code
TEMPORARY: list[Path] = []  # directories made here (databases, serve logs, exported code); --keep keeps them
SERVE = [sys.executable, "-c", "from bot.cli import app; app()", "serve", "--http"]
BOT_TOKEN = "xoxb-bench"
SIGNING_SECRET = "bench-signing-secret"
CHANNEL = "CBENCH"
PROJECT = "bench"
LABELS = ["spam", "ham"]
GIVE_UP = 180.0  # seconds before a wait for serve is a failure (the CPU is shared)


# ------------------------------------------------------------------------------------------ processes


def cmdline(pid: int) -> str | None:
    """The command line of a live, non-zombie ``pid``; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            if handle.read().rpartition(")")[2].split()[0] == "Z":
                return None
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None


def still_alive(snapshot: dict[int, str | None]) -> list[str]:
    """Processes from ``snapshot`` (pid -> command line) still running the same command."""
    return [f"{pid} {line[:100]}" for pid, line in snapshot.items() if line and cmdline(pid) == line]


def rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


@dataclass
class Workspace:
    """A temporary directory with a database holding one project of ``records`` synthetic messages."""

    root: Path
    database_url: str
    vector_dir: str

    @classmethod
    def create(cls, records: int) -> Workspace:
        """Made by the code serve runs (``CODE``), in a subprocess: its migrations decide the tables."""
        root = Path(tempfile.mkdtemp(prefix="labelbot-reliability-"))
        TEMPORARY.append(root)
        space = cls(root, f"sqlite:///{root / 'bench.db'}", str(root / "vectors"))
        env = {**os.environ, "PYTHONPATH": str(CODE), "HF_HUB_OFFLINE": "1"}
        setup = [sys.executable, "-c", _SETUP, space.database_url, space.vector_dir, str(records),
                 PROJECT, *LABELS]
        subprocess.run(setup, cwd=root, env=env, check=True)
        return space

    def answers(self) -> dict[tuple[str, int], str]:
        """(annotator, record id) -> label of every answer stored."""
        engine = sa.create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT annotator, record_id, label FROM annotation")).all()
        finally:
            engine.dispose()
        return {(str(a), int(r)): str(label) for a, r, label in rows}


_SETUP = """
import random, sys
from core.config import Settings
from core.embeddings import HashingEmbedder
from core.io import ImportRow
from core.service import LabelingService

url, vector_dir, records, project, *labels = sys.argv[1:]
settings = Settings(_env_file=None, database_url=url, vector_dir=vector_dir, embedding_model="hashing-64")
service = LabelingService(settings, embedder=HashingEmbedder(64))
service.create_project(project, labels)
words = ["win", "free", "prize", "meeting", "lunch", "call", "today", "now", "offer", "home"]
rng = random.Random(12)
rows = [ImportRow(line=i + 2, external_id=str(i), text=f"message {i}: " + " ".join(rng.choices(words, k=8)))
        for i in range(int(records))]
service.import_rows(project, rows)
service.close()
"""


class Serve:
    """``labelbot serve --http`` as a subprocess on ``space``, talking to the Web API at ``api_url``."""

    def __init__(self, space: Workspace, api_url: str, name: str) -> None:
        self.space = space
        self.port = free_port()
        self.log_path = space.root / f"{name}.log"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(CODE),
            "HF_HUB_OFFLINE": "1",
            "LABELBOT_DATABASE_URL": space.database_url,
            "LABELBOT_VECTOR_DIR": space.vector_dir,
            "LABELBOT_EMBEDDING_MODEL": "hashing-64",
            "LABELBOT_HOST": "127.0.0.1",
            "LABELBOT_PORT": str(self.port),
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": api_url,
        }
        self.env.pop("SLACK_APP_TOKEN", None)
        self.process: subprocess.Popen[bytes] | None = None
        self.started: list[subprocess.Popen[bytes]] = []  # every process started, to clean up

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{EVENTS_PATH}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> float:
        """Start serve and wait until /healthz answers 200; returns the seconds that took."""
        began = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(SERVE, cwd=self.space.root, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT)
        self.started.append(self.process)
        while not self.healthy():
            if self.process.poll() is not None:
                raise RuntimeError(f"serve ended during start-up:\n{self.log_tail()}")
            if time.monotonic() - began > GIVE_UP:
                raise RuntimeError(f"serve did not answer /healthz in {GIVE_UP:.0f} s:\n{self.log_tail()}")
            time.sleep(0.1)
        return time.monotonic() - began

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5) as reply:
                return reply.status == 200
        except OSError:
            return False

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def tracebacks(self) -> int:
        return self.log_path.read_text(errors="replace").count("Traceback")

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def cleanup(self) -> None:
        """Kill whatever this bench started and is still running (serve and what it left behind)."""
        for process in self.started:
            for pid in descendants(process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if process.poll() is None:
                process.kill()
                process.wait()


# ------------------------------------------------------------------------------------- Web API proxy


class FlakyProxy:
    """A TCP proxy to the stand-in that can be taken down: while down, every new connection is reset at
    once and every open one is cut, as when Slack's Web API is unreachable."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.up = True
        self.resets = 0
        self._open: set[socket.socket] = set()
        self._clients: set[socket.socket] = set()  # the sockets of serve's connections
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def set_down(self) -> None:
        with self._lock:
            self.up = False
            for sock in self._open:  # serve's side is reset; the stand-in's side just closed (no noise)
                if sock in self._clients:
                    _reset(sock)
                else:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                        sock.close()
            self._open.clear()
            self._clients.clear()

    def set_up(self) -> None:
        with self._lock:
            self.up = True

    def close(self) -> None:
        self._closed = True
        self.set_down()
        self.listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                if not self.up:
                    self.resets += 1
                    _reset(client)
                    continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open |= {client, upstream}
                self._clients.add(client)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(source)
                self._clients.discard(source)
            with contextlib.suppress(OSError):
                source.close()


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), so the other side sees a reset connection, not a clean end."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        sock.close()


# ------------------------------------------------------------------------------------------- labelers


@dataclass
class Click:
    user: str
    record_id: int
    label: str
    sent: float  # time.monotonic() when sent
    seconds: float  # until the answer (or the error)
    status: int | None  # HTTP status; None when there was no HTTP answer
    error: str | None = None
    phase: str = ""


def card_record(blocks: list[dict]) -> tuple[int, list[tuple[str, str, str]]] | None:
    """The record id of a label card and its buttons (action id, value, label text); None otherwise."""
    buttons = []
    for block in blocks or []:
        if block.get("type") != "actions":
            continue
        for element in block.get("elements", []):
            action_id = element.get("action_id", "")
            if element.get("type") == "button" and ids.LABEL_CHOICE_RE.fullmatch(action_id):
                buttons.append((action_id, element["value"], element["text"]["text"]))
    if not buttons:
        return None
    return ids.parse_label_value(buttons[0][1]).record_id, buttons


class Crowd:
    """``n`` labelers in threads: each clicks a random label on its newest unclicked card, and (when
    ``ask_next``) sends ``/label next`` after ``ask_after`` seconds without a card."""

    def __init__(self, standin: SlackStandIn, n: int, think: tuple[float, float] = (0.3, 1.0)) -> None:
        self.standin = standin
        self.users = [f"UL{i:03d}" for i in range(n)]
        for user in self.users:
            standin.add_user(user, user.lower())
        self.think = think
        self.url = ""
        self.clicks: list[Click] = []
        self.commands: list[Click] = []
        self.clicked: dict[str, set[str]] = {u: set() for u in self.users}  # message ts clicked
        self.phase = ""
        self.ask_next = True
        self.ask_after = 3.0
        self.cards_each = 1  # what /label next asks for
        self.paused = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._rng = random.Random(7)

    def sender(self) -> SlackRequestSender:
        return SlackRequestSender(self.url, SIGNING_SECRET, standin=self.standin, timeout=60.0)

    def unclicked_cards(self, user: str) -> list[dict]:
        return [m for m in self.standin.messages(self.standin.dm_channel(user))
                if m["ts"] not in self.clicked[user] and card_record(m.get("blocks", []))]

    def fresh_card(self, user: str) -> dict | None:
        """The user's newest card with label buttons that they have not clicked."""
        for message in reversed(self.standin.messages(self.standin.dm_channel(user))):
            if message["ts"] not in self.clicked[user] and card_record(message.get("blocks", [])):
                return message
        return None

    def label_next(self, user: str, cards: int = 1) -> Click:
        began = time.monotonic()
        status, error = None, None
        text = "next" if cards == 1 else f"next {cards}"
        try:
            status = self.sender().slash_command("/label", text, user_id=user, channel_id=CHANNEL).status
        except (OSError, urllib.error.URLError) as exc:
            error = type(exc).__name__ + ": " + str(exc)[:80]
        command = Click(user, -1, "", began, time.monotonic() - began, status, error, self.phase)
        with self._lock:
            self.commands.append(command)
        return command

    def click(self, user: str, card: dict) -> Click:
        record_id, buttons = card_record(card["blocks"])  # type: ignore[misc]
        action_id, value, label = self._rng.choice(buttons)
        action = action_from_blocks(card, action_id, value=value)
        self.clicked[user].add(card["ts"])
        began = time.monotonic()
        status, error = None, None
        try:
            status = self.sender().block_actions(
                user, [action], channel_id=self.standin.dm_channel(user), message=card
            ).status
        except (OSError, urllib.error.URLError) as exc:
            error = type(exc).__name__ + ": " + str(exc)[:80]
        click = Click(user, record_id, label, began, time.monotonic() - began, status, error, self.phase)
        with self._lock:
            self.clicks.append(click)
        return click

    def _run(self, user: str) -> None:
        rng = random.Random(user)
        last_card = time.monotonic()
        while not self._stop.is_set():
            if self.paused.is_set():
                self._stop.wait(0.1)
                last_card = time.monotonic()
                continue
            card = self.fresh_card(user)
            if card is None:
                if self.ask_next and time.monotonic() - last_card > self.ask_after:
                    self.label_next(user, self.cards_each)
                    last_card = time.monotonic()
                self._stop.wait(0.2)
                continue
            self.click(user, card)
            last_card = time.monotonic()
            self._stop.wait(rng.uniform(*self.think))

    def start(self) -> Crowd:
        for user in self.users:
            thread = threading.Thread(target=self._run, args=(user,), daemon=True, name=f"labeler-{user}")
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(120)

    def delivered_records(self) -> dict[str, list[int]]:
        """Per labeler, the record of every label card the bot posted (chat.postMessage answered ok)."""
        by_channel = {self.standin.dm_channel(u): u for u in self.users}
        out: dict[str, list[int]] = {u: [] for u in self.users}
        for call in self.standin.calls_to("chat.postMessage"):
            if not call.ok or not call.response:
                continue
            user = by_channel.get(call.response.get("channel", ""))
            blocks = call.params.get("blocks")
            if isinstance(blocks, str):
                blocks = json.loads(blocks)
            found = card_record(blocks or [])
            if user and found:
                out[user].append(found[0])
        return out

    def same_card_twice(self) -> dict[str, int]:
        """Labelers sent one record in more than one card: user -> how many such records."""
        out = {}
        for user, records in self.delivered_records().items():
            twice = len(records) - len(set(records))
            if twice:
                out[user] = twice
        return out


def latency_summary(clicks: list[Click]) -> dict[str, Any]:
    """Ack latency figures of ``clicks`` (seconds), with how many got which answer."""
    answered = sorted(c.seconds for c in clicks if c.status is not None)
    statuses: dict[str, int] = {}
    for c in clicks:
        key = str(c.status) if c.status is not None else (c.error or "error").split(":")[0]
        statuses[key] = statuses.get(key, 0) + 1
    out: dict[str, Any] = {"clicks": len(clicks), "answers": statuses}
    if answered:
        out.update({
            "ack_p50_s": round(statistics.median(answered), 3),
            "ack_p99_s": round(answered[min(len(answered) - 1, int(0.99 * len(answered)))], 3),
            "ack_max_s": round(answered[-1], 3),
            "acks_over_1s": sum(1 for s in answered if s > 1.0),
        })
    return out


@contextlib.contextmanager
def running_standin(crowd_size: int) -> Iterator[tuple[SlackStandIn, Crowd]]:
    # validate=False: the stand-in's Block Kit checks cost this process CPU the bot's acks would wait on
    standin = SlackStandIn(bot_token=BOT_TOKEN, validate=False).start()
    standin.add_channel(CHANNEL, "general")
    crowd = Crowd(standin, crowd_size)
    try:
        yield standin, crowd
    finally:
        crowd.stop()
        standin.stop()


def wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


# ------------------------------------------------------------------------------------------ scenarios


def scenario_kill9(args: argparse.Namespace) -> dict[str, Any]:
    space = Workspace.create(args.records)
    rng = random.Random(9)
    with running_standin(args.labelers) as (standin, crowd):
        serve = Serve(space, standin.base_url, "kill9")
        try:
            starts = [serve.start()]
            crowd.url = serve.url
            crowd.start()
            kills: list[dict[str, Any]] = []
            watchers: list[threading.Thread] = []
            for _ in range(args.kills):
                time.sleep(rng.uniform(2.0, 6.0))
                family = {pid: cmdline(pid) for pid in descendants(serve.pid)}
                killed_at = time.monotonic()
                os.kill(serve.pid, signal.SIGKILL)
                serve.process.wait()  # type: ignore[union-attr]
                kill: dict[str, Any] = {"family": family}
                watcher = threading.Thread(target=_watch_orphans, args=(family, killed_at, kill), daemon=True)
                watcher.start()
                watchers.append(watcher)
                starts.append(serve.start())
                kill["down_s"] = round(time.monotonic() - killed_at, 2)
                kills.append(kill)
            time.sleep(5.0)
            crowd.stop()
            time.sleep(1.0)  # answers in flight when the last ack came back
            rc = serve.stop()
            for watcher in watchers:
                watcher.join(ORPHAN_WAIT + 5)
        finally:
            serve.cleanup()
            for kill in kills:  # orphans are no longer below serve: end them from the snapshots
                for pid, line in kill["family"].items():
                    if line and cmdline(pid) == line:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
        stored = space.answers()
        acked = [c for c in crowd.clicks if c.status == 200]
        lost = [c for c in acked if (c.user, c.record_id) not in stored]
        other_label = [c for c in acked if stored.get((c.user, c.record_id), c.label) != c.label]
        not_acked_stored = [c for c in crowd.clicks if c.status != 200 and (c.user, c.record_id) in stored]
        return {
            "labelers": args.labelers, "records": args.records, "kills": len(kills),
            "clicks": len(crowd.clicks), "acked": len(acked),
            "acked_stored": len(acked) - len(lost), "lost": len(lost),
            "lost_examples": [f"{c.user} record {c.record_id}" for c in lost[:5]],
            "acked_stored_with_another_label": len(other_label),
            "refused_or_failed_while_down": sum(1 for c in crowd.clicks if c.status is None),
            "non_200_answers": sum(1 for c in crowd.clicks if c.status not in (None, 200)),
            "not_acked_but_stored": len(not_acked_stored),
            "label_next_sent": len(crowd.commands),
            "same_card_twice": crowd.same_card_twice(),
            "restart_s": [round(s, 2) for s in starts],
            "downtimes_s": [k["down_s"] for k in kills],
            "workers_per_kill": [len(k["family"]) for k in kills],
            "workers_gone_after_kill_s": [k.get("gone_after_s") for k in kills],
            "processes_left_after_kills": [p for k in kills for p in k.get("left", [])],
            "serve_exit_code_at_end": rc,
            "tracebacks_in_log": serve.tracebacks(),
            "ack_latency": latency_summary(acked),
        }


ORPHAN_WAIT = 30.0  # seconds a killed serve's workers get to end before they count as left behind


def _watch_orphans(family: dict[int, str | None], killed_at: float, into: dict[str, Any]) -> None:
    """When the processes of ``family`` are all gone after a kill (into ``gone_after_s``), or which are
    still running ``ORPHAN_WAIT`` seconds later (into ``left``)."""
    while still_alive(family) and time.monotonic() - killed_at < ORPHAN_WAIT:
        time.sleep(0.1)
    left = still_alive(family)
    into["left"] = left
    into["gone_after_s"] = None if left else round(time.monotonic() - killed_at, 2)


def _faults_taken(standin: SlackStandIn, since: float, method: str, status: int) -> int:
    return sum(1 for c in standin.calls_to(method) if c.time >= since and c.status == status)


def scenario_webapi_faults(args: argparse.Namespace) -> dict[str, Any]:
    space = Workspace.create(args.records)
    out: dict[str, Any] = {"labelers": args.labelers, "records": args.records, "cards_each": args.cards_each}
    with running_standin(args.labelers) as (standin, crowd):
        proxy = FlakyProxy(standin.port)
        serve = Serve(space, proxy.base_url, "webapi_faults")
        try:
            serve.start()
            crowd.url = serve.url
            crowd.phase = "warm-up"
            crowd.cards_each = args.cards_each  # a few cards each: more clicks while Slack fails
            crowd.start()
            if not wait_until(lambda: all(crowd.fresh_card(u) for u in crowd.users), 120):
                raise RuntimeError(f"not every labeler got a first card; serve's log ends:\n"
                                   f"{serve.log_tail(12)}")
            time.sleep(3.0)
            crowd.ask_next = False  # from here a labeler without a card waits: stuck is what we measure
            wait_until(lambda: all(len(crowd.unclicked_cards(u)) >= args.cards_each for u in crowd.users), 30)
            n = args.labelers
            faults: list[tuple[str, list[tuple[str, int, int, int]]]] = [
                ("429_storm", [("chat.update", 429, 2, 2 * n), ("chat.postMessage", 429, 2, 2 * n)]),
                ("5xx_bursts", [("chat.update", 500, 0, n), ("chat.postMessage", 503, 0, n),
                                ("chat.update", 503, 0, n)]),
                ("outage_15s", []),
            ]
            for name, injected in faults:
                out[name] = _one_fault(name, injected, args, standin, crowd, proxy)
            crowd.stop()
            out["same_card_twice"] = crowd.same_card_twice()
            out["proxy_resets"] = proxy.resets
            out["serve_exit_code_at_end"] = serve.stop()
            out["tracebacks_in_log"] = serve.tracebacks()
        finally:
            serve.cleanup()
            proxy.close()
        stored = space.answers()
        acked = [c for c in crowd.clicks if c.status == 200]
        out["acked"] = len(acked)
        out["lost"] = sum(1 for c in acked if (c.user, c.record_id) not in stored)
    return out


def _one_fault(
    name: str, injected: list[tuple[str, int, int, int]], args: argparse.Namespace, standin: SlackStandIn,
    crowd: Crowd, proxy: FlakyProxy,
) -> dict[str, Any]:
    for user in crowd.users:  # each labeler holds cards_each cards when the fault starts
        missing = args.cards_each - len(crowd.unclicked_cards(user))
        if missing > 0:
            crowd.label_next(user, missing)
    wait_until(lambda: all(len(crowd.unclicked_cards(u)) >= args.cards_each for u in crowd.users), 30)
    held = min(len(crowd.unclicked_cards(u)) for u in crowd.users)
    crowd.phase = name
    began = time.monotonic()
    if injected:
        for method, status, retry_after, times in injected:
            standin.fail_next(method, status=status, retry_after=retry_after, times=times)
        needs: dict[tuple[str, int], int] = {}
        for method, status, _, times in injected:
            needs[(method, status)] = needs.get((method, status), 0) + times

        def consumed() -> bool:
            return all(_faults_taken(standin, began, m, s) >= k for (m, s), k in needs.items())

        all_taken = wait_until(consumed, args.fault_cap)
        taken = {f"{m} {s}": _faults_taken(standin, began, m, s) for (m, s) in needs}
        if not all_taken:  # the bot stopped calling: drop the faults left, so Slack is back for good
            with standin._lock:  # the stand-in has no public way to cancel faults
                standin._faults.clear()
    else:
        proxy.set_down()
        time.sleep(15.0)
        proxy.set_up()
        all_taken, taken = True, {"connections_reset": proxy.resets}
    ended = time.monotonic()
    crowd.paused.set()  # labelers stop clicking: does each get a card without asking?
    time.sleep(0.5)
    empty_handed = sum(1 for u in crowd.users if not crowd.unclicked_cards(u))
    got_card: dict[str, float] = {}

    def everyone_has_a_card() -> bool:
        for user in crowd.users:
            if user not in got_card and crowd.fresh_card(user) is not None:
                got_card[user] = time.monotonic() - ended
        return len(got_card) == len(crowd.users)

    wait_until(everyone_has_a_card, args.recovery)
    stuck = [u for u in crowd.users if u not in got_card]
    clicks = [c for c in crowd.clicks if c.phase == name]
    result = {
        "fault_seconds": round(ended - began, 1),
        "faults_taken": taken,
        "all_faults_taken": all_taken,
        **latency_summary(clicks),
        "fewest_cards_held_at_start": held,
        "labelers_who_clicked": len({c.user for c in clicks}),
        "labelers_without_a_card_when_slack_came_back": empty_handed,
        "labelers_with_a_fresh_card": len(got_card),
        "labelers_stuck": len(stuck),
        "fresh_card_after_s_max": round(max(got_card.values()), 1) if got_card else None,
    }
    for user in stuck:  # back to work for the next fault: the stuck ones ask
        crowd.label_next(user)
    wait_until(lambda: all(crowd.fresh_card(u) for u in crowd.users), 60)
    result["still_without_a_card_after_label_next"] = sum(1 for u in crowd.users if not crowd.fresh_card(u))
    crowd.paused.clear()
    time.sleep(2.0)
    return result


def scenario_stalled(args: argparse.Namespace) -> dict[str, Any]:
    space = Workspace.create(args.records)
    with running_standin(5) as (standin, crowd):
        serve = Serve(space, standin.base_url, "stalled")
        try:
            serve.start()
            crowd.url = serve.url
            crowd.phase = "before"
            crowd.start()
            time.sleep(5.0)
            crowd.phase = "stalled"
            closed_after: list[float | None] = [None] * args.stalled
            began = time.monotonic()

            def stall(i: int) -> None:
                try:
                    sock = socket.create_connection(("127.0.0.1", serve.port), timeout=10)
                    sock.sendall(b"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
                    sock.settimeout(args.stall_wait)
                    while sock.recv(4096):
                        pass
                    closed_after[i] = time.monotonic() - began
                except TimeoutError:
                    pass
                except OSError:  # reset by the server: closed too
                    closed_after[i] = time.monotonic() - began
                finally:
                    with contextlib.suppress(OSError, UnboundLocalError):
                        sock.close()

            threads = [threading.Thread(target=stall, args=(i,), daemon=True) for i in range(args.stalled)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(args.stall_wait + 30)
            crowd.phase = "after"
            time.sleep(3.0)
            crowd.stop()
            rc = serve.stop()
        finally:
            serve.cleanup()
    closed = [s for s in closed_after if s is not None]
    return {
        "stalled_connections": args.stalled,
        "closed_by_server": len(closed),
        "all_closed_after_s": round(max(closed), 2) if len(closed) == args.stalled else None,
        "first_closed_after_s": round(min(closed), 2) if closed else None,
        "gave_up_waiting_after_s": args.stall_wait,
        "other_users": len(crowd.users),
        "acks_while_stalled": latency_summary([c for c in crowd.clicks if c.phase == "stalled"]),
        "acks_before": latency_summary([c for c in crowd.clicks if c.phase == "before"]),
        "serve_exit_code_at_end": rc,
        "tracebacks_in_log": serve.tracebacks(),
    }


def scenario_big_body(args: argparse.Namespace) -> dict[str, Any]:
    space = Workspace.create(50)
    size = args.big_mb * 1_000_000
    with running_standin(0) as (standin, _):
        serve = Serve(space, standin.base_url, "big_body")
        try:
            serve.start()
            time.sleep(2.0)
            rss_before = rss_kib(serve.pid)
            sock = socket.create_connection(("127.0.0.1", serve.port), timeout=30)
            # A small send buffer, so "bytes sent" is close to what the server's socket took in.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
            head = (f"POST {EVENTS_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {size}\r\n\r\n")
            began = time.monotonic()
            sock.sendall(head.encode())
            sent, stopped_by = 0, "sent everything"
            chunk = b"payload=" + b"x" * 65528
            sock.settimeout(5.0)
            while sent < size:
                try:
                    sent += sock.send(chunk[: size - sent])
                except (BrokenPipeError, ConnectionResetError) as exc:
                    stopped_by = type(exc).__name__
                    break
                except TimeoutError:
                    stopped_by = "send blocked 5 s (the server reads no more)"
                    break
            answer = b""
            with contextlib.suppress(OSError):
                sock.settimeout(10.0)
                while data := sock.recv(65536):
                    answer += data
            sock.close()
            seconds = time.monotonic() - began
            time.sleep(1.0)
            rss_after = rss_kib(serve.pid)
            still_healthy = serve.healthy()
            rc = serve.stop()
        finally:
            serve.cleanup()
    status_line = answer.split(b"\r\n", 1)[0].decode(errors="replace")
    return {
        "body_bytes": size,
        "answer": status_line or "(none)",
        "client_sent_bytes": sent,
        "client_sent_note": "includes what loopback socket buffers took in (a few 100 KiB)",
        "client_stopped_by": stopped_by,
        "seconds_to_answer": round(seconds, 2),
        "serve_rss_kib_before": rss_before,
        "serve_rss_kib_after": rss_after,
        "serve_healthy_after": still_healthy,
        "serve_exit_code_at_end": rc,
        "tracebacks_in_log": serve.tracebacks(),
    }


def scenario_sigterm(args: argparse.Namespace) -> dict[str, Any]:
    space = Workspace.create(args.records)
    runs = []
    with running_standin(3) as (standin, crowd):
        for i in range(args.sigterms):
            serve = Serve(space, standin.base_url, f"sigterm{i}")
            try:
                serve.start()
                crowd.url = serve.url
                for user in crowd.users:  # work in flight: cards, answers, a retrain
                    crowd.label_next(user)
                    card = None
                    if wait_until(lambda u=user: crowd.fresh_card(u) is not None, 30):
                        card = crowd.fresh_card(user)
                    if card is not None:
                        crowd.click(user, card)
                time.sleep(2.0)
                family = {pid: cmdline(pid) for pid in descendants(serve.pid)}
                began = time.monotonic()
                serve.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
                try:
                    rc: int | None = serve.process.wait(60)  # type: ignore[union-attr]
                except subprocess.TimeoutExpired:
                    rc = None
                seconds = time.monotonic() - began
                time.sleep(2.0)
                log = serve.log_path.read_text(errors="replace")
                runs.append({
                    "exit_code": rc,
                    "seconds_to_exit": round(seconds, 2),
                    "processes_before": len(family),
                    "process_kinds": sorted({(line or "?").split(" -c ")[-1][:60]
                                             for line in family.values()}),
                    "clicks_acked": sum(1 for c in crowd.clicks if c.status == 200),
                    "left_behind": still_alive(family),
                    "said_stopped": "labelbot stopped." in log,
                    "tracebacks_in_log": log.count("Traceback"),
                })
            finally:
                serve.cleanup()
    return {"runs": runs}


SCENARIOS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "kill9": scenario_kill9,
    "webapi_faults": scenario_webapi_faults,
    "stalled": scenario_stalled,
    "big_body": scenario_big_body,
    "sigterm": scenario_sigterm,
}


# ------------------------------------------------------------------------------------------- reporting


def _max(values: list[float | None]) -> float | str | None:
    return "never" if None in values else max(values, default=None)  # type: ignore[type-var]


def table_rows(name: str, r: dict[str, Any]) -> list[tuple[str, str]]:
    if "error" in r:
        return [(name, f"FAILED TO RUN: {r['error']}")]
    if name == "kill9":
        return [(name, f"{r['kills']} kills: {r['acked']} acked, {r['acked_stored']} stored, "
                       f"lost {r['lost']}; {r['refused_or_failed_while_down']} clicks refused while down; "
                       f"workers gone after max {_max(r['workers_gone_after_kill_s'])} s, "
                       f"left after {ORPHAN_WAIT:.0f} s: {len(r['processes_left_after_kills'])}")]
    if name == "webapi_faults":
        rows = []
        for fault in ("429_storm", "5xx_bursts", "outage_15s"):
            f = r.get(fault, {})
            rows.append((f"{name}/{fault}",
                         f"acks max {f.get('ack_max_s')} s p99 {f.get('ack_p99_s')} s, "
                         f">1 s: {f.get('acks_over_1s')} of {f.get('clicks')}; fresh card "
                         f"{f.get('labelers_with_a_fresh_card')}/{r['labelers']} "
                         f"(stuck {f.get('labelers_stuck')})"))
        rows.append((f"{name}", f"same card twice: {sum(r['same_card_twice'].values())}; lost {r['lost']}"))
        return rows
    if name == "stalled":
        a = r["acks_while_stalled"]
        return [(name, f"{r['closed_by_server']}/{r['stalled_connections']} closed, all after "
                       f"{r['all_closed_after_s']} s; others' acks max {a.get('ack_max_s')} s "
                       f"p99 {a.get('ack_p99_s')} s ({a['clicks']} clicks)")]
    if name == "big_body":
        return [(name, f"{r['answer']}; client sent {r['client_sent_bytes']:,} of {r['body_bytes']:,} B "
                       f"({r['client_stopped_by']}); RSS {r['serve_rss_kib_before']} -> "
                       f"{r['serve_rss_kib_after']} KiB")]
    if name == "sigterm":
        return [(f"{name}#{i}", f"exit {x['exit_code']} in {x['seconds_to_exit']} s, "
                               f"{len(x['left_behind'])} of {x['processes_before']} processes left")
                for i, x in enumerate(r["runs"])]
    return [(name, json.dumps(r)[:120])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), action="append",
                        help="run this scenario (repeatable); default all")
    parser.add_argument("--quick", action="store_true", help="fewer labelers, kills and stalled sockets")
    parser.add_argument("--labelers", type=int, default=20)
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--stalled", type=int, default=40)
    parser.add_argument("--stall-wait", type=float, default=75.0,
                        help="seconds a stalled connection waits to be closed before the bench gives up")
    parser.add_argument("--big-mb", type=int, default=20)
    parser.add_argument("--sigterms", type=int, default=2)
    parser.add_argument("--recovery", type=float, default=60.0,
                        help="seconds after a Web API fault ends for each labeler's next card")
    parser.add_argument("--cards-each", type=int, default=2,
                        help="cards each labeler holds when a Web API fault starts (/label next N)")
    parser.add_argument("--fault-cap", type=float, default=45.0,
                        help="seconds at most a 429/5xx fault stays injected")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary databases and serve logs (their paths are printed)")
    parser.add_argument("--code", default=".",
                        help="what serve runs: '.' this working tree, or a git revision (exported to a "
                             "temporary directory, e.g. HEAD to leave out uncommitted work)")
    args = parser.parse_args(argv)
    global CODE
    if args.code == ".":
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                    capture_output=True, text=True).stdout.strip())
        code = commit + (" + uncommitted changes" if dirty else "")
    else:
        commit = subprocess.run(["git", "rev-parse", "--short", args.code], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
        CODE = Path(tempfile.mkdtemp(prefix=f"labelbot-{commit}-"))
        TEMPORARY.append(CODE)
        archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(CODE)], input=archive, check=True)
        code = commit
    if args.quick:
        args.labelers, args.kills, args.stalled, args.sigterms = 8, 5, 20, 1
    chosen = args.scenario or list(SCENARIOS)
    results = json.loads(args.output.read_text()) if args.output.exists() else {"scenarios": {}}
    rows: list[tuple[str, str]] = []
    for name in chosen:
        load_before = loadavg()
        began = time.monotonic()
        print(f"-- {name} (load {load_before})", flush=True)
        try:
            result = SCENARIOS[name](args)
        except Exception as exc:  # one scenario failing still reports the others
            result = {"error": f"{type(exc).__name__}: {str(exc)[:2000]}"}
        result["meta"] = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "code": code,
            "command": " ".join(["bench/reliability.py", *(argv if argv is not None else sys.argv[1:])]),
            "load_before": load_before,
            "load_after": loadavg(),
            "seconds": round(time.monotonic() - began, 1),
            "cpus": os.cpu_count(),
        }
        results["scenarios"][name] = result
        rows += table_rows(name, result)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    width = max(len(r[0]) for r in rows)
    print(f"\nload average {loadavg()} on {os.cpu_count()} CPUs; serve ran {code}")
    for left, right in rows:
        print(f"{left:<{width}}  {right}")
    print(f"wrote {args.output}")
    for path in TEMPORARY:
        if args.keep:
            print(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
