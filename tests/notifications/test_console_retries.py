"""Operators retry failed e-mails and webhook deliveries from the console: the retry queues
the row again, due now, wakes its worker when it commits, and is audited; the worker then
sends it through a real SMTP server and to a real receiver on 127.0.0.1."""

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update

from app.auth import Scope
from app.clock import FrozenClock
from app.db import new_session, writer
from app.jobs import wakeups
from app.jobs.models import JobStatus
from app.notifications.models import ClaimantEmail, EmailKind, WebhookDelivery, WebhookEndpoint
from app.notifications.outbox import EMAIL_KIND, WEBHOOK_KIND
from app.takedowns.models import AuditEvent
from tests.factories import make_key
from tests.notifications.conftest import MakeNotifier, Receiver, SmtpServer
from tests.notifications.factories import deliveries, emails, endpoint, events, register
from tests.takedowns.factories import UNMATCHED, file, filing, ingest
from tests.web.test_console import post, signed_in

REFUSED = "550 5.1.1 <agent@rights.example.org>: no such user"


@pytest.fixture
def operator_key(engine: Engine) -> str:
    return make_key(engine, Scope.admin, "operator-ana")


@pytest.fixture
def console(app: FastAPI, operator_key: str) -> Iterator[TestClient]:
    """A browser on https (the console's cookies are `__Host-`), signed in as operator-ana."""
    with TestClient(app, base_url="https://news.example", raise_server_exceptions=False) as client:
        yield signed_in(client, operator_key)


@pytest.fixture
def bell() -> Iterator[wakeups.WakeUp]:
    """An idle worker of e-mails and webhooks in this process, rung by what becomes due."""
    waiting = wakeups.WakeUp([EMAIL_KIND, WEBHOOK_KIND])
    wakeups.SIGNALS.subscribe(waiting)
    yield waiting
    wakeups.SIGNALS.unsubscribe(waiting)


def audit_rows(engine: Engine, action: str) -> list[AuditEvent]:
    with new_session(engine) as session:
        return list(
            session.scalars(
                select(AuditEvent).where(AuditEvent.action == action)  # type: ignore[arg-type]
            )
        )


def test_a_failed_email_retried_from_the_console_is_sent_once_the_server_accepts_it(
    console: TestClient,
    engine: Engine,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    smtp_server: SmtpServer,
    make_notifier: MakeNotifier,
    bell: wakeups.WakeUp,
) -> None:
    article = ingest(console, ingest_headers)
    takedown_id = file(console, filing([article["id"]], claimant=UNMATCHED))["id"]
    runner = make_notifier()
    assert runner.run_once().of("email")["sent"] == 1  # the receipt
    approved = console.post(f"/v1/admin/takedowns/{takedown_id}/approve", headers=admin_headers)
    assert approved.status_code == 200, approved.text
    smtp_server.inbox.rcpt_answers = [REFUSED]
    assert runner.run_once().of("email")["failed"] == 1
    [_, failed] = emails(engine)
    assert (failed.kind, failed.status) == (EmailKind.approved, JobStatus.failed)

    page = console.get("/admin/emails")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert "the SMTP server refused the recipient with 550" in page.text
    assert f'action="/admin/emails/{failed.id}/retry"' in page.text
    bell.clear()

    answer = post(console, f"/admin/emails/{failed.id}/retry", "/admin/emails")

    assert answer.status_code == 303
    assert answer.headers["location"] == f"/admin/emails?retried={failed.id}"
    assert bell.is_set(), "the commit of the retry wakes the e-mail worker"
    [_, queued] = emails(engine)
    assert (queued.status, queued.attempts) == (JobStatus.queued, 0)
    assert runner.run_once().of("email")["sent"] == 1
    [_, arrived] = smtp_server.messages
    assert arrived.rcpt_tos == ["agent@rights.example.org"]
    assert takedown_id in arrived.part("plain")
    assert emails(engine)[1].status == JobStatus.done
    [event] = audit_rows(engine, "email_retried")
    assert (event.actor, event.takedown_id) == ("operator-ana", takedown_id)
    assert f"e-mail {failed.id} (approved)" == event.reason
    assert "No failed e-mails." in console.get("/admin/emails").text

    # Sent: there is nothing to retry, and the page says why.
    again = post(console, f"/admin/emails/{failed.id}/retry", "/admin/emails")
    assert again.status_code == 409 and "only failed rows are retried" in again.text
    assert len(audit_rows(engine, "email_retried")) == 1


def test_a_failed_receipt_is_shown_but_never_sent_again(
    console: TestClient,
    engine: Engine,
    smtp_server: SmtpServer,
    make_notifier: MakeNotifier,
) -> None:
    file(console, filing(["https://www.reuters.com/world/s-1"], claimant=UNMATCHED))
    smtp_server.inbox.rcpt_answers = [REFUSED]
    assert make_notifier().run_once().of("email")["failed"] == 1
    [receipt] = emails(engine)

    page = console.get("/admin/emails")
    assert "receipt to <code>agent@rights.example.org</code>" in page.text
    assert f'action="/admin/emails/{receipt.id}/retry"' not in page.text

    refused = post(console, f"/admin/emails/{receipt.id}/retry", "/admin/emails")

    assert refused.status_code == 409 and "its links were erased" in refused.text
    assert emails(engine)[0].status == JobStatus.failed
    assert audit_rows(engine, "email_retried") == []


def test_a_failed_delivery_retried_from_the_console_reaches_the_receiver(
    console: TestClient,
    engine: Engine,
    clock: FrozenClock,
    operator_key: str,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    receiver: Receiver,
    make_notifier: MakeNotifier,
    bell: wakeups.WakeUp,
) -> None:
    created = register(console, admin_headers, receiver.url, ["article.created"])
    ingest(console, ingest_headers)
    receiver.answers = [500] * 10
    runner = make_notifier()
    runner.run_once()
    clock.advance(timedelta(hours=24))
    runner.run_once()  # failed for the whole window: given up, the endpoint disabled
    signed_in(console, operator_key)  # the session of 8 hours has ended meanwhile
    [failed] = deliveries(engine)
    assert failed.status == JobStatus.failed
    assert endpoint(engine, created["id"]).disabled_at is not None

    page = console.get("/admin/deliveries")
    assert page.status_code == 200
    assert "last answer HTTP 500" in page.text and "endpoint disabled" in page.text
    assert f'action="/admin/deliveries/{failed.id}/retry"' in page.text

    receiver.answers = []
    enabled = post(console, f"/admin/webhooks/{created['id']}/enable", "/admin/webhooks")
    assert enabled.status_code == 303
    bell.clear()
    answer = post(console, f"/admin/deliveries/{failed.id}/retry", "/admin/deliveries")

    assert answer.status_code == 303
    assert answer.headers["location"] == f"/admin/deliveries?retried={failed.id}"
    assert bell.is_set(), "the commit of the retry wakes the webhook worker"
    assert runner.run_once().of("webhook")["delivered"] == 1
    [event] = events(engine)
    assert [body["id"] for body in receiver.accepted()] == [event.uid]
    assert deliveries(engine)[0].status == JobStatus.done
    [retried] = audit_rows(engine, "webhook_delivery_retried")
    assert retried.actor == "operator-ana"
    assert retried.reason == f"delivery {failed.id} to endpoint {created['id']}"
    assert "No failed webhook deliveries." in console.get("/admin/deliveries").text


def test_a_retried_delivery_does_not_wait_out_its_endpoints_backoff(
    console: TestClient,
    engine: Engine,
    clock: FrozenClock,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    receiver: Receiver,
    make_notifier: MakeNotifier,
) -> None:
    created = register(console, admin_headers, receiver.url, ["article.created"])
    ingest(console, ingest_headers)
    # Given up while its endpoint, which succeeded lately, is only in backoff for an hour.
    with new_session(writer(engine)) as session, session.begin():
        session.execute(
            update(WebhookDelivery).values(
                status=JobStatus.failed.value, attempts=9, last_error="timed out"
            )
        )
        session.execute(
            update(WebhookEndpoint).values(
                failing_since=clock.now(), retry_at=clock.now() + timedelta(hours=1)
            )
        )
    [failed] = deliveries(engine)

    answer = post(console, f"/admin/deliveries/{failed.id}/retry", "/admin/deliveries")

    assert answer.status_code == 303
    assert endpoint(engine, created["id"]).retry_at is None
    assert make_notifier().run_once().of("webhook")["delivered"] == 1
    assert len(receiver.accepted()) == 1


@pytest.mark.parametrize(
    ("path", "page"),
    [
        ("/admin/emails/1/retry", "/admin/emails"),
        ("/admin/deliveries/1/retry", "/admin/deliveries"),
    ],
)
def test_retrying_something_unknown_says_so(console: TestClient, path: str, page: str) -> None:
    answer = post(console, path, page)
    assert answer.status_code == 404
    assert "Not done" in answer.text


def test_the_email_page_never_offers_to_resend_an_email_that_may_have_arrived(
    console: TestClient, engine: Engine, clock: FrozenClock
) -> None:
    file(console, filing(["https://www.reuters.com/world/s-1"], claimant=UNMATCHED))
    with new_session(writer(engine)) as session, session.begin():
        session.execute(
            update(ClaimantEmail).values(
                kind=EmailKind.escalated.value,
                status="unconfirmed",
                handed_over_at=clock.now(),
                last_error="the worker stopped while handing the message over",
            )
        )
    [email] = emails(engine)

    page = console.get("/admin/emails")

    assert "unconfirmed" in page.text and "handing the message over" in page.text
    assert f'action="/admin/emails/{email.id}/retry"' not in page.text
    refused = post(console, f"/admin/emails/{email.id}/retry", "/admin/emails")
    assert refused.status_code == 409
    assert emails(engine)[0].status == "unconfirmed"
