"""The console's pages beside the queue: every post is refused without its form token by the
one dependency (`access.PostingOperatorDep`), and the failed e-mails and webhook deliveries
are listed in keyset pages."""

import re
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, update

from app.auth import ApiKey, Scope
from app.clock import FrozenClock
from app.console import operations
from app.db import new_session, writer
from app.jobs.models import JobStatus
from app.notifications import outbox, webhooks
from app.notifications.models import (
    ClaimantEmail,
    EventKind,
    WebhookDelivery,
    WebhookEndpoint,
)
from app.scheduler.models import RemovalJob
from app.takedowns import blocks
from app.takedowns.models import AuditEvent, Block
from tests.factories import make_key
from tests.takedowns.factories import UNMATCHED, file, filing, ingest
from tests.web.test_console import post, signed_in


@dataclass(frozen=True)
class Subjects:
    """One of each thing a console post acts on, in the state that lets it act."""

    block_id: int
    removal_id: int
    email_id: int
    delivery_id: int
    endpoint_id: int
    key_id: int


def _fail_everything(engine: Engine) -> None:
    failed = {"status": JobStatus.failed.value, "last_error": "gave up"}
    with new_session(writer(engine)) as session, session.begin():
        session.execute(update(RemovalJob).values(failed))
        session.execute(update(ClaimantEmail).values(failed))
        session.execute(update(WebhookDelivery).values(failed))


@pytest.fixture
def subjects(
    web_client: TestClient,
    engine: Engine,
    clock: FrozenClock,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> Subjects:
    with new_session(writer(engine)) as session, session.begin():
        endpoint, _ = webhooks.create_endpoint(
            session=session,
            url="http://127.0.0.1:9/hook",
            events=[EventKind.article_created],
            actor="setup",
            now=clock.now(),
            allow_private=True,
        )
        block, _ = blocks.add_block(
            session=session, kind="domain", value="example.org", takedown_id=None, now=clock.now()
        )
        endpoint_id, block_id = endpoint.id, block.id
    article = ingest(web_client, ingest_headers)
    takedown_id = file(web_client, filing([article["id"]], claimant=UNMATCHED))["id"]
    approved = web_client.post(f"/v1/admin/takedowns/{takedown_id}/approve", headers=admin_headers)
    assert approved.status_code == 200, approved.text
    _fail_everything(engine)
    with new_session(writer(engine)) as session, session.begin():
        session.execute(update(WebhookEndpoint).values(disabled_at=clock.now()))
        # The receipt is never sent again: the approval's e-mail is the one to retry.
        email_id = session.scalar(
            select(ClaimantEmail.id).where(ClaimantEmail.kind == "approved")  # type: ignore[call-overload]
        )
        removal_id = session.scalar(select(RemovalJob.id))  # type: ignore[call-overload]
        delivery_id = session.scalar(select(WebhookDelivery.id))  # type: ignore[call-overload]
    return Subjects(
        block_id=block_id,  # type: ignore[arg-type]
        removal_id=removal_id,
        email_id=email_id,
        delivery_id=delivery_id,
        endpoint_id=endpoint_id,  # type: ignore[arg-type]
        key_id=_key_id(engine, "crawler-2"),
    )


def _key_id(engine: Engine, name: str) -> int:
    make_key(engine, Scope.ingest, name)
    with new_session(engine) as session:
        return int(session.scalar(select(ApiKey.id).where(ApiKey.name == name)))  # type: ignore[call-overload]


def _state(engine: Engine) -> tuple[Any, ...]:
    """Everything a console post could change."""
    with new_session(engine) as session:
        return (
            session.scalar(select(func.count()).select_from(AuditEvent)),
            session.scalars(select(Block.lifted_at)).all(),  # type: ignore[call-overload]
            session.scalars(select(RemovalJob.status)).all(),  # type: ignore[call-overload]
            session.scalars(select(ClaimantEmail.status)).all(),  # type: ignore[call-overload]
            session.scalars(select(WebhookDelivery.status)).all(),  # type: ignore[call-overload]
            session.scalars(select(WebhookEndpoint.disabled_at)).all(),  # type: ignore[call-overload]
            session.execute(select(ApiKey.name, ApiKey.revoked_at)).all(),  # type: ignore[call-overload]
        )


# Each post of operations.py: (its path for the subjects, the page with its form, its fields).
POSTS = {
    "/admin/blocks/{block_id}/lift": ("/admin/blocks", {"reason": "Licence renewed."}),
    "/admin/removals/{job_id}/retry": ("/admin/removals", {}),
    "/admin/emails/{email_id}/retry": ("/admin/emails", {}),
    "/admin/deliveries/{delivery_id}/retry": ("/admin/deliveries", {}),
    "/admin/webhooks/{endpoint_id}/enable": ("/admin/webhooks", {}),
    "/admin/keys": ("/admin/keys", {"name": "crawler-3", "scope": "ingest"}),
    "/admin/keys/{key_id}/revoke": ("/admin/keys", {}),
}


def test_every_post_of_the_console_pages_is_in_the_csrf_test() -> None:
    posts = {
        route.path
        for route in operations.router.routes
        if isinstance(route, APIRoute) and "POST" in route.methods
    }
    assert posts == set(POSTS)


@pytest.mark.parametrize("route", list(POSTS))
def test_a_console_post_without_its_form_token_is_refused_and_changes_nothing(
    web_client: TestClient, engine: Engine, admin_key: str, subjects: Subjects, route: str
) -> None:
    page, fields = POSTS[route]
    path = route.format(
        block_id=subjects.block_id,
        job_id=subjects.removal_id,
        email_id=subjects.email_id,
        delivery_id=subjects.delivery_id,
        endpoint_id=subjects.endpoint_id,
        key_id=subjects.key_id,
    )
    signed_in(web_client, admin_key)
    before = _state(engine)

    for token in ({}, {"csrf_token": "0" * 64}):
        refused = web_client.post(path, data={**token, **fields}, follow_redirects=False)
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"].startswith("text/html")
        assert refused.headers["cache-control"] == "no-store"
        assert "This form has expired" in refused.text
        assert "Signed in as <strong>operator-ana</strong>" in refused.text
        assert _state(engine) == before

    # The same post with the page's token goes through: the refusal above was the token's.
    accepted = post(web_client, path, page, **fields)
    assert accepted.status_code in (201, 303), accepted.text
    assert _state(engine) != before


def test_a_console_post_without_a_session_goes_to_the_sign_in_page_first(
    web_client: TestClient,
) -> None:
    answer = web_client.post("/admin/emails/1/retry", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/login"


# Failed e-mails and webhook deliveries -----------------------------------------------------


def test_the_failed_notification_pages_need_a_session_and_are_in_the_navigation(
    web_client: TestClient, admin_key: str
) -> None:
    for path in ("/admin/emails", "/admin/deliveries"):
        answer = web_client.get(path, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == "/admin/login"
    queue = signed_in(web_client, admin_key).get("/admin/takedowns").text
    assert '<a href="/admin/emails">Failed e-mails</a>' in queue
    assert '<a href="/admin/deliveries">Failed deliveries</a>' in queue


def test_without_failures_the_pages_say_so(web_client: TestClient, admin_key: str) -> None:
    signed_in(web_client, admin_key)
    emails_page = web_client.get("/admin/emails")
    deliveries_page = web_client.get("/admin/deliveries")
    assert emails_page.status_code == deliveries_page.status_code == 200
    assert "No failed e-mails." in emails_page.text
    assert "No failed webhook deliveries." in deliveries_page.text
    assert 'rel="next"' not in emails_page.text + deliveries_page.text


def _failed_notifications(engine: Engine, clock: FrozenClock, count: int) -> None:
    """`count` failed e-mails to publishers and `count` failed deliveries."""
    with new_session(writer(engine)) as session, session.begin():
        webhooks.create_endpoint(
            session=session,
            url="http://127.0.0.1:9/hook",
            events=[EventKind.takedown_completed],
            actor="setup",
            now=clock.now(),
            allow_private=True,
        )
        for n in range(count):
            session.add(
                ClaimantEmail(
                    uid=f"00000000-0000-0000-0000-{n:012d}",
                    kind="publisher_lapsed",
                    recipient=f"hostmaster-{n}@example.org",
                    context={},
                    status=JobStatus.failed.value,
                    attempts=3,
                    last_error=f"error number {n}",
                    created_at=clock.now(),
                )
            )
            outbox.publish_takedowns_completed(
                session=session, removed={f"takedown-{n}": [n]}, now=clock.now()
            )
        session.execute(
            update(WebhookDelivery).values(
                status=JobStatus.failed.value, last_status_code=502, last_error="bad gateway"
            )
        )


def _retry_ids(html: str, kind: str) -> list[int]:
    return [int(n) for n in re.findall(rf'action="/admin/{kind}/(\d+)/retry"', html)]


@pytest.mark.parametrize("kind", ["emails", "deliveries"])
def test_failed_notifications_are_listed_oldest_first_in_keyset_pages(
    web_client: TestClient,
    engine: Engine,
    clock: FrozenClock,
    admin_key: str,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    _failed_notifications(engine, clock, 3)
    monkeypatch.setattr(operations, "PAGE_SIZE", 2)
    signed_in(web_client, admin_key)

    first = web_client.get(f"/admin/{kind}")
    assert first.status_code == 200
    next_link = re.search(r'<a href="https://news\.example([^"]+)" rel="next">', first.text)
    assert next_link
    second = web_client.get(next_link[1].replace("&amp;", "&"))
    assert second.status_code == 200
    assert 'rel="next"' not in second.text

    shown = _retry_ids(first.text, kind) + _retry_ids(second.text, kind)
    assert len(shown) == 3 and shown == sorted(shown)
    if kind == "emails":
        assert "error number 0" in first.text and "error number 2" in second.text
        assert "hostmaster-2@example.org" in second.text
    else:
        assert "last answer HTTP 502" in first.text and "bad gateway" in second.text
        assert "takedown.completed" in second.text
    tampered = web_client.get(f"/admin/{kind}?cursor=not-ours")
    assert tampered.status_code == 400
