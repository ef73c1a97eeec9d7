"""The embedding job: gives every record of a project a vector for the project's model, in small
committed batches, resumable after any interruption (a kill -9 loses at most the batch in flight),
and moves a project to another model atomically once every record has a vector for it.

``labelbot embed`` runs it in the foreground; ``labelbot serve`` runs it in a niced worker process
(:class:`EmbeddingWorker`) that watches every project, so a click never waits for it.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from sqlalchemy import Engine

from core import vectors
from core.embeddings import Embedder, ProgressCallback, label_text
from core.store import reading, writing
from core.types import EmbedResult, ProjectInfo

log = logging.getLogger(__name__)

EMBEDDING_LEASE = "embedding"  # the lease of the one worker, among replicas, that embeds

#: Texts per committed batch: ~0.5-2 s of encoding on 2 cores and a write of milliseconds, so an
#: answer's commit never waits behind it, and a kill loses at most this much work.
BATCH = 256


def embed_project(
    engine: Engine,
    project: str,
    project_id: int,
    model: str,
    embedder: Embedder,
    *,
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    batch: int | None = None,
) -> EmbedResult:
    """Embed the project's records that lack a ``model`` vector, in id order, one batch at a time.

    When ``model`` is the project's target (``labelbot embed --model``) and nothing is missing at
    the end, the project switches to it in one transaction.
    """
    with reading(engine) as conn:
        total = vectors.count_missing(conn, project_id, model)
    done, after = 0, 0
    if progress is not None:
        progress(0, total)
    while True:
        if should_stop is not None and should_stop():
            return EmbedResult(project, model, done, max(total - done, 0), stopped=True)
        with reading(engine) as conn:
            todo = vectors.missing(conn, project_id, model, after_id=after, limit=batch or BATCH)
        if not todo:
            break
        encoded = embedder.encode([text for _, text in todo])
        with writing(engine) as conn:
            vectors.write_batch(conn, project_id, model, [rid for rid, _ in todo], encoded)
        after = todo[-1][0]
        done += len(todo)
        total = max(total, done)  # records imported meanwhile join the run
        if progress is not None:
            progress(done, total)
    switched = False
    with writing(engine) as conn:
        current, target = vectors.models_of(conn, project_id)
        remaining = vectors.count_missing(conn, project_id, model)
        if target == model and current != model and remaining == 0:
            vectors.switch_model(conn, project_id, model)
            switched = True
    return EmbedResult(project, model, done, remaining, switched=switched)


def label_vectors(
    engine: Engine, info: ProjectInfo, model: str, embedder: Callable[[], Embedder]
) -> dict[str, np.ndarray]:
    """label -> the ``model`` embedding of its name and description (the learner's label-name prior).

    Stored per project and model; a label whose text changed, or that has none yet, is embedded now
    (``embedder`` is called only then: the embedding worker fills them in, so the training worker
    normally never loads a model).
    """
    wanted = {label.name: label_text(label.name, label.description) for label in info.labels}
    with reading(engine) as conn:
        stored = vectors.label_vectors(conn, info.id, model)
    stale = {name: text for name, text in wanted.items() if stored.get(name, ("",))[0] != text}
    if stale:
        encoded = np.asarray(embedder().encode(list(stale.values())), dtype=np.float32)
        with writing(engine) as conn:
            vectors.write_label_vectors(conn, info.id, model, stale, encoded)
        stored.update({name: (text, encoded[i]) for i, (name, text) in enumerate(stale.items())})
    return {name: stored[name][1] for name in wanted}


class RateReporter:
    """A progress callback that logs count, rate and time left every ``every`` seconds."""

    def __init__(
        self, label: str, *, every: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.label, self.every, self.clock = label, every, clock
        self._start = self._last = clock()

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        if now - self._last < self.every and done < total:
            return
        self._last = now
        log.info("%s", describe(self.label, done, total, now - self._start))


def describe(label: str, done: int, total: int, seconds: float) -> str:
    """``label: 12,000/1,000,000 vectors (450/s, about 36 min left)``."""
    rate = done / seconds if seconds > 0 else 0.0
    left = (total - done) / rate if rate > 0 else None
    eta = "" if left is None else f", about {_duration(left)} left"
    return f"{label}: {done:,}/{total:,} vectors ({rate:,.0f}/s{eta})"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# ---------------------------------------------------------------- the background worker of `serve`


def _die_with_parent() -> None:
    """Linux: the kernel sends SIGTERM to this process when its parent dies, even by kill -9."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    parent = mp.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # it died while this process was starting
        os.kill(os.getpid(), signal.SIGTERM)


def _work(settings: dict[str, Any], nice: int, poll_seconds: float, stop: Any) -> None:
    _die_with_parent()
    if nice:
        with contextlib.suppress(OSError):
            os.nice(nice)
    from core.config import Settings
    from core.service import LabelingService

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    service = LabelingService(Settings(_env_file=None, **settings))  # type: ignore[call-arg]
    # Replicas each run a worker; the holder of this lease embeds, the others wait to take over.
    leadership = service.leadership(EMBEDDING_LEASE).start()

    def should_stop() -> bool:
        return stop.is_set() or not leadership.is_leader

    try:
        while not stop.is_set():
            worked = 0
            if leadership.is_leader:
                try:
                    worked = service.embed_everything(should_stop=should_stop, progress_log=True)
                except Exception as exc:  # the database away for a moment: try again next poll
                    log.warning("Embedding paused: %s", exc)
            if leadership.is_leader and not worked:
                worked = _update_indexes(service)
            if not worked:
                stop.wait(poll_seconds)
    finally:
        leadership.stop()
        service.close()


def _update_indexes(service: Any) -> int:
    updated = 0
    for info in service.list_projects():
        try:
            updated += service.update_search_index(info.id)
        except Exception as exc:  # a broken project must not stop the others'
            log.warning("Updating the search index of %s failed: %s", info.name, exc)
    return updated


class EmbeddingWorker:
    """The embedding job of ``labelbot serve``: one niced ``spawn`` process that polls every project
    and embeds what is missing. It ends with its parent (``stop()``, or the parent's death)."""

    def __init__(self, settings: Any, *, nice: int | None = None, poll_seconds: float = 2.0) -> None:
        context = mp.get_context("spawn")
        self._stop = context.Event()
        nice = settings.training_nice if nice is None else nice
        self._process = context.Process(
            target=_work,
            args=(settings.model_dump(), nice, poll_seconds, self._stop),
            name="labelbot-embedding",
            daemon=True,
        )

    def start(self) -> EmbeddingWorker:
        self._process.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout)
