"""Tables of the takedowns domain."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Column, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.db import BIG_ROW_ID, UTCDateTime


class TakedownStatus(StrEnum):
    received = "received"
    queued = "queued"
    escalated = "escalated"
    executing = "executing"
    completed = "completed"
    rejected = "rejected"
    withdrawn = "withdrawn"


# Requests still to be carried out or decided: past due_at, these are overdue.
OPEN_STATUSES = frozenset(
    {
        TakedownStatus.received,
        TakedownStatus.queued,
        TakedownStatus.escalated,
        TakedownStatus.executing,
    }
)


class TargetKind(StrEnum):
    article_id = "article_id"  # our article id, or our public article URL
    source_url = "source_url"  # an original URL, matched after normalisation
    domain = "domain"  # a whole publisher domain


class TargetState(StrEnum):
    pending = "pending"  # waiting for removal (or for a decision)
    removed = "removed"  # the article is gone (now or by an earlier takedown)
    blocked = "blocked"  # nothing to remove; the URL or domain is blocked from ingest
    cancelled = "cancelled"  # withdrawn or rejected before removal


class Reason(StrEnum):
    copyright = "copyright"
    owner_request = "owner_request"
    privacy = "privacy"
    defamation = "defamation"
    other = "other"


class Takedown(SQLModel, table=True):
    """A rights holder's request. Claimant columns are personal data: admin views only."""

    __tablename__ = "takedowns"
    __table_args__ = (
        Index("ix_takedowns_status_received_at", "status", "received_at"),
        Index("ix_takedowns_fingerprint_received_at", "fingerprint", "received_at"),
    )

    id: str = Field(sa_type=String(36), primary_key=True)
    status: str = Field(sa_type=String(20))
    reason: str = Field(sa_type=String(20))
    claimant_name: str = Field(sa_type=String(200))
    claimant_email: str = Field(sa_type=String(320))
    claimant_organization: str | None = Field(default=None, sa_type=String(200))
    claimant_role: str = Field(sa_type=String(10))
    claimant_acting_for: str | None = Field(default=None, sa_type=String(200))
    explanation: str = Field(sa_type=Text)
    signature: str = Field(sa_type=String(200))
    domain: str | None = Field(default=None, sa_type=String(255))
    original_url: str | None = Field(default=None, sa_type=String(2048))
    original_published_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    token_hash: str = Field(sa_type=String(64))
    # SHA-256 of the code e-mailed to the claimant; None for a publisher key's filing (its
    # proof is the key) and for requests filed before confirmation existed.
    confirmation_hash: str | None = Field(default=None, sa_type=String(64))
    email_confirmed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The publisher key (DNS-proven domain) that filed the request, if one did.
    publisher_key_id: int | None = Field(default=None)
    # SHA-256 of the folded claimant mailbox and the targets' matching keys: finds repeats.
    fingerprint: str = Field(sa_type=String(64))
    # An earlier request with the same fingerprint, for operators (never shown in public).
    duplicate_of: str | None = Field(default=None, sa_type=String(36))
    received_at: datetime = Field(sa_type=UTCDateTime)
    due_at: datetime = Field(sa_type=UTCDateTime)
    run_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # When the request's URLs and domain were put on the block list: once its removals may
    # run (at once, or when its review window ends), never before.
    blocked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Why the request waits for an operator, one entry per reason (a reason may itself
    # contain "; " or a line break, so they are never joined into one text).
    escalation_reasons: list[str] | None = Field(
        default=None, sa_column=Column(JSON(none_as_null=True), nullable=True)
    )
    decision: str | None = Field(default=None, sa_type=String(20))
    decision_reason: str | None = Field(default=None, sa_type=Text)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    decided_by: str | None = Field(default=None, sa_type=String(100))
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Set once, when an open request is first found past due_at (an SLA breach).
    breached_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class AppealOutcome(StrEnum):
    upheld = "upheld"  # the rejection stands
    granted = "granted"  # the request is approved after all


class TakedownAppeal(SQLModel, table=True):
    """A rejected claimant's appeal: at most one per request (the unique takedown_id), with
    its own deadline for the operator who decides it."""

    __tablename__ = "takedown_appeals"
    __table_args__ = (Index("ix_takedown_appeals_decided_at_due_at", "decided_at", "due_at"),)

    id: int | None = Field(default=None, primary_key=True)
    takedown_id: str = Field(
        sa_column=Column(String(36), ForeignKey("takedowns.id"), nullable=False, unique=True)
    )
    statement: str = Field(sa_type=Text)
    filed_at: datetime = Field(sa_type=UTCDateTime)
    due_at: datetime = Field(sa_type=UTCDateTime)
    # The operator whose rejection is appealed: never the one who decides the appeal.
    rejected_by: str = Field(sa_type=String(100))
    outcome: str | None = Field(default=None, sa_type=String(20))  # AppealOutcome
    decision_reason: str | None = Field(default=None, sa_type=Text)
    decided_by: str | None = Field(default=None, sa_type=String(100))
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class TakedownTarget(SQLModel, table=True):
    """A named target of a request and one article it resolved to: one row per (target,
    article); a target that resolved to no article (or a domain) has a row without one."""

    __tablename__ = "takedown_targets"
    __table_args__ = (UniqueConstraint("takedown_id", "position", "article_id"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BIG_ROW_ID)
    takedown_id: str = Field(
        sa_column=Column(String(36), ForeignKey("takedowns.id"), nullable=False)
    )
    position: int  # the target's place in the request; the domain comes after the targets
    input: str = Field(sa_type=String(2048))
    kind: str = Field(sa_type=String(20))  # TargetKind
    canonical_url: str | None = Field(default=None, sa_type=String(2048))
    # The URL's matching key (app/articles/urls.py): what blocks and ingest compare.
    match_key: str | None = Field(default=None, sa_type=String(2048))
    article_id: int | None = Field(default=None, sa_type=BIG_ROW_ID)
    state: str = Field(sa_type=String(20))  # TargetState
    # For a URL that matched nothing: the live article we hold nearest to it on its host.
    closest_article_id: int | None = Field(default=None, sa_type=BIG_ROW_ID)


class Block(SQLModel, table=True):
    """A URL (by its matching key) or a domain that must not be republished (checked at
    ingest)."""

    __tablename__ = "blocks"
    __table_args__ = (UniqueConstraint("kind", "value"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(sa_type=String(10))  # url | domain
    value: str = Field(sa_type=String(2048))  # the URL's matching key, or the domain
    takedown_id: str | None = Field(
        default=None,
        sa_column=Column(String(36), ForeignKey("takedowns.id"), nullable=True, index=True),
    )
    created_at: datetime = Field(sa_type=UTCDateTime)
    lifted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    lifted_by: str | None = Field(default=None, sa_type=String(100))


class AuditEvent(SQLModel, table=True):
    """Append-only: one row per transition. Nothing updates or deletes these rows."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_takedown_id_id", "takedown_id", "id"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BIG_ROW_ID)
    at: datetime = Field(sa_type=UTCDateTime)
    actor: str = Field(sa_type=String(100))
    action: str = Field(sa_type=String(30))
    takedown_id: str | None = Field(default=None, sa_type=String(36))
    article_id: int | None = Field(default=None, sa_type=BIG_ROW_ID)
    block_id: int | None = Field(default=None)
    verification_id: str | None = Field(default=None, sa_type=String(36))
    feed_id: int | None = Field(default=None)
    from_status: str | None = Field(default=None, sa_type=String(20))
    to_status: str | None = Field(default=None, sa_type=String(20))
    reason: str | None = Field(default=None, sa_type=Text)


class RateLimitCounter(SQLModel, table=True):
    """Fixed-window counters shared by all API processes. `key` is hashed: no e-mails here."""

    __tablename__ = "rate_limit_counters"

    key: str = Field(sa_type=String(64), primary_key=True)
    window_start: datetime = Field(sa_type=UTCDateTime, primary_key=True)
    count: int = Field(sa_column=Column(Integer, nullable=False))
