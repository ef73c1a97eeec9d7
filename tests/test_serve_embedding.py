"""`labelbot serve` embeds what imports left without vectors, in its worker process, and that process
ends with serve, even when serve is killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bot.standin import SlackStandIn
from core.embeddings import HashingEmbedder
from core.io import ImportRow
from core.service import LabelingService
from tests.conftest import make_settings, serve_env
from tests.processes import free_port

ROOT = Path(__file__).resolve().parents[1]


def _rows(n: int, start: int = 0) -> list[ImportRow]:
    return [ImportRow(line=i, external_id=str(i), text=f"message {i}") for i in range(start, start + n)]


def _children(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    return {int(p) for p in out.split()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose: it runs nothing.
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().split(")")[-1].split()[0] != "Z"


def _wait_for(condition, what: str, limit: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.2)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL])
def test_serve_embeds_in_the_background_and_its_worker_ends_with_it(tmp_path: Path, stop: int) -> None:
    settings = make_settings(tmp_path)
    svc = LabelingService(settings, embedder=HashingEmbedder(64))
    svc.create_project("p", ["a", "b"])
    svc.import_rows("p", _rows(40), embed=False)
    slack = SlackStandIn(bot_token="xoxb-test").start()
    port = free_port()
    env = serve_env(settings, LABELBOT_PORT=str(port), SLACK_API_URL=slack.base_url)
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115  (closed below; read when a wait fails)
    serve = subprocess.Popen(
        [sys.executable, "-c", "from bot.cli import app; app()", "serve", "--http"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        _wait_for(lambda: svc.embedding_status("p").missing == 0, "serve to embed the imported records")
        svc.import_rows("p", _rows(10, start=40), embed=False)  # records arriving while it runs
        _wait_for(lambda: svc.embedding_status("p").missing == 0, "the records imported later")
        assert svc.embedding_status("p").with_vectors == 50
        assert len(svc.next_records("p", "alice", n=50)) == 50
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as reply:
            assert reply.status == 200
        workers = _children(serve.pid)
        assert workers, "serve started no worker process"
        serve.send_signal(stop)
        serve.wait(timeout=60)
        _wait_for(lambda: not any(_alive(pid) for pid in workers), "serve's workers to end", limit=30)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
        log.close()
        slack.stop()
        svc.close()
