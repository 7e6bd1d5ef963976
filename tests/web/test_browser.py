"""The rights holders' pages in a real browser: Debian's Chromium driven by Playwright, with
JavaScript off, against the app served by uvicorn on a free local port (and, for the
confirmation e-mail, a real SMTP server on 127.0.0.1).

Screenshots of each page at 1280 and 360 px go to the test's output folder and are copied to
test-output/screenshots/ at the repository root (gitignored), for people to look at.
"""

import re
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect, sync_playwright
from pydantic import SecretStr
from sqlalchemy import Engine

from app.clock import FrozenClock
from app.config import Settings
from app.main import create_app
from tests.articles.factories import article_payload
from tests.notifications.conftest import SmtpServer
from tests.takedowns.factories import load
from tests.workers import run_outside_world, run_removals

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


@contextmanager
def serve(settings: Settings, engine: Engine, clock: FrozenClock) -> Iterator[LiveServer]:
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
def live_server(settings: Settings, engine: Engine, clock: FrozenClock) -> Iterator[LiveServer]:
    with serve(settings, engine, clock) as server:
        yield server


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mailing_live_server(
    settings: Settings, engine: Engine, clock: FrozenClock, smtp_server: SmtpServer
) -> Iterator[LiveServer]:
    """The app on a free port, sending its e-mail through the SMTP server on 127.0.0.1."""
    mailing = settings.model_copy(
        update={
            "smtp_url": SecretStr(f"smtp://127.0.0.1:{smtp_server.port}?starttls=off"),
            "smtp_from": "byline <noreply@news.example>",
        }
    )
    with serve(mailing, engine, clock) as server:
        yield server


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


def fill_form(
    page: Page, *, targets: str, accurate: bool = True, email: str = "counsel@lawfirm.example"
) -> None:
    page.get_by_label("Your full name").fill("Priya Claimant <Legal>")
    page.get_by_label("Your e-mail address").fill(email)
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

    # Following the status link: the deadline, and the request waiting for the confirmation.
    status_link.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your takedown request")
    expect(page.locator("main")).to_contain_text(DEADLINE)
    expect(page.locator("main")).to_contain_text("Waiting for you to confirm your e-mail address")
    expect(page.locator("main")).to_contain_text("Waiting for removal")
    expect(page.get_by_role("button", name="Withdraw request")).to_be_visible()
    status_url = page.url
    shots.take(page, "4-status-received")

    # An operator approves (proof enough without the confirmation); the clock moves; the
    # scheduler's tick removes the article.
    clock.advance(timedelta(minutes=20))
    approved = httpx.post(f"{base}/v1/admin/takedowns/{takedown_id}/approve", headers=admin_headers)
    assert approved.status_code == 200, approved.text
    clock.advance(timedelta(minutes=1))
    assert run_removals(engine, live_server.settings, clock).of("removal")["removed"] == 1

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


def test_rights_holder_confirms_the_emailed_link_in_a_browser_and_sees_the_removal(
    mailing_live_server: LiveServer,
    smtp_server: SmtpServer,
    browser: Browser,
    engine: Engine,
    clock: FrozenClock,
    ingest_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    base, settings = mailing_live_server.url, mailing_live_server.settings
    payload = article_payload(1, source_url="https://www.reuters.com/world/story-1")
    ingested = httpx.post(f"{base}/v1/articles", json=payload, headers=ingest_headers)
    assert ingested.status_code == 201, ingested.text
    article_url = ingested.json()["article"]["url"]

    shots = Screenshots(tmp_path / "screenshots")
    context = browser.new_context(
        java_script_enabled=False, viewport={"width": 1280, "height": 900}
    )
    page = context.new_page()
    blocked: list[str] = []
    page.on("console", lambda message: _note_csp_violation(message, blocked))

    # Filed on the form from an address at the article's own domain.
    page.goto(f"{base}/takedown")
    fill_form(page, targets=article_url, email="legal@reuters.com")
    page.get_by_role("button", name="Send request").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("We have received your request")
    expect(page.locator("main")).to_contain_text("Now confirm your e-mail address")
    takedown_id = page.locator("dl.facts dd code").first.inner_text()
    assert load(engine, takedown_id).status == "received"
    shots.take(page, "confirm-1-receipt")

    # The receipt goes out through the SMTP server with the confirmation link.
    assert run_outside_world(engine, settings, clock).of("email")["sent"] == 1
    [arrived] = smtp_server.messages
    assert arrived.rcpt_tos == ["legal@reuters.com"]
    assert arrived.message["Subject"].startswith("Confirm your removal request")
    text = arrived.part("plain")
    confirm_link = re.compile(rf"{re.escape(base)}/takedown/{takedown_id}/confirm\?code=[\w-]+")
    [link] = confirm_link.findall(text)
    assert f'href="{link}"' in arrived.part("html")
    [status_link] = re.findall(rf"{re.escape(base)}/takedown/{takedown_id}\?token=[\w-]+", text)

    # Opening the link shows one button and confirms nothing, whatever runs meanwhile.
    opened = page.goto(link)
    assert opened is not None and opened.status == 200
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm your removal request")
    expect(page.get_by_role("button")).to_have_count(1)
    shots.take(page, "confirm-2-button")
    assert run_removals(engine, settings, clock).of("removal")["removed"] == 0
    assert load(engine, takedown_id).email_confirmed_at is None
    assert httpx.get(article_url).status_code == 200

    # Pressing it confirms; the page comes back saying so.
    clock.advance(timedelta(minutes=3))
    page.get_by_role("button", name="Confirm my request").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your address is confirmed")
    assert page.url == link  # the post was answered 303 to the link's page
    expect(page.locator("main")).to_contain_text("the content is being removed now")
    expect(page.get_by_role("button")).to_have_count(0)
    shots.take(page, "confirm-3-confirmed")

    # The next tick removes the article.
    assert run_removals(engine, settings, clock).of("removal")["removed"] == 1
    gone = page.goto(article_url)
    assert gone is not None and gone.status == 451
    assert httpx.get(article_url).status_code == 451

    # The status link from the e-mail shows it removed, and when the address was confirmed.
    page.goto(status_link)
    main = page.locator("main")
    expect(main).to_contain_text("Completed")
    expect(main.locator(".state-removed")).to_have_text("Removed")
    expect(main).to_contain_text("Confirmed on Monday 5 January 2026, 09:03 UTC")
    shots.take(page, "confirm-4-status-removed")

    assert blocked == [], blocked
    assert len(shots.saved) == 8
    context.close()


def _note_csp_violation(message: Any, blocked: list[str]) -> None:
    if "Content Security Policy" in message.text:
        blocked.append(message.text)


def _assert_focus_is_visible(page: Page, selector: str) -> None:
    page.focus(selector)
    outline = page.locator(selector).evaluate("e => getComputedStyle(e).outlineStyle")
    assert outline not in ("", "none"), f"{selector} shows no focus outline"
