"""Plain-function factories: endpoints registered through the API, and what the outbox holds."""

import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlmodel import col

from app.db import new_session
from app.notifications.models import (
    ClaimantEmail,
    EmailKind,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from app.notifications.webhooks import SIGNATURE_HEADER, verify_signature
from tests.factories import Bind, reading
from tests.notifications.conftest import Received

ALL_EVENTS = ["article.created", "article.updated", "article.removed", "takedown.completed"]


def register(
    client: TestClient, headers: dict[str, str], url: str, events: list[str] | None = None
) -> dict[str, Any]:
    """Register an endpoint through the admin API; its answer (with the secret)."""
    response = client.post(
        "/v1/admin/webhooks", json={"url": url, "events": events or ALL_EVENTS}, headers=headers
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def signed_by(received: Received, secret: str, now: float) -> bool:
    return verify_signature(
        secret, received.headers[SIGNATURE_HEADER.lower()], received.body, now=now
    )


def emails(
    bind: Bind, takedown_id: str | None = None, kind: EmailKind | None = None
) -> list[ClaimantEmail]:
    """The outbox's e-mails, oldest first; with `takedown_id`, those about that request (of
    `kind`)."""
    query = select(ClaimantEmail).order_by(col(ClaimantEmail.id))
    if takedown_id is not None:
        query = query.where(col(ClaimantEmail.takedown_id) == takedown_id)
    if kind is not None:
        query = query.where(col(ClaimantEmail.kind) == kind.value)
    with reading(bind) as session:
        return list(session.scalars(query))


def deliveries(engine: Engine) -> list[WebhookDelivery]:
    with new_session(engine) as session:
        return list(session.scalars(select(WebhookDelivery).order_by(col(WebhookDelivery.id))))


def events(engine: Engine) -> list[WebhookEvent]:
    with new_session(engine) as session:
        return list(session.scalars(select(WebhookEvent).order_by(col(WebhookEvent.id))))


def endpoint(engine: Engine, endpoint_id: int) -> WebhookEndpoint:
    with new_session(engine) as session:
        row = session.get(WebhookEndpoint, endpoint_id)
        assert row is not None
        return row


def our_logs(caplog: pytest.LogCaptureFixture) -> str:
    """Everything byline logged (messages and structured fields); the test servers' own
    logs, which name their peers, are left out."""
    reserved = set(vars(logging.LogRecord("", 0, "", 0, "", None, None)))
    lines = []
    for record in caplog.records:
        if record.name.startswith("byline"):
            extra = {k: v for k, v in vars(record).items() if k not in reserved}
            lines.append(f"{record.getMessage()} {extra}")
    return "\n".join(lines)
