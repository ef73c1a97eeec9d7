"""The guidelines modal in a real browser (the playground, as tests/test_playground.py drives it): a
card's Guidelines button opens it, and the Show similar modal's pushes it on top."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot import ids
from bot.playground import Playground
from core.io import ImportRow
from core.service import LabelingService
from core.types import LabelDef
from tests.test_playground import browser, cards, js_errors, open_as, page, run, service  # noqa: F401

sync_api = pytest.importorskip("playwright.sync_api")  # test_playground skips without it, or chromium
expect = sync_api.expect

PROJECT = "guided"
LABELS = [
    LabelDef("refund", "The customer wants money back", ("I want my money back", "refund my order")),
    LabelDef("card_lost", "A lost or stolen card", ("I lost my card",)),
    LabelDef("other"),
]
TEXTS = ["please refund my last order", "my card was stolen yesterday", "what are your opening hours",
         "refund the double charge please", "I cannot find my card anywhere"]


@pytest.fixture
def guided(service: LabelingService) -> Iterator[Playground]:  # noqa: F811
    service.create_project(PROJECT, LABELS)
    service.import_rows(PROJECT, [ImportRow(i + 2, f"t{i}", t) for i, t in enumerate(TEXTS)])
    with Playground(service, port=0, project=PROJECT) as playground:
        yield playground


def test_guidelines_modal_opens_from_a_card_and_from_show_similar(
    page: sync_api.Page, guided: Playground, js_errors: list[str]  # noqa: F811
) -> None:
    open_as(page, guided, "alice")
    run(page, "/label next")
    page.click("#nav-bot")
    expect(cards(page)).to_have_count(1)
    card = cards(page).first
    card.locator(f'button[data-action-id="{ids.ACTION_GUIDELINES}"]').click()
    modal = page.locator(".modal")
    expect(modal.locator(".modal-title")).to_have_text("Guidelines")
    expect(modal).to_contain_text("The customer wants money back")
    expect(modal).to_contain_text("I want my money back")
    expect(modal).to_contain_text("No description yet")
    modal.locator(".modal-x").click()
    expect(page.locator(".modal")).to_have_count(0)

    cards(page).first.get_by_role("button", name="Show similar").click()
    expect(page.locator(".modal .modal-title")).to_have_text("Similar records")
    page.locator(f'.modal button[data-action-id="{ids.ACTION_GUIDELINES}"]').click()
    expect(page.locator(".modal .modal-title")).to_have_text("Guidelines")
    expect(page.locator(".modal")).to_contain_text("A lost or stolen card")
    page.locator(".modal .modal-back").click()  # back to the similar records, as Slack's stack does
    expect(page.locator(".modal .modal-title")).to_have_text("Similar records")
    assert js_errors == []
