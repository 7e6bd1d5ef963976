"""Plain functions for the publisher tests: a domain verification started, checked and
verified through the real API against the test DNS server, and what it left in the
database (audit rows, queued e-mails) and in the mail directory."""

import email
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import Message
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from app.clock import FrozenClock
from app.config import Settings
from app.db import new_session
from app.jobs.worker import TickResult
from app.main import create_app
from app.notifications.models import ClaimantEmail
from app.takedowns.models import AuditEvent
from tests.publishers.conftest import DnsServer
from tests.workers import run_outside_world

VERIFICATIONS = "/v1/publishers/verifications"
PUBLISHER_EMAIL = "dns@reuters.com"


def start(
    client: TestClient, domain: str = "reuters.com", email: str = PUBLISHER_EMAIL
) -> dict[str, Any]:
    """Start a verification of `domain` through the API; its answer."""
    response = client.post(VERIFICATIONS, json={"domain": domain, "email": email})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def check(client: TestClient, verification_id: str) -> dict[str, Any]:
    """Ask for a check now (a 200 expected); its answer."""
    response = client.post(f"{VERIFICATIONS}/{verification_id}/check")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def get(client: TestClient, verification_id: str) -> dict[str, Any]:
    response = client.get(f"{VERIFICATIONS}/{verification_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def publish_record(dns_server: DnsServer, verification: dict[str, Any]) -> None:
    """What the publisher does at its DNS provider: add the TXT record it was given."""
    dns_server.zone.add_txt(verification["record_name"], verification["record_value"])


def verify(
    client: TestClient, dns_server: DnsServer, domain: str = "reuters.com"
) -> tuple[dict[str, Any], str]:
    """The whole proof: start, publish the record, check. The verification's id and the
    publisher key the check issued."""
    verification = start(client, domain)
    publish_record(dns_server, verification)
    checked = check(client, verification["id"])
    assert checked["status"] == "verified", checked
    key = checked["publisher_key"]
    assert isinstance(key, str) and key.startswith("byl_")
    return checked, key


def audit_trail(engine: Engine, verification_id: str) -> list[tuple[str, str | None, str | None]]:
    """The verification's audit rows, oldest first: (action, from_status, to_status)."""
    with new_session(engine) as session:
        events = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.verification_id == verification_id)  # type: ignore[arg-type]
            .order_by(AuditEvent.id)  # type: ignore[arg-type]
        )
        return [(event.action, event.from_status, event.to_status) for event in events]


def queued_emails(engine: Engine, verification_id: str) -> list[tuple[str, str]]:
    """The e-mails queued about the verification, oldest first: (kind, recipient)."""
    with new_session(engine) as session:
        emails = session.scalars(
            select(ClaimantEmail)
            .where(ClaimantEmail.verification_id == verification_id)  # type: ignore[arg-type]
            .order_by(ClaimantEmail.id)  # type: ignore[arg-type]
        )
        return [(row.kind, row.recipient) for row in emails]


def mail_written(settings: Settings) -> list[Message]:
    """The .eml files the e-mail worker wrote (BYLINE_SMTP_URL unset), oldest first."""
    directory: Path = settings.mail_dir
    if not directory.exists():
        return []
    return [email.message_from_bytes(path.read_bytes()) for path in sorted(directory.glob("*.eml"))]


def run_tick(engine: Engine, settings: Settings, clock: FrozenClock) -> TickResult:
    """One tick, at the clock's time, of the worker that runs the daily re-checks (with the
    webhooks and e-mails), as app/background.py assembles it."""
    return run_outside_world(engine, settings, clock)


@contextmanager
def client_with(
    settings: Settings, engine: Engine, clock: FrozenClock, **overrides: Any
) -> Iterator[TestClient]:
    """A client on an app whose settings differ from the test's by `overrides` (tighter rate
    limits, for one)."""
    app = create_app(settings.model_copy(update=overrides), engine=engine, clock=clock)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
