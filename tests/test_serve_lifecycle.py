"""How `labelbot serve` starts and stops (issue 12): SIGTERM and Ctrl+C stop it cleanly with exit 0, kill -9
leaves no worker behind, an unreachable Slack or a refused token ends start-up with one line, and a
labeler the bot cannot DM is told why.

Each serve runs under a small reaper script (tests/serve_reaper.py) that adopts whatever serve leaves
behind, so "no process left" is checked for every descendant, the multiprocessing resource tracker
included, not only serve's direct children.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.standin import SlackStandIn
from core.embeddings import HashingEmbedder
from core.io import ImportRow
from core.service import LabelingService
from tests.conftest import make_settings, serve_env
from tests.processes import descendants, free_port
from tests.slack_harness import ALICE, SlackHarness, start_harness

ROOT = Path(__file__).resolve().parents[1]
REAPER = Path(__file__).with_name("serve_reaper.py")
SERVE = [sys.executable, "-c", "from bot.cli import app; app()", "serve", "--http"]
GIVE_UP = 120.0  # seconds before a wait is a failure; generous, the CPU is shared


def _wait_for(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + GIVE_UP
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.2)


class Reaped:
    """A command run under tests/serve_reaper.py; ``pid`` is the command's, ``finish()`` its report."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path, cwd: Path) -> None:
        self.log = log
        self.reaper = subprocess.Popen(
            [sys.executable, str(REAPER), str(log), *command], cwd=cwd, env=env,
            stdout=subprocess.PIPE, text=True,
        )
        assert self.reaper.stdout is not None
        self.pid = int(self.reaper.stdout.readline())

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def finish(self) -> dict:
        """Wait for the command to end and its leftovers to go: ``{"rc": ..., "left": [command lines]}``."""
        out, _ = self.reaper.communicate(timeout=GIVE_UP + 60)
        return json.loads(out.strip().splitlines()[-1])

    def kill(self) -> None:
        if self.reaper.poll() is None:
            for pid in (*descendants(self.reaper.pid), self.reaper.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.reaper.wait()


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    standin = SlackStandIn(bot_token="xoxb-test").start()
    yield standin
    standin.stop()


# ---------------------------------------------------------------- stopping


def _serving(tmp_path: Path, slack: SlackStandIn) -> tuple[Reaped, int]:
    settings = make_settings(tmp_path)
    svc = LabelingService(settings, embedder=HashingEmbedder(64))
    svc.create_project("p", ["a", "b"])
    svc.import_rows("p", [ImportRow(line=i, external_id=str(i), text=f"message {i}") for i in range(5)])
    svc.close()
    port = free_port()
    env = serve_env(settings, LABELBOT_PORT=str(port), SLACK_API_URL=slack.base_url)
    serve = Reaped(SERVE, env, tmp_path / "serve.log", tmp_path)

    def healthy() -> bool:
        if serve.reaper.poll() is not None:
            pytest.fail(f"serve ended early:\n{serve.output()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as reply:
                return reply.status == 200
        except OSError:
            return False

    _wait_for(healthy, "serve to answer /healthz")
    return serve, port


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_stop_serve_cleanly_with_exit_0(
    tmp_path: Path, slack: SlackStandIn, stop: int
) -> None:
    serve, port = _serving(tmp_path, slack)
    try:
        workers = descendants(serve.pid)
        assert workers, "serve started no worker process"
        os.kill(serve.pid, stop)
        report = serve.finish()
        output = serve.output()
        assert report["rc"] == 0, output
        assert report["left"] == [], output
        assert "labelbot stopped." in output
        assert "Traceback" not in output
        with pytest.raises(OSError):  # the port is free again: nobody answers
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10)
    finally:
        serve.kill()


def test_kill_9_of_serve_leaves_no_process_behind(tmp_path: Path, slack: SlackStandIn) -> None:
    serve, _ = _serving(tmp_path, slack)
    try:
        assert descendants(serve.pid), "serve started no worker process"
        os.kill(serve.pid, signal.SIGKILL)
        report = serve.finish()
        assert report["rc"] == -signal.SIGKILL
        assert report["left"] == [], serve.output()
    finally:
        serve.kill()


_TRAINER_SCRIPT = """
import sys, time
from core.config import Settings
from core.embeddings import HashingEmbedder
from core.io import ImportRow
from core.service import LabelingService
from core.trainer import ProcessTrainer

settings = Settings(_env_file=None, database_url=sys.argv[1], vector_dir=sys.argv[2],
                    embedding_model="hashing-64")
service = LabelingService(settings, embedder=HashingEmbedder(64), background=True,
                          trainer=ProcessTrainer(settings, nice=0))
service.create_project("p", ["spam", "ham"])
service.import_rows("p", [ImportRow(line=i, external_id=str(i), text=f"text {i}") for i in range(30)])
service.wait_for_retrains(timeout=300)  # the cold-start queue, built in the training worker
print("ready", flush=True)
time.sleep(10**6)
"""


def test_the_training_worker_ends_when_its_parent_is_killed(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    command = [sys.executable, "-c", _TRAINER_SCRIPT, settings.database_url, settings.vector_dir]
    parent = Reaped(command, serve_env(settings), tmp_path / "trainer.log", tmp_path)
    try:
        _wait_for(lambda: "ready" in parent.output() or parent.reaper.poll() is not None, "the first retrain")
        assert "ready" in parent.output(), parent.output()
        assert descendants(parent.pid), "no training worker was started"
        os.kill(parent.pid, signal.SIGKILL)
        report = parent.finish()
        assert report["left"] == [], parent.output()
    finally:
        parent.kill()


def test_a_busy_worker_ends_when_its_parent_is_killed(tmp_path: Path) -> None:
    # The worker is in the middle of something (here a sleep, in a retrain a long numpy call) and does
    # not read its task pipe: only the watch on the parent ends it.
    worker = ("import os, time; from core.trainer import _die_with_parent; "
              "_die_with_parent(os.getppid()); print('ready', flush=True); time.sleep(10**6)")
    parent_script = ("import subprocess, sys, time; "
                     f"subprocess.Popen([sys.executable, '-c', {worker!r}]); time.sleep(10**6)")
    parent = Reaped([sys.executable, "-c", parent_script], serve_env(make_settings(tmp_path)),
                    tmp_path / "busy.log", tmp_path)
    try:
        _wait_for(lambda: "ready" in parent.output(), "the worker to start")
        assert len(descendants(parent.pid)) == 1
        os.kill(parent.pid, signal.SIGKILL)
        report = parent.finish()
        assert report["left"] == [], parent.output()
    finally:
        parent.kill()


# ---------------------------------------------------------------- start-up failures


def test_serve_says_in_one_line_when_slack_cannot_be_reached(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there
    url = f"http://127.0.0.1:{closed}/api/"
    env = serve_env(make_settings(tmp_path), LABELBOT_PORT=str(free_port()), SLACK_API_URL=url)
    serve = Reaped(SERVE, env, tmp_path / "serve.log", tmp_path)
    try:
        report = serve.finish()
        output = serve.output()
        assert report["rc"] != 0
        assert report["left"] == []
        assert "Traceback" not in output
        [line] = [line for line in output.splitlines() if "error:" in line]
        assert f"Cannot reach Slack at {url}" in line
    finally:
        serve.kill()


def test_serve_says_in_one_line_when_slack_refuses_the_token(tmp_path: Path, slack: SlackStandIn) -> None:
    env = serve_env(make_settings(tmp_path), LABELBOT_PORT=str(free_port()), SLACK_API_URL=slack.base_url,
               SLACK_BOT_TOKEN="xoxb-wrong")
    serve = Reaped(SERVE, env, tmp_path / "serve.log", tmp_path)
    try:
        report = serve.finish()
        output = serve.output()
        assert report["rc"] != 0
        assert report["left"] == []
        assert "Traceback" not in output
        [line] = [line for line in output.splitlines() if "error:" in line]
        assert "Slack refused the bot token (invalid_auth): check SLACK_BOT_TOKEN" in line
        assert [c.ok for c in slack.calls_to("auth.test")] == [False]
    finally:
        serve.kill()


# ---------------------------------------------------------------- a DM that cannot be opened


@pytest.fixture
def h(tmp_path: Path) -> Iterator[SlackHarness]:
    harness = start_harness(tmp_path, texts=[f"text {i}" for i in range(5)])
    yield harness
    harness.close()


def _ephemeral_text(h: SlackHarness, user: str) -> str:
    h.standin.wait_until(lambda: any(r["user"] == user for r in h.standin.responses), timeout=30)
    [response] = [r for r in h.standin.responses if r["user"] == user]
    assert response["action"] == "ephemeral"
    return json.dumps(response["payload"])


def test_label_next_tells_a_user_the_bot_cannot_dm_why(h: SlackHarness) -> None:
    ghost = "UGHOST"  # in the channel's workspace as far as the command goes, unknown to conversations.open
    assert h.command("next", user=ghost).status == 200
    text = _ephemeral_text(h, ghost)
    assert "could not open a direct message with you" in text and "user_not_found" in text
    assert h.standin.calls_to("chat.postMessage") == []


def test_label_next_names_the_missing_dm_permission(h: SlackHarness) -> None:
    h.standin.fail_next("conversations.open", status=200, error="missing_scope")
    assert h.command("next", user=ALICE).status == 200
    text = _ephemeral_text(h, ALICE)
    assert "missing_scope" in text and "im:write" in text
    assert h.cards(ALICE) == []


# ---------------------------------------------------------------- stopping the HTTP server


def test_stopping_the_server_refuses_new_connections_and_lets_a_request_in_flight_finish() -> None:
    import threading

    from bot.server import SlackHTTPServer
    from tests.test_server import make_app

    entered, release = threading.Event(), threading.Event()

    def slow(method: str, path: str, headers: dict[str, str], body: bytes):  # type: ignore[no-untyped-def]
        if path != "/slow":
            return None
        entered.set()
        release.wait(GIVE_UP)
        return 200, {"Content-Type": "text/plain"}, b"finished\n"

    server = SlackHTTPServer(make_app(), "127.0.0.1", 0, routes=[slow]).start()
    answers: list[bytes] = []

    def ask() -> None:
        with urllib.request.urlopen(f"{server.url}/slow", timeout=GIVE_UP) as reply:
            answers.append(reply.read())

    asker = threading.Thread(target=ask)
    asker.start()
    try:
        assert entered.wait(GIVE_UP)
        stopper = threading.Thread(target=server.stop)
        stopper.start()

        def refused() -> bool:
            try:
                socket.create_connection(("127.0.0.1", server.port), timeout=10).close()
            except OSError:
                return True
            return False

        _wait_for(refused, "the server to stop accepting")
        release.set()
        asker.join(GIVE_UP)
        stopper.join(GIVE_UP)
        assert answers == [b"finished\n"]
    finally:
        release.set()
        server.stop()
