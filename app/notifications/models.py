"""Tables of the notifications domain: the outbox of claimant e-mails, and webhook events with
their endpoints and per-endpoint deliveries."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.db import BIG_ROW_ID, UTCDateTime
from app.jobs.models import JobColumns


class EventKind(StrEnum):
    article_created = "article.created"
    article_updated = "article.updated"
    article_removed = "article.removed"
    takedown_completed = "takedown.completed"


class EmailKind(StrEnum):
    # To claimants, about one takedown request.
    receipt = "receipt"  # with the confirmation link, unless a publisher key filed it
    approved = "approved"
    rejected = "rejected"
    escalated = "escalated"
    completed = "completed"
    appeal_received = "appeal_received"
    appeal_upheld = "appeal_upheld"
    appeal_granted = "appeal_granted"
    # To the address of a publisher's domain verification.
    publisher_verified = "publisher_verified"
    publisher_record_missing = "publisher_record_missing"
    publisher_lapsed = "publisher_lapsed"


# An e-mail whose worker died while handing it over: it may have been sent, so it never is
# again (beside the statuses of every job, `app.jobs.models.JobStatus`).
EMAIL_UNCONFIRMED = "unconfirmed"


class ClaimantEmail(JobColumns, table=True):
    """One e-mail to a claimant about one event of their request, or to a publisher about
    its domain verification (exactly one of `takedown_id`, `verification_id`). `recipient`
    is personal data (operators only). `secret` holds the status token of a receipt and
    `confirmation_code` the code of its confirmation link until the e-mail is sent or given
    up; then both are erased. `handed_over_at` is set, and committed, just before the message
    itself goes to the SMTP server: the point after which it is never sent again."""

    __tablename__ = "claimant_emails"
    __table_args__ = (
        # The idempotency key: one e-mail per request and event, however often it is queued.
        # A verification's e-mails have none: a record may go missing more than once, and
        # each outage is told; the conditional status UPDATEs that queue them act once.
        UniqueConstraint("takedown_id", "kind"),
        Index("ix_claimant_emails_verification_id", "verification_id"),
        Index("ix_claimant_emails_status_run_at", "status", "run_at"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BIG_ROW_ID)
    uid: str = Field(sa_type=String(36), unique=True)
    takedown_id: str | None = Field(
        default=None, sa_column=Column(String(36), ForeignKey("takedowns.id"), nullable=True)
    )
    verification_id: str | None = Field(
        default=None,
        sa_column=Column(String(36), ForeignKey("publisher_verifications.id"), nullable=True),
    )
    kind: str = Field(sa_type=String(30))  # EmailKind
    recipient: str = Field(sa_type=String(320))
    context: dict[str, Any] = Field(sa_type=JSON)
    secret: str | None = Field(default=None, sa_type=String(100))
    confirmation_code: str | None = Field(default=None, sa_type=String(100))
    handed_over_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class WebhookEndpoint(SQLModel, table=True):
    """A receiver an operator registered. The secret signs every delivery, so it is kept as
    it is (not hashed); the API shows it once."""

    __tablename__ = "webhook_endpoints"

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(sa_type=String(2048))
    events: list[str] = Field(sa_type=JSON)
    secret: str = Field(sa_type=String(100))
    secret_hint: str = Field(sa_type=String(16))
    created_at: datetime = Field(sa_type=UTCDateTime)
    created_by: str = Field(sa_type=String(100))
    # Health: failing_since is set by the first failure after a success and cleared by the
    # next success; no delivery is tried before retry_at (the endpoint's backoff).
    consecutive_failures: int = Field(default=0)
    failing_since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    retry_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_success_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_failure_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, sa_type=Text)
    disabled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    disabled_reason: str | None = Field(default=None, sa_type=Text)


class WebhookEvent(SQLModel, table=True):
    """Something frontends may want to know. Written in the transaction of the change itself,
    and only when an endpoint subscribes to its kind. Never holds claimant data."""

    __tablename__ = "webhook_events"

    id: int | None = Field(default=None, primary_key=True, sa_type=BIG_ROW_ID)
    uid: str = Field(sa_type=String(36), unique=True)
    kind: str = Field(sa_type=String(30))  # EventKind
    article_id: int | None = Field(default=None, sa_type=BIG_ROW_ID)
    takedown_id: str | None = Field(default=None, sa_type=String(36))
    payload: dict[str, Any] = Field(sa_type=JSON)
    created_at: datetime = Field(sa_type=UTCDateTime)


class WebhookDelivery(JobColumns, table=True):
    """One event for one endpoint: its attempts and outcome (the endpoint's delivery log)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id"),
        Index("ix_webhook_deliveries_status_run_at", "status", "run_at"),
        # An article's events go to an endpoint in order: the claim looks for earlier ones.
        Index(
            "ix_webhook_deliveries_endpoint_id_article_id_event_id",
            "endpoint_id",
            "article_id",
            "event_id",
        ),
        # The delivery log, newest first.
        Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BIG_ROW_ID)
    endpoint_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), nullable=False
        )
    )
    event_id: int = Field(
        sa_column=Column(BIG_ROW_ID, ForeignKey("webhook_events.id"), nullable=False, index=True)
    )
    # The event's article, copied here so that ordering needs no join.
    article_id: int | None = Field(default=None, sa_type=BIG_ROW_ID)
    last_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_status_code: int | None = Field(default=None)
