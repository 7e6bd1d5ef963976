"""The publishers' pages without a browser: the form that starts a verification, the page
of its record, and the "Check now" button that shows the publisher key once."""

import re
from datetime import timedelta

from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import Engine

from app.clock import FrozenClock
from app.config import Settings
from app.main import create_app
from app.publishers.models import PublisherVerification
from tests.factories import row_count
from tests.publishers.conftest import DnsServer
from tests.publishers.factories import VERIFICATIONS, publish_record
from tests.takedowns.factories import bearer
from tests.web.factories import Elements, csrf_token

FORM = "/publishers/verify"
PAGE = re.compile(r"/publishers/verify/([0-9a-f-]{36})")
KEY = re.compile(r'<code class="token" id="publisher-key">(byl_[A-Za-z0-9_-]+)</code>')


def post_form(client: TestClient, domain: str, email: str = "dns@reuters.com") -> Response:
    """Open the form and send it, as a browser without JavaScript does (not followed)."""
    token = csrf_token(client, FORM)
    return client.post(
        FORM,
        data={"csrf_token": token, "domain": domain, "email": email},
        follow_redirects=False,
    )


def started(client: TestClient, domain: str = "uk.reuters.com") -> str:
    """Start a verification with the form; the path of its page."""
    response = post_form(client, domain)
    assert response.status_code == 303, response.text
    path = response.headers["location"]
    assert PAGE.fullmatch(path), path
    return path


def press_check(client: TestClient, page_path: str) -> Response:
    """Press "Check now" on the verification's page (the answer, not followed)."""
    token = csrf_token(client, page_path)
    return client.post(f"{page_path}/check", data={"csrf_token": token}, follow_redirects=False)


def test_the_form_says_what_the_proof_gets_and_carries_a_csrf_token(
    web_client: TestClient,
) -> None:
    response = web_client.get(FORM)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert "content-security-policy" in response.headers
    text = response.text
    assert "Prove that you publish a domain" in text
    assert "<code>_byline-verify.</code>" in text
    assert "If it is missing for 7 days, the key is revoked" in text  # the grace, in words
    page = Elements(text)
    form = [attrs for attrs in page.all("form") if attrs.get("action") == FORM]
    assert form and form[0]["method"] == "post"
    assert page.by_id("field-domain") and page.by_id("field-email")
    assert re.search(r'name="csrf_token" value="[0-9a-f]{64}"', text)


def test_a_form_post_without_its_csrf_token_is_refused_and_starts_nothing(
    web_client: TestClient, engine: Engine
) -> None:
    csrf_token(web_client, FORM)  # the cookie is there; the form's token is not
    response = web_client.post(
        FORM, data={"domain": "reuters.com", "email": "dns@reuters.com"}, follow_redirects=False
    )
    assert response.status_code == 403
    assert "Your form could not be accepted" in response.text
    forged = web_client.post(
        FORM,
        data={"csrf_token": "0" * 64, "domain": "reuters.com", "email": "dns@reuters.com"},
        follow_redirects=False,
    )
    assert forged.status_code == 403
    assert row_count(engine, PublisherVerification) == 0


def test_the_form_starts_a_verification_and_its_page_shows_the_record_to_add(
    web_client: TestClient,
) -> None:
    """303 to the verification's page (a reload starts nothing new), which shows the
    record for the registrable domain, the same as the API's."""
    path = started(web_client, "uk.reuters.com")
    page = web_client.get(path)
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    shown = Elements(page.text).text_by_id
    api = web_client.get(f"{VERIFICATIONS}/{PAGE.fullmatch(path).group(1)}").json()  # type: ignore[union-attr]
    assert shown["record-name"] == "_byline-verify.reuters.com" == api["record_name"]
    assert shown["record-value"] == api["record_value"]
    assert api["status"] == "pending" and api["domain"] == "reuters.com"
    assert "Add this record to reuters.com" in page.text
    assert f'action="{path}/check"' in page.text


def test_check_now_with_the_record_shows_the_key_once(
    web_client: TestClient, dns_server: DnsServer
) -> None:
    """The key is in the answer to the button only (200, never redirected, never cached);
    reloading the page, or pressing again, shows it no more. The key works."""
    path = started(web_client)
    verification_id = PAGE.fullmatch(path).group(1)  # type: ignore[union-attr]
    publish_record(dns_server, web_client.get(f"{VERIFICATIONS}/{verification_id}").json())
    answer = press_check(web_client, path)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    match = KEY.search(answer.text)
    assert match, answer.text
    key = match.group(1)
    assert "We show this key once" in answer.text

    reloaded = web_client.get(path)
    assert reloaded.status_code == 200
    assert key not in reloaded.text and "publisher-key" not in reloaded.text
    assert "reuters.com is verified" in reloaded.text
    assert f'action="{path}/check"' not in reloaded.text  # nothing to press; a stale form:
    again = web_client.post(
        f"{path}/check", data={"csrf_token": csrf_token(web_client, FORM)}, follow_redirects=False
    )
    assert again.status_code == 303 and again.headers["location"] == path
    assert key not in web_client.get(path).text

    listing = web_client.get("/v1/publisher/articles", headers=bearer(key))
    assert listing.status_code == 200, listing.text


def test_check_now_without_the_record_goes_back_to_the_page_which_says_what_was_found(
    web_client: TestClient, dns_server: DnsServer
) -> None:
    path = started(web_client)
    answer = press_check(web_client, path)
    assert answer.status_code == 303 and answer.headers["location"] == path
    page = web_client.get(path)
    assert "Not found yet" in page.text
    assert "no record: _byline-verify.reuters.com does not exist" in page.text
    assert "publisher-key" not in page.text

    dns_server.zone.failing = True
    press_check(web_client, path)
    assert "We could not ask your DNS" in web_client.get(path).text


def test_check_now_without_the_csrf_token_is_refused_and_looks_nothing_up(
    web_client: TestClient, dns_server: DnsServer
) -> None:
    path = started(web_client)
    response = web_client.post(f"{path}/check", data={}, follow_redirects=False)
    assert response.status_code == 403
    assert dns_server.zone.queries == []


def test_invalid_input_shows_the_form_again_with_the_errors_and_what_was_typed(
    web_client: TestClient, engine: Engine
) -> None:
    response = post_form(web_client, "https://reuters.com/world", "not-an-address")
    assert response.status_code == 422
    text = response.text
    assert "There is a problem" in text and "Nothing has been started yet" in text
    page = Elements(text)
    assert "Must be a domain name such as example.com" in page.text_by_id["domain-error"]
    assert "Must be an e-mail address" in page.text_by_id["email-error"]
    assert page.by_id("field-domain")["value"] == "https://reuters.com/world"
    assert page.by_id("field-email")["value"] == "not-an-address"
    assert row_count(engine, PublisherVerification) == 0

    empty = post_form(web_client, "", "")
    assert empty.status_code == 422
    assert "Enter your domain." in empty.text and "Enter your e-mail address." in empty.text


def test_an_unknown_verification_is_a_404_page(web_client: TestClient) -> None:
    unknown = "/publishers/verify/00000000-0000-4000-8000-000000000000"
    page = web_client.get(unknown)
    assert page.status_code == 404
    assert "Verification not found" in page.text
    token = csrf_token(web_client, FORM)
    pressed = web_client.post(
        f"{unknown}/check", data={"csrf_token": token}, follow_redirects=False
    )
    assert pressed.status_code == 404
    assert "Verification not found" in pressed.text


def test_an_expired_verification_page_says_to_start_again(
    web_client: TestClient, clock: FrozenClock, dns_server: DnsServer
) -> None:
    path = started(web_client)
    clock.advance(timedelta(days=7))
    page = web_client.get(path)
    assert page.status_code == 200
    assert "This verification expired" in page.text
    assert f'action="{path}/check"' not in page.text


def test_the_form_over_the_address_limit_is_a_429_page_with_retry_after(
    settings: Settings, engine: Engine, clock: FrozenClock
) -> None:
    limited = settings.model_copy(update={"verification_rate_per_address": "1/hour"})
    app = create_app(limited, engine=engine, clock=clock)
    with TestClient(app, base_url="https://news.example") as browser:
        started(browser)
        refused = post_form(browser, "bbc.co.uk")
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) > 0
        assert "domain verifications from this address" in refused.text
        assert Elements(refused.text).by_id("field-domain")["value"] == "bbc.co.uk"
    assert row_count(engine, PublisherVerification) == 1
