"""The operators' console in a real browser: Debian's Chromium driven by Playwright, with
JavaScript off and on, against the app served by uvicorn on a free local port (the server,
browser and CSP check of test_browser.py).

Screenshots of the queue, a request and the transparency page at 1280 and 360 px are saved under
tests/web/screenshots/, for people to look at.
"""

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import Engine

from app.auth import Scope
from app.clock import FrozenClock
from tests.articles.factories import article_payload
from tests.factories import make_key
from tests.takedowns.factories import filing, load
from tests.web.test_browser import (  # noqa: F401 (fixtures)
    CHROMIUM,
    LiveServer,
    browser,
    live_server,
)
from tests.workers import run_removals

SCREENSHOTS = Path(__file__).parent / "screenshots"
WIDTHS = {"desktop": 1280, "mobile": 360}

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="no Chromium at /usr/bin/chromium: install Debian's `chromium` package to run the "
    "browser test (Playwright never downloads a browser here)",
)


def screenshot(page: Page, name: str) -> list[Path]:
    """Full-page screenshots of the page at every width; nothing may stick out sideways."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    saved = []
    for label, width in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": 900})
        overflow = page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= width, f"{name} is {overflow}px wide at {width}px"
        path = SCREENSHOTS / f"{name}-{label}-{width}px.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000, f"{path} looks blank"
        saved.append(path)
    page.set_viewport_size({"width": WIDTHS["desktop"], "height": 900})
    return saved


def ingest(base: str, headers: dict[str, str], n: int) -> str:
    payload = article_payload(n, source_url=f"https://www.reuters.com/world/story-{n}")
    answer = httpx.post(f"{base}/v1/articles", json=payload, headers=headers)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["article"]["url"])


def file(base: str, article_url: str, **overrides: Any) -> str:
    body = filing([article_url], claimant={"email": "agent@rights.example.org"}, **overrides)
    answer = httpx.post(f"{base}/v1/takedowns", json=body)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


@pytest.mark.parametrize("javascript", [False, True], ids=["js-off", "js-on"])
def test_operator_signs_in_approves_the_most_urgent_and_rejects_another_in_a_browser(
    live_server: LiveServer,  # noqa: F811
    browser: Browser,  # noqa: F811
    engine: Engine,
    clock: FrozenClock,
    ingest_headers: dict[str, str],
    javascript: bool,
) -> None:
    base, settings = live_server.url, live_server.settings
    admin_key = make_key(engine, Scope.admin, "operator-ana")
    first_url = ingest(base, ingest_headers, 1)
    second_url = ingest(base, ingest_headers, 2)
    urgent = file(base, first_url)
    clock.advance(timedelta(hours=19))
    later = file(base, second_url, domain="reuters.com")  # a risk: a whole domain
    clock.advance(timedelta(minutes=30))

    context = browser.new_context(
        java_script_enabled=javascript, viewport={"width": 1280, "height": 900}
    )
    page = context.new_page()
    violations: list[str] = []
    foreign: list[str] = []
    page.on("console", lambda message: _note_csp_violation(message, violations))
    page.on("request", lambda request: _note_foreign(request.url, base, foreign))
    label = "js-on" if javascript else "js-off"

    # Anything under /admin first asks for a key.
    page.goto(f"{base}/admin/takedowns")
    assert page.url == f"{base}/admin/login"
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to the console")
    page.get_by_label("Admin API key").fill(admin_key)
    page.get_by_role("button", name="Sign in").click()
    assert page.url == f"{base}/admin/takedowns"
    expect(page.locator("header")).to_contain_text("Signed in as operator-ana")

    # The most urgent request is at the top, with its countdown; the other shows its risk.
    items = page.locator("li.queue-item")
    expect(items).to_have_count(2)
    expect(items.first.locator("a")).to_have_attribute("href", f"/admin/takedowns/{urgent}")
    expect(items.first.locator(".countdown")).to_have_text("4 h 30 min left")
    expect(items.first.locator(".countdown")).to_have_class(re.compile(r"\bdue-soon\b"))
    expect(items.nth(1).locator(".badge-risk")).to_contain_text("whole domain reuters.com")
    shots = screenshot(page, f"console-{label}-queue")

    # The request in full, then approved.
    items.first.locator("a").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Request {urgent[:8]}")
    expect(page.locator("main")).to_contain_text("agent@rights.example.org")
    expect(page.locator("main")).to_contain_text("First seen by us")
    shots += screenshot(page, f"console-{label}-request")
    page.get_by_role("button", name="Approve", exact=True).click()
    assert page.url == f"{base}/admin/takedowns/{urgent}"
    expect(page.locator("main")).to_contain_text("approved by operator-ana")

    # The removal worker runs: the article answers 451, and the request leaves the queue.
    assert run_removals(engine, settings, clock).of("removal")["removed"] == 1
    gone = page.goto(first_url)
    assert gone is not None and gone.status == 451
    page.goto(f"{base}/admin/takedowns")
    expect(page.locator("li.queue-item")).to_have_count(1)
    expect(page.locator(f'a[href="/admin/takedowns/{urgent}"]')).to_have_count(0)

    # The other request, rejected with a template.
    page.locator(f'a[href="/admin/takedowns/{later}"]').click()
    page.locator("#reject-template").select_option("licensed")
    page.locator("#reject-statement").fill("Our licence runs until 2027.")
    page.get_by_role("button", name="Reject", exact=True).click()
    expect(page.locator("main")).to_contain_text("rejected by operator-ana")
    assert load(engine, later).decision_reason is not None
    assert load(engine, later).status == "rejected"
    assert httpx.get(second_url).status_code == 200
    page.goto(f"{base}/admin/takedowns")
    expect(page.locator("main")).to_contain_text("No requests in this view.")

    # The public figures: one removal, in 19 h 30 min.
    page.goto(f"{base}/transparency")
    expect(page.get_by_role("heading", level=1)).to_have_text("How we keep the 24-hour promise")
    expect(page.locator("main")).to_contain_text("19.5 h (of 1 removal)")
    expect(page.locator("svg rect")).to_have_count(1)
    shots += screenshot(page, f"console-{label}-transparency")
    page.goto(f"{base}/admin/takedowns")

    # Signing out ends the session.
    page.get_by_role("button", name="Sign out").click()
    assert page.url == f"{base}/admin/login"
    page.goto(f"{base}/admin/takedowns")
    assert page.url == f"{base}/admin/login"

    assert violations == [], violations
    assert foreign == [], foreign
    assert len(shots) == 6
    context.close()


def _note_csp_violation(message: Any, violations: list[str]) -> None:
    if "Content Security Policy" in message.text:
        violations.append(message.text)


def _note_foreign(url: str, base: str, foreign: list[str]) -> None:
    if not url.startswith(f"{base}/"):
        foreign.append(url)
