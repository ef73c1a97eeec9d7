"""The playground page in a real browser: Debian's chromium, driven headless by Playwright.

The real App, stand-in and database run in-process (``Playground`` on port 0); the browser clicks what a
person would click. ``make test`` installs chromium when /usr/bin/chromium is missing (see the Makefile);
without it these tests are skipped, unless LABELBOT_REQUIRE_BROWSER=1 (set by ``make test``) makes that
a failure. A screenshot of a labeled card is saved to artifacts/playground-card.png.
"""

from __future__ import annotations

import csv
import io as stdio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from bot import blocks, ids
from bot.app import make_client
from bot.playground import CHANNEL_ID, DEMO_PROJECT, Playground, ensure_demo_project
from bot.playground.demo import data_path
from core import io
from core.embeddings import HashingEmbedder
from core.models import Annotation
from core.service import LabelingService
from core.store import read_session
from tests.conftest import make_settings

CHROMIUM = os.environ.get("LABELBOT_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ALICE, BOB, CAROL = "UALICE", "UBOB", "UCAROL"


def _unavailable(reason: str) -> None:
    if os.environ.get("LABELBOT_REQUIRE_BROWSER") == "1":
        pytest.fail(reason + " (LABELBOT_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the dev extras install it
    _unavailable("playwright is not installed (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not (shutil.which(CHROMIUM) or Path(CHROMIUM).exists()):
        _unavailable(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    expect.set_options(timeout=20_000)  # a loaded two-core CI machine is slow, not broken
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def js_errors() -> list[str]:
    return []


@pytest.fixture
def page(browser: Browser, js_errors: list[str]) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, locale="en-US")
    page = context.new_page()
    page.on("pageerror", lambda exc: js_errors.append(str(exc)))
    page.on("console", lambda msg: js_errors.append(msg.text) if msg.type == "error" else None)
    yield page
    context.close()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[LabelingService]:
    svc = LabelingService(make_settings(tmp_path), embedder=HashingEmbedder(64), background=True)
    yield svc
    svc.close()


@pytest.fixture
def demo(service: LabelingService) -> Iterator[Playground]:
    """The bundled demo project (400 Banking77 queries, 12 labels: cards carry a select menu)."""
    ensure_demo_project(service)
    with Playground(service, port=0, project=DEMO_PROJECT) as playground:
        yield playground


@pytest.fixture(scope="module")
def render_page(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    """One page with the renderer loaded, shared by the renderer's unit tests."""
    tmp = tmp_path_factory.mktemp("render")
    svc = LabelingService(make_settings(tmp), embedder=HashingEmbedder(64))
    svc.create_project("plain", ["a", "b"])
    with Playground(svc, port=0) as pg:
        context = browser.new_context()
        page = context.new_page()
        page.goto(pg.url)
        page.wait_for_function("() => window.Mrkdwn !== undefined")
        page.policy = page.request.get(pg.url).headers["content-security-policy"]  # type: ignore[attr-defined]
        yield page
        context.close()
    svc.close()


# ------------------------------------------------------------------------------------------ helpers


def open_as(page: Page, pg: Playground, user: str = "alice") -> None:
    page.goto(f"{pg.url}?user={user}")
    expect(page.locator("#connection")).to_have_text("connected")
    expect(page.locator("#user-select")).to_have_value("U" + user.upper())


def run(page: Page, text: str) -> None:
    page.fill("#composer-input", text)
    page.press("#composer-input", "Enter")
    expect(page.locator("#composer-input")).to_have_value("")  # the server took it


def cards(page: Page):  # type: ignore[no-untyped-def]
    """Cards still waiting for an answer (they have a Skip button)."""
    return page.locator(".msg", has=page.locator(f'button[data-action-id="{ids.ACTION_SKIP}"]'))


def record_of(card) -> str:  # type: ignore[no-untyped-def]
    """The external id in a card's header ("banking-demo — record train-01234")."""
    return card.locator(".bk-header").inner_text().rsplit("record ", 1)[1]


def gold_labels() -> dict[str, str]:
    with open(data_path("banking77_sample.csv"), encoding="utf-8", newline="") as handle:
        return {row["id"]: row["category"] for row in csv.DictReader(handle)}


def answers(service: LabelingService) -> list[tuple[int, str, str]]:
    with read_session(service.engine) as session:
        rows = session.execute(select(Annotation.record_id, Annotation.annotator, Annotation.label)).all()
    return [tuple(r) for r in rows]


def result_section(page: Page, external_id: str):  # type: ignore[no-untyped-def]
    return page.locator(".modal .bk-section", has_text=f"record {external_id}")


# ------------------------------------------------------------------------------------------ label flow


def test_label_a_card_bulk_label_and_status(page: Page, demo: Playground, service: LabelingService,
                                            js_errors: list[str]) -> None:
    open_as(page, demo, "alice")
    run(page, "/label next")
    # The reply is ephemeral, in #general, for alice only.
    reply = page.locator(".msg-ephemeral", has_text="Sent you 1 card")
    expect(reply).to_be_visible()
    expect(reply).to_contain_text("Only visible to you")
    expect(page.locator("#nav-bot .nav-unread")).to_have_text("1")

    page.click("#nav-bot")
    expect(cards(page)).to_have_count(1)
    card = cards(page).first
    ts = card.get_attribute("data-ts")
    external_id = record_of(card)
    select_menu = card.locator(f'select[data-action-id="{ids.ACTION_LABEL_SELECT}"]')
    labels = select_menu.locator("option:not([disabled])").all_inner_texts()
    assert labels == list(service.get_project(DEMO_PROJECT).label_names)

    gold = gold_labels()[external_id]  # the intent Banking77 gives it: the screenshot reads right
    select_menu.select_option(label=gold)
    labeled = page.locator(f'.msg[data-ts="{ts}"]')
    expect(labeled).to_contain_text(f"Labeled {gold} by @alice")
    expect(labeled.get_by_role("button", name="Undo")).to_be_visible()
    # The next card arrives below it.
    expect(cards(page)).to_have_count(1)
    assert cards(page).first.get_attribute("data-ts") != ts
    record = service.find_record(DEMO_PROJECT, external_id)
    assert (record.record_id, ALICE, gold) in answers(service)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "playground-card.png"
    labeled.screenshot(path=str(shot))
    page.screenshot(path=str(ARTIFACTS / "playground-dm.png"))
    assert shot.stat().st_size > 1000
    print(f"\nscreenshot of the labeled card: {shot}")

    # Show similar: an empty submit gets the bot's errors inline, then bulk-label two records.
    cards(page).first.get_by_role("button", name="Show similar").click()
    modal = page.locator(".modal")
    expect(modal.locator(".modal-title")).to_have_text("Similar records")
    modal.get_by_role("button", name="Apply label").click()
    for message in blocks.similar_errors([], None)["errors"].values():
        expect(modal.locator(".bk-error", has_text=message)).to_be_visible()
    boxes = modal.locator('input[type="checkbox"]')
    # Two records nobody answered yet (the first card's record may be among the neighbours).
    values = [int(v) for v in boxes.evaluate_all("nodes => nodes.map(n => n.value)")]
    picked = [v for v in values if v != record.record_id][:2]
    for value in picked:
        modal.locator(f'input[type="checkbox"][value="{value}"]').check()
    modal.locator(f'select[data-action-id="{ids.ACTION_SIMILAR_LABEL}"]').select_option(label="card_delivery_estimate")
    page.screenshot(path=str(ARTIFACTS / "playground-similar.png"))
    modal.get_by_role("button", name="Apply label").click()
    expect(page.locator(".modal")).to_have_count(0)
    notice = "Labeled 2 records in banking-demo as card_delivery_estimate"
    expect(page.locator(".msg", has_text=notice)).to_be_visible()
    assert {(rid, ALICE, "card_delivery_estimate") for rid in picked} <= set(answers(service))

    run(page, "/label status")
    status = page.locator(".msg-ephemeral", has=page.locator(".bk-header", has_text="Status: banking-demo"))
    expect(status).to_be_visible()
    labeled_now = service.status(DEMO_PROJECT).labeled
    assert labeled_now == 3
    expect(status).to_contain_text(f"{labeled_now} of 400 records labeled")
    expect(status).to_contain_text(f"card_delivery_estimate — {2 + (gold == 'card_delivery_estimate')}")
    page.screenshot(path=str(ARTIFACTS / "playground-status.png"))
    if _status_uploads_a_chart():
        # /label status also uploads the learning-curve chart to the channel: it must be viewable.
        chart = page.locator(".files img").last
        expect(chart).to_be_visible()
        assert chart.evaluate("img => img.complete && img.naturalWidth > 0")

    page.click("#tab-home")
    home = page.locator("#home")
    expect(home.locator(".bk-header")).to_have_text("labelbot")
    expect(home).to_contain_text("You: 3 answers")
    assert js_errors == []


def _status_uploads_a_chart() -> bool:
    """Whether ``/label status`` is wired to upload a chart (issue 4), judged from the listener's code."""
    import inspect

    from bot.listeners import commands

    return "chart" in inspect.getsource(commands) or "status_extras" in inspect.getsource(commands)


def test_home_tab_start_labeling_sends_a_card(page: Page, demo: Playground) -> None:
    open_as(page, demo, "carol")
    page.click("#nav-bot")
    page.click("#tab-home")
    home = page.locator("#home")
    expect(home).to_contain_text("banking-demo")
    expect(home).to_contain_text("You have not labeled here yet")
    home.get_by_role("button", name="Start labeling").click()
    page.click("#tab-messages")
    expect(cards(page)).to_have_count(1)


# ------------------------------------------------------------------------------------------ crowd


def test_switching_users_hides_answers_until_a_record_is_complete(
    page: Page, demo: Playground, service: LabelingService
) -> None:
    service.configure_project(DEMO_PROJECT, answers_per_record=2)
    open_as(page, demo, "alice")
    page.click("#nav-bot")
    run(page, "/label next")
    card = cards(page).first
    text = card.locator(".bk-section").first.inner_text()
    external_id = record_of(card)
    card.locator("select").select_option(label="exchange_rate")
    expect(page.locator(".msg", has_text="waiting for more answers from others")).to_be_visible()

    # Bob searches for that very record: it is listed, but alice's answer is not shown to him.
    page.select_option("#user-select", "UBOB")
    expect(page.locator("body")).to_have_attribute("data-user", BOB)
    expect(page.locator(".msg", has_text="Labeled exchange_rate")).to_have_count(0)  # alice's DM is hers
    run(page, f"/label search {text}")
    hit = result_section(page, external_id)
    expect(hit).to_be_visible()
    expect(hit).to_contain_text("not labeled yet")
    assert "exchange_rate" not in hit.inner_text()
    # Bob answers too (the same label): now the record is complete.
    record_id = service.find_record(DEMO_PROJECT, external_id).record_id
    page.locator(f'.modal input[type="checkbox"][value="{record_id}"]').check()
    page.locator(".modal select").select_option(label="exchange_rate")
    page.locator(".modal").get_by_role("button", name="Apply label").click()
    expect(page.locator(".msg", has_text="Labeled 1 record in banking-demo as exchange_rate")).to_be_visible()

    # Carol sees the final label now that both answers are in.
    page.select_option("#user-select", "UCAROL")
    expect(page.locator("body")).to_have_attribute("data-user", CAROL)
    run(page, f"/label search {text}")
    expect(result_section(page, external_id)).to_contain_text("labeled exchange_rate")
    page.screenshot(path=str(ARTIFACTS / "playground-crowd.png"))


# ------------------------------------------------------------------------------------------ images


def test_uploaded_chart_and_image_blocks_are_viewable(page: Page, demo: Playground) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(4, 2.5), dpi=80)
    axes.plot([10, 20, 40, 80], [0.31, 0.52, 0.66, 0.74], marker="o")
    axes.set_xlabel("labels")
    axes.set_ylabel("accuracy")
    png = stdio.BytesIO()
    figure.savefig(png, format="png")
    plt.close(figure)

    client = make_client(demo.settings)  # the bot's own client, as a listener would upload it
    upload = client.files_upload_v2(channel=CHANNEL_ID, file=png.getvalue(), filename="curve.png",
                                    title="banking-demo: learning curve")
    file_id = upload["file"]["id"]
    client.chat_postMessage(channel=CHANNEL_ID, text="chart", blocks=[
        {"type": "image", "slack_file": {"id": file_id}, "alt_text": "learning curve",
         "title": {"type": "plain_text", "text": "Learning curve"}},
    ])
    client.files_upload_v2(channel=CHANNEL_ID, content="id,label\n1,a\n", filename="labels.csv",
                           title="export")

    open_as(page, demo, "alice")
    uploaded = page.locator(".files img")
    expect(uploaded).to_have_count(1)
    expect(uploaded).to_have_attribute("alt", "banking-demo: learning curve")
    block_image = page.locator(".bk-image img")
    expect(block_image).to_have_attribute("alt", "learning curve")
    expect(page.locator(".bk-image-title")).to_have_text("Learning curve")
    for image in (uploaded, block_image):
        image.scroll_into_view_if_needed()
        page.wait_for_function("img => img.complete", arg=image.element_handle())
        assert image.evaluate("img => img.naturalWidth") == 320  # 4 in × 80 dpi: the PNG itself
    csv_link = page.locator("a.file-card", has_text="export")
    expect(csv_link).to_be_visible()
    response = page.request.get(demo.server.url + csv_link.get_attribute("href"))
    assert response.headers["content-disposition"].startswith("attachment")
    assert response.body() == b"id,label\n1,a\n"


# ------------------------------------------------------------------------------------------ safety


MALICIOUS = [
    '<script>window.__pwned = "script"</script> hello',
    '<img src=x onerror="window.__pwned = 1"> and a < b & c > d',
    "literal &lt;b&gt; stays text, and <@UBOB> is no mention",
]


def test_record_text_is_shown_as_text_never_as_html(page: Page, service: LabelingService,
                                                    js_errors: list[str]) -> None:
    service.create_project("evil", ["spam", "ham"])
    service.import_rows("evil", [io.ImportRow(line=i + 2, external_id=f"r{i}", text=t)
                                 for i, t in enumerate(MALICIOUS)])
    with Playground(service, port=0, project="evil") as pg:
        open_as(page, pg, "alice")
        page.click("#nav-bot")
        run(page, "/label next 3")
        expect(cards(page)).to_have_count(3)
        texts = sorted(cards(page).locator(".bk-section").all_inner_texts())
        assert texts == sorted(MALICIOUS)
        messages = page.locator("#messages")
        assert messages.locator("script, img, iframe, .mention").count() == 0
        assert messages.locator(".bk-section b").count() == 0
        assert page.evaluate("window.__pwned") is None
        # Checked while the server runs: once it stops, the page's next poll is refused (and logged).
        assert js_errors == []


RENDER = """text => {
  const box = document.createElement("div");
  box.appendChild(Mrkdwn.render(text, {users: {UALICE: {name: "alice"}}, me: "UBOB"}));
  document.body.appendChild(box);
  const tags = [...box.querySelectorAll("*")].map(n => n.tagName.toLowerCase());
  const links = [...box.querySelectorAll("a")].map(a => a.getAttribute("href"));
  const out = {text: box.textContent, tags, links};
  box.remove();
  return out;
}"""


@pytest.mark.parametrize(
    ("mrkdwn", "text", "tags"),
    [
        ("<script>window.__pwned=1</script>", "<script>window.__pwned=1</script>", []),
        ('<img src=x onerror="window.__pwned=1">', '<img src=x onerror="window.__pwned=1">', []),
        ("&lt;b&gt;x&lt;/b&gt; &amp;lt; &amp;amp;", "<b>x</b> &lt; &amp;", []),
        ("&lt;script&gt;alert(1)&lt;/script&gt;", "<script>alert(1)</script>", []),
        ("*bold* _it_ ~gone~ `a<b`", "bold it gone a<b", ["b", "i", "s", "code"]),
        ("card_arrival and top_up_failed", "card_arrival and top_up_failed", []),
        ("`*not bold*`", "*not bold*", ["code"]),
        ("```*pre* &lt;x&gt;```", "*pre* <x>", ["pre"]),
        ("<@UALICE> <@UBOB|bobby> <!here>", "@alice @bobby @here", ["span", "span", "span"]),
        ("<javascript:alert(1)|click>", "<javascript:alert(1)|click>", []),
        ("a\n>quoted *b*", "aquoted b", ["span", "blockquote", "b"]),
    ],
)
def test_mrkdwn_renderer(render_page: Page, mrkdwn: str, text: str, tags: list[str]) -> None:
    out = render_page.evaluate(RENDER, mrkdwn)
    assert out["text"] == text
    assert [t for t in out["tags"] if t not in ("span", "br")] == [t for t in tags if t != "span"]
    assert render_page.evaluate("window.__pwned") is None


def test_mrkdwn_links_and_round_trip_of_escaped_user_text(render_page: Page) -> None:
    page = render_page
    out = page.evaluate(RENDER, "<https://example.com/a?b=1&amp;c=2|the site> <mailto:x@y.z>")
    assert out["links"] == ["https://example.com/a?b=1&c=2", "mailto:x@y.z"]
    assert out["text"] == "the site mailto:x@y.z"
    # What people type, escaped by the bot's own helper, reads back exactly.
    for original in ["a < b && c > d", "&lt;not an entity&gt;", "<script>x</script>", "5 > 3 & 2 < 4 &amp;"]:
        assert page.evaluate(RENDER, blocks.escape_mrkdwn(original))["text"] == original
    policy = page.policy  # type: ignore[attr-defined]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
