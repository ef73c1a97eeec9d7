"""Several `labelbot serve --http` replicas on one database, end to end, with real processes.

Starts two replicas (the Slack Web API is a local stand-in), reads their ``/healthz``, schedules a
prompt with ``labelbot schedule`` and counts its posts (once, by the leader), kills the leader with
SIGKILL and times until the other replica reports itself leader, starts a third replica and stops the
leader with SIGTERM (a clean shutdown releases the lease) and times that handover too; last, the
latency of ``/healthz``.

    .venv/bin/python bench/leader_takeover.py                      # a SQLite file in a temp dir
    .venv/bin/python bench/leader_takeover.py --database-url postgresql+psycopg://...
    .venv/bin/python bench/leader_takeover.py --no-prompt          # skip the minute the prompt waits for
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.standin import SlackStandIn  # noqa: E402
from core.config import Settings  # noqa: E402
from core.embeddings import HashingEmbedder  # noqa: E402
from core.io import ImportRow  # noqa: E402
from core.service import LabelingService  # noqa: E402
from tests.processes import free_port  # noqa: E402

TOKEN = "xoxb-bench-replicas"
CHANNEL = "C0REPLICAS"
LABELBOT = str(Path(sys.executable).parent / "labelbot")


def health(port: int) -> tuple[int, dict] | None:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    except (OSError, ValueError):
        return None
    finally:
        conn.close()


class Replica:
    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name, self.port = name, free_port()
        self.log = open(log_dir / f"{name}.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [LABELBOT, "serve", "--http", "--port", str(self.port)], cwd=ROOT, env=env,
            stdout=self.log, stderr=subprocess.STDOUT,
        )

    def role(self) -> str | None:
        answer = health(self.port)
        return answer[1].get("role") if answer and answer[0] == 200 else None

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout=60)
        self.log.close()
        return code


def wait_for(predicate, timeout: float, step: float = 0.05) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError("gave up waiting")
        time.sleep(step)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url")
    parser.add_argument("--no-prompt", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="labelbot-replicas-"))
    url = args.database_url or f"sqlite:///{tmp / 'replicas.db'}"
    settings = Settings(_env_file=None, database_url=url, embedding_model="hashing-64")  # type: ignore[call-arg]
    service = LabelingService(settings, embedder=HashingEmbedder(64))
    service.create_project("replicas", ["spam", "ham"])
    texts = [f"message number {i} about {w}" for i, w in enumerate(["prizes", "lunch", "meetings"] * 10)]
    rows = [ImportRow(line=i, external_id=str(i), text=t) for i, t in enumerate(texts)]
    service.import_rows("replicas", rows)
    service.close()

    standin = SlackStandIn(bot_token=TOKEN).start()
    standin.add_channel(CHANNEL, "replicas")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "LABELBOT_"))}
    env.update(SLACK_BOT_TOKEN=TOKEN, SLACK_SIGNING_SECRET="bench-secret", SLACK_API_URL=standin.base_url,
               LABELBOT_DATABASE_URL=url, LABELBOT_EMBEDDING_MODEL="hashing-64", HF_HUB_OFFLINE="1",
               PYTHONPATH=str(ROOT))
    replicas = [Replica("a", env, tmp), Replica("b", env, tmp)]
    out: dict[str, object] = {"database": url.split(":")[0], "logs": str(tmp)}
    try:
        out["start_s"] = round(wait_for(lambda: all(r.role() for r in replicas), 120), 2)
        roles = {r.name: r.role() for r in replicas}
        out["roles"] = roles
        assert sorted(roles.values()) == ["follower", "leader"], roles
        leader = next(r for r in replicas if roles[r.name] == "leader")
        follower = next(r for r in replicas if r is not leader)

        if not args.no_prompt:
            # A minute or more ahead: `labelbot schedule` itself takes seconds to start on a busy machine.
            soon = datetime.now(UTC) + timedelta(seconds=60)
            due = soon.replace(second=0, microsecond=0) + timedelta(minutes=1)
            subprocess.run([LABELBOT, "schedule", "replicas", "add", "--channel", CHANNEL, "--when",
                            f"daily {due:%H:%M}", "--tz", "UTC", "-n", "2"], cwd=ROOT, env=env, check=True,
                           capture_output=True)
            # Due, plus the leader's poll (10 s) and a margin: then count the posts.
            time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 20)
            out["prompt_due"] = f"{due:%H:%M:%S}"
            out["prompt_posts"] = len([m for m in standin.messages(CHANNEL) if not m.get("upload")])

        leader.stop(signal.SIGKILL)
        took = wait_for(lambda: follower.role() == "leader", 90, step=0.1)
        out["takeover_after_sigkill_s"] = round(took, 2)
        third = Replica("c", env, tmp)
        replicas.append(third)
        wait_for(lambda: third.role() == "follower", 120)
        stopped_at = time.monotonic()
        follower.process.send_signal(signal.SIGTERM)
        out["sigterm_exit_code"] = follower.process.wait(timeout=60)
        out["sigterm_exit_s"] = round(time.monotonic() - stopped_at, 2)
        wait_for(lambda: third.role() == "leader", 90, step=0.1)
        out["handover_after_sigterm_s"] = round(time.monotonic() - stopped_at, 2)

        times = []
        for _ in range(300):
            started = time.perf_counter()
            assert health(third.port) is not None
            times.append((time.perf_counter() - started) * 1000)
        out["healthz_ms_p50_p99"] = [round(float(np.percentile(times, q)), 2) for q in (50, 99)]
    finally:
        for replica in replicas:
            try:
                replica.stop()
            except Exception as error:  # keep stopping the others
                print(f"{replica.name}: {error}", file=sys.stderr)
        standin.stop()
    out["load_average"] = os.getloadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
