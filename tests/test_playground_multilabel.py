"""A multi-label card in a real browser (the playground, as tests/test_playground.py drives it): tick two
labels, Submit, the card shows them and the next card arrives; "None of these" on that one; the Show
similar modal applies a set."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot import ids
from bot.playground import Playground
from core.io import ImportRow
from core.service import LabelingService
from tests.test_playground import (  # noqa: F401
    ALICE,
    ARTIFACTS,
    answers,
    browser,
    cards,
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
TEXTS = ["I was charged twice, fix it today", "The app crashes when I open settings",
         "Love the new dashboard", "Refund me, the export is broken", "Where is my invoice?"]


@pytest.fixture
def tickets(service: LabelingService) -> Iterator[Playground]:  # noqa: F811
    service.create_project(PROJECT, LABELS, multi_label=True)
    service.import_rows(PROJECT, [ImportRow(i + 2, f"t{i}", t) for i, t in enumerate(TEXTS)])
    with Playground(service, port=0, project=PROJECT) as playground:
        yield playground


def test_tick_two_labels_submit_then_none_of_these(
    page: sync_api.Page, tickets: Playground, service: LabelingService, js_errors: list[str]  # noqa: F811
) -> None:
    open_as(page, tickets, "alice")
    run(page, "/label next")
    page.click("#nav-bot")
    expect(cards(page)).to_have_count(1)
    card = cards(page).first
    ts = card.get_attribute("data-ts")
    boxes = card.locator(f'input[type="checkbox"][data-action-id="{ids.ACTION_MULTI_LABELS}"]')
    expect(boxes).to_have_count(len(LABELS))
    card.get_by_role("checkbox", name="urgent").check()
    card.get_by_role("checkbox", name="billing").check()
    card.get_by_role("checkbox", name="praise").check()
    card.get_by_role("checkbox", name="praise").uncheck()  # each tick goes to the bot, as in Slack
    ARTIFACTS.mkdir(exist_ok=True)
    card.screenshot(path=str(ARTIFACTS / "playground-multilabel-card.png"))
    card.get_by_role("button", name="Submit").click()

    answered = page.locator(f'.msg[data-ts="{ts}"]')
    expect(answered).to_contain_text("Labeled billing, urgent by @alice")
    expect(answered.get_by_role("button", name="Undo")).to_be_visible()
    expect(cards(page)).to_have_count(1)  # the next card, below
    following = cards(page).first
    assert following.get_attribute("data-ts") != ts
    assert [a[1:] for a in answers(service)] == [(ALICE, "billing|urgent")]

    # Ticks left on a card do not count with "None of these".
    following.get_by_role("checkbox", name="bug").check()
    following_ts = following.get_attribute("data-ts")
    following.get_by_role("button", name="None of these").click()
    expect(page.locator(f'.msg[data-ts="{following_ts}"]')).to_contain_text("Labeled none of these by @alice")
    assert sorted(a[2] for a in answers(service)) == ["", "billing|urgent"]

    # Submit with nothing ticked: a line for alice, nothing stored, the card as it was.
    expect(cards(page)).to_have_count(1)
    cards(page).first.get_by_role("button", name="Submit").click()
    expect(page.locator(".msg-ephemeral", has_text="Tick at least one label")).to_be_visible()
    assert len(answers(service)) == 2

    # Show similar applies a set to the ticked records.
    cards(page).first.get_by_role("button", name="Show similar").click()
    modal = page.locator(".modal")
    expect(modal.locator(".modal-title")).to_have_text("Similar records")
    labels = modal.locator(f'.bk-block[data-block-id="{ids.BLOCK_SIMILAR_LABEL}"]')
    for name in LABELS:
        labels.get_by_role("checkbox", name=name).uncheck()  # the guess may be preset
    labels.get_by_role("checkbox", name="bug").check()
    labels.get_by_role("checkbox", name="urgent").check()
    records = modal.locator(f'.bk-block[data-block-id^="{ids.BLOCK_SIMILAR_RECORDS}."] input')
    done = {a[0] for a in answers(service)}
    values = [int(v) for v in records.evaluate_all("nodes => nodes.map(n => n.value)")]
    picked = [v for v in values if v not in done][:2]
    assert len(picked) == 2
    for value in picked:
        modal.locator(f'input[type="checkbox"][value="{value}"]').check()
    modal.get_by_role("button", name="Apply labels").click()
    expect(modal).to_have_count(0)
    expect(page.locator(".msg", has_text="Labeled 2 records in tickets as urgent, bug")).to_be_visible()
    applied = {(record, label) for record, _, label in answers(service) if record in picked}
    assert applied == {(record, "urgent|bug") for record in picked}
    assert js_errors == []
