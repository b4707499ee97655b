"""The README's screenshots, taken from the real site: the starter registry with three months of
(simulated) usage, two of them closed into royalty statements, built by `build_site` and driven
in headless Chromium. The PNGs go to docs/screenshots/, where the README embeds them.

They are taken at a fixed viewport (not the full page), so the files stay small and change only
when the pages do. Select these with `-m browser`, like the other browser tests.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dulwich.repo import Repo
from playwright.sync_api import Browser, Page, ViewportSize, expect

from formarket.market.governance import bot_at
from formarket.market.refs import branch_tip
from formarket.royalties import engine, gitio
from formarket.site.build import build_site
from formarket.site.serve import start_server
from formarket.standins.usage_simulator import Plan, commit_usage, simulate

from .browser import TIMEOUT
from .conftest import REPOSITORY, ROOT, make_registry

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("site-browser")]

SHOTS = ROOT / "docs" / "screenshots"
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
# Fixed months, closed at a fixed moment: the pictures do not change from one run to the next.
CLOSED = ("2026-08", "2026-09")
CLOSED_AT = datetime(2026, 11, 1, tzinfo=UTC)
OPEN = "2026-10"
CALLS = 3000
PUBLISHER = "lumen-labs"


def _with_usage(root: Path) -> None:
    """Commit simulated usage for three months as the bot and close the first two, as
    `formarket royalties simulate` and `formarket royalties close --commit` do."""
    repo = Repo(str(root))
    try:
        for n, period in enumerate((*CLOSED, OPEN)):
            tip = branch_tip(repo, "main")
            book = gitio.price_book(repo, tip, None)
            bot = bot_at(repo, tip)
            files = simulate(book.latest(), Plan(period=period, calls=CALLS * (n + 1), seed=7))
            commit_usage(repo, "main", files, bot, f"Simulated usage for {period}")
        for period in CLOSED:
            engine.close(repo, period, commit=True, now=CLOSED_AT)
        repo.get_worktree().reset_index()
    finally:
        repo.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("readme")
    policy = (ROOT / "royalties" / "policy.yaml").read_bytes()
    root = make_registry(base / "market", {"royalties/policy.yaml": policy})
    _with_usage(root)
    build_site(root, base / "out", repository=REPOSITORY)
    with start_server(base / "out") as server:
        yield server.url


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    context.set_default_timeout(TIMEOUT)
    tab = context.new_page()
    problems: list[str] = []
    tab.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    tab.on("pageerror", lambda e: problems.append(str(e)))
    yield tab
    context.close()
    assert problems == []


def _shot(page: Page, name: str) -> None:
    """A viewport-sized PNG in docs/screenshots/; checks its size from the PNG header."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    # The caret blinks and links hover: neither belongs in a picture that should not change.
    page.mouse.move(0, 0)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False, animations="disabled", caret="hide")
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    assert (width, height) == (VIEWPORT["width"], VIEWPORT["height"])


def test_catalog_search(site: str, page: Page) -> None:
    page.goto(site + "models/")
    page.fill("#fm-q", "chat")
    expect(page.locator(".fm-results .fm-status")).to_have_text("3 models of 9 match")
    expect(page.locator(".fm-results .fm-card").first).to_contain_text("Chat")
    _shot(page, "catalog-search")


def test_listing_page_with_its_deploy_instructions(site: str, page: Page) -> None:
    page.goto(site + "agents/tinyforge/faq-bot/")
    expect(page.locator("h1")).to_have_text("FAQ Bot")
    deploy = page.locator("#deploy")
    expect(deploy).to_be_visible()
    expect(page.locator("button.fm-copy").first).to_be_visible()
    _shot(page, "listing-deploy")


def test_compatibility_explorer(site: str, page: Page) -> None:
    page.goto(site + "compatibility/")
    page.fill("#fm-agent", "faq")
    page.click(".fm-suggest__item")
    result = page.locator(".fm-explorer__result")
    expect(result.locator(".fm-status")).to_have_text("4 compatible models for FAQ Bot")
    expect(result.locator(".fm-card").first).to_be_visible()
    _shot(page, "compatibility-explorer")


def test_publisher_page_with_usage_and_earnings(site: str, page: Page) -> None:
    page.goto(site + f"publishers/{PUBLISHER}/")
    expect(page.locator("h1")).to_have_text("Lumen Labs")
    # Usage by month from the committed usage files, and one earnings chart per currency the
    # publisher was paid in, from the closed statements.
    expect(page.locator('svg.fm-chart[aria-labelledby^="usage"]')).to_have_count(1)
    expect(page.locator('svg.fm-chart[aria-labelledby^="earnings-"]').first).to_be_visible()
    # The Usage heading just below the header that stays on top while the page scrolls.
    page.locator("#usage").evaluate(
        "h => window.scrollTo(0, h.getBoundingClientRect().top + window.scrollY - 64)"
    )
    _shot(page, "publisher-usage-earnings")
