"""The dashboard walked in headless Chromium: sign in through the GitHub stand-in, create a
key, deploy with it through the API, call the deployment through the gateway, see the call in
the usage chart, stop the deployment. Its screenshots go to docs/screenshots/, where the
README shows them. Select with `-m browser`, like the other browser tests."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dulwich.repo import Repo
from playwright.sync_api import Browser, expect

from formarket.gateway.config import GatewayConfig, StatePaths
from formarket.gateway.flush import flush_all
from formarket.gateway.routes import Route, save_routes
from formarket.gateway.server import ServerThread, build_gateway
from formarket.schemas.usage import ListingVersion
from formarket.standins.openai import StandIn as Upstream
from tests.control.conftest import Plane
from tests.control.invoicing import close_month
from tests.control.test_payments import Shop, shop
from tests.gateway.helpers import Client
from tests.site.browser import TIMEOUT, browser

__all__ = ["browser", "shop"]

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("control-browser")]

SHOTS = Path(__file__).resolve().parent.parent.parent / "docs" / "screenshots"


def test_a_user_walks_the_dashboard(plane: Plane, browser: Browser, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT)
    page.goto(f"{plane.url}/dashboard")
    page.get_by_role("link", name="Sign in with GitHub").click()
    page.get_by_label("Sign in to GitHub (stand-in) as").fill("ada")
    page.get_by_role("button", name="Authorize").click()
    expect(page.get_by_role("heading", name="My keys")).to_be_visible()

    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Create a key").click()
    key = page.locator("#new-key").inner_text()
    assert key.startswith("fmk_")

    made = plane.call(key, "POST", "/v1/deployments", {"model": "tinyforge/echo-chat"})
    dep = made.json()["deployments"][0]["id"]
    # The farm's part, played here: the deployment answers and the gateway routes it.
    state = StatePaths(tmp_path / "gw")
    with ServerThread(Upstream()) as upstream:
        model = ListingVersion(id="tinyforge/echo-chat", version="1.1.0")
        save_routes(
            state.routes,
            [Route(deployment=dep, endpoint=upstream.url, account="ada", model=model)],
        )
        config = GatewayConfig(
            state, source="gateway/t", segment_seconds=0.1, database_url=str(plane.store.engine.url)
        )
        with ServerThread(build_gateway(config)) as gateway:
            for _ in range(4):
                assert Client(gateway.url, key).chat(dep).status == 200
    repo = Repo(str(plane.market.repo))
    try:
        flush_all(repo, state.spool)
    finally:
        repo.close()

    page.goto(f"{plane.url}/dashboard")
    expect(page.locator("svg.fm-chart")).to_be_visible()
    expect(page.get_by_role("cell", name=dep)).to_have_count(2)  # deployments and usage
    page.get_by_text("Call it").click()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "dashboard.png"), full_page=True)

    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_role("cell", name="stopped")).to_be_visible()
    assert plane.call(key, "GET", f"/v1/deployments/{dep}").json()["actual"] == "stopped"
    page.close()

    # The model's creator (an owner of tinyforge) sees ada's calls under the model's version.
    creator = browser.new_context(viewport={"width": 1280, "height": 900})
    page = creator.new_page()
    page.set_default_timeout(TIMEOUT)
    page.goto(f"{plane.url}/dashboard")
    page.get_by_role("link", name="Sign in with GitHub").click()
    page.get_by_label("Sign in to GitHub (stand-in) as").fill("tf-sam")
    page.get_by_role("button", name="Authorize").click()
    page.get_by_role("link", name="My listings").click()
    expect(page.get_by_role("heading", name="By day and version")).to_be_visible()
    expect(page.locator("svg.fm-chart")).to_be_visible()
    row = page.get_by_role("row").filter(has_text="tinyforge/echo-chat")
    expect(row.first).to_contain_text("1.1.0")
    page.screenshot(path=str(SHOTS / "dashboard-listings.png"), full_page=True)
    creator.close()


def test_a_user_tops_up_through_the_checkout_page(shop: Shop, browser: Browser) -> None:
    plane = shop.plane
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT)
    page.goto(f"{plane.url}/dashboard")
    page.get_by_role("link", name="Sign in with GitHub").click()
    page.get_by_label("Sign in to GitHub (stand-in) as").fill("ada")
    page.get_by_role("button", name="Authorize").click()
    expect(page.locator("#balance")).to_have_text("0.00 USD")

    page.get_by_label("Amount (USD)").fill("25.00")
    page.get_by_role("button", name="Top up").click()
    page.locator("#checkout").click()  # to the payment provider's page
    expect(page.get_by_role("heading", name="Pay 25.00 USD")).to_be_visible()
    page.locator("#pay").click()
    # Back on the dashboard; the balance shows once the signed webhook was taken.
    expect(page.get_by_text("your balance grows")).to_be_visible()
    page.reload()
    expect(page.locator("#balance")).to_have_text("25.00 USD")
    expect(page.get_by_role("cell", name="credited")).to_be_visible()
    page.screenshot(path=str(SHOTS / "dashboard-credit.png"))
    page.close()


def test_a_user_tops_up_and_reads_the_invoice_of_the_month(shop: Shop, browser: Browser) -> None:
    plane = shop.plane
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT)
    page.goto(f"{plane.url}/dashboard")
    page.get_by_role("link", name="Sign in with GitHub").click()
    page.get_by_label("Sign in to GitHub (stand-in) as").fill("ada")
    page.get_by_role("button", name="Authorize").click()
    page.get_by_label("Amount (USD)").fill("25.00")
    page.get_by_role("button", name="Top up").click()
    page.locator("#checkout").click()
    page.locator("#pay").click()
    expect(page.get_by_text("your balance grows")).to_be_visible()
    page.reload()
    expect(page.locator("#balance")).to_have_text("25.00 USD")

    # The month ends and the operator closes it with its invoices: ada's calls of the month
    # (committed by the bot) and the top-up she just paid are on hers.
    now = datetime.now(UTC)
    period = f"{now.year:04d}-{now.month:02d}"
    month_after = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, 1, tzinfo=UTC)
    close_month(plane.control, {"ada": 3}, period=period, now=month_after)

    page.get_by_role("link", name="My invoices").click()
    row = page.get_by_role("row").filter(has_text=period)
    expect(row).to_contain_text("2.40 USD")
    expect(row).to_contain_text("22.60 USD")
    page.get_by_role("link", name=period).click()
    expect(page.get_by_role("heading", name=f"Invoice {period}")).to_be_visible()
    line = page.get_by_role("row").filter(has_text="Output tokens")
    expect(line).to_contain_text("northwind-ai/northwind-chat-8b")
    expect(line).to_contain_text("3,000,000")
    expect(line).to_contain_text("1.80 USD")
    expect(page.get_by_role("row").filter(has_text="cs_test")).to_contain_text("25.00 USD")
    expect(page.locator("#closing-balance")).to_have_text("22.60 USD")
    page.screenshot(path=str(SHOTS / "dashboard-invoice.png"), full_page=True)

    with page.expect_download() as download:
        page.locator("#download").click()
    assert download.value.suggested_filename == f"invoice-{period}.json"
    saved = Path(download.value.path()).read_bytes()
    assert saved == plane.control.invoices.body("ada", period)
    assert hashlib.sha256(saved).hexdigest() == page.locator("#sha256").inner_text()
    page.close()
