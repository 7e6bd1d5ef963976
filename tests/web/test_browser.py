"""The rights holders' pages in a real browser: Debian's Chromium driven by Playwright, with
JavaScript off, against the app served by uvicorn on a free local port.

Screenshots of each page at 1280 and 360 px go to the test's output folder and are copied to
test-output/screenshots/ at the repository root (gitignored), for people to look at.
"""

import re
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy import Engine

from app.clock import FrozenClock
from app.config import Settings
from app.main import create_app
from tests.articles.factories import article_payload
from tests.takedowns.factories import tick

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WIDTHS = {"desktop": 1280, "mobile": 360}
SHARED_SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
DEADLINE = "Tuesday 6 January 2026, 09:00 UTC"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="no Chromium at /usr/bin/chromium: install Debian's `chromium` package to run the "
    "browser test (Playwright never downloads a browser here)",
)


@dataclass
class LiveServer:
    url: str
    settings: Settings


@pytest.fixture
def live_server(settings: Settings, engine: Engine, clock: FrozenClock) -> Iterator[LiveServer]:
    """The app on 127.0.0.1 at a free port, its public base URL that address."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    served = settings.model_copy(update={"public_base_url": url})
    app = create_app(served, engine=engine, clock=clock)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started or not thread.is_alive():
                break
            thread.join(0.05)  # waits for the server thread, not for time to pass in a rule
        assert server.started, "uvicorn did not start"
        yield LiveServer(url=url, settings=served)
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


class Screenshots:
    """Full-page screenshots of one page at every width, saved twice (see the module doc)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        SHARED_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.saved: list[Path] = []

    def take(self, page: Page, name: str) -> None:
        for label, width in WIDTHS.items():
            page.set_viewport_size({"width": width, "height": 900})
            # Nothing may stick out sideways: the page must be usable at 360 px.
            overflow = page.evaluate("document.documentElement.scrollWidth")
            assert overflow <= width, f"{name} is {overflow}px wide at {width}px"
            path = self.folder / f"{name}-{label}-{width}px.png"
            page.screenshot(path=str(path), full_page=True)
            shutil.copy(path, SHARED_SCREENSHOTS / path.name)
            self.saved.append(path)
        page.set_viewport_size({"width": WIDTHS["desktop"], "height": 900})


def fill_form(page: Page, *, targets: str, accurate: bool = True) -> None:
    page.get_by_label("Your full name").fill("Priya Claimant <Legal>")
    page.get_by_label("Your e-mail address").fill("counsel@lawfirm.example")
    page.get_by_label("Organisation (optional)").fill("Law Firm & Partners")
    page.get_by_label("the rights holder (the author or the publisher)").check()
    page.get_by_label("Content to remove").fill(targets)
    page.get_by_label("Copyright: I own the rights to this content").check()
    page.get_by_label("Explanation").fill("We did not license this article to the aggregator.")
    page.locator("#field-good_faith").check()
    if accurate:
        page.locator("#field-accurate").check()
    page.get_by_label("Signature").fill("P. Claimant")


def test_rights_holder_files_follows_and_sees_removal_in_a_browser(
    live_server: LiveServer,
    browser: Browser,
    engine: Engine,
    clock: FrozenClock,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    base = live_server.url
    payload = article_payload(1, source_url="https://www.reuters.com/world/story-1")
    ingested = httpx.post(f"{base}/v1/articles", json=payload, headers=ingest_headers)
    assert ingested.status_code == 201, ingested.text
    article_url = ingested.json()["article"]["url"]
    assert article_url.startswith(base)

    shots = Screenshots(tmp_path / "screenshots")
    # JavaScript off: the pages must work without it.
    context = browser.new_context(
        java_script_enabled=False, viewport={"width": 1280, "height": 900}
    )
    page = context.new_page()
    blocked: list[str] = []
    page.on("console", lambda message: _note_csp_violation(message, blocked))

    # The form, with the policy and the promise.
    response = page.goto(f"{base}/takedown")
    assert response is not None and response.status == 200
    expect(page.get_by_role("heading", level=1)).to_have_text("Ask us to remove your content")
    expect(page.locator(".promise")).to_contain_text("removed within 24 hours of receipt")
    _assert_focus_is_visible(page, "#field-name")
    shots.take(page, "1-form")

    # A missing statement: the form comes back with the input kept and the error beside it.
    fill_form(page, targets=article_url, accurate=False)
    page.get_by_role("button", name="Send request").click()
    expect(page).to_have_title(re.compile(r"^Error: Ask us to remove your content"))
    error = page.locator("#accurate-error")
    expect(error).to_contain_text("cannot be filed without this statement")
    box = page.locator("#field-accurate")
    expect(box).to_have_attribute("aria-invalid", "true")
    expect(box).not_to_be_checked()
    above, beside = error.bounding_box(), box.bounding_box()
    assert above and beside and above["y"] < beside["y"] < above["y"] + 80  # next to it
    expect(page.locator("#field-name")).to_have_value("Priya Claimant <Legal>")
    expect(page.locator("#field-targets")).to_have_value(article_url)
    expect(page.locator("#field-good_faith")).to_be_checked()
    expect(page.get_by_role("link", name="Accuracy statement: Must be true")).to_be_visible()
    shots.take(page, "2-error")

    # Corrected and sent: the receipt shows the id, the deadline and the status link.
    page.locator("#field-accurate").check()
    page.get_by_role("button", name="Send request").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("We have received your request")
    expect(page.locator("main")).to_contain_text(DEADLINE)
    takedown_id = page.locator("dl.facts dd code").first.inner_text()
    assert len(takedown_id) == 36
    status_link = page.locator("a.status-link")
    link = re.compile(rf"^{re.escape(base)}/takedown/{takedown_id}\?token=[A-Za-z0-9_-]{{43}}$")
    expect(status_link).to_have_attribute("href", link)
    expect(page.locator("main")).to_contain_text("Keep your status link")
    shots.take(page, "3-receipt")

    # Following the status link: the deadline, and the request waiting for review.
    status_link.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your takedown request")
    expect(page.locator("main")).to_contain_text(DEADLINE)
    expect(page.locator("main")).to_contain_text("Waiting for removal")
    expect(page.get_by_role("button", name="Withdraw request")).to_be_visible()
    status_url = page.url
    shots.take(page, "4-status-queued")

    # An operator approves; the clock moves; the scheduler's tick removes the article.
    clock.advance(timedelta(minutes=20))
    approved = httpx.post(f"{base}/v1/admin/takedowns/{takedown_id}/approve", headers=admin_headers)
    assert approved.status_code == 200, approved.text
    clock.advance(timedelta(minutes=1))
    assert tick(engine, live_server.settings, clock).removed == 1

    gone = page.goto(article_url)
    assert gone is not None and gone.status == 451
    assert gone.headers["link"] == f'<{base}/takedown>; rel="blocked-by"'

    page.goto(status_url)
    main = page.locator("main")
    expect(main).to_contain_text("Completed")
    expect(main.locator(".state-removed")).to_have_text("Removed")
    expect(main).to_contain_text("Approved on Monday 5 January 2026, 09:20 UTC")
    expect(page.get_by_role("button", name="Withdraw request")).to_have_count(0)
    shots.take(page, "5-status-removed")

    # A wrong token: the not-found page.
    wrong = page.goto(f"{base}/takedown/{takedown_id}?token=guess")
    assert wrong is not None and wrong.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Request not found")

    assert blocked == [], blocked
    assert len(shots.saved) == 10
    context.close()


def _note_csp_violation(message: Any, blocked: list[str]) -> None:
    if "Content Security Policy" in message.text:
        blocked.append(message.text)


def _assert_focus_is_visible(page: Page, selector: str) -> None:
    page.focus(selector)
    outline = page.locator(selector).evaluate("e => getComputedStyle(e).outlineStyle")
    assert outline not in ("", "none"), f"{selector} shows no focus outline"
