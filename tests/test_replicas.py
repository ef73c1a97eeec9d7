"""Two bot replicas on one PostgreSQL database: two services (two engines and pools, as two processes
have) driven at once from threads, as a load balancer would spread the clicks of many labelers.

Runs on the PostgreSQL pass only (``.ci/with-postgres``; ``make_settings`` gives each test a fresh
database): on SQLite every write transaction holds the one write lock, so none of these races can
happen there.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import event, func, select

from core import io
from core.embeddings import HashingEmbedder
from core.errors import NothingToUndo, StaleRecord
from core.models import Annotation, QueueItem, Record, Skip
from core.service import LabelingService
from core.store import reading
from tests.conftest import ON_POSTGRES, make_settings

pytestmark = pytest.mark.skipif(not ON_POSTGRES, reason="replicas race on PostgreSQL only")

PROJECT = "replicas"
LABELS = ["ham", "spam"]


def replicas(tmp_path: Path, n: int = 2, **overrides: object) -> list[LabelingService]:
    """``n`` services on the test's database, each with its own engine, as ``n`` bot processes."""
    settings = make_settings(tmp_path, **overrides)
    return [LabelingService(settings, embedder=HashingEmbedder(64)) for _ in range(n)]


def project_with_records(service: LabelingService, n: int, k: int) -> None:
    service.create_project(PROJECT, LABELS, answers_per_record=k)
    rows = [io.ImportRow(line=i + 2, external_id=str(i), text=f"message number {i} about item {i % 7}")
            for i in range(n)]
    service.import_rows(PROJECT, rows)
    service.retrain(PROJECT)  # the cold-start queue


def run_all(workers: list[Callable[[], None]]) -> None:
    """Run ``workers`` at once (released together by a barrier); re-raise the first failure."""
    barrier = threading.Barrier(len(workers))

    def start(work: Callable[[], None]) -> None:
        barrier.wait()
        work()

    with ThreadPoolExecutor(len(workers)) as pool:
        for future in [pool.submit(start, w) for w in workers]:
            future.result()


def close_all(services: list[LabelingService]) -> None:
    for service in services:
        service.close()


@pytest.mark.parametrize("k", [1, 2])
def test_labelers_on_two_replicas_get_each_record_at_most_k_times(tmp_path: Path, k: int):
    services = replicas(tmp_path)
    try:
        n_records, n_labelers = 60, 12
        project_with_records(services[0], n_records, k)
        handed: dict[int, list[str]] = defaultdict(list)  # record -> labelers it was handed to
        stale: list[tuple[str, int]] = []
        guard = threading.Lock()

        def labeler(number: int) -> Callable[[], None]:
            user = f"U{number:03d}"

            def work() -> None:
                # Each request goes to the other replica than the one before (round robin).
                for turn in range(n_records):
                    service = services[(number + turn) % 2]
                    cards = service.next_records(PROJECT, user, n=1)
                    if not cards:
                        return
                    rid = cards[0].record_id
                    with guard:
                        handed[rid].append(user)
                    try:
                        services[(number + turn + 1) % 2].record_answer(PROJECT, rid, user, LABELS[rid % 2])
                    except StaleRecord:
                        with guard:
                            stale.append((user, rid))

            return work

        run_all([labeler(i) for i in range(n_labelers)])
        over_k = {rid: users for rid, users in handed.items() if len(users) > k}
        assert over_k == {}
        assert stale == []
        with reading(services[0].engine) as conn:
            answers = Counter(conn.execute(select(Annotation.record_id)).scalars())
            counts = dict(conn.execute(select(Record.id, Record.n_answers)).all())
            incomplete = conn.execute(select(func.count()).where(Record.complete.is_(False))).scalar_one()
        # Every record answered exactly k times, and the denormalized count agrees (no lost update).
        assert sorted(set(answers.values())) == [k]
        assert len(answers) == n_records
        assert {rid: n for rid, n in counts.items()} == dict(answers)
        assert incomplete == 0
        assert {rid: len(users) for rid, users in handed.items()} == dict(answers)
    finally:
        close_all(services)


def test_a_click_delivered_twice_to_both_replicas_is_stored_once(tmp_path: Path):
    services = replicas(tmp_path)
    try:
        project_with_records(services[0], 30, k=2)
        rids = [view.record_id for view in services[0].next_records(PROJECT, "UDUP", n=30)]
        results: list = []
        guard = threading.Lock()

        def deliver(service: LabelingService) -> Callable[[], None]:
            def work() -> None:
                for rid in rids:  # both copies of each click arrive at the two replicas at about once
                    result = service.record_answer(PROJECT, rid, "UDUP", LABELS[rid % 2])
                    with guard:
                        results.append(result)

            return work

        run_all([deliver(s) for s in services])
        changed = Counter(r.record_id for r in results if r.changed)
        assert len(results) == 2 * len(rids)
        assert changed == Counter(rids)  # one copy stored it, the other saw it there (a sane ack)
        with reading(services[0].engine) as conn:
            stored = Counter(conn.execute(select(Annotation.record_id)).scalars())
            counts = dict(conn.execute(select(Record.id, Record.n_answers).where(Record.id.in_(rids))).all())
        assert stored == Counter(rids)
        assert counts == {rid: 1 for rid in rids}
    finally:
        close_all(services)


def test_skips_and_undos_delivered_twice_to_both_replicas(tmp_path: Path):
    services = replicas(tmp_path)
    try:
        project_with_records(services[0], 40, k=2)
        rids = [view.record_id for view in services[0].next_records(PROJECT, "UTWICE", n=40)]
        to_skip, to_undo = rids[:20], rids[20:]
        for rid in to_undo:
            services[0].record_answer(PROJECT, rid, "UTWICE", "ham")
        services[0].record_answer(PROJECT, to_undo[0], "UOTHER", "spam")
        nothing = Counter()
        guard = threading.Lock()

        def deliver(service: LabelingService) -> Callable[[], None]:
            def work() -> None:
                for rid in to_skip:
                    service.skip(PROJECT, rid, "UTWICE")
                for rid in to_undo:
                    try:
                        service.undo(PROJECT, "UTWICE", record_id=rid)
                    except NothingToUndo:  # the other copy undid it first
                        with guard:
                            nothing[rid] += 1

            return work

        run_all([deliver(s) for s in services])
        assert nothing == Counter(to_undo)  # each undo done once, its copy told there is nothing left
        with reading(services[0].engine) as conn:
            skips = Counter(conn.execute(select(Skip.record_id)).scalars())
            left = conn.execute(select(func.count()).where(Annotation.annotator == "UTWICE")).scalar_one()
            counts = dict(
                conn.execute(select(Record.id, Record.n_answers).where(Record.id.in_(to_undo))).all()
            )
        assert skips == Counter(to_skip)
        assert left == 0
        assert counts == {rid: (1 if rid == to_undo[0] else 0) for rid in to_undo}
    finally:
        close_all(services)


def test_two_replicas_swapping_the_queue_at_once_leave_one_queue(tmp_path: Path):
    services = replicas(tmp_path, queue_size=50)
    try:
        project_with_records(services[0], 200, k=1)
        # Both swaps reach their DELETE together, unless the first holds a lock the second waits for:
        # then the first gives up waiting at the barrier and goes on alone.
        barrier = threading.Barrier(2, timeout=1.0)

        def meet(conn, cursor, statement: str, *_: object) -> None:  # type: ignore[no-untyped-def]
            if statement.startswith("DELETE FROM queueitem"):
                with contextlib.suppress(threading.BrokenBarrierError):
                    barrier.wait()

        for service in services:
            event.listen(service.engine, "before_cursor_execute", meet)
        run_all([functools.partial(s.retrain, PROJECT) for s in services])
        with reading(services[0].engine) as conn:
            positions = list(conn.execute(select(QueueItem.position)).scalars())
        # Each swap replaced the whole queue before it (two at once would each delete only the old one).
        assert sorted(positions) == list(range(50))
    finally:
        close_all(services)


def test_hand_outs_during_queue_swaps_of_two_replicas(tmp_path: Path):
    services = replicas(tmp_path, queue_size=50)
    try:
        project_with_records(services[0], 200, k=1)
        for rid in range(1, 21):
            services[0].record_answer(PROJECT, rid, "USEED", LABELS[rid % 2])
        handed: list[int] = []
        guard = threading.Lock()

        def retrains(service: LabelingService) -> Callable[[], None]:
            def work() -> None:
                for _ in range(5):
                    service.retrain(PROJECT)

            return work

        def labeler(number: int) -> Callable[[], None]:
            def work() -> None:
                for turn in range(10):
                    cards = services[turn % 2].next_records(PROJECT, f"U{number}", n=1)
                    with guard:
                        handed.extend(view.record_id for view in cards)

            return work

        run_all([retrains(s) for s in services] + [labeler(i) for i in range(4)])
        with reading(services[0].engine) as conn:
            positions = list(conn.execute(select(QueueItem.position)).scalars())
        assert sorted(positions) == list(range(50))
        assert len(handed) == len(set(handed)) == 40  # k=1: nobody got a record another was handed
    finally:
        close_all(services)
