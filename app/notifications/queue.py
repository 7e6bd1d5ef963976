"""The SQL that drains the outbox, all of it: recover expired leases, claim due rows
(`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite's single writer, with BEGIN IMMEDIATE),
record each attempt before it is made, and record its outcome with one UPDATE that holds
only while the runner still has the lease."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update
from sqlmodel import Session

from app.notifications.models import DeliveryStatus, EmailStatus
from app.notifications.outbox import CE, EP, EV, D

RETRY_BASE = timedelta(seconds=30)
RETRY_CAP = timedelta(hours=1)
LAST_ERROR_MAX_CHARS = 500
UNFINISHED_EMAIL = (EmailStatus.pending, EmailStatus.sending, EmailStatus.submitting)
UNFINISHED_DELIVERY = (DeliveryStatus.pending, DeliveryStatus.delivering)


def retry_delay(failures: int) -> timedelta:
    """Exponential backoff after `failures` failed tries: 30 s, 1 min, 2 min, ... at most 1 h."""
    return min(RETRY_BASE * (2 ** min(max(failures - 1, 0), 16)), RETRY_CAP)


# E-mails, for the runner ------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimedEmail:
    id: int
    uid: str
    takedown_id: str | None
    verification_id: str | None
    kind: str
    recipient: str
    context: dict[str, Any]
    secret: str | None
    confirmation_code: str | None
    attempts: int
    created_at: datetime


@dataclass(frozen=True)
class RecoveredEmails:
    requeued: int  # leased but not handed over: sent again
    unconfirmed: list[int]  # the runner died while handing over: maybe sent, never again


def recover_expired_emails(*, session: Session, now: datetime) -> RecoveredEmails:
    """Rows whose runner died: back to the queue when nothing was handed to the SMTP server;
    `unconfirmed` when it died during the hand-over (sending again could send twice)."""

    def expired(status: EmailStatus) -> Any:
        return (
            select(CE.c.id)
            .where(CE.c.status == status.value, CE.c.lease_expires_at < now)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )

    requeued = session.execute(
        update(CE)
        .where(CE.c.id.in_(expired(EmailStatus.sending)))
        .values(
            status=EmailStatus.pending.value,
            next_attempt_at=now,
            lease_owner=None,
            lease_expires_at=None,
            last_error="lease expired before the hand-over: nothing was sent",
        )
        .returning(CE.c.id)
    ).all()
    unconfirmed = session.scalars(
        update(CE)
        .where(CE.c.id.in_(expired(EmailStatus.submitting)))
        .values(
            status=EmailStatus.unconfirmed.value,
            secret=None,
            confirmation_code=None,
            finished_at=now,
            lease_expires_at=None,
            last_error="the runner stopped while handing the message over: it may have been "
            "sent, so it is not sent again",
        )
        .returning(CE.c.id)
    ).all()
    return RecoveredEmails(requeued=len(requeued), unconfirmed=list(unconfirmed))


def claim_due_emails(
    *, session: Session, owner: str, now: datetime, limit: int, lease: timedelta
) -> list[ClaimedEmail]:
    """Lease up to `limit` due e-mails, oldest first; a request's e-mails go out in the order
    they were written (none while an earlier one of the same request is unfinished)."""
    earlier = CE.alias("earlier")
    due = (
        select(CE.c.id)
        .where(
            CE.c.status == EmailStatus.pending.value,
            CE.c.next_attempt_at <= now,
            ~exists().where(
                earlier.c.takedown_id == CE.c.takedown_id,
                earlier.c.id < CE.c.id,
                earlier.c.status.in_([s.value for s in UNFINISHED_EMAIL]),
            ),
        )
        .order_by(CE.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=CE)
        .scalar_subquery()
    )
    rows = session.execute(
        update(CE)
        .where(CE.c.id.in_(due))
        .values(status=EmailStatus.sending.value, lease_owner=owner, lease_expires_at=now + lease)
        .returning(*(CE.c[name] for name in ClaimedEmail.__dataclass_fields__))
    ).all()
    return sorted((ClaimedEmail(**row._mapping) for row in rows), key=lambda email: email.id)


def _held_email(email_id: int, owner: str, *statuses: EmailStatus) -> Any:
    return and_(
        CE.c.id == email_id,
        CE.c.lease_owner == owner,
        CE.c.status.in_([s.value for s in statuses]),
    )


def start_email_attempt(
    *, session: Session, email_id: int, owner: str, now: datetime, lease: timedelta
) -> bool:
    """Count the try before it is made and renew the lease; False when `owner` lost the row."""
    started = session.execute(
        update(CE)
        .where(_held_email(email_id, owner, EmailStatus.sending))
        .values(attempts=CE.c.attempts + 1, lease_expires_at=now + lease)
        .returning(CE.c.id)
    ).first()
    return started is not None


def mark_email_submitting(*, session: Session, email_id: int, owner: str) -> bool:
    """The point of no return: the message is about to be handed over. Committed before."""
    marked = session.execute(
        update(CE)
        .where(_held_email(email_id, owner, EmailStatus.sending))
        .values(status=EmailStatus.submitting.value)
        .returning(CE.c.id)
    ).first()
    return marked is not None


def finish_email(
    *,
    session: Session,
    email_id: int,
    owner: str,
    status: EmailStatus,
    now: datetime,
    error: str | None = None,
    retry_at: datetime | None = None,
) -> bool:
    """Record the outcome and end the lease in one conditional UPDATE: `sent`, `failed` or
    `unconfirmed` for good (the status token and confirmation code are erased), or `pending`
    again at `retry_at`."""
    values: dict[str, Any] = {"status": status.value, "lease_expires_at": None}
    if error is not None:
        values["last_error"] = error[:LAST_ERROR_MAX_CHARS]
    if status == EmailStatus.pending:
        assert retry_at is not None
        values.update(lease_owner=None, next_attempt_at=retry_at)
    else:
        values.update(secret=None, confirmation_code=None, finished_at=now)
    finished = session.execute(
        update(CE)
        .where(_held_email(email_id, owner, EmailStatus.sending, EmailStatus.submitting))
        .values(values)
        .returning(CE.c.id)
    ).first()
    return finished is not None


def release_emails(*, session: Session, owner: str, email_ids: Sequence[int]) -> int:
    """Give back e-mails claimed but not tried (a runner stopping)."""
    if not email_ids:
        return 0
    result = session.execute(
        update(CE)
        .where(
            CE.c.id.in_(list(email_ids)),
            CE.c.lease_owner == owner,
            CE.c.status == EmailStatus.sending.value,
        )
        .values(status=EmailStatus.pending.value, lease_owner=None, lease_expires_at=None)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


# Webhook deliveries, for the runner -------------------------------------------------------


@dataclass(frozen=True)
class ClaimedDelivery:
    """A delivery leased to one runner, with what sending it needs."""

    id: int
    endpoint_id: int
    url: str
    secret: str
    event_uid: str
    kind: str
    payload: dict[str, Any]
    event_created_at: datetime
    created_at: datetime


def recover_expired_deliveries(*, session: Session, now: datetime) -> int:
    """Deliveries whose runner died: due again at once. The receiver may have had the
    request already; it recognises the repeat by the event id (at-least-once)."""
    expired = (
        select(D.c.id)
        .where(D.c.status == DeliveryStatus.delivering.value, D.c.lease_expires_at < now)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    result = session.execute(
        update(D)
        .where(D.c.id.in_(expired))
        .values(
            status=DeliveryStatus.pending.value,
            next_attempt_at=now,
            lease_owner=None,
            lease_expires_at=None,
            last_error="lease expired: the runner stopped before recording the answer",
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def claim_due_deliveries(
    *, session: Session, owner: str, now: datetime, limit: int, lease: timedelta
) -> list[ClaimedDelivery]:
    """Lease up to `limit` due deliveries, oldest first, to enabled endpoints out of backoff.
    An article's events reach an endpoint in order: a delivery waits while an earlier one
    for the same endpoint and article is pending or being delivered."""
    earlier = D.alias("earlier")
    due = (
        select(D.c.id)
        .join(EP, EP.c.id == D.c.endpoint_id)
        .where(
            D.c.status == DeliveryStatus.pending.value,
            D.c.next_attempt_at <= now,
            EP.c.disabled_at.is_(None),
            or_(EP.c.retry_at.is_(None), EP.c.retry_at <= now),
            ~exists().where(
                earlier.c.endpoint_id == D.c.endpoint_id,
                earlier.c.article_id == D.c.article_id,
                earlier.c.event_id < D.c.event_id,
                earlier.c.status.in_([s.value for s in UNFINISHED_DELIVERY]),
            ),
        )
        .order_by(D.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=D)
        .scalar_subquery()
    )
    claimed_ids = session.scalars(
        update(D)
        .where(D.c.id.in_(due))
        .values(
            status=DeliveryStatus.delivering.value, lease_owner=owner, lease_expires_at=now + lease
        )
        .returning(D.c.id)
    ).all()
    if not claimed_ids:
        return []
    rows = session.execute(
        select(
            D.c.id,
            D.c.endpoint_id,
            EP.c.url,
            EP.c.secret,
            EV.c.uid.label("event_uid"),
            EV.c.kind,
            EV.c.payload,
            EV.c.created_at.label("event_created_at"),
            D.c.created_at,
        )
        .join(EP, EP.c.id == D.c.endpoint_id)
        .join(EV, EV.c.id == D.c.event_id)
        .where(D.c.id.in_(claimed_ids))
        .order_by(D.c.id)
    ).all()
    return [ClaimedDelivery(**row._mapping) for row in rows]


def _held_delivery(delivery_id: int, owner: str) -> Any:
    return and_(
        D.c.id == delivery_id,
        D.c.lease_owner == owner,
        D.c.status == DeliveryStatus.delivering.value,
    )


def start_delivery_attempt(
    *, session: Session, delivery_id: int, owner: str, now: datetime, lease: timedelta
) -> bool:
    """Count the try before the request is sent and renew the lease; False when lost."""
    started = session.execute(
        update(D)
        .where(_held_delivery(delivery_id, owner))
        .values(attempts=D.c.attempts + 1, last_attempt_at=now, lease_expires_at=now + lease)
        .returning(D.c.id)
    ).first()
    return started is not None


def finish_delivery(
    *, session: Session, delivery_id: int, endpoint_id: int, owner: str, now: datetime, code: int
) -> bool:
    """The receiver answered 2xx: delivered, and the endpoint is healthy again."""
    finished = session.execute(
        update(D)
        .where(_held_delivery(delivery_id, owner))
        .values(
            status=DeliveryStatus.delivered.value,
            last_status_code=code,
            last_error=None,
            finished_at=now,
            lease_expires_at=None,
        )
        .returning(D.c.id)
    ).first()
    if finished is None:
        return False
    session.execute(
        update(EP)
        .where(EP.c.id == endpoint_id)
        .values(
            consecutive_failures=0,
            failing_since=None,
            retry_at=None,
            last_success_at=now,
        )
    )
    return True


@dataclass(frozen=True)
class DeliveryFailure:
    status: str  # pending (retried at next_attempt_at) or failed (window over)
    next_attempt_at: datetime | None
    endpoint_disabled: bool


def record_delivery_failure(
    *,
    session: Session,
    delivery_id: int,
    endpoint_id: int,
    owner: str,
    now: datetime,
    code: int | None,
    error: str,
    window: timedelta,
) -> DeliveryFailure | None:
    """Count a failed try against the delivery (backoff, or `failed` once it is older than
    `window`) and against its endpoint (backoff for all its deliveries; disabled once it has
    failed for `window` without a success). None when `owner` lost the delivery."""
    row = session.execute(
        select(D.c.attempts, D.c.created_at).where(_held_delivery(delivery_id, owner))
    ).first()
    if row is None:
        return None
    given_up = now - row.created_at >= window
    next_attempt_at = None if given_up else now + retry_delay(row.attempts)
    session.execute(
        update(D)
        .where(D.c.id == delivery_id)
        .values(
            status=(DeliveryStatus.failed if given_up else DeliveryStatus.pending).value,
            next_attempt_at=next_attempt_at or now,
            finished_at=now if given_up else None,
            last_status_code=code,
            last_error=error[:LAST_ERROR_MAX_CHARS],
            lease_owner=owner if given_up else None,
            lease_expires_at=None,
        )
    )
    endpoint = session.execute(
        update(EP)
        .where(EP.c.id == endpoint_id)
        .values(
            consecutive_failures=EP.c.consecutive_failures + 1,
            failing_since=func.coalesce(EP.c.failing_since, now),
            last_failure_at=now,
            last_error=error[:LAST_ERROR_MAX_CHARS],
        )
        .returning(EP.c.consecutive_failures, EP.c.failing_since, EP.c.disabled_at)
    ).first()
    disabled = False
    if endpoint is not None:
        values: dict[str, Any] = {"retry_at": now + retry_delay(endpoint.consecutive_failures)}
        disabled = endpoint.disabled_at is None and now - endpoint.failing_since >= window
        if disabled:
            values.update(
                disabled_at=now,
                disabled_reason=f"no delivery succeeded for {window}; last error: {error}"[
                    :LAST_ERROR_MAX_CHARS
                ],
            )
        session.execute(update(EP).where(EP.c.id == endpoint_id).values(values))
    return DeliveryFailure(
        status=(DeliveryStatus.failed if given_up else DeliveryStatus.pending).value,
        next_attempt_at=next_attempt_at,
        endpoint_disabled=disabled,
    )


def release_deliveries(*, session: Session, owner: str, delivery_ids: Sequence[int]) -> int:
    """Give back deliveries claimed but not tried (the runner is stopping, or their endpoint
    just failed and is in backoff): pending again, no attempt counted."""
    if not delivery_ids:
        return 0
    result = session.execute(
        update(D)
        .where(
            D.c.id.in_(list(delivery_ids)),
            D.c.lease_owner == owner,
            D.c.status == DeliveryStatus.delivering.value,
        )
        .values(status=DeliveryStatus.pending.value, lease_owner=None, lease_expires_at=None)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
