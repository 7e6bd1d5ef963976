"""The operators' console: signing in with an admin key, server-side sessions, CSRF on every
post, the queue by deadline, one request in full, decisions one by one and in bulk."""

import hashlib
import hmac
import re
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from httpx import Response
from pydantic import SecretStr
from sqlalchemy import Engine, func, select

from app.auth import Scope, list_api_keys, revoke_api_key
from app.clock import FrozenClock
from app.config import Settings
from app.console import pages as console_pages
from app.console import routes as console_routes
from app.console.models import ConsoleSession
from app.console.transparency import MonthFigures, chart_of, last_months
from app.db import new_session, writer
from app.feeds import service as feeds_service
from app.jobs.models import JobStatus
from app.main import create_app
from app.notifications import webhooks
from app.notifications.models import EmailKind, EventKind, WebhookEndpoint
from app.scheduler.models import RemovalJob
from app.takedowns import blocks
from app.takedowns.models import AuditEvent, Takedown
from app.web.csrf import CsrfSecret
from tests.factories import make_key
from tests.notifications.factories import emails
from tests.takedowns.factories import (
    UNMATCHED,
    audit_actions,
    confirm,
    file,
    filing,
    ingest,
    load,
    tick,
)
from tests.web.factories import form_fields
from tests.workers import removal_worker

TOKEN = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')
SESSION_COOKIE = "__Host-byline_console"


def csrf_of(client: TestClient, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    match = TOKEN.search(page.text)
    assert match, f"{path} has no CSRF token"
    return match.group(1)


def sign_in(client: TestClient, key: str) -> Response:
    token = csrf_of(client, "/admin/login")
    return client.post(
        "/admin/login", data={"key": key, "csrf_token": token}, follow_redirects=False
    )


def signed_in(client: TestClient, key: str) -> TestClient:
    answer = sign_in(client, key)
    assert answer.status_code == 303, answer.text
    return client


def post(client: TestClient, path: str, page: str, **data: Any) -> Response:
    """Press a button on `page` that posts to `path`, as a browser without JavaScript."""
    return client.post(
        path, data={"csrf_token": csrf_of(client, page), **data}, follow_redirects=False
    )


def file_unconfirmed(client: TestClient, n: int, **overrides: Any) -> str:
    body = filing([f"https://www.reuters.com/world/s-{n}"], claimant=UNMATCHED, **overrides)
    return str(file(client, body)["id"])


def queue_ids(client: TestClient, query: str = "") -> list[str]:
    page = client.get(f"/admin/takedowns{query}")
    assert page.status_code == 200, page.text
    return re.findall(r'name="ids" value="([0-9a-f-]{36})"', page.text) or re.findall(
        r'<a href="/admin/takedowns/([0-9a-f-]{36})"><code>', page.text
    )


# Signing in and sessions -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/admin"),
        ("GET", "/admin/takedowns"),
        ("GET", "/admin/takedowns?view=overdue"),
        ("GET", "/admin/takedowns/00000000-0000-0000-0000-000000000000"),
        ("GET", "/admin/keys"),
        ("GET", "/admin/anything/else"),
        ("POST", "/admin/takedowns/00000000-0000-0000-0000-000000000000/approve"),
        ("POST", "/admin/takedowns/bulk"),
        ("POST", "/admin/logout"),
    ],
)
def test_everything_under_admin_without_a_session_redirects_to_the_sign_in_page(
    web_client: TestClient, method: str, path: str
) -> None:
    answer = web_client.request(method, path, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/admin/login"
    assert answer.headers["cache-control"] == "no-store"


def test_an_admin_key_signs_in_to_a_server_side_session_with_a_host_only_strict_cookie(
    web_client: TestClient, engine: Engine, admin_key: str
) -> None:
    form = web_client.get("/admin/login")
    assert form.status_code == 200
    assert form.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in form.headers["content-security-policy"]
    assert 'name="key"' in form.text

    answer = sign_in(web_client, admin_key)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/admin/takedowns"
    [cookie] = [c for c in answer.headers.get_list("set-cookie") if "byline_console" in c]
    name, token = cookie.split(";")[0].split("=", 1)
    assert name == SESSION_COOKIE
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict", "path=/", "max-age=28800"} <= attributes
    assert not any(a.startswith("domain") for a in attributes)
    # Only the token's hash is stored: a copy of the table signs nobody in.
    with new_session(engine) as session:
        [row] = session.scalars(select(ConsoleSession)).all()
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in row.token_hash

    queue = web_client.get("/admin/takedowns")
    assert queue.status_code == 200
    assert queue.headers["cache-control"] == "no-store"
    assert "Signed in as <strong>operator-ana</strong>" in queue.text
    assert 'action="/admin/logout"' in queue.text
    # The sign-in is in the audit log under the key's name.
    with new_session(engine) as session:
        [event] = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "console_signed_in")  # type: ignore[arg-type]
        ).all()
    assert event.actor == "operator-ana"
    # Signed in, the sign-in page sends you to the queue.
    again = web_client.get("/admin/login", follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"] == "/admin/takedowns"


def test_the_session_cookie_is_plain_and_not_secure_on_http(
    settings: Settings, engine: Engine, clock: FrozenClock, admin_key: str
) -> None:
    plain = settings.model_copy(update={"public_base_url": "http://localhost:8000"})
    app = create_app(plain, engine=engine, clock=clock)
    with TestClient(app, base_url="http://localhost:8000") as client:
        answer = sign_in(client, admin_key)
    [cookie] = [c for c in answer.headers.get_list("set-cookie") if "byline_console" in c]
    assert cookie.startswith("byline_console=")
    assert "secure" not in cookie.lower()
    assert "samesite=strict" in cookie.lower()


@pytest.mark.parametrize("scope", [Scope.ingest, Scope.publisher])
def test_ingest_and_publisher_keys_cannot_sign_in(
    web_client: TestClient, engine: Engine, scope: Scope
) -> None:
    if scope == Scope.publisher:
        key = make_key(engine, scope, "pub", domain="x.org")
    else:
        key = make_key(engine, scope, "crawler")
    answer = sign_in(web_client, key)
    assert answer.status_code == 401
    assert "Ingest and publisher keys cannot sign in" in answer.text
    assert not any("byline_console" in c for c in answer.headers.get_list("set-cookie"))
    assert web_client.get("/admin/takedowns", follow_redirects=False).status_code == 303


def test_an_unknown_key_cannot_sign_in(web_client: TestClient) -> None:
    assert sign_in(web_client, "byl_" + "x" * 43).status_code == 401
    assert sign_in(web_client, "").status_code == 401


def test_a_session_ends_after_8_hours(
    web_client: TestClient, clock: FrozenClock, admin_key: str
) -> None:
    signed_in(web_client, admin_key)
    clock.advance(timedelta(hours=7, minutes=59))
    assert web_client.get("/admin/takedowns", follow_redirects=False).status_code == 200
    clock.advance(timedelta(minutes=1))
    assert web_client.get("/admin/takedowns", follow_redirects=False).status_code == 303


def test_revoking_the_key_ends_its_sessions_at_once(
    web_client: TestClient, engine: Engine, clock: FrozenClock, admin_key: str
) -> None:
    signed_in(web_client, admin_key)
    with new_session(engine) as session, session.begin():
        [row] = session.scalars(select(ConsoleSession)).all()
        revoke_api_key(session=session, key_id=row.api_key_id, now=clock.now())
    assert web_client.get("/admin/takedowns", follow_redirects=False).status_code == 303


def test_signing_out_ends_the_session_on_the_server(
    web_client: TestClient, engine: Engine, admin_key: str
) -> None:
    signed_in(web_client, admin_key)
    cookie = web_client.cookies.get(SESSION_COOKIE)
    assert cookie
    answer = post(web_client, "/admin/logout", "/admin/takedowns")
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/login"
    assert web_client.get("/admin/takedowns", follow_redirects=False).status_code == 303
    # The old cookie, replayed, signs nobody in: the session ended on the server.
    web_client.cookies.set(SESSION_COOKIE, cookie, domain="news.example", path="/")
    assert web_client.get("/admin/takedowns", follow_redirects=False).status_code == 303
    with new_session(engine) as session:
        actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()  # type: ignore[call-overload, arg-type]
    assert actions == ["console_signed_in", "console_signed_out"]


def test_ended_and_expired_sessions_are_forgotten_by_the_workers_sweep(
    web_client: TestClient,
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    admin_key: str,
) -> None:
    signed_in(web_client, admin_key)
    post(web_client, "/admin/logout", "/admin/takedowns")
    signed_in(web_client, admin_key)  # expires in 8 h
    signed_in(web_client, admin_key)  # still open when the sweep runs
    with new_session(engine) as session:
        assert len(session.scalars(select(ConsoleSession)).all()) == 3
    clock.advance(timedelta(hours=1))
    result = removal_worker(engine, settings, clock).run_once()
    assert result.swept["console_sessions_forgotten"] == 1
    clock.advance(timedelta(hours=8))
    result = removal_worker(engine, settings, clock).run_once()
    assert result.swept["console_sessions_forgotten"] == 2
    with new_session(engine) as session:
        assert session.scalars(select(ConsoleSession)).all() == []


# CSRF --------------------------------------------------------------------------------------


def test_console_posts_without_the_form_token_change_nothing(
    web_client: TestClient, engine: Engine, admin_key: str
) -> None:
    takedown_id = file_unconfirmed(web_client, 1)
    no_token = web_client.post("/admin/login", data={"key": admin_key}, follow_redirects=False)
    assert no_token.status_code == 403
    signed_in(web_client, admin_key)
    posts = {
        route.path
        for route in console_routes.router.routes
        if isinstance(route, APIRoute) and "POST" in route.methods
    }
    assert posts - {"/admin/login", "/admin/{rest:path}"} == {
        "/admin/takedowns/{takedown_id}/approve",
        "/admin/takedowns/{takedown_id}/reject",
        "/admin/takedowns/{takedown_id}/escalate",
        "/admin/takedowns/{takedown_id}/appeal/uphold",
        "/admin/takedowns/{takedown_id}/appeal/grant",
        "/admin/takedowns/bulk",
        "/admin/logout",
    }
    for route in sorted(posts - {"/admin/login", "/admin/{rest:path}"}):
        path = route.format(takedown_id=takedown_id)
        for token in ({}, {"csrf_token": "0" * 64}):
            wrong = web_client.post(
                path,
                data={**token, "ids": takedown_id, "action": "approve", "statement": "No."},
            )
            assert wrong.status_code == 403, path
            assert "This form has expired" in wrong.text
    assert web_client.get("/admin/takedowns").status_code == 200  # still signed in
    with new_session(engine) as session:
        assert session.get(Takedown, takedown_id).status == "received"  # type: ignore[union-attr]
    # A post from another site, even with a good token, is refused.
    token = csrf_of(web_client, "/admin/takedowns")
    foreign = web_client.post(
        f"/admin/takedowns/{takedown_id}/approve",
        data={"csrf_token": token},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert foreign.status_code == 403
    assert load(engine, takedown_id).status == "received"
    assert web_client.get("/admin/takedowns", follow_redirects=False).status_code == 200


def _hmac(key: bytes, nonce: str) -> str:
    return hmac.new(key, nonce.encode(), hashlib.sha256).hexdigest()


def test_a_planted_cookie_with_its_hmac_under_an_empty_key_is_refused(
    web_client: TestClient, engine: Engine, admin_key: str
) -> None:
    """The attack of the issue: without BYLINE_CSRF_SECRET the key was empty, so anyone able
    to plant a cookie could compute the matching field. Now a random secret, kept in the
    database, signs the tokens."""
    nonce = "A" * 43
    web_client.cookies.set("__Host-byline_csrf", nonce, domain="news.example", path="/")
    forged = _hmac(b"", nonce)
    rights_holder = web_client.post("/takedown", data={**form_fields(), "csrf_token": forged})
    assert rights_holder.status_code == 403
    console = web_client.post(
        "/admin/login", data={"key": admin_key, "csrf_token": forged}, follow_redirects=False
    )
    assert console.status_code == 403
    with new_session(engine) as session:
        [stored] = session.scalars(select(CsrfSecret)).all()
    assert len(stored.secret) == 64
    # The page's own token is the HMAC under the stored secret, and is accepted.
    assert csrf_of(web_client, "/admin/login") == _hmac(stored.secret.encode(), nonce)
    assert sign_in(web_client, admin_key).status_code == 303


def test_the_generated_secret_is_made_once_and_shared_by_every_process(
    settings: Settings, engine: Engine, clock: FrozenClock, admin_key: str
) -> None:
    first = create_app(settings, engine=engine, clock=clock)
    second = create_app(settings, engine=engine, clock=clock)
    with TestClient(first, base_url="https://news.example") as one:
        token = csrf_of(one, "/admin/login")
        cookies = dict(one.cookies)
    with TestClient(second, base_url="https://news.example", cookies=cookies) as other:
        answer = other.post(
            "/admin/login", data={"key": admin_key, "csrf_token": token}, follow_redirects=False
        )
    assert answer.status_code == 303
    with new_session(engine) as session:
        assert session.scalar(select(func.count()).select_from(CsrfSecret)) == 1


def test_a_configured_secret_signs_the_tokens_and_nothing_is_stored(
    settings: Settings, engine: Engine, clock: FrozenClock
) -> None:
    secret = "s" * 40
    configured = settings.model_copy(update={"csrf_secret": SecretStr(secret)})
    app = create_app(configured, engine=engine, clock=clock)
    with TestClient(app, base_url="https://news.example") as client:
        token = csrf_of(client, "/admin/login")
        nonce = client.cookies.get("__Host-byline_csrf")
    assert nonce and token == _hmac(secret.encode(), nonce)
    with new_session(engine) as session:
        assert session.scalar(select(func.count()).select_from(CsrfSecret)) == 0


# The queue ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "words", "css_class"),
    [
        (timedelta(days=7), "7 d 0 h left", "due-later"),
        (timedelta(hours=47, minutes=59), "47 h 59 min left", "due-later"),
        (timedelta(hours=23, minutes=59), "23 h 59 min left", "due-later"),
        (timedelta(hours=6, minutes=1), "6 h 1 min left", "due-later"),
        (timedelta(hours=5, minutes=12), "5 h 12 min left", "due-soon"),
        (timedelta(minutes=59), "59 min left", "due-urgent"),
        (timedelta(0), "0 min left", "due-urgent"),
        (-timedelta(minutes=20), "overdue by 20 min", "due-overdue"),
        (-timedelta(hours=2, minutes=5), "overdue by 2 h 5 min", "due-overdue"),
        (-timedelta(days=3, hours=1), "overdue by 3 d 1 h", "due-overdue"),
    ],
)
def test_countdown_words_and_thresholds(left: timedelta, words: str, css_class: str) -> None:
    now = FrozenClock().now()
    shown = console_pages.countdown(now + left, now)
    assert (shown.words, shown.css_class) == (words, css_class)


def test_the_queue_lists_open_requests_by_deadline_with_a_countdown_and_risk_badges(
    web_client: TestClient, clock: FrozenClock, admin_key: str
) -> None:
    oldest = file_unconfirmed(web_client, 1)
    clock.advance(timedelta(hours=5))
    opt_out = str(file(web_client, filing([], domain="reuters.com", claimant=UNMATCHED))["id"])
    clock.advance(timedelta(hours=14, minutes=48))
    newest = file_unconfirmed(web_client, 3)
    clock.advance(timedelta(minutes=1))
    signed_in(web_client, admin_key)
    page = web_client.get("/admin/takedowns")
    assert queue_ids(web_client) == [oldest, opt_out, newest]
    text = page.text
    assert '<span class="countdown due-soon">4 h 11 min left</span>' in text
    assert '<span class="countdown due-later">9 h 11 min left</span>' in text
    assert '<span class="countdown due-later">23 h 59 min left</span>' in text
    assert "asks for the whole domain reuters.com without a publisher key" in text
    assert 'class="badge badge-risk"' in text and 'class="badge badge-proof"' in text
    assert "style=" not in text
    clock.advance(timedelta(hours=4, minutes=31))
    later = web_client.get("/admin/takedowns").text
    assert '<span class="countdown due-overdue">overdue by 20 min</span>' in later
    assert '<span class="countdown due-soon">4 h 40 min left</span>' in later
    clock.advance(timedelta(hours=4))
    signed_in(web_client, admin_key)  # the session of 8 hours has ended
    assert (
        '<span class="countdown due-urgent">40 min left</span>'
        in web_client.get("/admin/takedowns").text
    )


def test_the_queue_views_filter_by_where_requests_stand(
    web_client: TestClient,
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    admin_headers: dict[str, str],
    admin_key: str,
) -> None:
    awaiting = file_unconfirmed(web_client, 1)
    clock.advance(timedelta(minutes=1))
    in_window = file_unconfirmed(web_client, 2)
    confirm(web_client, engine, in_window)  # a mailbox elsewhere: waits for the window
    clock.advance(timedelta(minutes=1))
    escalated = file_unconfirmed(web_client, 3)
    rejected = file_unconfirmed(web_client, 4)
    web_client.post(
        f"/v1/admin/takedowns/{escalated}/escalate", headers=admin_headers
    ).raise_for_status()
    web_client.post(
        f"/v1/admin/takedowns/{rejected}/reject", json={"reason": "No."}, headers=admin_headers
    ).raise_for_status()
    signed_in(web_client, admin_key)

    def view(name: str) -> list[str]:
        return queue_ids(web_client, f"?view={name}")

    assert view("open") == [awaiting, in_window, escalated]
    assert view("awaiting_confirmation") == [awaiting]
    assert view("review_window") == [in_window]
    assert view("queued") == [in_window]
    assert view("escalated") == [escalated]
    assert view("rejected") == [rejected]
    assert view("overdue") == []
    clock.advance(settings.takedown_review_window)
    tick(engine, settings, clock)  # the window ends: the confirmed one completes
    assert view("completed") == [in_window]
    assert view("review_window") == []
    clock.advance(timedelta(hours=24))
    signed_in(web_client, admin_key)  # the session of 8 hours has ended
    assert view("overdue") == [awaiting, escalated]
    assert web_client.get("/admin/takedowns?view=nonsense").status_code == 422


def test_the_queue_pages_with_a_sealed_cursor(
    web_client: TestClient,
    clock: FrozenClock,
    admin_key: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(console_routes, "PAGE_SIZE", 2)
    ids = []
    for n in range(5):
        ids.append(file_unconfirmed(web_client, n))
        clock.advance(timedelta(minutes=1))
    signed_in(web_client, admin_key)
    seen: list[str] = []
    url = "/admin/takedowns?view=open"
    while url:
        page = web_client.get(url)
        seen += queue_ids(web_client, url.removeprefix("/admin/takedowns"))
        found = re.search(
            r'<a href="https://news\.example(/admin/takedowns\?[^"]+)" rel="next"', page.text
        )
        url = found.group(1).replace("&amp;", "&") if found else ""
    assert seen == ids
    assert web_client.get("/admin/takedowns?cursor=tampered").status_code == 400


# One request -------------------------------------------------------------------------------


def test_a_request_shows_claimant_proof_targets_beside_our_copy_and_its_history(
    web_client: TestClient, ingest_headers: dict[str, str], admin_key: str
) -> None:
    article = ingest(web_client, ingest_headers, 7)
    body = filing(
        [article["id"]],
        claimant=UNMATCHED,
        original_url="https://reuters.com/original",
        original_published_at="2030-01-01T00:00:00Z",
    )
    takedown_id = file(web_client, body)["id"]
    signed_in(web_client, admin_key)
    page = web_client.get(f"/admin/takedowns/{takedown_id}")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    text = page.text
    assert "agent@rights.example.org" in text and "Priya Claimant-Secret" in text
    assert "Unconfirmed: the claimant has not confirmed the e-mail address" in text
    assert article["title"] in text
    assert "First seen by us" in text and "claimed original" in text
    assert "claimed original is later" in text
    assert "<strong>filed</strong> by claimant" in text
    assert "Approve and next" in text and "Reject and next" in text
    missing = web_client.get("/admin/takedowns/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404


def test_approving_in_the_console_removes_the_article_audited_under_the_key_name(
    web_client: TestClient,
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    ingest_headers: dict[str, str],
    admin_key: str,
) -> None:
    article = ingest(web_client, ingest_headers, 1)
    takedown_id = file(web_client, filing([article["id"]], claimant=UNMATCHED))["id"]
    signed_in(web_client, admin_key)
    page = f"/admin/takedowns/{takedown_id}"
    answer = post(web_client, f"{page}/approve", page)
    assert answer.status_code == 303 and answer.headers["location"] == page
    assert ("approved", "operator-ana", "received", "queued") in audit_actions(engine, takedown_id)
    assert len(emails(engine, takedown_id, EmailKind.approved)) == 1
    tick(engine, settings, clock)
    assert web_client.get(f"/v1/articles/{article['id']}").status_code == 451
    assert takedown_id not in queue_ids(web_client)
    # Decided already: a second approval changes nothing and says why.
    again = web_client.post(
        f"{page}/approve", data={"csrf_token": csrf_of(web_client, page)}, follow_redirects=False
    )
    assert again.status_code == 409
    assert "Not done" in again.text


def test_rejecting_with_a_template_emails_the_statement_of_reasons(
    web_client: TestClient, engine: Engine, admin_key: str
) -> None:
    takedown_id = file_unconfirmed(web_client, 1)
    signed_in(web_client, admin_key)
    page = f"/admin/takedowns/{takedown_id}"
    empty = post(web_client, f"{page}/reject", page, template="", statement="  ")
    assert empty.status_code == 409
    assert "needs a statement of reasons" in empty.text
    assert load(engine, takedown_id).status == "received"
    answer = post(
        web_client,
        f"{page}/reject",
        page,
        template="licensed",
        statement="Our licence runs until 2027.",
    )
    assert answer.status_code == 303
    takedown = load(engine, takedown_id)
    assert takedown.status == "rejected" and takedown.decided_by == "operator-ana"
    expected = (
        "We republish this content under a licence or permission from its rights holder, "
        "which your request does not show to have ended.\n\nOur licence runs until 2027."
    )
    assert takedown.decision_reason == expected
    [email] = emails(engine, takedown_id, EmailKind.rejected)
    assert email.context["statement_of_reasons"] == expected


def test_escalating_in_the_console_holds_the_request(
    web_client: TestClient, engine: Engine, admin_key: str
) -> None:
    takedown_id = file_unconfirmed(web_client, 1)
    signed_in(web_client, admin_key)
    page = f"/admin/takedowns/{takedown_id}"
    answer = post(web_client, f"{page}/escalate", page, statement="Check the licence.")
    assert answer.status_code == 303
    takedown = load(engine, takedown_id)
    assert takedown.status == "escalated"
    assert takedown.escalation_reasons == ["Check the licence."]
    assert ("escalated", "operator-ana", "received", "escalated") in audit_actions(
        engine, takedown_id
    )


def test_decide_and_next_goes_to_the_next_most_urgent_request(
    web_client: TestClient, clock: FrozenClock, admin_key: str
) -> None:
    first = file_unconfirmed(web_client, 1)
    clock.advance(timedelta(minutes=5))
    second = file_unconfirmed(web_client, 2)
    clock.advance(timedelta(minutes=5))
    third = file_unconfirmed(web_client, 3)
    signed_in(web_client, admin_key)
    page = f"/admin/takedowns/{second}"
    answer = post(web_client, f"{page}/escalate", page, then="next")
    assert answer.headers["location"] == f"/admin/takedowns/{first}"
    page = f"/admin/takedowns/{first}"
    answer = post(web_client, f"{page}/reject", page, template="unidentified", then="next")
    assert answer.headers["location"] == f"/admin/takedowns/{second}"  # escalated, undecided
    page = f"/admin/takedowns/{second}"
    answer = post(web_client, f"{page}/approve", page, then="next")
    assert answer.headers["location"] == f"/admin/takedowns/{third}"
    page = f"/admin/takedowns/{third}"
    answer = post(web_client, f"{page}/approve", page, then="next")
    assert answer.headers["location"] == "/admin/takedowns"  # nothing left to decide


# Bulk --------------------------------------------------------------------------------------


def _decisions(engine: Engine, action: str) -> list[str]:
    with new_session(engine) as session:
        return list(
            session.scalars(
                select(AuditEvent.takedown_id).where(AuditEvent.action == action)  # type: ignore[call-overload, arg-type]
            )
        )


def test_bulk_approve_decides_each_request_with_its_own_audit_row_and_email(
    web_client: TestClient, engine: Engine, admin_headers: dict[str, str], admin_key: str
) -> None:
    ids = [file_unconfirmed(web_client, n) for n in range(3)]
    decided_before = file_unconfirmed(web_client, 9)
    web_client.post(
        f"/v1/admin/takedowns/{decided_before}/reject",
        json={"reason": "No."},
        headers=admin_headers,
    ).raise_for_status()
    signed_in(web_client, admin_key)
    answer = post(
        web_client,
        "/admin/takedowns/bulk",
        "/admin/takedowns",
        action="approve",
        ids=[*ids, decided_before, ids[0]],
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/admin/takedowns?decided=3&refused=1"
    assert sorted(_decisions(engine, "approved")) == sorted(ids)
    for takedown_id in ids:
        assert load(engine, takedown_id).decided_by == "operator-ana"
        assert len(emails(engine, takedown_id, EmailKind.approved)) == 1
    assert load(engine, decided_before).decision == "rejected"
    notice = web_client.get(answer.headers["location"]).text
    assert "3 requests decided. 1 could not be" in notice


def test_bulk_reject_sends_each_claimant_the_statement_of_reasons(
    web_client: TestClient, engine: Engine, admin_key: str
) -> None:
    ids = [file_unconfirmed(web_client, n) for n in range(2)]
    signed_in(web_client, admin_key)
    without_reasons = post(
        web_client, "/admin/takedowns/bulk", "/admin/takedowns", action="reject", ids=ids
    )
    assert without_reasons.headers["location"] == "/admin/takedowns?refused=2"
    assert _decisions(engine, "rejected") == []
    answer = post(
        web_client,
        "/admin/takedowns/bulk",
        "/admin/takedowns",
        action="reject",
        ids=ids,
        template="not_rights_holder",
    )
    assert answer.headers["location"] == "/admin/takedowns?decided=2&refused=0"
    assert sorted(_decisions(engine, "rejected")) == sorted(ids)
    for takedown_id in ids:
        [email] = emails(engine, takedown_id, EmailKind.rejected)
        assert email.context["statement_of_reasons"].startswith("We could not establish")
    assert queue_ids(web_client) == []


def test_the_claimant_is_never_in_the_logs_of_the_console(
    web_client: TestClient, admin_key: str, caplog: pytest.LogCaptureFixture, app: FastAPI
) -> None:
    takedown_id = file_unconfirmed(web_client, 1)
    signed_in(web_client, admin_key)
    with caplog.at_level("DEBUG"):
        web_client.get(f"/admin/takedowns/{takedown_id}")
        page = f"/admin/takedowns/{takedown_id}"
        post(web_client, f"{page}/reject", page, template="licensed")
    app.state.access_log.flush()
    assert "agent@rights.example.org" not in caplog.text
    assert "Priya" not in caplog.text


# The public figures ------------------------------------------------------------------------


def test_the_transparency_page_shows_the_figures_and_a_chart_drawn_on_the_server(
    web_client: TestClient,
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    article = ingest(web_client, ingest_headers, 1)
    takedown_id = file(web_client, filing([article["id"]], claimant=UNMATCHED))["id"]
    clock.advance(timedelta(hours=3))
    web_client.post(
        f"/v1/admin/takedowns/{takedown_id}/approve", headers=admin_headers
    ).raise_for_status()
    tick(engine, settings, clock)
    assert load(engine, takedown_id).status == "completed"
    page = web_client.get("/transparency")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "public, max-age=60"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    text = page.text
    assert "<dt>Median time to removal</dt><dd>3.0 h (of 1 removal)</dd>" in text
    assert "<dt>2026-01</dt><dd>1 removal: median 3.0 h, 95th percentile 3.0 h</dd>" in text
    assert text.count("<rect ") == 1 and "<svg " in text
    assert "style=" not in text and "<script" not in text
    assert "agent@rights.example.org" not in text and "Priya" not in text


def test_the_chart_scales_to_the_slowest_removal_and_marks_the_deadline() -> None:
    assert last_months(FrozenClock().now(), 3) == ["2025-11", "2025-12", "2026-01"]
    chart = chart_of(
        [
            MonthFigures("2025-12", 0, None, None),
            MonthFigures("2026-01", 4, 12.0, 36.0),
        ]
    )
    empty, full = chart.bars
    assert empty.median_y is None and empty.p95_y is None
    assert full.p95_y == 12.0  # the top of the plot: 36 h is the tallest figure
    assert full.median_y is not None and full.median_y > chart.deadline_y > full.p95_y
    assert [label for _, label in chart.ticks] == [
        "0 h",
        "6 h",
        "12 h",
        "18 h",
        "24 h",
        "30 h",
        "36 h",
    ]


# The other console pages -------------------------------------------------------------------


def test_console_pages_beside_the_queue_need_a_session(web_client: TestClient) -> None:
    for path in (
        "/admin/blocks",
        "/admin/removals",
        "/admin/webhooks",
        "/admin/keys",
        "/admin/feeds",
    ):
        answer = web_client.get(path, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == "/admin/login"


def test_lifting_a_block_needs_a_reason_and_is_audited(
    web_client: TestClient, engine: Engine, clock: FrozenClock, admin_key: str
) -> None:
    with new_session(writer(engine)) as session, session.begin():
        block, _ = blocks.add_block(
            session=session, kind="domain", value="reuters.com", takedown_id=None, now=clock.now()
        )
        block_id = block.id
    signed_in(web_client, admin_key)
    page = web_client.get("/admin/blocks")
    assert page.status_code == 200 and "reuters.com" in page.text
    no_reason = post(web_client, f"/admin/blocks/{block_id}/lift", "/admin/blocks", reason=" ")
    assert no_reason.status_code == 422
    lifted = post(
        web_client, f"/admin/blocks/{block_id}/lift", "/admin/blocks", reason="Licence renewed."
    )
    assert lifted.status_code == 303
    assert lifted.headers["location"] == f"/admin/blocks?lifted={block_id}"
    again = post(web_client, f"/admin/blocks/{block_id}/lift", "/admin/blocks", reason="Twice.")
    assert again.status_code == 409
    with new_session(engine) as session:
        [event] = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "block_lifted")  # type: ignore[arg-type]
        ).all()
    assert (event.actor, event.block_id, event.reason) == (
        "operator-ana",
        block_id,
        "Licence renewed.",
    )
    assert "reuters.com" not in web_client.get("/admin/blocks").text


def test_a_failed_removal_can_be_retried(
    web_client: TestClient,
    engine: Engine,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    admin_key: str,
) -> None:
    article = ingest(web_client, ingest_headers, 1)
    takedown_id = file(web_client, filing([article["id"]], claimant=UNMATCHED))["id"]
    web_client.post(
        f"/v1/admin/takedowns/{takedown_id}/approve", headers=admin_headers
    ).raise_for_status()
    with new_session(writer(engine)) as session, session.begin():
        job = session.scalars(select(RemovalJob)).one()
        job.status, job.last_error, job_id = JobStatus.failed.value, "disk full", job.id
    signed_in(web_client, admin_key)
    page = web_client.get("/admin/removals")
    assert "disk full" in page.text
    answer = post(web_client, f"/admin/removals/{job_id}/retry", "/admin/removals")
    assert answer.headers["location"] == f"/admin/removals?retried={job_id}"
    with new_session(engine) as session:
        assert session.get(RemovalJob, job_id).status == JobStatus.queued.value  # type: ignore[union-attr]
        retried = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "removal_retried")  # type: ignore[arg-type]
        ).one()
    assert (retried.actor, retried.takedown_id, retried.article_id) == (
        "operator-ana",
        takedown_id,
        article["id"],
    )
    not_failed = post(web_client, f"/admin/removals/{job_id}/retry", "/admin/removals")
    assert not_failed.headers["location"] == "/admin/removals?retried=0"


def test_a_disabled_webhook_endpoint_is_enabled_and_audited(
    web_client: TestClient, engine: Engine, clock: FrozenClock, admin_key: str
) -> None:
    with new_session(writer(engine)) as session, session.begin():
        endpoint, _ = webhooks.create_endpoint(
            session=session,
            url="http://127.0.0.1:9/hook",
            events=[EventKind.article_removed],
            actor="setup",
            now=clock.now(),
            allow_private=True,
        )
        endpoint.disabled_at, endpoint.disabled_reason = clock.now(), "failing for 24 h"
        endpoint_id = endpoint.id
    signed_in(web_client, admin_key)
    assert "failing for 24 h" in web_client.get("/admin/webhooks").text
    answer = post(web_client, f"/admin/webhooks/{endpoint_id}/enable", "/admin/webhooks")
    assert answer.headers["location"] == f"/admin/webhooks?enabled={endpoint_id}"
    with new_session(engine) as session:
        assert session.get(WebhookEndpoint, endpoint_id).disabled_at is None  # type: ignore[union-attr]
        [event] = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "webhook_enabled")  # type: ignore[arg-type]
        ).all()
    assert event.actor == "operator-ana" and "127.0.0.1:9/hook" in (event.reason or "")


def test_keys_are_created_and_revoked_audited_and_a_key_cannot_revoke_itself(
    web_client: TestClient, engine: Engine, admin_key: str
) -> None:
    signed_in(web_client, admin_key)
    created = post(web_client, "/admin/keys", "/admin/keys", name="crawler-2", scope="ingest")
    assert created.status_code == 201
    secret = re.search(r'<code class="token" id="new-key">(byl_[\w-]+)</code>', created.text)
    assert secret
    assert (
        web_client.get(
            "/v1/admin/keys", headers={"Authorization": f"Bearer {secret[1]}"}
        ).status_code
        == 403
    )
    assert secret[1] not in web_client.get("/admin/keys").text  # shown once
    bad = post(web_client, "/admin/keys", "/admin/keys", name="pub", scope="publisher")
    assert bad.status_code == 422 and "domain is required" in bad.text
    with new_session(engine) as session:
        keys = {key.name: key.id for key in list_api_keys(session=session)}
    own = post(web_client, f"/admin/keys/{keys['operator-ana']}/revoke", "/admin/keys")
    assert own.status_code == 409 and "cannot revoke itself" in own.text
    revoked = post(web_client, f"/admin/keys/{keys['crawler-2']}/revoke", "/admin/keys")
    assert revoked.headers["location"] == f"/admin/keys?revoked={keys['crawler-2']}"
    assert web_client.get("/admin/takedowns", follow_redirects=False).status_code == 200
    with new_session(engine) as session:
        events = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action.in_(["api_key_created", "api_key_revoked"]))  # type: ignore[attr-defined]
            .order_by(AuditEvent.id)  # type: ignore[arg-type]
        ).all()
    assert [(e.action, e.actor) for e in events] == [
        ("api_key_created", "operator-ana"),
        ("api_key_revoked", "operator-ana"),
    ]
    assert "crawler-2" in (events[0].reason or "") and secret[1] not in (events[0].reason or "")


def test_feeds_health_lists_each_feed_with_its_last_answer(
    web_client: TestClient, engine: Engine, clock: FrozenClock, admin_key: str
) -> None:
    with new_session(writer(engine)) as session, session.begin():
        feed = feeds_service.subscribe(
            session=session,
            url="http://127.0.0.1:9/feed.xml",
            publisher_name=None,
            publisher_url=None,
            language=None,
            tags=[],
            actor="setup",
            now=clock.now(),
            allow_private=True,
        )
        feed.last_status, feed.consecutive_errors = "HTTP 503", 3
    signed_in(web_client, admin_key)
    page = web_client.get("/admin/feeds")
    assert page.status_code == 200
    assert "127.0.0.1:9/feed.xml" in page.text and "HTTP 503 · 3 errors in a row" in page.text


def test_the_rights_holders_pages_link_the_transparency_page(client: TestClient) -> None:
    form = client.get("/takedown")
    assert form.status_code == 200
    assert 'href="/transparency"' in form.text
    assert client.get("/transparency").status_code == 200
