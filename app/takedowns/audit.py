"""The append-only audit log: one row per transition. Nothing here updates or deletes."""

from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import insert, select
from sqlmodel import Session, col

from app.takedowns.models import AuditEvent


class Action(StrEnum):
    filed = "filed"
    queued = "queued"
    escalated = "escalated"
    approved = "approved"
    rejected = "rejected"
    withdrawn = "withdrawn"
    executing = "executing"
    removed = "removed"
    completed = "completed"
    breached = "sla_breached"
    blocked = "blocked"
    block_lifted = "block_lifted"
    confirmed = "email_confirmed"
    restored = "restored"  # a removed article published again once its blocks were lifted
    # A rejected claimant's appeal, and an operator's decision on it.
    appeal_filed = "appeal_filed"
    appeal_upheld = "appeal_upheld"  # the rejection stands
    appeal_granted = "appeal_granted"  # followed by the approval it leads to
    # Publishers' domain verifications (verification_id set, takedown_id None).
    publisher_verified = "publisher_verified"
    publisher_record_missing = "publisher_record_missing"
    publisher_record_seen = "publisher_record_seen"
    publisher_lapsed = "publisher_lapsed"
    publisher_expired = "publisher_expired"  # checked after expires_at, never verified
    feed_subscribed = "feed_subscribed"
    feed_changed = "feed_changed"  # paused, resumed, publisher or tags changed by a key
    feed_deleted = "feed_deleted"
    feed_moved = "feed_moved"  # a permanent redirect: the stored URL follows it
    feed_gone = "feed_gone"  # 410
    feed_opted_out = "feed_opted_out"  # paused: its publisher's domain is blocked
    feed_opt_out_lifted = "feed_opt_out_lifted"
    # The operators' console (actor: the admin key's name).
    console_signed_in = "console_signed_in"
    console_signed_out = "console_signed_out"
    api_key_created = "api_key_created"
    api_key_revoked = "api_key_revoked"
    webhook_enabled = "webhook_enabled"
    webhook_created = "webhook_created"
    webhook_deleted = "webhook_deleted"
    # Work that ran out of tries, queued again by an operator.
    removal_retried = "removal_retried"
    email_retried = "email_retried"
    webhook_delivery_retried = "webhook_delivery_retried"


# Actors that are not an operator's key name.
CLAIMANT = "claimant"
POLICY = "policy"
SCHEDULER = "scheduler"
INGEST = "ingest"
PUBLISHER = "publisher"


def record(
    *,
    session: Session,
    action: Action,
    actor: str,
    now: datetime,
    takedown_id: str | None = None,
    from_status: str | None = None,
    to_status: str | None = None,
    article_id: int | None = None,
    block_id: int | None = None,
    verification_id: str | None = None,
    feed_id: int | None = None,
    reason: str | None = None,
) -> None:
    """Append one audit row."""
    session.add(
        AuditEvent(
            at=now,
            actor=actor,
            action=action.value,
            takedown_id=takedown_id,
            article_id=article_id,
            block_id=block_id,
            verification_id=verification_id,
            feed_id=feed_id,
            from_status=from_status,
            to_status=to_status,
            reason=reason,
        )
    )


def record_all(*, session: Session, rows: Sequence[Mapping[str, Any]], now: datetime) -> None:
    """Append audit rows ({action, actor, takedown_id, ...}, the columns of `record`) in one
    multi-row INSERT."""
    if rows:
        session.execute(
            insert(AuditEvent.__table__),  # type: ignore[attr-defined]
            [{**row, "at": now, "action": Action(row["action"]).value} for row in rows],
        )


def list_events(
    *, session: Session, takedown_id: str | None, after_id: int | None, limit: int
) -> list[AuditEvent]:
    """Audit rows in the order they were written, keyset-paged on id."""
    query = select(AuditEvent)
    if takedown_id is not None:
        query = query.where(col(AuditEvent.takedown_id) == takedown_id)
    if after_id is not None:
        query = query.where(col(AuditEvent.id) > after_id)
    return list(session.scalars(query.order_by(col(AuditEvent.id)).limit(limit)))
