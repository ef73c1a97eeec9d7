"""Several replicas on one database: the leader lease (core.leadership) and what it decides in bot.scheduler.

Two ``Leadership`` objects (or two services, as two processes have) on one database with a clock the
test moves, so nothing waits for a lease to expire; a real subprocess holding the lease is killed with
SIGKILL. Runs on SQLite and, through ``make_settings``, on PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_SUBMITTED
from apscheduler.schedulers.base import STATE_PAUSED, STATE_RUNNING
from sqlalchemy import event

from bot.scheduler import RETRAIN_REQUEST_PREFIX, LabelScheduler, SchedulerSettings
from core.embeddings import HashingEmbedder
from core.io import ImportRow
from core.leadership import Leadership
from core.schedules import parse_when
from core.service import LabelingService
from tests.conftest import make_settings
from tests.slack_harness import CHANNEL, start_harness
from tests.test_bot import TEXTS, texts_of
from tests.test_scheduler import FakeClock

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[LabelingService]:
    svc = LabelingService(make_settings(tmp_path), embedder=HashingEmbedder(64))
    yield svc
    svc.close()


def leadership(service: LabelingService, clock: Callable[[], datetime], **options: Any) -> Leadership:
    return service.leadership(clock=clock, lease_seconds=30, renew_seconds=10, **options)


def refuse_connections(service: LabelingService) -> None:
    """The database goes away: pooled connections are dropped and new ones fail, on either backend."""

    def refuse(*_: object) -> None:
        raise service.engine.dialect.loaded_dbapi.OperationalError("the database is gone (test)")

    service.engine.dispose()
    event.listen(service.engine, "do_connect", refuse)


# ------------------------------------------------------------------------------------------ the lease


def test_only_one_leads_and_the_other_takes_over_once_the_leader_stops_renewing(
    service: LabelingService,
) -> None:
    clock = Clock()
    first, second = leadership(service, clock), leadership(service, clock)
    assert first.holder != second.holder
    assert first.try_acquire() is True
    assert second.try_acquire() is False
    assert (first.role, second.role) == ("leader", "follower")
    lease = first.current()
    assert lease is not None and lease.holder == first.holder
    assert lease.expires_at == T0 + timedelta(seconds=30)

    clock.advance(25)
    assert first.renew() is True  # a renewal moves the expiry, keeps when it was first taken
    clock.advance(25)  # 50 s: past the first expiry (30 s), before the renewed one (55 s)
    assert second.try_acquire() is False
    renewed = first.current()
    assert renewed is not None and renewed.acquired_at == T0
    assert renewed.expires_at == T0 + timedelta(seconds=55)

    # The leader stops renewing (hung, partitioned): it steps down 10 s before its lease runs out...
    clock.advance(-4)  # 46 s
    assert first.is_leader is False and first.role == "follower"
    assert second.try_acquire() is False  # ...and nobody can take the lease until it has run out
    clock.advance(10)  # 56 s
    assert second.try_acquire() is True
    assert first.try_acquire() is False  # the old leader, back, finds it taken
    taken = second.current()
    assert taken is not None and taken.holder == second.holder
    assert taken.acquired_at == T0 + timedelta(seconds=56)


def test_listeners_hear_each_change_of_role_once(service: LabelingService) -> None:
    clock = Clock()
    first, second = leadership(service, clock), leadership(service, clock)
    heard: dict[str, list[bool]] = {"first": [], "second": []}
    first.listeners.append(heard["first"].append)
    second.listeners.append(heard["second"].append)
    first.try_acquire()
    first.renew()
    second.try_acquire()
    clock.advance(31)
    second.try_acquire()
    first.try_acquire()
    assert heard == {"first": [True, False], "second": [True]}


def test_release_hands_the_lease_over_at_once(service: LabelingService) -> None:
    clock = Clock()
    first, second = leadership(service, clock), leadership(service, clock)
    first.try_acquire()
    assert second.try_acquire() is False
    first.release()
    assert first.is_leader is False and first.current() is None
    assert second.try_acquire() is True  # no waiting for the lease to expire


def test_a_leader_that_cannot_reach_the_database_steps_down_before_its_lease_expires(
    service: LabelingService,
) -> None:
    clock = Clock()
    first = leadership(service, clock)
    heard: list[bool] = []
    first.listeners.append(heard.append)
    first.start()  # the first try is synchronous; the thread renews every 10 s of real time
    try:
        assert first.is_leader
        refuse_connections(service)
        with pytest.raises(Exception, match="the database is gone"):
            first.try_acquire()
        clock.advance(15)
        first._tick()  # what the renewing thread does: the failure is logged, the role kept for now
        assert first.is_leader and heard == [True]
        clock.advance(5)  # 20 s: 10 s before the lease it last wrote expires
        first._tick()
        assert first.is_leader is False and heard == [True, False]
    finally:
        first.stop(release=False)


def test_a_holder_killed_with_sigkill_is_replaced_once_its_lease_expires(
    tmp_path: Path, service: LabelingService
) -> None:
    # A real process takes the lease (60 s, renewed every second on its thread) and is killed -9: it
    # never releases it. The survivor's clock is moved past the expiry instead of waiting a minute.
    script = (
        "import sys, time\n"
        "from core.leadership import Leadership\n"
        "from core.store import create_db_engine\n"
        "lease = Leadership(create_db_engine(sys.argv[1]), lease_seconds=60, renew_seconds=1).start()\n"
        "print(lease.holder if lease.is_leader else 'not leader', flush=True)\n"
        "time.sleep(600)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", script, service.settings.database_url], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        holder = child.stdout.readline().strip()
        assert holder.split(":")[1] == str(child.pid)  # host:pid:random
        clock = Clock(datetime.now(UTC))
        survivor = leadership(service, clock)
        assert survivor.try_acquire() is False
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
        lease = survivor.current()
        assert lease is not None and lease.holder == holder  # a killed holder leaves its lease behind
        clock.now = datetime.now(UTC)
        assert survivor.try_acquire() is False  # until it expires
        clock.now = lease.expires_at + timedelta(seconds=1)
        assert survivor.try_acquire() is True
        taken = survivor.current()
        assert taken is not None and taken.holder == survivor.holder
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


# ------------------------------------------------------------------------------------------ the scheduler


def quiet_settings(**overrides: object) -> SchedulerSettings:
    values: dict[str, object] = {"retrain_interval_minutes": 0, "schedule_poll_seconds": 0, "timezone": None}
    values.update(overrides)
    return SchedulerSettings(_env_file=None, **values)  # type: ignore[call-arg]


def executed(scheduler: LabelScheduler) -> list[str]:
    """Ids of the jobs ``scheduler`` runs from now on (a list that fills as they finish)."""
    done: list[str] = []
    scheduler.scheduler.add_listener(lambda e: done.append(e.job_id), EVENT_JOB_EXECUTED)
    return done


def run_due_jobs(scheduler: LabelScheduler) -> list[str]:
    """One pass of ``scheduler``'s loop; returns the ids of the jobs it ran, once they finished."""
    submitted: list[str] = []
    done: list[str] = []
    changed = threading.Condition()

    def on_event(e: Any) -> None:
        with changed:
            (submitted if e.code == EVENT_JOB_SUBMITTED else done).append(e.job_id)
            changed.notify_all()

    scheduler.scheduler.add_listener(on_event, EVENT_JOB_SUBMITTED | EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    try:
        scheduler.scheduler._process_jobs()
        with changed:  # a job may finish before its submission event is sent
            assert changed.wait_for(lambda: len(done) >= len(submitted), timeout=60), submitted
    finally:
        scheduler.scheduler.remove_listener(on_event)
    return done


def test_a_prompt_added_on_a_follower_fires_once_on_the_leader_then_on_its_successor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(datetime(2024, 5, 6, 9, 0, tzinfo=UTC))
    clock.install(monkeypatch)
    harness = start_harness(tmp_path, texts=TEXTS)
    replica = LabelingService(harness.service.settings, embedder=HashingEmbedder(64))  # another process
    now = lambda: clock.now  # noqa: E731
    lead_lease, follow_lease = leadership(harness.service, now), leadership(replica, now)
    assert lead_lease.try_acquire() and not follow_lease.try_acquire()
    leader = LabelScheduler(harness.service, harness.app.client, settings=quiet_settings(), clock=now,
                            leadership=lead_lease).start()
    follower = LabelScheduler(replica, harness.app.client, settings=quiet_settings(), clock=now,
                              leadership=follow_lease).start()
    try:
        assert (leader.scheduler.state, follower.scheduler.state) == (STATE_RUNNING, STATE_PAUSED)
        assert (leader.role, follower.role) == ("leader", "follower")
        ran_on_leader, ran_on_follower = executed(leader), executed(follower)
        item = follower.add_prompt(replica.get_project("demo"), CHANNEL, parse_when("daily 10:00"), n=2)
        assert [i.id for i in leader.items()] == [item.id]  # stored once, seen by both

        def step(to: datetime) -> None:
            # One pass of each replica's scheduler loop, as their pollers would do.
            clock.now = to
            leader.scheduler._process_jobs()
            follower.scheduler._process_jobs()

        step(datetime(2024, 5, 6, 10, 0, 1, tzinfo=UTC))
        harness.standin.wait_until(lambda: len(ran_on_leader) == 1)
        posts = [m for m in harness.standin.messages(CHANNEL) if not m.get("upload")]
        assert len(posts) == 1 and "Label 2 now" in texts_of(posts[0])
        assert ran_on_leader == [item.id] and ran_on_follower == []
        assert [i.next_run for i in follower.items()] == [datetime(2024, 5, 7, 10, 0, tzinfo=UTC)]

        # The leader stops renewing; after its lease expired the follower takes over, and the old
        # leader, when it tries again, finds itself a follower and pauses.
        clock.now = datetime(2024, 5, 6, 10, 5, tzinfo=UTC)
        assert follow_lease.try_acquire() is True
        assert lead_lease.try_acquire() is False
        assert (leader.scheduler.state, follower.scheduler.state) == (STATE_PAUSED, STATE_RUNNING)
        assert (leader.role, follower.role) == ("follower", "leader")
        step(datetime(2024, 5, 7, 10, 0, 1, tzinfo=UTC))
        harness.standin.wait_until(lambda: len(ran_on_follower) == 1)
        assert ran_on_leader == [item.id] and ran_on_follower == [item.id]
        assert len([m for m in harness.standin.messages(CHANNEL) if not m.get("upload")]) == 2
    finally:
        follower.shutdown()
        leader.shutdown()
        replica.close()
        harness.close()


def test_retrains_asked_for_on_a_follower_run_on_the_leader(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, retrain_every=3)
    first = LabelingService(settings, embedder=HashingEmbedder(64), background=True)
    second = LabelingService(settings, embedder=HashingEmbedder(64), background=True)
    clock = Clock(datetime.now(UTC))
    lead_lease, follow_lease = leadership(first, clock), leadership(second, clock)
    assert lead_lease.try_acquire() and not follow_lease.try_acquire()
    leader = LabelScheduler(first, None, settings=quiet_settings(), leadership=lead_lease).start()
    follower = LabelScheduler(second, None, settings=quiet_settings(), leadership=follow_lease).start()
    retrained: dict[str, list[str]] = {"leader": [], "follower": []}
    first.retrain_listeners.append(lambda run, name: retrained["leader"].append(name))
    second.retrain_listeners.append(lambda run, name: retrained["follower"].append(name))
    try:
        second.create_project("p", ["spam", "ham"])
        # The import on the follower asks for the cold-start ranking: a request for the leader.
        second.import_rows("p", [ImportRow(line=i, external_id=str(i), text=t) for i, t in enumerate(TEXTS)])
        project_id = second.get_project("p").id
        request_id = f"{RETRAIN_REQUEST_PREFIX}{project_id}"
        assert [job.id for job in leader.scheduler.get_jobs()] == [request_id]
        assert run_due_jobs(leader) == [request_id]  # the leader's next wake-up
        first.wait_for_retrains(timeout=60)
        assert retrained == {"leader": ["p"], "follower": []}
        assert leader.scheduler.get_jobs() == []  # a one-off job

        records = second.next_records("p", "alice", 3)
        results = [second.record_answer("p", r.record_id, "alice", label)
                   for r, label in zip(records, ["spam", "ham", "spam"], strict=True)]
        assert [r.retrain_started for r in results] == [False, False, True]  # the 3rd, handed over
        assert [job.id for job in leader.scheduler.get_jobs()] == [request_id]
        second.wait_for_retrains(timeout=60)
        assert retrained["follower"] == []
        assert run_due_jobs(leader) == [request_id]
        first.wait_for_retrains(timeout=60)
        assert retrained == {"leader": ["p", "p"], "follower": []}
        assert second.run_history("p")[-1].n_labels == 3

        # An answer on the leader retrains there directly, with no job in between.
        records = first.next_records("p", "bob", 3)
        for record in records:
            first.record_answer("p", record.record_id, "bob", "ham")
        first.wait_for_retrains(timeout=60)
        assert retrained == {"leader": ["p", "p", "p"], "follower": []}
        assert leader.scheduler.get_jobs() == []
    finally:
        follower.shutdown()
        leader.shutdown()
        second.close()
        first.close()


def test_a_new_leader_keeps_the_retrain_checks_next_run(tmp_path: Path, service: LabelingService) -> None:
    clock = Clock()
    settings = quiet_settings(retrain_interval_minutes=10)
    first_lease = leadership(service, clock)
    first_lease.try_acquire()
    first = LabelScheduler(service, None, settings=settings, leadership=first_lease).start()
    try:
        job = first.scheduler.get_job("retrain-check")
        assert job is not None
        next_run = job.next_run_time
    finally:
        first.shutdown()
    other = LabelingService(service.settings, embedder=HashingEmbedder(64))
    second_lease = leadership(other, clock)
    clock.advance(31)
    assert second_lease.try_acquire()
    second = LabelScheduler(other, None, settings=settings, leadership=second_lease).start()
    try:
        job = second.scheduler.get_job("retrain-check")
        assert job is not None and job.next_run_time == next_run
    finally:
        second.shutdown()
        other.close()


def test_a_follower_never_installs_the_retrain_check(service: LabelingService) -> None:
    clock = Clock()
    lease = leadership(service, clock)
    other = leadership(service, clock)
    assert other.try_acquire()
    scheduler = LabelScheduler(service, None, settings=quiet_settings(retrain_interval_minutes=10),
                               leadership=lease).start()
    try:
        assert lease.try_acquire() is False
        assert scheduler.scheduler.get_job("retrain-check") is None
        clock.advance(31)
        assert lease.try_acquire() is True
        assert scheduler.scheduler.get_job("retrain-check") is not None
    finally:
        scheduler.shutdown()
