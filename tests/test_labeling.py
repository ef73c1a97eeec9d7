"""bot.labeling: work after an ack yields to the requests Slack is waiting on, within a bound."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from unittest.mock import Mock

from bot.labeling import Labeling
from core.service import LabelingService


def make_labeling(pool: ThreadPoolExecutor | None = None) -> Labeling:
    return Labeling(Mock(LabelingService), executor=pool or ThreadPoolExecutor(max_workers=2))


def test_after_ack_work_waits_for_the_request_in_flight(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("bot.labeling.YIELD_SECONDS", 30.0)  # only the request's end can release it
    labeling = make_labeling()
    in_request, request_over = threading.Event(), threading.Event()
    seen: list[bool] = []
    ran = threading.Event()

    def request() -> None:
        with labeling.answering_slack():
            in_request.set()
            labeling.later(lambda: (seen.append(request_over.is_set()), ran.set()))
            # The after-ack task is queued now; it must not run until this request is over.
            assert not ran.wait(0.2)
            request_over.set()

    thread = threading.Thread(target=request)
    thread.start()
    assert ran.wait(10)
    thread.join(10)
    assert in_request.is_set() and seen == [True]


def test_yielding_is_bounded_when_requests_never_stop() -> None:
    labeling = make_labeling()
    release = threading.Event()
    entered = threading.Event()

    def endless_request() -> None:
        with labeling.answering_slack():
            entered.set()
            release.wait(30)

    blocker = threading.Thread(target=endless_request)
    blocker.start()
    assert entered.wait(10)
    done = threading.Event()
    waiter = threading.Thread(target=lambda: (labeling.yield_to_acks(at_most=0.05), done.set()))
    waiter.start()
    assert done.wait(10)  # returned while the request is still in flight
    assert not release.is_set()
    release.set()
    blocker.join(10)
    waiter.join(10)


def test_a_failing_after_ack_task_is_logged_and_the_pool_goes_on(caplog) -> None:  # type: ignore[no-untyped-def]
    pool = ThreadPoolExecutor(max_workers=1)
    labeling = make_labeling(pool)

    def broken() -> None:
        raise RuntimeError("Slack is down")

    ran = threading.Event()
    labeling.later(broken)
    labeling.later(ran.set)
    assert ran.wait(10)
    pool.shutdown(wait=True)
    assert any("broken failed after the ack" in r.getMessage() for r in caplog.records)
