"""What a process keeps in memory per project: the embeddings pool and the latest model's guesses,
each checked against the versions in the project's row (``data_version``, ``latest_run_id``), so
several processes on one database stay right without talking to each other.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Engine, select

from core import index as vector_index
from core import rule_votes
from core.index import VectorIndex
from core.learner import PoolScores
from core.models import ModelRun
from core.multilabel_learner import SetNames
from core.projects import ProjectState
from core.store import reading
from core.vectors import VectorFiles, VectorSet

log = logging.getLogger(__name__)

#: Cached guesses: (run id, pool lineage, rows of (best class index, probability), class names). Pools
#: of one lineage only grow by appended rows, so an older table still names the first rows right.
Guesses = tuple[int, str, np.ndarray, tuple[str, ...]]


@dataclass
class Pool:
    """Embeddings of one project and model, as a float16 memory map shared with this machine's other
    processes; rows in the order they were embedded (``index.row_of`` finds a record's row)."""

    data_version: int
    model: str
    index: VectorIndex
    lineage: str = ""

    @property
    def ids(self) -> np.ndarray:
        return self.index.ids

    @property
    def vectors(self) -> np.ndarray:
        return self.index.vectors


class PoolCache:
    """Per-process caches of pools and guesses, each checked against the versions in the project row."""

    def __init__(self, engine: Engine, default_model: Callable[[], str], files: VectorFiles) -> None:
        self.engine = engine
        self._default_model = default_model
        self.files = files
        self._lock = threading.Lock()
        self._pools: dict[int, Pool] = {}
        self._guesses: dict[int, Guesses] = {}
        self._computing: dict[int, threading.Lock] = {}
        self._loading: dict[int, threading.Lock] = {}
        self._expected: dict[int, int] = {}  # projects whose retrain in flight brings new guesses

    def model_of(self, state: ProjectState) -> str:
        """The project's embedding model (projects from before per-project models: the settings')."""
        return state.embedding_model or self._default_model()

    def pool(self, state: ProjectState, *, fresh: bool = True) -> Pool:
        """The project's embeddings, caught up (new rows only) when a batch of vectors changed them.

        ``fresh=False`` (the click path): a pool of the project's model that is behind is returned
        as it is while a background thread catches it up, so a click never waits for the embedding
        job's latest rows.
        """
        pid, model = state.info.id, self.model_of(state)
        with self._lock:
            cached = self._pools.get(pid)
            loading = self._loading.setdefault(pid, threading.Lock())
        if cached is not None and cached.model == model:
            if cached.data_version >= state.data_version:
                return cached
            if not fresh:
                if loading.acquire(blocking=False):
                    threading.Thread(
                        target=self._load_in_background,
                        args=(loading, state),
                        name="labelbot-pool",
                        daemon=True,
                    ).start()
                return cached
        with loading:  # one thread loads; the others wait for its pool rather than load their own
            return self._load(state)

    def _load_in_background(self, loading: threading.Lock, state: ProjectState) -> None:
        try:
            self._load(state)
        except Exception:  # the stale pool stays; the next click tries again
            log.exception("Loading the pool of project %s failed", state.info.id)
        finally:
            loading.release()

    def _load(self, state: ProjectState) -> Pool:
        pid, model = state.info.id, self.model_of(state)
        with self._lock:
            cached = self._pools.get(pid)
        if cached is not None and cached.data_version >= state.data_version and cached.model == model:
            return cached
        known = None
        if cached is not None and cached.model == model:
            known = VectorSet(cached.ids, cached.vectors, cached.data_version, cached.lineage)
        found = self.files.load(self.engine, pid, state.info.created_at, model, known=known)
        if cached is not None and known is not None and found.ids is known.ids:
            index = cached.index
        else:
            index = VectorIndex(
                found.ids, found.vectors, directory=found.index_dir, exact_below=vector_index.EXACT_BELOW
            )
        pool = Pool(found.loaded_version, model, index, found.lineage)
        with self._lock:
            self._pools[pid] = pool
        return pool

    def guess(self, state: ProjectState, *, fresh: bool = True) -> Callable[[int], tuple[str, float] | None]:
        """record id -> the latest model's (label, probability), or None.

        Lazy: the pool is loaded (and predicted once per new run) only when a record is looked up, so
        a card whose queue row carries its guess costs nothing here (a CLI ``next`` loads no pool).
        ``fresh=False`` (the click path): while the latest run's guesses are being made, the previous
        run's are shown; reports and exports keep the default and always see the latest run.
        """
        found: list[tuple[Pool, Guesses | None]] = []

        def lookup(record_id: int) -> tuple[str, float] | None:
            if not found:
                pool = self.pool(state, fresh=fresh)
                found.append((pool, self._guess_table(state, pool, fresh=fresh)))
            pool, table = found[0]
            if table is None:
                return None
            row = pool.index.row_of(record_id)
            if row is None or row >= len(table[2]):  # embedded after the table was made
                return None
            return table[3][int(table[2][row, 0])], float(table[2][row, 1])

        return lookup

    def _guess_table(self, state: ProjectState, pool: Pool, *, fresh: bool) -> Guesses | None:
        """The latest run's guesses; a click never predicts the pool when earlier guesses exist.

        A new run's table comes with it from the training worker (:meth:`remember_guesses`); one
        made elsewhere (the CLI, another replica) is predicted here on a background thread while
        clicks keep showing the previous run's guesses. Only a process with no guesses at all yet
        (a CLI export, a first card) predicts in the caller's thread.
        """
        run_id = state.latest_run_id
        if run_id is None or len(pool.ids) == 0:
            return None
        pid = state.info.id
        with self._lock:
            cached = self._guesses.get(pid)
            computing = self._computing.setdefault(pid, threading.Lock())
            expected = self._expected.get(pid, 0)
        if cached is not None and cached[0] == run_id and _covers(cached, pool):
            return cached
        if not fresh and cached is not None and cached[1] == pool.lineage:
            if not expected and computing.acquire(blocking=False):
                threading.Thread(
                    target=self._refresh,
                    args=(computing, pid, run_id, pool),
                    name="labelbot-guesses",
                    daemon=True,
                ).start()
            return cached
        with computing:
            with self._lock:
                cached = self._guesses.get(pid)
            if cached is not None and cached[0] == run_id and _covers(cached, pool):
                return cached
            return self._predict_table(pid, run_id, pool)

    def _refresh(self, computing: threading.Lock, pid: int, run_id: int, pool: Pool) -> None:
        try:
            self._predict_table(pid, run_id, pool)
        except Exception:  # the previous guesses stay; the next click tries again
            log.exception("Predicting the pool of project %s failed", pid)
        finally:
            computing.release()

    @contextlib.contextmanager
    def expecting_guesses(self, project_id: int) -> Iterator[None]:
        """While a retrain of ``project_id`` runs for this process, its guesses will come with it."""
        with self._lock:
            self._expected[project_id] = self._expected.get(project_id, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._expected[project_id] -= 1

    def _predict_table(self, pid: int, run_id: int, pool: Pool) -> Guesses | None:
        with reading(self.engine) as conn:
            blob = conn.execute(select(ModelRun.model_blob).where(ModelRun.id == run_id)).scalar()
        if blob is None:
            return None
        classifier = pickle.loads(blob)  # written by this service only, never by users
        if getattr(classifier, "n_features_in_", pool.vectors.shape[1]) != pool.vectors.shape[1]:
            return None  # trained on another embedding model
        with self._lock:
            cached = self._guesses.get(pid)
        # One scoring thread: this runs beside request threads (in the bot, behind a click), not in the
        # niced training worker, whose retrain scores with two.
        if cached is not None and cached[0] == run_id and cached[1] == pool.lineage:
            # Rows only get appended (the embedding job at work): predict just the new ones.
            done = len(cached[2])
            scores = rule_votes.score_pool(classifier, pool.vectors[done:], pool.ids[done:], threads=1)
            tail = guess_table(run_id, pool, scores, classifier.classes_)
            table = (run_id, pool.lineage, np.concatenate([cached[2], tail[2]]), cached[3])
        else:
            scores = rule_votes.score_pool(classifier, pool.vectors, pool.ids, threads=1)
            table = guess_table(run_id, pool, scores, classifier.classes_)
        self.remember_guesses(pid, table)
        return table

    def remember_guesses(self, project_id: int, table: Guesses | None) -> None:
        if table is not None:
            with self._lock:
                current = self._guesses.get(project_id)
                newer = current is None or current[1] != table[1]
                if newer or (table[0], len(table[2])) >= (current[0], len(current[2])):  # never go back
                    self._guesses[project_id] = table

    def guesses_of(self, project_id: int) -> Guesses | None:
        with self._lock:
            return self._guesses.get(project_id)

    def forget(self, project_id: int, created_at: object = None) -> None:
        with self._lock:
            self._pools.pop(project_id, None)
            self._guesses.pop(project_id, None)
        if created_at is not None:
            self.files.forget(project_id, created_at)


def guess_table(run_id: int, pool: Pool, scores: PoolScores, classes: object) -> Guesses:
    """Each row's best class and its probability, from the retrain's own pass over the pool; float32
    (class indices are exact there), 8 MB at 1M rows."""
    rows = np.stack([scores.best.astype(np.float32), scores.best_proba.astype(np.float32)], axis=1)
    # A multi-label model's SetNames (2^labels sets, by bitmask) is kept as it is, never listed.
    names = classes if isinstance(classes, SetNames) else tuple(str(c) for c in classes)  # type: ignore[attr-defined]
    return (run_id, pool.lineage, rows, names)


def _covers(table: Guesses, pool: Pool) -> bool:
    return table[1] == pool.lineage and len(table[2]) == len(pool.ids)
