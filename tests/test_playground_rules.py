"""A rule in a real browser (the playground, as tests/test_playground.py drives it): an admin adds it with
`/label rule add`, `/label status` shows its coverage, a card names it, and another user is refused."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.playground import Playground
from core.io import ImportRow
from core.service import LabelingService
from tests.test_playground import browser, cards, js_errors, open_as, page, run, service  # noqa: F401

sync_api = pytest.importorskip("playwright.sync_api")  # test_playground skips without it, or chromium
expect = sync_api.expect

PROJECT = "ruled"
TEXTS = ["please refund my last order", "my card was stolen yesterday", "what are your opening hours",
         "I want my money back now", "I cannot find my card anywhere"]


@pytest.fixture
def ruled(service: LabelingService) -> Iterator[Playground]:  # noqa: F811
    service.create_project(PROJECT, ["refund", "card_lost", "other"])
    service.import_rows(PROJECT, [ImportRow(i + 2, f"t{i}", t) for i, t in enumerate(TEXTS)])
    with Playground(service, port=0, project=PROJECT) as playground:
        yield playground


def test_an_admin_adds_a_rule_status_shows_its_coverage_and_a_card_names_it(
    page: sync_api.Page, ruled: Playground, service: LabelingService, js_errors: list[str]  # noqa: F811
) -> None:
    open_as(page, ruled, "bob")
    run(page, "/label rule add refund -> refund")
    expect(page.locator(".msg-ephemeral", has_text="is for labelbot admins")).to_be_visible()
    assert service.list_rules(PROJECT) == []

    open_as(page, ruled, "admin")
    run(page, "/label rule add refund, money back -> refund")
    expect(page.locator(".msg-ephemeral", has_text="It matches 2 of 5 records")).to_be_visible()
    run(page, "/label status")
    status = page.locator(".msg-ephemeral", has=page.locator(".bk-header", has_text=f"Status: {PROJECT}"))
    expect(status).to_contain_text("covers 40.0% (2 of 5)")
    expect(status).to_contain_text("precision n/a")
    # Wait for the status' extras (trend, chart upload) so none is left running when the page closes.
    expect(page.locator(".msg-ephemeral", has_text=f"Trend and advice: {PROJECT}")).to_be_visible()
    expect(page.locator(".files img").last).to_be_visible()

    run(page, "/label next 5")
    page.click("#nav-bot")
    expect(cards(page)).to_have_count(5)
    named = cards(page).filter(has_text="Rules: refund, money back → refund")
    expect(named).to_have_count(2)
    for text in ("please refund my last order", "I want my money back now"):
        expect(named.filter(has_text=text)).to_have_count(1)
    assert js_errors == []
