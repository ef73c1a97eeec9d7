"""A multi-label review card in a real browser (the playground, as tests/test_playground.py drives it):
the admin runs `/label review`, ticks the gold set on the card and submits; the database holds it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from bot import ids
from bot.playground import Playground
from core.io import ImportRow
from core.models import Annotation
from core.service import LabelingService
from core.store import read_session
from tests.test_playground import (  # noqa: F401
    ALICE,
    BOB,
    browser,
    js_errors,
    open_as,
    page,
    run,
    service,
)

sync_api = pytest.importorskip("playwright.sync_api")  # test_playground skips without it, or chromium
expect = sync_api.expect

PROJECT = "tickets"
LABELS = ["billing", "urgent", "bug", "praise"]
TEXTS = ["I was charged twice, fix it today", "The app crashes when I open settings", "Love the dashboard"]


@pytest.fixture
def split_tickets(service: LabelingService) -> Iterator[tuple[Playground, int]]:  # noqa: F811
    """k = 2; t0: alice {billing, urgent}, bob {billing}: a tie on urgent, in review."""
    service.create_project(PROJECT, LABELS, answers_per_record=2, multi_label=True)
    service.import_rows(PROJECT, [ImportRow(i + 2, f"t{i}", t) for i, t in enumerate(TEXTS)])
    record_id = service.find_record(PROJECT, "t0").record_id
    service.record_answer(PROJECT, record_id, ALICE, {"billing", "urgent"})
    service.record_answer(PROJECT, record_id, BOB, {"billing"})
    with Playground(service, port=0, project=PROJECT) as playground:
        yield playground, record_id


def _gold(svc: LabelingService) -> list[tuple[int, str, str]]:
    with read_session(svc.engine) as session:
        rows = session.execute(
            select(Annotation.record_id, Annotation.annotator, Annotation.label)
            .where(Annotation.source == "review")
        ).all()
    return [tuple(r) for r in rows]


def test_admin_ticks_the_gold_set_on_a_review_card(
    page: sync_api.Page, split_tickets: tuple[Playground, int], service: LabelingService,  # noqa: F811
    js_errors: list[str],  # noqa: F811
) -> None:
    playground, record_id = split_tickets
    open_as(page, playground, "admin")
    run(page, "/label review")
    page.click("#nav-bot")
    submit = page.locator(f'button[data-action-id="{ids.ACTION_REVIEW_SUBMIT}"]')
    expect(submit).to_have_count(1)
    card = page.locator(".msg", has=submit)
    expect(card).to_contain_text("split on urgent")
    ts = card.get_attribute("data-ts")
    boxes = card.locator(f'input[type="checkbox"][data-action-id="{ids.ACTION_REVIEW_LABELS}"]')
    expect(boxes).to_have_count(len(LABELS))
    card.get_by_role("checkbox", name="billing").check()
    card.get_by_role("checkbox", name="urgent").check()
    card.get_by_role("checkbox", name="bug").check()
    card.get_by_role("checkbox", name="bug").uncheck()
    card.get_by_role("button", name="Submit gold").click()
    decided = page.locator(f'.msg[data-ts="{ts}"]')
    expect(decided).to_contain_text("Gold labels billing, urgent")
    assert _gold(service) == [(record_id, "UADMIN", "billing|urgent")]
    assert service.final_labels(PROJECT)["t0"] == "billing|urgent"
    assert service.review_queue(PROJECT) == []
    assert js_errors == []
