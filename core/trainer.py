"""Background retrains in a worker process, so training never competes with requests for the GIL.

A retrain is mostly numpy and scikit-learn, but between the BLAS calls it runs Python (the lbfgs loop,
cross-validation folds, k-means, building the queue) and holds the GIL for many short stretches. Every
request thread of the bot pays for that after each socket or SQLite call it makes: in
bench/retrain_latency.py the click → next card time rose by about 40% while a retrain ran in a thread.

``ProcessTrainer`` keeps one persistent ``spawn`` worker process with its own ``LabelingService`` on
the same database. The serving service hands its background retrains to it
(``LabelingService(trainer=...)``); the worker writes the model run and swaps the queue in one transaction
as usual, and the serving process reads the result from the database. The worker keeps its pool of
embeddings in memory between retrains, so only the first one pays for loading them.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import select
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from core.config import Settings
from core.training import Trained
from core.types import ModelRunInfo

log = logging.getLogger(__name__)

__all__ = ["ProcessTrainer"]

_SERVICE: Any = None  # the worker process's LabelingService


def _die_with_parent(parent_pid: int) -> None:
    """End this worker when ``parent_pid`` ends, however it ends (kill -9 included).

    Not PR_SET_PDEATHSIG as in core.embedding_job: the pool starts its worker from whichever thread
    first submits (a retrain thread here), and the kernel sends that signal when the *thread* ends.
    A pidfd (Linux 5.3+) wakes this thread when the process ends; elsewhere the parent id is polled.
    """

    try:
        pidfd: int | None = os.pidfd_open(parent_pid)  # opened before the check below: no pid reuse race
    except (AttributeError, OSError):  # no pidfd here, or the parent is gone already
        pidfd = None
    if os.getppid() != parent_pid:  # the parent died before this process got here
        os.kill(os.getpid(), signal.SIGTERM)

    def watch() -> None:
        if pidfd is not None:
            select.select([pidfd], [], [])
        else:
            while os.getppid() == parent_pid:
                threading.Event().wait(1.0)
        os.kill(os.getpid(), signal.SIGTERM)  # the default action: end at once, as the pool's own kill does

    threading.Thread(target=watch, name="labelbot-parent-watch", daemon=True).start()


def _start_worker(
    settings: dict[str, Any], embedder_factory: Callable[[], Any] | None, nice: int, parent_pid: int
) -> None:
    global _SERVICE
    _die_with_parent(parent_pid)
    from core.service import LabelingService

    if nice and hasattr(os, "nice"):
        try:
            os.nice(nice)
        except OSError:
            log.warning("Could not lower the training process's priority", exc_info=True)
    embedder = embedder_factory() if embedder_factory is not None else None
    # No training thread of its own: the worker trains only when asked (retrain_every still sets the
    # batch size of diverse picks, as in the serving process).
    _SERVICE = LabelingService(Settings(_env_file=None, **settings), embedder=embedder)  # type: ignore[call-arg]


def _retrain(project: str, queue_size: int | None) -> Trained:
    # The result carries the new model's guess for every pool record (built by the retrain anyway),
    # so the serving process need not predict the whole pool again itself.
    return _SERVICE.retrain_with_guesses(project, queue_size=queue_size)


class ProcessTrainer:
    """Runs ``LabelingService.retrain`` in one persistent worker process (one retrain at a time).

    Parameters
    ----------
    settings : the serving service's settings (the worker opens the same database).
    embedder_factory : a picklable, module-level callable returning the embedder; default: the
        settings' embedding model (only its name is used by a retrain, the model is never loaded).
    nice : added to the worker's nice value (0 leaves it alone); default: ``settings.training_nice``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        embedder_factory: Callable[[], Any] | None = None,
        nice: int | None = None,
    ) -> None:
        nice = settings.training_nice if nice is None else nice
        self._initargs = (settings.model_dump(), embedder_factory, nice, os.getpid())
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=mp.get_context("spawn"),  # never fork a process with threads and open SQLite handles
            initializer=_start_worker,
            initargs=self._initargs,
        )

    def retrain(self, project: str, *, queue_size: int | None = None) -> ModelRunInfo | None:
        """Retrain ``project`` in the worker and wait for it; exceptions come back as they were raised."""
        return self.retrain_with_guesses(project, queue_size=queue_size).run

    def retrain_with_guesses(self, project: str, *, queue_size: int | None = None) -> Trained:
        """:meth:`retrain`, plus the new model's guesses over the pool and the labels' fingerprint.

        A worker that died (killed for memory, say) is replaced once and the retrain tried again.
        """
        try:
            return self._pool.submit(_retrain, project, queue_size).result()
        except BrokenProcessPool:
            log.warning("The training process died; starting a new one", exc_info=True)
            self._pool.shutdown(wait=False)
            self._pool = self._new_pool()
            return self._pool.submit(_retrain, project, queue_size).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
