"""The background loop of a serving bot: one APScheduler ``BackgroundScheduler`` per process.

Jobs, all stored in the project database (``SQLAlchemyJobStore`` on ``LABELBOT_DATABASE_URL``, table
``apscheduler_jobs``) so they survive restarts:

* ``retrain-check`` — every ``LABELBOT_RETRAIN_INTERVAL_MINUTES`` (default 10), retrain each project
  whose answers or records changed since its last retrain (``LabelingService.retrain_if_changed``), on
  the service's single training worker. Retraining after every N answers (``LABELBOT_RETRAIN_EVERY``)
  happens in the service itself; this job catches the answers that never reach N (a quiet afternoon)
  and the ones given through another process (the CLI).
* ``prompt-…`` — post "12 records are waiting; the model is at 81% — 5 minutes helps" with a
  "Label 5 now" button to a channel on a cron schedule (``/label schedule``, ``labelbot schedule``).
* ``sub-<project id>-<user>`` — DM a person n cards on their schedule (``/label subscribe``).
* ``digest-…`` — post the weekly digest with the learning-curve chart to a channel (``/label digest``).

Nobody is prompted when nothing is left to label: prompts skip the post, subscriptions send nothing.

Every job is ``coalesce=True`` (a bot that was down over several fire times runs a job once, not once
per missed time), ``max_instances=1`` and has a misfire grace time (``LABELBOT_MISFIRE_GRACE_SECONDS``,
default one hour: a prompt due while the bot restarted still goes out; a day-old one does not).

Why a registry of the running service: the job store pickles each job as a *reference* to a
module-level function (``bot.scheduler:run_prompt``) plus its keyword arguments. The live objects a
job needs — the ``LabelingService`` with its engine, locks and training worker, and the Slack
``WebClient`` — cannot be pickled into a database and belong to one process, so jobs carry only plain
values (project id, channel, user, n) and find this process's service and client in ``_RUNTIME``, which
:meth:`LabelScheduler.start` sets and :meth:`LabelScheduler.shutdown` clears. A job that fires with no
runtime registered does nothing. That registry is for the job functions below only: listeners reach the
scheduler through bolt's context (``context["scheduler"]``, put there by :meth:`LabelScheduler.attach`),
and tests/test_layering.py checks that nothing else in ``bot/`` reads it.

Several processes, one job store: APScheduler 3 does not share job stores live between processes. A
scheduler reads the store when it wakes up, so a running ``labelbot serve`` wakes every
``LABELBOT_SCHEDULE_POLL_SECONDS`` (default 10) to see jobs that ``labelbot schedule`` or another replica
added or removed. The CLI opens the store with a *paused* scheduler, which never runs jobs.

Several replicas (``labelbot serve`` processes on one database): each one's scheduler is given the
process's ``core.leadership.Leadership``. Every replica edits the one shared job store (a schedule added
on any replica is stored once), but only the lease holder's scheduler runs; the others keep theirs
paused, and resume it when they take the lease over (within ``lease + renew`` seconds of the leader's
death; at once after a clean shutdown releases it). Retrains likewise run on the leader only: a
follower's retrain request (N answers, a dry queue, ``/label retrain``) becomes a one-off
``retrain-project-<id>`` job in the shared store, which the leader runs at its next wake-up; the
``retrain-check`` job, which also runs on the leader only, covers what that misses.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_PAUSED, STATE_RUNNING
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from slack_bolt import App, BoltContext

from bot import blocks
from bot.labeling import Labeling
from core.errors import LabelbotError, ProjectNotFound
from core.leadership import Leadership
from core.schedules import CronSpec, ScheduledItem, check_timezone
from core.service import LabelingService
from core.types import ProjectInfo

log = logging.getLogger(__name__)

CONTEXT_KEY = "scheduler"  # listeners find the running LabelScheduler as context["scheduler"]
RETRAIN_CHECK_ID = "retrain-check"
RETRAIN_REQUEST_PREFIX = "retrain-project-"  # + project id: a follower's retrain request for the leader
KINDS = {"prompt": "prompt", "digest": "digest", "sub": "subscription"}
DEFAULT_SECONDS_PER_CARD = 60.0  # until the team's own median time per answer is known
MAX_CARDS = 20


class SchedulerSettings(BaseSettings):
    """``LABELBOT_*`` settings of the background loop (core settings stay in ``core.config``)."""

    model_config = SettingsConfigDict(env_prefix="LABELBOT_", env_file=".env", extra="ignore")

    # Time zone of new schedules when the command names none; unset: the admin's Slack zone, else UTC.
    timezone: str | None = None
    retrain_interval_minutes: float = Field(default=10.0, ge=0)  # 0 disables the retrain-check job
    misfire_grace_seconds: int = Field(default=3600, ge=1)
    # How often the running scheduler looks for jobs other processes added (schedules, retrain requests);
    # 0: never. Each look is two indexed reads of the job store.
    schedule_poll_seconds: float = Field(default=10.0, ge=0)
    job_threads: int = Field(default=4, ge=1)


@dataclass
class Runtime:
    """What jobs need from the serving process (see the module docstring for why it is a registry)."""

    service: LabelingService
    client: Any  # slack_sdk.WebClient; None in a process that only edits schedules
    labeling: Labeling
    scheduler: LabelScheduler
    clock: Any = field(default=lambda: datetime.now(UTC))


# The one module-level registry of the bot: APScheduler's persistent jobs are pickled references to the
# module-level job functions below with plain kwargs, so those functions can only find the live service,
# client and scheduler here. Only the job functions read it; listeners use bolt's context instead.
_RUNTIME: Runtime | None = None
_RUNTIME_LOCK = threading.Lock()
# A job thread belongs to one LabelScheduler's pool: its jobs use that scheduler's runtime, so two
# schedulers in one process (tests of replicas) each run jobs with their own service.
_JOB_THREAD = threading.local()


def current_runtime() -> Runtime | None:
    """The runtime of the scheduler running this job (else of the process's serving scheduler); for the
    job functions only."""
    own = getattr(_JOB_THREAD, "scheduler", None)
    if own is not None:
        return own.runtime
    with _RUNTIME_LOCK:
        return _RUNTIME


class LabelScheduler:
    """Owns the process's ``BackgroundScheduler`` and edits its jobs in ``ScheduledItem`` terms."""

    def __init__(
        self,
        service: LabelingService,
        client: Any = None,
        *,
        settings: SchedulerSettings | None = None,
        database_url: str | None = None,
        labeling: Labeling | None = None,
        clock: Any = None,
        leadership: Leadership | None = None,
    ) -> None:
        """``leadership``: this replica runs jobs and retrains only while it holds the lease (see the
        module docstring); None: it always does (one serving process per database)."""
        self.service = service
        self.leadership = leadership
        self.runtime: Runtime | None = None
        self.client = client
        self.settings = settings or SchedulerSettings()
        # Scheduled cards go through the outbox (bot.deliveries) like every other card.
        self.labeling = labeling or Labeling(service, client=client)
        self.clock = clock or (lambda: datetime.now(UTC))
        url = database_url or service.settings.database_url
        engine_options: dict[str, Any] = {}
        if _backend_name(url) == "sqlite":
            # Same busy timeout as the service's engine: a job-store write waits for a retrain's commit.
            engine_options["connect_args"] = {"timeout": 30}
        self.scheduler = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(url=url, engine_options=engine_options)},
            executors={"default": ThreadPoolExecutor(
                self.settings.job_threads, pool_kwargs={"initializer": self._mark_job_thread}
            )},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": self.settings.misfire_grace_seconds,
            },
            timezone=UTC,
        )
        self._stop_polling = threading.Event()
        self._poller: threading.Thread | None = None
        self._role_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    def attach(self, app: App) -> LabelScheduler:
        """Put this scheduler into ``app``'s bolt context (``context["scheduler"]``) for the listeners of
        ``/label schedule``, ``digest``, ``subscribe`` and ``unsubscribe``."""

        def inject_scheduler(context: BoltContext, next: Any) -> None:
            context[CONTEXT_KEY] = self
            next()

        app.middleware(inject_scheduler)
        return self

    def start(self, *, paused: bool = False) -> LabelScheduler:
        """Start the scheduler. ``paused=True`` only opens the job store (for the CLI): no job runs.
        With a leadership, jobs run while this process is leader (it starts paused otherwise)."""
        global _RUNTIME
        self.scheduler.start(paused=paused or self.leadership is not None)
        if paused:
            return self
        self.runtime = Runtime(self.service, self.client, self.labeling, self, self.clock)
        with _RUNTIME_LOCK:
            _RUNTIME = self.runtime
        if self.leadership is None:
            self.ensure_retrain_check()
        else:
            self.service.forward_retrains(self._forward_retrain)
            self.leadership.listeners.append(self._follow_leadership)
            self._follow_leadership()
        if self.settings.schedule_poll_seconds > 0:
            self._poller = threading.Thread(target=self._poll, name="labelbot-schedule-poll", daemon=True)
            self._poller.start()
        return self

    def shutdown(self, wait: bool = True) -> None:
        """Stop running jobs (waiting for running ones when ``wait``) and unregister the runtime."""
        global _RUNTIME
        self._stop_polling.set()
        if self.leadership is not None and self.runtime is not None:
            with contextlib.suppress(ValueError):
                self.leadership.listeners.remove(self._follow_leadership)
            self.service.forward_retrains(None)
        with self._role_lock:  # not while a change of role pauses or resumes it
            if self.scheduler.running:
                # Paused first, and past the round of due jobs in progress (it holds the job stores'
                # lock while it hands jobs to the executor): a job handed over during shutdown logged
                # "cannot schedule new futures after shutdown" and a JobLookupError, with tracebacks.
                self.scheduler.pause()
                with self.scheduler._jobstores_lock:
                    pass
                self.scheduler.shutdown(wait=wait)
        if self._poller is not None:
            self._poller.join(timeout=5)
        self.runtime = None
        with _RUNTIME_LOCK:
            if _RUNTIME is not None and _RUNTIME.scheduler is self:
                _RUNTIME = None

    def __enter__(self) -> LabelScheduler:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.shutdown()

    @property
    def role(self) -> str:
        """``leader`` when this process runs the jobs (always, without a leadership), else ``follower``."""
        return "leader" if self.leadership is None or self.leadership.is_leader else "follower"

    def _poll(self) -> None:
        # Jobs another process (the CLI, another replica) wrote are only seen when this scheduler wakes up.
        while not self._stop_polling.wait(self.settings.schedule_poll_seconds):
            try:
                if self.leadership is not None:
                    self._follow_leadership()
                if self.scheduler.state == STATE_RUNNING:
                    self.scheduler.wakeup()
            except Exception:  # the database is away for a moment: try again at the next poll
                log.warning("Schedule poll failed", exc_info=True)

    def _follow_leadership(self, *_: object) -> None:
        """Run jobs while this process holds the lease, pause them otherwise (idempotent: it reads the
        role now rather than trusting the call, as calls may come from the lease thread and the poller)."""
        with self._role_lock:
            leading = self.leadership is not None and self.leadership.is_leader
            if leading and self.scheduler.state == STATE_PAUSED:
                try:
                    self.ensure_retrain_check()
                except Exception:
                    log.warning("Could not install the retrain check; the next poll retries", exc_info=True)
                self.scheduler.resume()  # runs what is due now, e.g. a dead leader's missed prompt
                log.info("This process now runs the scheduled jobs and retrains (leader)")
            elif not leading and self.scheduler.state == STATE_RUNNING:
                self.scheduler.pause()  # jobs already running finish
                log.info("Another process runs the scheduled jobs and retrains (follower)")

    def _mark_job_thread(self) -> None:
        _JOB_THREAD.scheduler = self

    def _forward_retrain(self, info: ProjectInfo) -> bool:
        """A follower's retrain request, as a one-off job for the leader; False on the leader (it retrains
        itself). One waiting request per project: a second replaces the first."""
        if self.leadership is None or self.leadership.is_leader:
            return False
        job_id = f"{RETRAIN_REQUEST_PREFIX}{info.id}"
        try:
            self.scheduler.add_job(
                run_requested_retrain, DateTrigger(self.clock()), id=job_id, replace_existing=True,
                kwargs={"job_id": job_id, "project_id": info.id, "project": info.name},
                name=f"retrain {info.name} (asked by a follower)",
            )
        except Exception:  # never on the click path: the leader's retrain check catches up
            log.warning("Could not hand the retrain of %s to the leader", info.name, exc_info=True)
        return True

    def ensure_retrain_check(self) -> None:
        """Install the interval job with the configured interval (one already there with that interval
        keeps its next run time, so a restart or a new leader does not put it off); remove it when
        disabled (0)."""
        minutes = self.settings.retrain_interval_minutes
        if minutes <= 0:
            self._remove_quietly(RETRAIN_CHECK_ID)
            return
        existing = self.scheduler.get_job(RETRAIN_CHECK_ID)
        if existing is not None and getattr(existing.trigger, "interval", None) == timedelta(minutes=minutes):
            return
        self.scheduler.add_job(
            run_retrain_check, IntervalTrigger(minutes=minutes), id=RETRAIN_CHECK_ID,
            name="retrain projects whose labels changed", replace_existing=True,
        )

    # ------------------------------------------------------------------ editing

    def add_prompt(
        self, project: ProjectInfo, channel: str, spec: CronSpec, *, n: int = 5, created_by: str = ""
    ) -> ScheduledItem:
        """Post a labeling prompt with a "Label ``n`` now" button to ``channel`` on ``spec``."""
        return self._add("prompt", run_prompt, project, channel, spec, n=_check_n(n), created_by=created_by)

    def add_digest(
        self, project: ProjectInfo, channel: str, spec: CronSpec, *, created_by: str = ""
    ) -> ScheduledItem:
        """Post the status digest with the learning-curve chart to ``channel`` on ``spec``."""
        return self._add("digest", run_digest, project, channel, spec, n=None, created_by=created_by)

    def subscribe(self, project: ProjectInfo, user: str, spec: CronSpec, *, n: int = 5) -> ScheduledItem:
        """DM ``user`` ``n`` cards on ``spec``; replaces the user's earlier subscription to the project."""
        job_id = f"sub-{project.id}-{user}"
        return self._add("sub", run_subscription, project, user, spec, n=_check_n(n), created_by=user,
                         job_id=job_id, replace=True)

    def unsubscribe(self, project: ProjectInfo, user: str) -> bool:
        """Remove ``user``'s subscription to ``project``; False when there was none."""
        return self._remove_quietly(f"sub-{project.id}-{user}")

    def items(self, project_id: int | None = None) -> list[ScheduledItem]:
        """Prompts, digests and subscriptions (of one project), soonest first."""
        out = []
        for job in self.scheduler.get_jobs():
            item = _item(job)
            if item is not None and (project_id is None or item.project_id == project_id):
                out.append(item)
        far = datetime.max.replace(tzinfo=UTC)
        return sorted(out, key=lambda i: (i.next_run or far, i.id))

    def remove(self, item_id: str, *, project_id: int | None = None) -> ScheduledItem:
        """Remove a prompt, digest or subscription by id (only of ``project_id`` when given)."""
        job = self.scheduler.get_job(item_id.strip())
        item = _item(job) if job is not None else None
        if item is None or (project_id is not None and item.project_id != project_id):
            raise LabelbotError(f"No schedule with id {item_id!r} in this project; the list shows the ids.")
        self.scheduler.remove_job(item.id)
        return item

    def run_now(self, item_id: str) -> Any:
        """Run a job's function at once in this thread, outside its schedule (tests, support)."""
        job = self.scheduler.get_job(item_id)
        if job is None:
            raise LabelbotError(f"No schedule with id {item_id!r}.")
        return job.func(*job.args, **job.kwargs)

    def _add(
        self, kind: str, func: Any, project: ProjectInfo, target: str, spec: CronSpec, *, n: int | None,
        created_by: str, job_id: str | None = None, replace: bool = False,
    ) -> ScheduledItem:
        job_id = job_id or f"{kind}-{secrets.token_hex(3)}"
        kwargs = {
            "job_id": job_id, "project_id": project.id, "project": project.name, "target": target, "n": n,
            "when": spec.label, "created_by": created_by,
        }
        job = self.scheduler.add_job(
            func, CronTrigger(**spec.trigger_kwargs()), id=job_id, kwargs=kwargs, replace_existing=replace,
            name=f"{kind} {project.name}: {spec.label}",
        )
        item = _item(job)
        assert item is not None
        if item.next_run is None:
            nxt = job.trigger.get_next_fire_time(None, self.clock())
            item = ScheduledItem(**{**item.__dict__, "next_run": nxt})
        return item

    def _remove_quietly(self, job_id: str) -> bool:
        try:
            self.scheduler.remove_job(job_id)
            return True
        except JobLookupError:
            return False


def _backend_name(url: str) -> str:
    """``sqlite`` of ``sqlite:///x.db`` or ``sqlite+pysqlite://``: the dialect of a SQLAlchemy URL."""
    return url.partition(":")[0].partition("+")[0].lower()


def _check_n(n: int) -> int:
    if not 1 <= int(n) <= MAX_CARDS:
        raise LabelbotError(f"The number of cards must be between 1 and {MAX_CARDS} (not {n}).")
    return int(n)


def _item(job: Any) -> ScheduledItem | None:
    kwargs = job.kwargs or {}
    kind = KINDS.get(job.id.split("-", 1)[0])
    if kind is None or "project_id" not in kwargs:
        return None
    return ScheduledItem(
        id=job.id, kind=kind, project_id=int(kwargs["project_id"]), project=str(kwargs.get("project", "")),
        target=str(kwargs.get("target", "")), when=str(kwargs.get("when", "")), n=kwargs.get("n"),
        next_run=getattr(job, "next_run_time", None), created_by=str(kwargs.get("created_by", "")),
    )


def resolve_timezone(explicit: str | None, *, settings: SchedulerSettings | None = None,
                     slack_tz: str | None = None) -> str:
    """The zone of a new schedule: named in the command, else ``LABELBOT_TIMEZONE``, else the
    person's Slack zone, else UTC."""
    if explicit:
        return check_timezone(explicit)
    configured = (settings or SchedulerSettings()).timezone
    if configured:
        return check_timezone(configured)
    if slack_tz:
        try:
            return check_timezone(slack_tz)
        except LabelbotError:
            log.warning("Ignoring unknown Slack time zone %r", slack_tz)
    return "UTC"


def slack_timezone(client: Any, user_id: str) -> str | None:
    """``users.info`` → ``user.tz`` (e.g. ``Europe/Berlin``), None when Slack does not say."""
    try:
        return client.users_info(user=user_id)["user"].get("tz") or None
    except Exception:  # missing users:read scope, unknown user: fall back to the default zone
        log.warning("users.info failed for %s; using the default time zone", user_id, exc_info=True)
        return None


# ---------------------------------------------------------------------------------------- job functions
# Module-level so the job store can pickle references to them; see the module docstring.


def _runtime_project(job_id: str, project_id: int, project: str) -> tuple[Runtime, ProjectInfo] | None:
    runtime = current_runtime()
    if runtime is None:
        log.warning("Job %s fired with no running labelbot service in this process; skipped", job_id)
        return None
    try:
        info = runtime.service.get_project_by_id(project_id)
    except ProjectNotFound:
        info = None
    if info is None or info.name != project:
        # The project was deleted (and maybe its id reused): this schedule has nothing left to do.
        log.info("Removing schedule %s: project %r no longer exists", job_id, project)
        runtime.scheduler._remove_quietly(job_id)
        return None
    return runtime, info


def run_retrain_check() -> int:
    """Retrain every project whose labels changed since its last retrain; returns how many started."""
    runtime = current_runtime()
    if runtime is None:
        return 0
    started = 0
    for info in runtime.service.list_projects():
        try:
            started += bool(runtime.service.retrain_if_changed(info.name))
        except Exception:  # one broken project must not stop the others' retrains
            log.exception("Retrain check of %s failed", info.name)
    return started


def run_requested_retrain(*, job_id: str, project_id: int, project: str, **_: Any) -> bool:
    """A follower's retrain request, run by the leader on its training worker; False if one is waiting."""
    found = _runtime_project(job_id, project_id, project)
    if found is None:
        return False
    runtime, info = found
    return runtime.service.request_retrain(info.name)


def _seconds_per_card(service: LabelingService, project: str) -> float:
    medians = [a.median_seconds for a in service.status(project).annotators if a.median_seconds]
    medians.sort()
    return medians[len(medians) // 2] if medians else DEFAULT_SECONDS_PER_CARD


def run_prompt(*, job_id: str, project_id: int, project: str, target: str, n: int = 5, **_: Any) -> bool:
    """Post the labeling prompt to channel ``target``; False (and no post) when nothing is left."""
    found = _runtime_project(job_id, project_id, project)
    if found is None:
        return False
    runtime, info = found
    waiting = runtime.service.pending_count(info.name)
    if waiting == 0:
        log.info("Prompt %s skipped: nothing left to label in %s", job_id, info.name)
        return False
    history = runtime.service.run_history(info.name)
    metric = "cv_micro_f1" if info.multi_label else "cv_accuracy"  # a multi-label run has no accuracy
    accuracy = next((r.metrics[metric] for r in reversed(history) if metric in r.metrics), None)
    n = min(n, waiting)
    minutes = max(1, round(n * _seconds_per_card(runtime.service, info.name) / 60))
    message = blocks.prompt_message(info, waiting=waiting, accuracy=accuracy, n=n, minutes=minutes)
    runtime.client.chat_postMessage(channel=target, **message)
    return True


def run_subscription(*, job_id: str, project_id: int, project: str, target: str, n: int = 5,
                     when: str = "", **_: Any) -> int:
    """DM ``target`` (a user) their next ``n`` cards; sends nothing when nothing is left for them."""
    found = _runtime_project(job_id, project_id, project)
    if found is None:
        return 0
    runtime, info = found
    owed = runtime.service.request_cards(info.id, target, n)
    sent = runtime.labeling.deliveries.deliver_here([owed]) if runtime.labeling.deliveries else 0
    if sent:  # cards Slack did not take now follow later, without this line
        runtime.client.chat_postMessage(
            channel=runtime.labeling.dm_channel(runtime.client, target),
            **blocks.notice(f"Your scheduled cards from {info.name} ({when}). "
                            "`/label unsubscribe` stops them."),
        )
    return sent


def run_digest(*, job_id: str, project_id: int, project: str, target: str, **_: Any) -> bool:
    """Post the digest and its learning-curve chart to channel ``target``."""
    found = _runtime_project(job_id, project_id, project)
    if found is None:
        return False
    runtime, info = found
    from bot import digests  # matplotlib loads on first use, not when the bot starts

    digests.post_digest(runtime.client, runtime.service, info, target, now=runtime.clock())
    return True
