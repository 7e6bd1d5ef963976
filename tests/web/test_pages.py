"""The rights holders' pages without a browser: plain form posts, as with JavaScript off."""

import itertools
import re
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine

from app.clock import FrozenClock
from app.config import Settings
from app.main import create_app
from app.takedowns.models import Takedown
from tests.factories import row_count
from tests.takedowns.factories import audit_actions, confirmation_code, filing, ingest, load
from tests.web.factories import (
    CLAIMANT_EMAIL,
    Elements,
    confirm_path,
    csrf_token,
    form_fields,
    post_form,
    press_confirm,
    status_path,
    takedown_id_of,
)
from tests.workers import run_removals

DEADLINE = "Tuesday 6 January 2026, 09:00 UTC"
UNVERIFIED = "counsel@lawfirm.example"  # not the articles' domain: waits for the review window


# The form --------------------------------------------------------------------------------


def test_form_states_the_promise_and_the_policy(web_client: TestClient) -> None:
    response = web_client.get("/takedown")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    text = response.text
    assert "removed within 24 hours of receipt" in text
    for heading in (
        "What we remove",
        "How fast, and what proof it takes",
        "How to follow your request",
    ):
        assert f"<h3>{heading}</h3>" in text
    # What proof gets what speed, in plain words.
    assert "Until you confirm your e-mail address, nothing happens." in text
    assert "not at a public mailbox provider such as Gmail or Yahoo Mail" in text
    assert "we wait until 4 hours after receipt" in text  # the review window, from settings
    assert 'href="/publishers/verify"' in text
    assert "Throw-away e-mail addresses are refused" in text
    for statement in ("good_faith", "accurate"):
        assert f'id="{statement}-hint"' in text  # what the statement means, tied to its box


def test_every_form_control_has_a_bound_label_and_headings_do_not_skip(
    web_client: TestClient,
) -> None:
    page = Elements(web_client.get("/takedown").text)
    labelled = {attrs["for"] for attrs in page.all("label")}
    controls = [
        attrs
        for tag, attrs in page.tags
        if tag in {"input", "textarea", "select"} and attrs.get("type") != "hidden"
    ]
    assert len(controls) == 19  # 8 inputs, 2 text areas, 2 roles, 5 reasons, 2 statements
    for control in controls:
        assert control["id"] in labelled, control
    levels = [int(tag[1]) for tag, _ in page.tags if re.fullmatch(r"h[1-6]", tag)]
    assert levels[0] == 1 and levels.count(1) == 1
    assert all(b - a <= 1 for a, b in itertools.pairwise(levels)), levels
    assert page.by_id("field-name")["autocomplete"] == "name"
    form = page.all("form")[0]
    assert form["method"] == "post" and form["action"] == "/takedown"


def test_pages_send_a_strict_content_security_policy_and_load_nothing_external(
    web_client: TestClient,
) -> None:
    response = web_client.get("/takedown")
    policy = response.headers["content-security-policy"]
    for directive in (
        "default-src 'none'",
        "style-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ):
        assert directive in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    page = Elements(response.text)
    assert not page.all("script") and not page.all("img") and not page.all("iframe")
    assert all("style" not in attrs for _, attrs in page.tags)  # inline styles would be blocked
    stylesheets = [attrs["href"] for attrs in page.all("link") if attrs.get("rel") == "stylesheet"]
    assert len(stylesheets) == 1 and stylesheets[0].startswith("/static/takedown.css?v=")
    css = web_client.get(stylesheets[0])
    assert css.status_code == 200
    assert css.headers["content-type"] == "text/css; charset=utf-8"
    assert ":focus-visible" in css.text and "@import" not in css.text and "url(" not in css.text


def test_the_451_of_a_removed_article_links_to_this_page(
    web_client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
) -> None:
    article = ingest(web_client, ingest_headers)
    filed = post_form(web_client, targets=article["url"])  # at the article's domain
    assert filed.status_code == 202
    takedown_id = takedown_id_of(filed.text)
    assert press_confirm(web_client, takedown_id, confirmation_code(engine, takedown_id))
    clock.advance(timedelta(minutes=1))
    assert run_removals(engine, settings, clock).of("removal")["removed"] == 1
    removed = web_client.get(f"/v1/articles/{article['id']}")
    assert removed.status_code == 451
    blocked_by = r'<https://news\.example(/[^>]*)>; rel="blocked-by"'
    link = re.fullmatch(blocked_by, removed.headers["link"])
    assert link
    policy = web_client.get(link.group(1))
    assert policy.status_code == 200
    assert "Our removal policy" in policy.text and "How to follow your request" in policy.text


# Filing ----------------------------------------------------------------------------------


def test_form_post_without_javascript_files_the_request_through_the_same_service(
    web_client: TestClient, ingest_headers: dict[str, str], engine: Engine
) -> None:
    article = ingest(web_client, ingest_headers)
    response = post_form(web_client, targets=f"{article['url']}\r\n")
    assert response.status_code == 202, response.text
    assert response.headers["cache-control"] == "no-store"
    assert "content-security-policy" in response.headers
    text = response.text
    takedown_id = takedown_id_of(text)
    assert DEADLINE in text and 'datetime="2026-01-06T09:00:00Z"' in text
    assert "Now confirm your e-mail address" in text
    assert "Nothing is removed or blocked until you do" in text
    assert "Keep your status link" in text and "we show it here and in our e-mail only" in text
    path = status_path(text)
    assert path.startswith(f"/takedown/{takedown_id}?token=")
    assert "Waiting for you to confirm your e-mail address" in text
    assert "Waiting for removal" in text and "1 article of ours" in text
    assert "Not confirmed yet" in text
    # The JSON view of the same request agrees: it was filed by the one service.
    token = path.partition("token=")[2]
    view = web_client.get(f"/v1/takedowns/{takedown_id}", params={"token": token})
    assert view.status_code == 200
    assert (view.json()["status"], view.json()["email_confirmed_at"]) == ("received", None)
    assert view.json()["due_at"] == "2026-01-06T09:00:00Z"
    assert view.json()["targets"][0]["article_ids"] == [article["id"]]
    # Its receipt e-mail, with the confirmation link, is queued with it.
    assert confirmation_code(engine, takedown_id)


def test_a_domain_request_without_targets_is_filed(web_client: TestClient) -> None:
    response = post_form(web_client, domain="reuters.com")
    assert response.status_code == 202, response.text
    assert "<code>reuters.com</code>" in response.text


def test_sending_the_same_request_again_files_a_new_one_and_shows_nothing_of_the_first(
    web_client: TestClient, ingest_headers: dict[str, str], engine: Engine
) -> None:
    """The duplicate oracle: repeating someone's e-mail and targets showed *their* request.
    Now a repeat is a request of its own (linked to the first for operators only)."""
    article = ingest(web_client, ingest_headers)
    first = post_form(web_client, targets=str(article["id"]))
    assert first.status_code == 202
    again = post_form(web_client, targets=str(article["id"]))
    assert again.status_code == 202
    first_id, again_id = takedown_id_of(first.text), takedown_id_of(again.text)
    assert again_id != first_id and first_id not in again.text
    assert "You already sent this request" not in again.text
    assert status_path(again.text) != status_path(first.text)
    assert row_count(engine, Takedown) == 2
    assert load(engine, again_id).duplicate_of == first_id


def test_missing_statement_reshows_the_form_with_input_kept_and_the_error_next_to_it(
    web_client: TestClient, ingest_headers: dict[str, str], engine: Engine
) -> None:
    article = ingest(web_client, ingest_headers)
    targets = f"{article['url']}\nhttps://www.reuters.com/world/other"
    response = post_form(web_client, targets=targets, accurate="")
    assert response.status_code == 422
    page = Elements(response.text)
    box = page.by_id("field-accurate")
    assert box["aria-invalid"] == "true"
    assert "accurate-error" in box["aria-describedby"].split()
    assert "checked" not in box
    assert "cannot be filed without this statement" in page.text_by_id["accurate-error"]
    # Everything typed is still there, the other statement still ticked.
    assert "checked" in page.by_id("field-good_faith")
    assert page.by_id("field-name")["value"] == "Priya Claimant"
    assert page.text_by_id["field-targets"] == targets
    assert "checked" in page.by_id("field-role-owner")
    assert "checked" in page.by_id("field-reason-copyright")
    # The summary on top links to the field; the title says there is an error.
    assert 'href="#field-accurate"' in response.text
    assert "<title>Error: " in response.text
    assert row_count(engine, Takedown) == 0


def test_each_missing_field_is_named_in_words_next_to_it(web_client: TestClient) -> None:
    response = post_form(
        web_client, name="", email="not-an-address", role="", reason="", explanation=""
    )
    assert response.status_code == 422
    page = Elements(response.text)
    assert page.text_by_id["name-error"] == "Error: Enter your full name."
    assert "must be an e-mail address" in page.text_by_id["email-error"].lower()
    assert "Choose whether you own the rights" in page.text_by_id["role-error"]
    assert page.text_by_id["reason-error"] == "Error: Choose a reason."
    assert "Explain what the content is" in page.text_by_id["explanation-error"]
    assert page.by_id("field-email")["aria-describedby"] == "email-hint email-error"
    assert page.by_id("field-email")["value"] == "not-an-address"


def test_a_request_naming_nothing_is_told_so_next_to_the_targets(web_client: TestClient) -> None:
    response = post_form(web_client, targets="\n  \n")
    assert response.status_code == 422
    page = Elements(response.text)
    assert page.text_by_id["targets-error"] == "Error: Name 1 to 100 targets, or a domain"
    assert page.by_id("field-targets")["aria-invalid"] == "true"


def test_an_agent_must_name_the_rights_holder(web_client: TestClient) -> None:
    response = post_form(web_client, role="agent", domain="reuters.com")
    assert response.status_code == 422
    page = Elements(response.text)
    assert "rights holder you act for is required" in page.text_by_id["acting_for-error"]
    assert page.by_id("field-acting_for")["aria-invalid"] == "true"


def test_service_errors_name_the_target_line(
    web_client: TestClient, ingest_headers: dict[str, str], engine: Engine
) -> None:
    article = ingest(web_client, ingest_headers)
    unreadable = post_form(web_client, targets=f"{article['url']}\n\nftp://x")
    assert unreadable.status_code == 422
    error = Elements(unreadable.text).text_by_id["targets-error"]
    assert error.startswith("Error: Line 3: must be an article id or an absolute http(s) URL")
    unknown = post_form(web_client, targets=f"{article['url']}\n\n\n999999")
    assert unknown.status_code == 422
    assert Elements(unknown.text).text_by_id["targets-error"] == (
        "Error: Line 4: names no article of ours"
    )
    assert row_count(engine, Takedown) == 0


def test_hostile_input_is_escaped_everywhere_it_is_shown(
    web_client: TestClient, engine: Engine
) -> None:
    hostile = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
    response = post_form(
        web_client,
        name=hostile,
        organization=hostile,
        targets=f"https://www.reuters.com/{hostile}",
        explanation=hostile,
        accurate="",
    )
    assert response.status_code == 422
    assert "<script>" not in response.text and "<img" not in response.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text
    page = Elements(response.text)
    assert page.by_id("field-organization")["value"] == hostile  # shown back, as text
    # Filed, the target is shown on the receipt as text too.
    filed = post_form(web_client, targets='https://www.reuters.com/a?q="><script>alert(1)</script>')
    assert filed.status_code == 202, filed.text
    assert "<script>" not in filed.text and "<img" not in filed.text
    assert row_count(engine, Takedown) == 1


def test_rate_limit_is_shared_with_the_json_endpoint_and_answers_429_with_the_form(
    settings: Settings, engine: Engine, clock: FrozenClock
) -> None:
    limited = settings.model_copy(update={"takedown_rate_per_address": "1/hour"})
    app = create_app(limited, engine=engine, clock=clock)
    with TestClient(app, base_url="https://news.example") as client:
        first = client.post("/v1/takedowns", json=filing(domain="reuters.com"))
        assert first.status_code == 202, first.text
        response = post_form(client, domain="apnews.com")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3600"
    assert "Too many takedown requests from this address" in response.text
    assert Elements(response.text).by_id("field-domain")["value"] == "apnews.com"
    assert row_count(engine, Takedown) == 1


# CSRF ------------------------------------------------------------------------------------


def test_post_without_csrf_token_is_refused_with_a_403_page(
    web_client: TestClient, engine: Engine
) -> None:
    csrf_token(web_client)  # the cookie alone is not enough
    response = web_client.post("/takedown", data=form_fields(domain="reuters.com"))
    assert response.status_code == 403
    assert "Your form could not be accepted" in response.text
    assert "content-security-policy" in response.headers
    assert row_count(engine, Takedown) == 0


def test_post_with_a_wrong_token_or_without_the_cookie_is_refused(
    web_client: TestClient, engine: Engine
) -> None:
    token = csrf_token(web_client)
    fields = form_fields(domain="reuters.com")
    wrong = web_client.post("/takedown", data={**fields, "csrf_token": "0" * 64})
    assert wrong.status_code == 403
    web_client.cookies.clear()
    no_cookie = web_client.post("/takedown", data={**fields, "csrf_token": token})
    assert no_cookie.status_code == 403
    assert row_count(engine, Takedown) == 0


def test_a_token_does_not_fit_another_browsers_cookie(
    web_client: TestClient, app: FastAPI, engine: Engine
) -> None:
    token = csrf_token(web_client)
    with TestClient(app, base_url="https://news.example") as other:
        csrf_token(other)  # another browser, another cookie
        fields = {**form_fields(domain="reuters.com"), "csrf_token": token}
        assert other.post("/takedown", data=fields).status_code == 403
    assert row_count(engine, Takedown) == 0


def test_a_post_from_another_site_is_refused_even_with_a_token(
    web_client: TestClient, engine: Engine
) -> None:
    token = csrf_token(web_client)
    response = web_client.post(
        "/takedown",
        data={**form_fields(domain="reuters.com"), "csrf_token": token},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert response.status_code == 403
    assert row_count(engine, Takedown) == 0


def test_csrf_cookie_is_host_only_secure_and_httponly_on_https(web_client: TestClient) -> None:
    cookie = web_client.get("/takedown").headers["set-cookie"]
    assert cookie.startswith("__Host-byline_csrf=")
    for attribute in ("HttpOnly", "Secure", "Path=/", "SameSite=lax"):
        assert attribute in cookie
    assert "Domain" not in cookie
    # A browser that has the cookie keeps it: several open tabs all stay valid.
    assert "set-cookie" not in web_client.get("/takedown").headers


def test_with_a_shared_secret_every_process_accepts_the_token_and_no_other(
    settings: Settings, engine: Engine, clock: FrozenClock
) -> None:
    def process(secret: str) -> TestClient:
        signed = settings.model_copy(update={"csrf_secret": SecretStr(secret)})
        app = create_app(signed, engine=engine, clock=clock)
        return TestClient(app, base_url="https://news.example")

    with process("s" * 40) as first, process("s" * 40) as second, process("t" * 40) as other:
        fields = {**form_fields(domain="reuters.com"), "csrf_token": csrf_token(first)}
        for client in (second, other):
            client.cookies.update(first.cookies)  # the same browser, behind a load balancer
        assert other.post("/takedown", data=fields).status_code == 403
        assert second.post("/takedown", data=fields).status_code == 202


def test_a_short_csrf_secret_is_refused_at_start(database_url: str) -> None:
    with pytest.raises(ValueError, match="at least 32 characters"):
        Settings(database_url=database_url, csrf_secret="short")


# The status page ---------------------------------------------------------------------------


def file_for_status(client: TestClient, ingest_headers: dict[str, str], **fields: str) -> str:
    article = ingest(client, ingest_headers)
    response = post_form(client, targets=article["url"], **fields)
    assert response.status_code == 202, response.text
    return status_path(response.text)


def test_status_page_shows_state_dates_and_targets(
    web_client: TestClient, ingest_headers: dict[str, str], engine: Engine, clock: FrozenClock
) -> None:
    path = file_for_status(web_client, ingest_headers, email=UNVERIFIED)
    response = web_client.get(path)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    text = response.text
    assert "Waiting for you to confirm your e-mail address" in text
    assert "Not confirmed yet: open the link we e-mailed you" in text
    assert "Monday 5 January 2026, 09:00 UTC" in text and DEADLINE in text
    assert "Waiting for removal" in text
    assert "Withdraw request" in text
    # The claimant's own details are never on the page, even for its holder.
    assert UNVERIFIED not in text and "Priya Claimant" not in text

    takedown_id = path.split("/")[2].split("?")[0]
    clock.advance(timedelta(minutes=30))
    press_confirm(web_client, takedown_id, confirmation_code(engine, takedown_id))
    text = web_client.get(path).text
    assert "Accepted, removal scheduled" in text
    assert "Confirmed on <time" in text and "Monday 5 January 2026, 09:30 UTC" in text
    # Not at the articles' domain: removal runs when the review window ends.
    assert "<dt>Removal runs</dt>" in text and "Monday 5 January 2026, 13:00 UTC" in text
    assert "Withdraw request" in text


def test_wrong_token_and_unknown_id_answer_the_same_404_page(
    web_client: TestClient, ingest_headers: dict[str, str]
) -> None:
    path = file_for_status(web_client, ingest_headers)
    takedown_id = path.split("/")[2].split("?")[0]
    wrong = web_client.get(f"/takedown/{takedown_id}?token=guess")
    missing = web_client.get(f"/takedown/{takedown_id}")
    unknown = web_client.get("/takedown/00000000-0000-4000-8000-000000000000?token=guess")
    huge = web_client.get(f"/takedown/{'x' * 5000}?token=guess")
    for response in (wrong, missing, unknown, huge):
        assert response.status_code == 404
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert "Request not found" in response.text
    assert wrong.text == unknown.text == missing.text


def test_withdrawing_from_the_status_page(
    web_client: TestClient, ingest_headers: dict[str, str], engine: Engine
) -> None:
    path = file_for_status(web_client, ingest_headers, email=UNVERIFIED)
    takedown_id, token = path.split("/")[2].split("?token=")
    csrf = csrf_token(web_client, path)
    response = web_client.post(
        f"/takedown/{takedown_id}/withdraw",
        data={"csrf_token": csrf, "token": token},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == path
    page = web_client.get(path)
    assert "Withdrawn" in page.text and "Cancelled" in page.text
    assert "Withdraw request" not in page.text


def test_withdrawing_needs_the_csrf_token_and_the_status_token(
    web_client: TestClient, ingest_headers: dict[str, str]
) -> None:
    path = file_for_status(web_client, ingest_headers, email=UNVERIFIED)
    takedown_id, token = path.split("/")[2].split("?token=")
    csrf = csrf_token(web_client, path)
    forged = web_client.post(f"/takedown/{takedown_id}/withdraw", data={"token": token})
    assert forged.status_code == 403
    guessed = web_client.post(
        f"/takedown/{takedown_id}/withdraw", data={"csrf_token": csrf, "token": "guess"}
    )
    assert guessed.status_code == 404 and "Request not found" in guessed.text
    assert "Withdraw request" in web_client.get(path).text  # still open


def test_after_removal_there_is_no_withdraw_button_and_a_late_withdrawal_is_explained(
    web_client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
) -> None:
    path = file_for_status(web_client, ingest_headers)  # at the articles' domain
    takedown_id = path.split("/")[2].split("?")[0]
    press_confirm(web_client, takedown_id, confirmation_code(engine, takedown_id))
    csrf = csrf_token(web_client, path)
    clock.advance(timedelta(minutes=1))
    assert run_removals(engine, settings, clock).of("removal")["removed"] == 1
    page = web_client.get(path)
    assert "Completed" in page.text and "Removed" in page.text
    assert "Monday 5 January 2026, 09:01 UTC" in page.text  # completed
    assert "Withdraw request" not in page.text
    token = path.partition("?token=")[2]
    late = web_client.post(
        f"/takedown/{takedown_id}/withdraw", data={"csrf_token": csrf, "token": token}
    )
    assert late.status_code == 409
    assert "cannot be withdrawn" in late.text and "We could not do that" in late.text


def test_a_rejection_shows_the_statement_of_reasons_escaped(
    web_client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    path = file_for_status(web_client, ingest_headers, email=UNVERIFIED)
    takedown_id = path.split("/")[2].split("?")[0]
    reasons = "The article quotes <b>public</b> court records; see our policy."
    rejected = web_client.post(
        f"/v1/admin/takedowns/{takedown_id}/reject",
        json={"reason": reasons},
        headers=admin_headers,
    )
    assert rejected.status_code == 200, rejected.text
    text = web_client.get(path).text
    assert "Rejected" in text and "Statement of reasons" in text
    assert "<b>" not in text


# The confirmation page ---------------------------------------------------------------------


def file_for_confirmation(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine, **fields: str
) -> tuple[str, str, int]:
    """File on the form for a new article: the request's id, its e-mailed code, the article."""
    article = ingest(client, ingest_headers)
    response = post_form(client, targets=article["url"], **fields)
    assert response.status_code == 202, response.text
    takedown_id = takedown_id_of(response.text)
    return takedown_id, confirmation_code(engine, takedown_id), article["id"]


def test_the_emailed_link_shows_one_button_and_opening_it_changes_nothing(
    web_client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
) -> None:
    takedown_id, code, article_id = file_for_confirmation(web_client, ingest_headers, engine)

    response = web_client.get(confirm_path(takedown_id, code))

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    # The code is in the address: no other site may learn it from a Referer.
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "form-action 'self'" in response.headers["content-security-policy"]
    page = Elements(response.text)
    [form] = page.all("form")
    assert (form["method"], form["action"]) == ("post", f"/takedown/{takedown_id}/confirm")
    [button] = page.all("button")
    assert button["type"] == "submit"
    assert "Confirm my request" in response.text
    hidden = {attrs["name"]: attrs["value"] for attrs in page.all("input")}
    assert hidden["code"] == code and len(hidden["csrf_token"]) == 64
    assert "Nothing is removed or blocked before you do." in response.text
    assert CLAIMANT_EMAIL not in response.text
    # Opened (by a mail scanner, say): nothing is confirmed, nothing runs.
    assert load(engine, takedown_id).email_confirmed_at is None
    assert run_removals(engine, settings, clock).of("removal")["removed"] == 0
    assert web_client.get(f"/v1/articles/{article_id}").status_code == 200


def test_pressing_the_button_confirms_once_and_the_page_then_says_what_happens(
    web_client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
) -> None:
    takedown_id, code, article_id = file_for_confirmation(web_client, ingest_headers, engine)
    token = csrf_token(web_client, confirm_path(takedown_id, code))

    pressed = web_client.post(
        f"/takedown/{takedown_id}/confirm",
        data={"csrf_token": token, "code": code},
        follow_redirects=False,
    )

    assert pressed.status_code == 303
    assert pressed.headers["location"] == confirm_path(takedown_id, code)
    shown = web_client.get(pressed.headers["location"])
    assert shown.status_code == 200
    assert "<title>Address confirmed" in shown.text
    assert "Your address is confirmed" in shown.text
    assert "the content is being removed now" in shown.text  # at the article's domain
    assert "<button" not in shown.text
    assert load(engine, takedown_id).email_confirmed_at == clock.now()
    # Pressed again (a second tab still showing the button): still one confirmation.
    again = web_client.post(
        f"/takedown/{takedown_id}/confirm", data={"csrf_token": token, "code": code}
    )
    assert again.status_code == 200 and "Your address is confirmed" in again.text
    actions = [action for action, *_ in audit_actions(engine, takedown_id)]
    assert actions.count("email_confirmed") == 1
    assert run_removals(engine, settings, clock).of("removal")["removed"] == 1
    assert web_client.get(f"/v1/articles/{article_id}").status_code == 451


def test_the_button_needs_the_csrf_token(
    web_client: TestClient, ingest_headers: dict[str, str], engine: Engine
) -> None:
    takedown_id, code, _ = file_for_confirmation(web_client, ingest_headers, engine)
    csrf_token(web_client, confirm_path(takedown_id, code))

    forged = web_client.post(f"/takedown/{takedown_id}/confirm", data={"code": code})

    assert forged.status_code == 403
    assert "Your form could not be accepted" in forged.text
    assert load(engine, takedown_id).email_confirmed_at is None


def test_a_wrong_code_and_an_expired_link_each_answer_a_page_that_says_so(
    web_client: TestClient, ingest_headers: dict[str, str], engine: Engine, clock: FrozenClock
) -> None:
    takedown_id, code, _ = file_for_confirmation(web_client, ingest_headers, engine)
    token = csrf_token(web_client, confirm_path(takedown_id, code))

    wrong = web_client.get(confirm_path(takedown_id, "guess"))
    unknown = web_client.get(confirm_path("00000000-0000-4000-8000-000000000000", code))
    for response in (wrong, unknown):
        assert response.status_code == 404
        assert "This confirmation link is not valid" in response.text
        assert "<button" not in response.text
    assert wrong.text == unknown.text
    posted = web_client.post(
        f"/takedown/{takedown_id}/confirm", data={"csrf_token": token, "code": "guess"}
    )
    assert posted.status_code == 404

    clock.advance(timedelta(hours=24))  # the request's deadline
    expired = web_client.get(confirm_path(takedown_id, code))
    assert expired.status_code == 410
    assert "This confirmation link has expired" in expired.text
    posted = web_client.post(
        f"/takedown/{takedown_id}/confirm", data={"csrf_token": token, "code": code}
    )
    assert posted.status_code == 410
    assert load(engine, takedown_id).email_confirmed_at is None


def test_the_link_of_a_request_withdrawn_before_confirmation_says_nothing_is_left_to_confirm(
    web_client: TestClient, ingest_headers: dict[str, str], engine: Engine
) -> None:
    path = file_for_status(web_client, ingest_headers)
    takedown_id, token = path.split("/")[2].split("?token=")
    code = confirmation_code(engine, takedown_id)
    csrf = csrf_token(web_client, confirm_path(takedown_id, code))  # the button, still shown
    withdrawn = web_client.post(
        f"/takedown/{takedown_id}/withdraw",
        data={"csrf_token": csrf, "token": token},
        follow_redirects=False,
    )
    assert withdrawn.status_code == 303

    shown = web_client.get(confirm_path(takedown_id, code))
    pressed = web_client.post(
        f"/takedown/{takedown_id}/confirm", data={"csrf_token": csrf, "code": code}
    )

    for page in (shown, pressed):
        assert page.status_code == 200
        assert "There is nothing left to confirm" in page.text
        assert "Your address is confirmed" not in page.text and "<button" not in page.text
        assert "You withdrew this request" in page.text
    assert load(engine, takedown_id).email_confirmed_at is None
