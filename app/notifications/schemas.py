"""What operators send and see of webhook endpoints and their deliveries."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.articles.schemas import HttpUrl
from app.jobs.models import JobStatus
from app.notifications.models import (
    EventKind,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)


class WebhookEndpointIn(BaseModel):
    """An endpoint to register: where events are POSTed, and which kinds it wants."""

    model_config = ConfigDict(extra="forbid")

    url: HttpUrl = Field(
        description="An absolute http:// or https:// URL, without credentials, whose host is "
        "and resolves to public addresses only (unless BYLINE_ALLOW_PRIVATE_NETWORKS)."
    )
    events: list[EventKind] = Field(min_length=1, max_length=20)


class WebhookEndpointPublic(BaseModel):
    id: int
    url: str
    events: list[EventKind]
    secret_hint: str = Field(description="The first characters of the signing secret.")
    created_at: datetime
    created_by: str
    state: Literal["active", "failing", "disabled"] = Field(
        description="`failing`: recent deliveries failed and are being retried with backoff; "
        "`disabled`: it failed for the whole retry window and gets nothing until enabled."
    )
    disabled_at: datetime | None
    disabled_reason: str | None
    failing_since: datetime | None
    consecutive_failures: int
    retry_at: datetime | None = Field(description="No delivery is tried before this time.")
    last_success_at: datetime | None
    last_failure_at: datetime | None
    last_error: str | None
    pending_deliveries: int

    @classmethod
    def of(cls, endpoint: WebhookEndpoint, *, pending: int) -> "WebhookEndpointPublic":
        assert endpoint.id is not None
        state: Literal["active", "failing", "disabled"] = (
            "disabled"
            if endpoint.disabled_at
            else "failing"
            if endpoint.failing_since
            else "active"
        )
        return cls(
            id=endpoint.id,
            url=endpoint.url,
            events=[EventKind(kind) for kind in endpoint.events],
            secret_hint=endpoint.secret_hint,
            created_at=endpoint.created_at,
            created_by=endpoint.created_by,
            state=state,
            disabled_at=endpoint.disabled_at,
            disabled_reason=endpoint.disabled_reason,
            failing_since=endpoint.failing_since,
            consecutive_failures=endpoint.consecutive_failures,
            retry_at=endpoint.retry_at,
            last_success_at=endpoint.last_success_at,
            last_failure_at=endpoint.last_failure_at,
            last_error=endpoint.last_error,
            pending_deliveries=pending,
        )


class WebhookEndpointCreated(WebhookEndpointPublic):
    secret: str = Field(
        description="Signs every delivery (X-Byline-Signature). Shown once: keep it now."
    )


class WebhookEndpointsPublic(BaseModel):
    items: list[WebhookEndpointPublic]


class DeliveryPublic(BaseModel):
    id: int
    event_id: str = Field(description="The event's id, as in the body's `id` (dedupe on it).")
    event_type: EventKind
    article_id: int | None
    status: JobStatus = Field(
        description="queued, running (being delivered), done (delivered), failed (given up)."
    )
    attempts: int
    next_attempt_at: datetime | None = Field(description="When a queued delivery is tried.")
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, delivery: WebhookDelivery, event: WebhookEvent) -> "DeliveryPublic":
        assert delivery.id is not None
        return cls(
            id=delivery.id,
            event_id=event.uid,
            event_type=EventKind(event.kind),
            article_id=delivery.article_id,
            status=JobStatus(delivery.status),
            attempts=delivery.attempts,
            next_attempt_at=(delivery.run_at if delivery.status == JobStatus.queued else None),
            last_attempt_at=delivery.last_attempt_at,
            last_status_code=delivery.last_status_code,
            last_error=delivery.last_error,
            created_at=delivery.created_at,
            finished_at=delivery.finished_at,
        )


class DeliveriesPublic(BaseModel):
    items: list[DeliveryPublic]
    next_cursor: str | None
