"""Retraining: when a project retrains and where, off the click path.

The facade reports what happened (an answer, a hand-out, an import) and this module applies
``core.policy.RetrainPolicy`` to it: it counts answers, keeps the cooldown, runs at most one retrain
per project at a time, on this process's training thread or in a ``core.trainer.ProcessTrainer``,
and remembers what each retrain leaves behind (the fingerprint of the labels it read, when it ended).
Without a training thread nothing here retrains on its own: the caller asks (the CLI does).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from core.handout import HandOut
from core.policy import RetrainPolicy
from core.pools import PoolCache
from core.training import Trained
from core.types import ModelRunInfo, ProjectInfo

log = logging.getLogger(__name__)

#: Called after each background retrain with its run (None below two classes) and the project's name.
RetrainListener = Callable[[ModelRunInfo | None, str], None]
#: Takes a background retrain request to another process (a follower replica's go to the leader's
#: training worker); returns False to retrain in this process after all.
RetrainForward = Callable[[ProjectInfo], bool]


class Retraining:
    """Parameters
    ----------
    policy, pools : the rules, and the caches a new run's guesses go into.
    retrain_here : retrains a project (by id) in this process; it enters :meth:`exclusive` itself.
    background : whether this process has a training thread (else nothing retrains on its own).
    trainer : a ``ProcessTrainer`` the training thread hands retrains to, or None to run them itself.
    nice : added to the training thread's nice value (Linux; 0 leaves it alone).
    """

    def __init__(
        self,
        policy: RetrainPolicy,
        pools: PoolCache,
        *,
        retrain_here: Callable[[int], Trained],
        background: bool,
        trainer: Any = None,
        nice: int = 0,
    ) -> None:
        self.policy, self.pools, self.trainer = policy, pools, trainer
        self._retrain_here = retrain_here
        self._nice = nice
        self._lock = threading.Lock()  # guards the dicts below
        self._project_locks: dict[int, threading.Lock] = {}
        self._answers: Counter[int] = Counter()  # answers since each project's last retrain started
        self._pending: dict[int, Future[ModelRunInfo | None]] = {}
        self._fingerprints: dict[int, str] = {}
        self._last: dict[int, tuple[float, float]] = {}  # project -> (ended, seconds it took), monotonic
        self._executor = (
            ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="labelbot-train", initializer=self._lower_priority
            )
            if background
            else None
        )
        self.listeners: list[RetrainListener] = []
        self.forward: RetrainForward | None = None

    # ------------------------------------------------------------------ what the facade reports

    def answer_counted(self, info: ProjectInfo, changed: bool) -> bool:
        """An answer was stored, changed or undone; True if that started a retrain."""
        if not changed or not self.policy.every:
            return False
        since = self._since_last(info.id)
        with self._lock:
            self._answers[info.id] += 1
            due = self.policy.due_after_answers(self._answers[info.id], **since)
        return due and self._executor is not None and not self._is_pending(info.id) and self.request(info)

    def handed_out(self, info: ProjectInfo, out: HandOut, asked: int) -> None:
        """A queue that ran dry while unranked records remain is refilled, on the training thread only."""
        if self._executor is not None and self.policy.due_after_handout(
            asked, out.ranked, len(out.records) - out.ranked, **self._since_last(info.id)
        ):
            self.request(info)

    def imported(self, info: ProjectInfo, new_records: int, new_answers: int) -> None:
        """New records or labels: a new ranking, on the training thread only."""
        if (
            self._executor is not None
            and self.policy.every
            and self.policy.due_after_import(new_records, new_answers)
        ):
            self.request(info)

    # ------------------------------------------------------------------ running retrains

    def request(self, info: ProjectInfo) -> bool:
        """Retrain on the training thread (inline without one); False if one is already waiting."""
        if self._executor is None:
            self._retrain_here(info.id)
            return True
        if self.forward is not None and self.forward(info):
            with self._lock:  # the answers so far go into the other process's retrain
                self._answers[info.id] = 0
            return True
        with self._lock:
            if self._is_pending(info.id):
                return False
            self._pending[info.id] = self._executor.submit(self._run, info.id, info.name)
        return True

    @contextlib.contextmanager
    def exclusive(self, project_id: int) -> Iterator[None]:
        """The one retrain of ``project_id`` running now; its answers count from zero again, and the
        caches wait for the guesses it brings rather than predict the pool themselves."""
        with self._lock:
            lock = self._project_locks.setdefault(project_id, threading.Lock())
        with lock, self.pools.expecting_guesses(project_id):
            with self._lock:
                self._answers[project_id] = 0
            yield

    def trained(self, project_id: int, fingerprint: str) -> None:
        with self._lock:
            self._fingerprints[project_id] = fingerprint

    def fingerprint(self, project_id: int) -> str | None:
        """The fingerprint of the labels the last retrain in this process read, if any."""
        with self._lock:
            return self._fingerprints.get(project_id)

    def wait(self, timeout: float | None = None) -> None:
        """Block until queued background retrains finish (for tests, benchmarks and shutdown)."""
        with self._lock:
            futures = list(self._pending.values())
        for future in futures:
            future.result(timeout=timeout)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        if self.trainer is not None:
            self.trainer.close()

    def _run(self, project_id: int, name: str) -> ModelRunInfo | None:
        started = time.monotonic()
        try:
            if self.trainer is None:
                trained = self._retrain_here(project_id)
            else:
                with self.exclusive(project_id):
                    # The worker process writes the run and swaps the queue; its guesses for the pool
                    # come back with it, so no click has to predict the whole pool in this process.
                    trained = self.trainer.retrain_with_guesses(name)
                    self.pools.remember_guesses(project_id, trained.guesses)
                    self.trained(project_id, trained.fingerprint)
        except Exception:  # a failed retrain must not kill the worker; the old queue stays
            log.exception("Background retrain of %s failed", name)
            return None
        finally:
            ended = time.monotonic()
            with self._lock:
                self._last[project_id] = (ended, ended - started)
        for listener in list(self.listeners):
            try:
                listener(trained.run, name)
            except Exception:
                log.exception("Retrain listener failed")
        return trained.run

    def _is_pending(self, project_id: int) -> bool:
        pending = self._pending.get(project_id)
        return pending is not None and not pending.done()

    def _since_last(self, project_id: int) -> dict[str, Any]:
        with self._lock:
            ended, took = self._last.get(project_id, (None, 0.0))
        return {"seconds_since_last": None if ended is None else time.monotonic() - ended, "last_took": took}

    def _lower_priority(self) -> None:
        # Linux schedules each thread as its own task, so this lowers the training thread only.
        if self._nice and sys.platform.startswith("linux"):
            try:
                tid = threading.get_native_id()
                os.setpriority(
                    os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + self._nice)
                )
            except OSError:
                log.warning("Could not lower the training thread's priority", exc_info=True)
