"""The background loop end to end: retrains, scheduled prompts, subscriptions and digests.

The real App over loopback HTTP and the Slack stand-in (tests/slack_harness.py), a real APScheduler
with its SQLAlchemy job store in the test database. Nothing sleeps for a schedule: jobs are run
directly (``run_now``), or APScheduler's own loop is stepped with a controllable clock.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import apscheduler.executors.base
import apscheduler.schedulers.base
import numpy as np
import pytest
from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, EVENT_JOB_SUBMITTED
from typer.testing import CliRunner

import core.training as training_module
from bot import ids
from bot import scheduler as sched
from bot.scheduler import LabelScheduler, SchedulerSettings
from bot.standin.signing import action_from_blocks
from core.io import ImportRow
from core.schedules import parse_when
from core.service import LabelingService
from tests.conftest import database_url, make_settings
from tests.slack_harness import ADMIN, ALICE, BOB, CHANNEL, SlackHarness, start_harness
from tests.test_bot import TEXTS, texts_of

BERLIN = ZoneInfo("Europe/Berlin")


def quiet_settings(**overrides: object) -> SchedulerSettings:
    values: dict[str, object] = {"retrain_interval_minutes": 0, "schedule_poll_seconds": 0, "timezone": None}
    values.update(overrides)
    return SchedulerSettings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def h(tmp_path: Path) -> Iterator[SlackHarness]:
    harness = start_harness(tmp_path, texts=TEXTS)
    scheduler = LabelScheduler(harness.service, harness.app.client, settings=quiet_settings())
    scheduler.attach(harness.app).start()  # as `labelbot serve` does: listeners see context["scheduler"]
    harness.extra["scheduler"] = scheduler
    yield harness
    scheduler.shutdown()
    harness.close()


def scheduler_of(h: SlackHarness) -> LabelScheduler:
    return h.extra["scheduler"]  # type: ignore[return-value]


def reply(h: SlackHarness, count: int) -> str:
    """The text of the ``count``-th response_url answer (1-based), once it arrived."""
    h.standin.wait_for("response_url", count=count)
    return texts_of(h.standin.responses[count - 1]["payload"])


def channel_posts(h: SlackHarness) -> list[dict]:
    return [m for m in h.standin.messages(CHANNEL) if not m.get("upload")]


def answer_everything(service: LabelingService, project: str = "demo") -> None:
    for record in service.next_records(project, "oracle", 100):
        service.record_answer(project, record.record_id, "oracle", "spam" if record.record_id % 2 else "ham")


class FakeClock:
    """What APScheduler's loop believes ``datetime.now`` is (patched into its modules)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        clock = self

        class FakeDatetime(datetime):
            @classmethod
            def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
                return clock.now.astimezone(tz) if tz is not None else clock.now.replace(tzinfo=None)

        monkeypatch.setattr(apscheduler.schedulers.base, "datetime", FakeDatetime)
        monkeypatch.setattr(apscheduler.executors.base, "datetime", FakeDatetime)


# ---------------------------------------------------------------------------------- retraining


def test_retrain_after_n_answers_and_on_the_interval_when_changed(tmp_path: Path) -> None:
    from core.embeddings import HashingEmbedder
    from core.io import ImportRow

    settings = make_settings(tmp_path, retrain_every=3)
    service = LabelingService(settings, embedder=HashingEmbedder(64), background=True)
    scheduler = LabelScheduler(service, None, settings=quiet_settings(retrain_interval_minutes=10)).start()
    try:
        service.create_project("p", ["spam", "ham"])
        service.import_rows("p", [ImportRow(line=i, external_id=str(i), text=t) for i, t in enumerate(TEXTS)])
        service.wait_for_retrains(timeout=60)  # the cold-start queue the import asked for
        records = service.next_records("p", "alice", 5)
        for record, label in zip(records[:2], ["spam", "ham"], strict=True):
            assert not service.record_answer("p", record.record_id, "alice", label).retrain_started
        assert service.record_answer("p", records[2].record_id, "alice", "spam").retrain_started  # the 3rd
        service.wait_for_retrains(timeout=30)
        assert [r.n_labels for r in service.run_history("p")] == [3]
        # Two more answers do not reach N; the interval job picks them up, and only once.
        for record in records[3:5]:
            service.record_answer("p", record.record_id, "alice", "ham")
        job = scheduler.scheduler.get_job(sched.RETRAIN_CHECK_ID)
        assert job is not None and job.trigger.interval == timedelta(minutes=10)
        assert scheduler.run_now(sched.RETRAIN_CHECK_ID) == 1
        service.wait_for_retrains(timeout=30)
        assert [r.n_labels for r in service.run_history("p")] == [3, 5]
        assert scheduler.run_now(sched.RETRAIN_CHECK_ID) == 0  # nothing changed since
        service.undo("p", "alice")  # an undo is a change too
        assert scheduler.run_now(sched.RETRAIN_CHECK_ID) == 1
        service.wait_for_retrains(timeout=30)
        assert [r.n_labels for r in service.run_history("p")] == [3, 5, 4]
    finally:
        scheduler.shutdown()
        service.close()


def test_a_restarted_service_does_not_retrain_an_unchanged_project(tmp_path: Path) -> None:
    from core.embeddings import HashingEmbedder
    from core.io import ImportRow

    first = LabelingService(make_settings(tmp_path), embedder=HashingEmbedder(64))
    first.create_project("p", ["spam", "ham"])
    first.import_rows("p", [ImportRow(line=i, external_id=str(i), text=t) for i, t in enumerate(TEXTS)])
    assert not first.labels_changed_since_retrain("p")  # no answers: nothing to train on
    for record, label in zip(first.next_records("p", "a", 2), ["spam", "ham"], strict=True):
        first.record_answer("p", record.record_id, "a", label)
    assert first.labels_changed_since_retrain("p")
    first.retrain("p")
    first.close()
    second = LabelingService(make_settings(tmp_path), embedder=HashingEmbedder(64))
    try:
        assert not second.labels_changed_since_retrain("p")
        assert not second.retrain_if_changed("p")
    finally:
        second.close()


def test_no_concurrent_retrains_of_one_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.embeddings import HashingEmbedder
    from core.io import ImportRow

    service = LabelingService(make_settings(tmp_path), embedder=HashingEmbedder(64), background=True)
    service.create_project("p", ["spam", "ham"])
    service.import_rows("p", [ImportRow(line=i, external_id=str(i), text=t) for i, t in enumerate(TEXTS)])
    service.wait_for_retrains(timeout=60)  # the import's own refill of the queue
    original = training_module.retrain
    release, first_inside = threading.Event(), threading.Event()
    state = {"active": 0, "max": 0, "calls": 0}
    guard = threading.Lock()

    def instrumented(*args: Any, **kwargs: Any) -> Any:
        with guard:
            state["active"] += 1
            state["calls"] += 1
            state["max"] = max(state["max"], state["active"])
            first = state["calls"] == 1
        try:
            if first:
                first_inside.set()
                assert release.wait(30)
            return original(*args, **kwargs)
        finally:
            with guard:
                state["active"] -= 1

    monkeypatch.setattr(training_module, "retrain", instrumented)
    try:
        assert service.request_retrain("p")  # the background worker takes it and blocks inside
        assert first_inside.wait(30)
        assert not service.request_retrain("p")  # one already waiting: not queued twice
        callers = [threading.Thread(target=service.retrain, args=("p",)) for _ in range(3)]
        for thread in callers:
            thread.start()
        for thread in callers:
            thread.join(timeout=0.2)
        assert all(thread.is_alive() for thread in callers)  # waiting on the project's retrain lock
        assert state["calls"] == 1
        release.set()
        for thread in callers:
            thread.join(timeout=30)
        service.wait_for_retrains(timeout=30)
        assert state["calls"] == 4 and state["max"] == 1
    finally:
        release.set()
        service.close()


def test_queue_swap_during_a_click_still_sends_the_next_card_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = start_harness(tmp_path, texts=[f"{t} #{i}" for i in range(6) for t in TEXTS])
    try:
        service = harness.service
        for record, label in zip(service.next_records("demo", BOB, 4), ["spam", "ham"] * 2, strict=True):
            service.record_answer("demo", record.record_id, BOB, label)
        service.retrain("demo")
        inside, release = threading.Event(), threading.Event()
        real_get_strategy = training_module.get_strategy

        class Blocking:
            def __init__(self, inner: Any) -> None:
                self.inner = inner

            def query(self, **kwargs: Any) -> Any:
                inside.set()
                assert release.wait(30)  # hold the retrain between training and the queue swap
                return self.inner.query(**kwargs)

        monkeypatch.setattr(training_module, "get_strategy", lambda name: Blocking(real_get_strategy(name)))
        assert harness.command("next").status == 200
        card = harness.wait_for_cards(ALICE, 1)[0]
        assert service.request_retrain("demo")
        assert inside.wait(30)
        harness.click_label(ALICE, card, "spam")
        # The next card arrives while the retrain is still held: it came from the old queue.
        harness.wait_for_messages(ALICE, 2)
        [second] = harness.cards(ALICE)
        assert not release.is_set() and second["ts"] != card["ts"]
        release.set()
        service.wait_for_retrains(timeout=30)
        harness.click_label(ALICE, second, "ham")
        harness.wait_for_messages(ALICE, 3)
        posted = [c.params for c in harness.standin.calls_to("chat.postMessage")]
        shown = [ids.parse_record_value(action_from_blocks(m, ids.ACTION_SKIP)["value"]).record_id
                 for m in posted if m.get("channel") == harness.dm(ALICE)]
        assert len(shown) == len(set(shown)) == 3
        assert len(service.run_history("demo")) == 2
        assert harness.standin.errors() == []
    finally:
        release.set()
        harness.close()


# ---------------------------------------------------------------------------------- prompts


def test_schedule_parse_errors_are_answered_clearly(h: SlackHarness) -> None:
    h.command("schedule weekdays 25:00", user=ADMIN)
    assert "'weekdays 25:00': hour must be 0–23" in reply(h, 1)
    h.command("schedule fortnightly 10:00", user=ADMIN)
    text = reply(h, 2)
    assert "I don't understand 'fortnightly'" in text and "weekdays HH:MM" in text
    h.command("schedule weekdays 10:00", user=ALICE)
    assert "for labelbot admins" in reply(h, 3)
    h.command("subscribe 2 every 30 hours", user=ALICE)
    assert "the number of hours must be 1–23" in reply(h, 4)
    assert scheduler_of(h).items() == []


def test_prompt_posts_with_a_button_that_dms_the_clicker_cards(h: SlackHarness) -> None:
    h.command("schedule weekdays 10:00 3", user=ADMIN)
    text = reply(h, 1)
    [item] = scheduler_of(h).items()
    assert item.kind == "prompt" and item.n == 3 and item.target == CHANNEL
    assert item.id in text and "weekdays at 10:00 (UTC)" in text
    assert scheduler_of(h).run_now(item.id) is True
    [prompt] = channel_posts(h)
    shown = texts_of(prompt)
    assert "8 records are waiting" in shown and "the model is still learning" in shown
    assert "helps" in shown and "Label 3 now" in shown
    action = action_from_blocks(prompt, ids.ACTION_LABEL_N_NOW)
    assert ids.parse_label_n_value(action["value"]).n == 3
    h.sender.block_actions(BOB, [action], channel_id=CHANNEL, message=prompt)
    assert len(h.wait_for_cards(BOB, 3)) == 3
    h.command("schedule list", user=ADMIN)
    assert item.id in reply(h, 2)
    h.command(f"schedule remove {item.id}", user=ADMIN)
    assert "Removed" in reply(h, 3)
    assert scheduler_of(h).items() == []
    assert h.standin.errors() == []


def test_prompt_shows_the_models_accuracy(tmp_path: Path) -> None:
    harness = start_harness(tmp_path, texts=[f"{t} #{i}" for i in range(4) for t in TEXTS])  # 32 records
    scheduler = LabelScheduler(harness.service, harness.app.client, settings=quiet_settings()).start()
    try:
        service = harness.service
        for record in service.next_records("demo", BOB, 12):
            label = "spam" if any(w in record.text for w in ("free", "prize", "claim")) else "ham"
            service.record_answer("demo", record.record_id, BOB, label)
        accuracy = service.retrain("demo").metrics["cv_accuracy"]  # 12 labels: cross-validated
        item = scheduler.add_prompt(service.get_project("demo"), CHANNEL, parse_when("daily 09:00"), n=5)
        scheduler.run_now(item.id)
        shown = texts_of(channel_posts(harness)[-1])
        assert f"20 records are waiting; the model is at {accuracy:.0%}" in shown
        assert "Label 5 now" in shown
    finally:
        scheduler.shutdown()
        harness.close()


def test_a_multi_label_prompt_shows_the_models_micro_f1(tmp_path: Path) -> None:
    harness = start_harness(tmp_path, project="")
    scheduler = LabelScheduler(harness.service, harness.app.client, settings=quiet_settings()).start()
    try:
        service = harness.service
        info = service.create_project("multi", ["spam", "ham", "other"], multi_label=True)
        rows = [ImportRow(i + 2, f"r{i}", f"{TEXTS[i % len(TEXTS)]} #{i}") for i in range(30)]
        service.import_rows("multi", rows)
        answers = [["spam"], ["ham"], ["spam", "other"]]
        for i, record in enumerate(service.next_records("multi", BOB, 15)):
            service.record_answer("multi", record.record_id, BOB, answers[i % 3])
        micro = service.retrain("multi").metrics["cv_micro_f1"]
        item = scheduler.add_prompt(info, CHANNEL, parse_when("daily 09:00"), n=5)
        scheduler.run_now(item.id)
        shown = texts_of(channel_posts(harness)[-1])
        assert f"the model is at {micro:.0%} micro-F1" in shown
    finally:
        scheduler.shutdown()
        harness.close()


def test_nobody_is_prompted_when_nothing_is_left(h: SlackHarness) -> None:
    project = h.service.get_project("demo")
    prompt = scheduler_of(h).add_prompt(project, CHANNEL, parse_when("weekdays 10:00"), n=5)
    sub = scheduler_of(h).subscribe(project, ALICE, parse_when("daily 09:00"), n=2)
    answer_everything(h.service)
    assert scheduler_of(h).run_now(prompt.id) is False
    assert scheduler_of(h).run_now(sub.id) == 0
    assert channel_posts(h) == []
    assert h.dm_messages(ALICE) == []
    assert h.standin.calls_to("chat.postMessage") == []


def test_subscribe_and_unsubscribe(h: SlackHarness) -> None:
    h.command("subscribe 2 daily 09:30 Europe/Berlin", user=ALICE)
    assert "You will get 2 cards" in reply(h, 1)
    [item] = scheduler_of(h).items()
    assert item.id == f"sub-{h.service.get_project('demo').id}-{ALICE}"
    assert item.kind == "subscription" and item.n == 2 and item.when == "daily at 09:30 (Europe/Berlin)"
    assert scheduler_of(h).run_now(item.id) == 2
    assert len(h.cards(ALICE)) == 2
    assert "unsubscribe" in texts_of(h.dm_messages(ALICE)[-1])
    h.command("subscribe 4", user=ALICE)  # replaces the earlier subscription
    reply(h, 2)  # the listener runs after the ack: wait for its answer before looking
    [item] = scheduler_of(h).items()
    assert item.n == 4 and item.when == "weekdays at 10:00 (UTC)"
    h.command("unsubscribe", user=ALICE)
    assert "no more scheduled cards" in reply(h, 3)
    assert scheduler_of(h).items() == []
    h.command("unsubscribe", user=ALICE)
    assert "You have no scheduled cards" in reply(h, 4)


def test_time_zone_defaults_to_the_admins_slack_zone_unless_configured(h: SlackHarness) -> None:
    h.standin.add_user(ADMIN, "admin", tz="America/New_York")
    h.command("schedule daily 09:00", user=ADMIN)
    reply(h, 1)
    [item] = scheduler_of(h).items()
    assert item.when == "daily at 09:00 (America/New_York)"
    assert item.next_run.astimezone(ZoneInfo("America/New_York")).hour == 9
    assert sched.resolve_timezone(None, settings=quiet_settings(timezone="Asia/Tokyo"),
                                  slack_tz="America/New_York") == "Asia/Tokyo"
    assert sched.resolve_timezone("UTC", settings=quiet_settings(timezone="Asia/Tokyo")) == "UTC"
    assert sched.resolve_timezone(None, settings=quiet_settings(), slack_tz=None) == "UTC"


def test_jobs_fire_at_the_right_times_on_apschedulers_own_loop(
    h: SlackHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(datetime(2024, 5, 6, 9, 0, tzinfo=BERLIN))  # Monday 09:00 in Berlin
    clock.install(monkeypatch)
    scheduler = scheduler_of(h)
    events: list[Any] = []
    wanted = EVENT_JOB_SUBMITTED | EVENT_JOB_EXECUTED | EVENT_JOB_MISSED
    scheduler.scheduler.add_listener(events.append, wanted)
    project = h.service.get_project("demo")
    prompt = scheduler.add_prompt(project, CHANNEL, parse_when("weekdays 10:00", "Europe/Berlin"), n=2)
    sub = scheduler.subscribe(project, ALICE, parse_when("weekdays 10:30", "Europe/Berlin"), n=1)
    assert prompt.next_run == datetime(2024, 5, 6, 10, 0, tzinfo=BERLIN)

    def step(to: datetime) -> float | None:
        clock.now = to
        return scheduler.scheduler._process_jobs()  # one pass of the scheduler's loop, at ``to``

    assert step(datetime(2024, 5, 6, 9, 59, 30, tzinfo=BERLIN)) == pytest.approx(30)
    assert [e for e in events if e.code == EVENT_JOB_SUBMITTED] == []
    step(datetime(2024, 5, 6, 10, 0, 5, tzinfo=BERLIN))
    h.standin.wait_until(lambda: len(channel_posts(h)) == 1)
    assert h.dm_messages(ALICE) == []  # the subscription is due at 10:30
    step(datetime(2024, 5, 6, 10, 30, 1, tzinfo=BERLIN))
    assert len(h.wait_for_cards(ALICE, 1)) == 1
    h.standin.wait_until(lambda: sum(e.code == EVENT_JOB_EXECUTED for e in events) == 2)
    # Down from Monday 10:31 to Wednesday 10:20. The prompts of Tuesday and Wednesday 10:00 run once
    # (coalesce), as Wednesday's is within the misfire grace (1 h); Tuesday's 10:30 cards are a day
    # late, beyond the grace: skipped, not sent.
    step(datetime(2024, 5, 8, 10, 20, tzinfo=BERLIN))
    h.standin.wait_until(lambda: sum(e.code == EVENT_JOB_EXECUTED for e in events) == 3)
    assert len(channel_posts(h)) == 2
    assert [e.job_id for e in events if e.code == EVENT_JOB_MISSED] == [sub.id]
    assert len(h.cards(ALICE)) == 1
    nxt = {item.id: item.next_run for item in scheduler.items()}
    assert nxt == {sub.id: datetime(2024, 5, 8, 10, 30, tzinfo=BERLIN),
                   prompt.id: datetime(2024, 5, 9, 10, 0, tzinfo=BERLIN)}
    scheduler.shutdown()  # while the fake clock is still installed


def test_restart_keeps_schedules(tmp_path: Path) -> None:
    harness = start_harness(tmp_path, texts=TEXTS)
    try:
        project = harness.service.get_project("demo")
        first = LabelScheduler(harness.service, harness.app.client, settings=quiet_settings()).start()
        prompt = first.add_prompt(project, CHANNEL, parse_when("weekdays 10:00", "Europe/Berlin"), n=3)
        sub = first.subscribe(project, ALICE, parse_when("daily 08:00"), n=1)
        digest = first.add_digest(project, CHANNEL, parse_when("weekly mon 09:00"))
        first.shutdown()
        second = LabelScheduler(harness.service, harness.app.client, settings=quiet_settings()).start()
        try:
            again = {item.id: item for item in second.items(project.id)}
            assert set(again) == {prompt.id, sub.id, digest.id}
            assert again[prompt.id] == prompt and again[sub.id] == sub
            assert second.run_now(prompt.id) is True
            assert "Label 3 now" in texts_of(channel_posts(harness)[-1])
        finally:
            second.shutdown()
    finally:
        harness.close()


def test_jobs_written_by_another_process_are_seen_and_run(
    h: SlackHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(datetime(2024, 5, 6, 9, 0, tzinfo=UTC))
    clock.install(monkeypatch)
    # What `labelbot schedule add` does: a paused scheduler on the same database.
    other = LabelScheduler(h.service, None, settings=quiet_settings()).start(paused=True)
    item = other.add_prompt(h.service.get_project("demo"), CHANNEL, parse_when("daily 10:00"), n=2)
    other.shutdown()
    runtime = sched.current_runtime()  # the CLI's paused scheduler never replaced the serving one
    assert runtime is not None and runtime.scheduler is scheduler_of(h)
    assert [i.id for i in scheduler_of(h).items()] == [item.id]
    clock.now = datetime(2024, 5, 6, 10, 0, 1, tzinfo=UTC)
    scheduler_of(h).scheduler.wakeup()  # what the poller does every LABELBOT_SCHEDULE_POLL_SECONDS
    h.standin.wait_until(lambda: len(channel_posts(h)) == 1)
    assert "Label 2 now" in texts_of(channel_posts(h)[0])
    scheduler_of(h).shutdown()  # while the fake clock is still installed


def test_a_deleted_project_removes_its_schedules(h: SlackHarness) -> None:
    item = scheduler_of(h).add_prompt(h.service.get_project("demo"), CHANNEL, parse_when("daily 10:00"))
    h.service.delete_project("demo")
    assert scheduler_of(h).run_now(item.id) is False
    assert scheduler_of(h).items() == []
    assert channel_posts(h) == []


# ---------------------------------------------------------------------------------- digests


def _label_some(h: SlackHarness) -> None:
    for record, label in zip(h.service.next_records("demo", ALICE, 3), ["spam", "ham", "spam"], strict=True):
        h.service.record_answer("demo", record.record_id, ALICE, label)
    h.service.record_answer("demo", h.service.next_records("demo", BOB, 1)[0].record_id, BOB, "ham")
    h.service.retrain("demo")


def test_weekly_digest_posts_progress_week_trend_advice_and_a_png_chart(h: SlackHarness) -> None:
    _label_some(h)
    h.command("digest weekly fri 16:00", user=ADMIN)
    assert "digest" in reply(h, 1)
    [item] = scheduler_of(h).items()
    assert item.kind == "digest" and item.when == "every Fri at 16:00 (UTC)"
    assert scheduler_of(h).run_now(item.id) is True
    [digest] = channel_posts(h)
    shown = texts_of(digest)
    assert "Weekly digest: demo" in shown and "4 of 8 records labeled" in shown
    assert f"<@{ALICE}> — 3 answers" in shown and f"<@{BOB}> — 1 answer" in shown
    assert "Model trend" in shown and ("should still help" in shown or "Too early" in shown)
    [uploaded] = h.standin.files()
    assert uploaded["name"].endswith(".png") and CHANNEL in uploaded["channels"]
    assert h.standin.file_content(uploaded["id"])[:8] == b"\x89PNG\r\n\x1a\n"
    assert h.standin.errors() == []


def test_answers_this_week_leave_out_older_ones(h: SlackHarness) -> None:
    _label_some(h)
    now = datetime.now(UTC)
    assert h.service.answers_by_user("demo", since=now - timedelta(days=7)) == {ALICE: 3, BOB: 1}
    assert h.service.answers_by_user("demo", since=now + timedelta(minutes=1)) == {}


def test_status_adds_trend_advice_and_uploads_the_chart(h: SlackHarness) -> None:
    _label_some(h)
    h.command("status", user=BOB)
    h.standin.wait_for("response_url", count=2)
    texts = [texts_of(r["payload"]) for r in h.standin.responses]
    assert any("Trend and advice: demo" in t and "Last 7 days" in t for t in texts)
    h.standin.wait_for("files.completeUploadExternal")
    [uploaded] = h.standin.files()
    assert h.standin.file_content(uploaded["id"])[:8] == b"\x89PNG\r\n\x1a\n"


def test_digest_now_posts_without_a_scheduler_job(h: SlackHarness) -> None:
    h.command("digest now", user=ADMIN)
    h.standin.wait_for("files.completeUploadExternal")
    assert "Weekly digest: demo" in texts_of(channel_posts(h)[0])
    assert scheduler_of(h).items() == []


# ---------------------------------------------------------------------------------- CLI


def test_cli_schedule_and_status_plot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.cli import app

    monkeypatch.setenv("LABELBOT_DATABASE_URL", database_url(tmp_path, "cli", with_tables=True))
    monkeypatch.setenv("LABELBOT_EMBEDDING_MODEL", "hashing-64")
    monkeypatch.setenv("LABELBOT_RETRAIN_EVERY", "0")
    monkeypatch.delenv("LABELBOT_TIMEZONE", raising=False)
    runner = CliRunner()
    assert runner.invoke(app, ["init", "demo", "--labels", "spam,ham"]).exit_code == 0
    added = runner.invoke(app, ["schedule", "demo", "add", "--channel", "C42", "--when", "weekdays 10:00",
                                "-n", "3", "--tz", "Europe/Berlin"])
    assert added.exit_code == 0, added.output
    assert "weekdays at 10:00 (Europe/Berlin)" in added.output and "3 cards" in added.output
    bad = runner.invoke(app, ["schedule", "demo", "add", "--channel", "C42", "--when", "weekdays 25:00"])
    assert bad.exit_code == 1 and "hour must be 0–23" in bad.output
    listed = runner.invoke(app, ["schedule", "demo", "list"])
    job_id = next(word for word in listed.output.split() if word.startswith("prompt-"))
    assert runner.invoke(app, ["schedule", "demo", "remove", job_id]).exit_code == 0
    assert "Nothing scheduled" in runner.invoke(app, ["schedule", "demo", "list"]).output
    plot = tmp_path / "curve.png"
    assert runner.invoke(app, ["status", "demo", "--plot", str(plot)]).exit_code == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_retrain_every_is_configurable_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.config import load_settings

    monkeypatch.setenv("LABELBOT_RETRAIN_EVERY", "25")
    assert load_settings(_env_file=None).retrain_every == 25
    monkeypatch.delenv("LABELBOT_RETRAIN_EVERY")
    assert load_settings(_env_file=None).retrain_every == 10


def test_job_functions_without_a_runtime_do_nothing() -> None:
    assert sched.current_runtime() is None
    assert sched.run_prompt(job_id="prompt-x", project_id=1, project="demo", target=CHANNEL, n=5) is False
    assert sched.run_retrain_check() == 0
    assert np.isfinite(sched.DEFAULT_SECONDS_PER_CARD)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux-only")
def test_the_training_worker_runs_at_a_lower_cpu_priority(tmp_path: Path) -> None:
    from core.embeddings import HashingEmbedder

    service = LabelingService(make_settings(tmp_path), embedder=HashingEmbedder(64), background=True)
    try:
        mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        seen: list[int] = []
        service.retrain_listeners.append(
            lambda run, project: seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        )
        service.create_project("p", ["spam", "ham"])
        assert service.request_retrain("p")  # runs on the training thread, which calls the listeners
        service.wait_for_retrains(timeout=30)
        nice = service.settings.training_nice
        assert seen == [min(19, mine + nice)] and nice > 0
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine  # this thread unchanged
    finally:
        service.close()


def test_process_trainer_retrains_in_a_worker_process(tmp_path: Path) -> None:
    from core.embeddings import HashingEmbedder
    from core.io import ImportRow
    from core.trainer import ProcessTrainer

    settings = make_settings(tmp_path, retrain_every=3)
    service = LabelingService(settings, embedder=HashingEmbedder(64), background=True,
                              trainer=ProcessTrainer(settings, nice=0))
    try:
        service.create_project("p", ["spam", "ham"])
        service.import_rows("p", [ImportRow(line=i, external_id=str(i), text=t) for i, t in enumerate(TEXTS)])
        service.wait_for_retrains(timeout=60)  # the import's cold-start queue, built by the worker
        for record, label in zip(service.next_records("p", "a", 3), ["spam", "ham", "spam"], strict=True):
            started = service.record_answer("p", record.record_id, "a", label).retrain_started
        assert started
        service.wait_for_retrains(timeout=60)
        [run] = service.run_history("p")
        assert run.n_labels == 3
        assert not service.labels_changed_since_retrain("p")
        # The model's guesses came back with the run: the next card carries one without a predict here.
        assert service.pools.guesses_of(service.get_project("p").id)[0] == run.id
        assert service.next_records("p", "b", 1)[0].predicted_label in ("spam", "ham")
    finally:
        service.close()
