"""The catalog in headless Chromium, as a user goes through it: search, filter, open a listing,
follow its compatible models; no console errors on the way. Screenshots go to build/screenshots/.

Select these with `-m browser` (or leave them out with `-m "not browser"`). Chromium is Debian's
(`/usr/bin/chromium`, installed by `make`), driven by Playwright; the machines have no internet,
hence the flags that stop Chromium from reaching for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from formarket.site.build import build_site
from formarket.site.serve import start_server

from .browser import TIMEOUT
from .conftest import REPOSITORY, ROOT, make_registry

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("site-browser")]

SHOTS = ROOT / "build" / "screenshots"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("browser")
    root = make_registry(base / "market")
    build_site(root, base / "out", repository=REPOSITORY)
    with start_server(base / "out") as server:
        yield server.url


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT)
    tab = context.new_page()
    problems: list[str] = []
    tab.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    tab.on("pageerror", lambda e: problems.append(str(e)))
    # Navigating away aborts the page's requests in flight: that is not an error.
    tab.on(
        "requestfailed",
        lambda r: (
            None if r.failure == "net::ERR_ABORTED" else problems.append(f"{r.url}: {r.failure}")
        ),
    )
    tab.on(
        "response",
        lambda r: problems.append(f"{r.url}: HTTP {r.status}") if r.status >= 400 else None,
    )
    yield tab
    context.close()
    assert problems == []


def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_search_filter_open_and_follow_compatible_models(site: str, page: Page) -> None:
    p = page
    p.goto(site + "agents/")
    cards = p.locator(".fm-results .fm-card")
    status = p.locator(".fm-results .fm-status")
    assert cards.count() == 7

    p.fill("#fm-q", "support")
    expect(status).to_have_text("2 agents of 7 match")
    expect(cards).to_have_count(2)
    expect(cards.first).to_contain_text("Support Desk")  # a match in the name first

    p.fill("#fm-q", "")
    expect(status).to_have_text("7 agents")
    p.check('input[name="pricing"][value="subscription"]')
    expect(status).to_have_text("1 agent of 7 match")
    p.check('input[name="pricing"][value="free"]')
    expect(status).to_have_text("3 agents of 7 match")
    p.fill("#fm-q", "desk")
    expect(cards).to_have_count(1)
    assert re.search(r"pricing=subscription&pricing=free|q=desk", p.url)
    _shot(p, "catalog-search-and-filter")

    p.click("text=Support Desk")
    expect(p.locator("h1")).to_have_text("Support Desk")
    assert p.url.endswith("/agents/northwind-ai/support-desk/")
    expect(p.locator("#compatible-models")).to_be_visible()
    _shot(p, "listing")

    p.click("text=All 1 compatible models in the explorer")
    result = p.locator(".fm-explorer__result")
    expect(result.locator(".fm-status")).to_have_text("1 compatible model for Support Desk")
    expect(result.locator(".fm-card")).to_contain_text("Northwind Chat 8B")
    _shot(p, "compatibility-explorer")


def test_home_search_is_instant_across_kinds(site: str, page: Page) -> None:
    page.goto(site)
    page.fill("#fm-q", "whisp")

    results = page.locator(".fm-search-results .fm-card")
    expect(results.first).to_contain_text("Lumen Whisper Small")
    page.fill("#fm-q", "meeting")
    expect(results).to_have_count(3)  # the model, the agent and the solution
    _shot(page, "home-search")


def test_explorer_from_a_model_and_sorting(site: str, page: Page) -> None:
    page.goto(site + "compatibility/?model=northwind-ai/northwind-chat-8b")
    result = page.locator(".fm-explorer__result")
    expect(result.locator(".fm-status")).to_have_text("3 compatible agents for Northwind Chat 8B")

    page.fill("#fm-agent", "faq")
    page.click(".fm-suggest__item")
    expect(result.locator(".fm-status")).to_have_text("4 compatible models for FAQ Bot")

    page.goto(site + "models/?sort=price")
    first = page.locator(".fm-results .fm-card").first
    expect(first).to_contain_text("Free")


def test_copy_button_copies_the_deploy_command(site: str, page: Page) -> None:
    page.goto(site + "agents/tinyforge/faq-bot/")

    page.click("button.fm-copy")

    dialog = page.locator(".md-dialog")
    expect(dialog).to_contain_text("Copied to clipboard")
