"""Webhook endpoints, as operators register them, and what a delivery sends: a JSON body and
its signature.

    X-Byline-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}." + body)>

`body` is the request body exactly as received (bytes); the secret is the endpoint's, shown
once when it was registered. A receiver recomputes the HMAC, compares in constant time, and
refuses a `t` far from its own clock (a replayed request). Every body carries the event's `id`,
the same on every retry: receivers dedupe on it, since a delivery whose answer was lost is
sent again.
"""

import hashlib
import hmac
import json
import secrets
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import delete, func, select
from sqlmodel import Session, col

from app.errors import Conflict, NotFound
from app.jobs.models import OPEN_STATUSES, JobStatus
from app.notifications.models import (
    EventKind,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from app.outbound import refuse_internal_url
from app.takedowns import audit
from app.takedowns.audit import Action

SIGNATURE_HEADER = "X-Byline-Signature"
SECRET_PREFIX = "whsec_"
MAX_ENDPOINTS = 100
USER_AGENT = "byline-webhooks/1"
ARTICLE_EVENTS = {EventKind.article_created, EventKind.article_updated, EventKind.article_removed}


# Endpoints ---------------------------------------------------------------------------------


def create_endpoint(
    *,
    session: Session,
    url: str,
    events: list[EventKind],
    actor: str,
    now: datetime,
    allow_private: bool,
) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint; its signing secret is returned (shown once by the API). A URL
    at a non-public address is refused unless `allow_private` (app/outbound.py)."""
    # Before the first query: a slow DNS answer must not hold SQLite's write turn.
    refuse_internal_url(url, allow_private=allow_private)
    count = session.scalar(select(func.count()).select_from(WebhookEndpoint))
    if (count or 0) >= MAX_ENDPOINTS:
        raise Conflict(f"At most {MAX_ENDPOINTS} webhook endpoints; delete one first.")
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    endpoint = WebhookEndpoint(
        url=url,
        events=sorted({event.value for event in events}),
        secret=secret,
        secret_hint=secret[:10],
        created_at=now,
        created_by=actor,
    )
    session.add(endpoint)
    session.flush()
    events_words = f", events {', '.join(endpoint.events)}"
    _audit(session, Action.webhook_created, endpoint, actor, now, details=events_words)
    return endpoint, secret


def list_endpoints(*, session: Session) -> list[WebhookEndpoint]:
    """Every endpoint, disabled ones included, oldest first."""
    return list(session.scalars(select(WebhookEndpoint).order_by(col(WebhookEndpoint.id))))


def get_endpoint(*, session: Session, endpoint_id: int) -> WebhookEndpoint:
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise NotFound(f"No webhook endpoint with id {endpoint_id}.")
    return endpoint


def delete_endpoint(*, session: Session, endpoint_id: int, actor: str, now: datetime) -> None:
    """Delete an endpoint with its delivery log, audited; nothing more is sent to it."""
    endpoint = get_endpoint(session=session, endpoint_id=endpoint_id)
    _audit(session, Action.webhook_deleted, endpoint, actor, now)
    session.execute(delete(WebhookDelivery).where(col(WebhookDelivery.endpoint_id) == endpoint_id))
    session.execute(delete(WebhookEndpoint).where(col(WebhookEndpoint.id) == endpoint_id))


def enable_endpoint(*, session: Session, endpoint_id: int) -> WebhookEndpoint:
    """Enable a disabled endpoint again: its pending deliveries resume at the next tick, and
    new events are queued for it again."""
    endpoint = get_endpoint(session=session, endpoint_id=endpoint_id)
    endpoint.disabled_at = None
    endpoint.disabled_reason = None
    endpoint.failing_since = None
    endpoint.consecutive_failures = 0
    endpoint.retry_at = None
    session.flush()
    return endpoint


def enable_endpoint_audited(
    *, session: Session, endpoint_id: int, actor: str, now: datetime
) -> WebhookEndpoint:
    """`enable_endpoint`, with its audit row under the acting key's name."""
    endpoint = enable_endpoint(session=session, endpoint_id=endpoint_id)
    _audit(session, Action.webhook_enabled, endpoint, actor, now)
    return endpoint


def _audit(
    session: Session,
    action: Action,
    endpoint: WebhookEndpoint,
    actor: str,
    now: datetime,
    details: str = "",
) -> None:
    reason = f"endpoint {endpoint.id} {endpoint.url}{details}"
    audit.record(session=session, action=action, actor=actor, now=now, reason=reason)


def pending_deliveries(*, session: Session, endpoint_ids: list[int]) -> dict[int, int]:
    """Deliveries not yet delivered or given up, per endpoint."""
    if not endpoint_ids:
        return {}
    rows = session.execute(
        select(col(WebhookDelivery.endpoint_id), func.count())
        .where(
            col(WebhookDelivery.endpoint_id).in_(endpoint_ids),
            col(WebhookDelivery.status).in_(OPEN_STATUSES),
        )
        .group_by(col(WebhookDelivery.endpoint_id))
    ).all()
    return {endpoint_id: count for endpoint_id, count in rows}


def list_deliveries(
    *,
    session: Session,
    endpoint_id: int,
    status: JobStatus | None,
    before_id: int | None,
    limit: int,
) -> list[tuple[WebhookDelivery, WebhookEvent]]:
    """An endpoint's delivery log, newest first, keyset-paged on the delivery id."""
    get_endpoint(session=session, endpoint_id=endpoint_id)
    query = (
        select(WebhookDelivery, WebhookEvent)
        .join(WebhookEvent, col(WebhookEvent.id) == col(WebhookDelivery.event_id))
        .where(col(WebhookDelivery.endpoint_id) == endpoint_id)
    )
    if status is not None:
        query = query.where(col(WebhookDelivery.status) == status.value)
    if before_id is not None:
        query = query.where(col(WebhookDelivery.id) < before_id)
    query = query.order_by(col(WebhookDelivery.id).desc()).limit(limit)
    return [(delivery, event) for delivery, event in session.execute(query).all()]


# What a delivery sends -----------------------------------------------------------------------


def article_url(public_base_url: str, article_id: int) -> str:
    """Our public URL of an article (what a frontend or cache keys its copy on)."""
    return f"{public_base_url}/v1/articles/{article_id}"


def event_body(
    *,
    uid: str,
    kind: str,
    created_at: datetime,
    payload: dict[str, Any],
    public_base_url: str,
) -> bytes:
    """The JSON body of an event: the same bytes on every retry."""
    data = dict(payload)
    if kind in ARTICLE_EVENTS:
        data["url"] = article_url(public_base_url, int(payload["id"]))
    body = {"id": uid, "type": kind, "created_at": created_at.isoformat(), "data": data}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Byline-Signature value: `t=<timestamp>,v1=<hex HMAC-SHA256 of "t." + body>`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify_signature(
    secret: str, header: str, body: bytes, *, now: float, tolerance: float = 300
) -> bool:
    """What a receiver does (tests use it too): the signature matches and is recent."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    expected = signature(secret, timestamp, body).split("v1=", 1)[1]
    return abs(now - timestamp) <= tolerance and hmac.compare_digest(expected, fields.get("v1", ""))


def delivery_headers(
    *, secret: str, timestamp: int, body: bytes, event_uid: str, kind: str
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Byline-Event": kind,
        "X-Byline-Event-Id": event_uid,
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }


def post_event(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST one delivery and return the status code; the answer's body is never read.
    Redirects are not followed (a 3xx is a failure): the registered URL is the one signed
    for. Raises httpx.HTTPError when no answer came."""
    with client.stream("POST", url, content=body, headers=headers) as response:
        return response.status_code
