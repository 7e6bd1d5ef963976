"""What operators do about notifications that ran out of tries: list the e-mails and webhook
deliveries that failed (keyset pages on id, oldest first), and queue one again, due now, with
a fresh set of attempts (the jobs' one retry, `JobQueue.retry_failed`), waking its worker
when the retry commits, audited under the operator's name."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlmodel import Session

from app.errors import Conflict
from app.jobs import wakeups
from app.jobs.models import JobStatus
from app.notifications.deliveries import DELIVERIES
from app.notifications.emails import EMAILS
from app.notifications.models import EMAIL_UNCONFIRMED, EmailKind
from app.notifications.outbox import CE, EMAIL_KIND, EP, EV, WEBHOOK_KIND, D
from app.takedowns import audit
from app.takedowns.audit import Action

# Given up (retried on request), or interrupted mid hand-over (maybe sent: never again).
FAILED_EMAIL_STATUSES = (JobStatus.failed.value, EMAIL_UNCONFIRMED)


@dataclass(frozen=True)
class FailedEmail:
    """An e-mail that was not sent: `failed` (given up), or `unconfirmed` (perhaps sent)."""

    id: int
    kind: str
    status: str
    recipient: str
    takedown_id: str | None
    verification_id: str | None
    attempts: int
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None

    @property
    def retryable(self) -> bool:
        return self.status == JobStatus.failed.value and self.kind != EmailKind.receipt


@dataclass(frozen=True)
class FailedDelivery:
    """A webhook delivery given up, with its event and where it was going."""

    id: int
    endpoint_id: int
    endpoint_url: str
    endpoint_disabled: bool
    event_uid: str
    event_kind: str
    article_id: int | None
    attempts: int
    last_status_code: int | None
    last_error: str | None
    last_attempt_at: datetime | None
    created_at: datetime


def list_failed_emails(*, session: Session, after_id: int | None, limit: int) -> list[FailedEmail]:
    """Failed and unconfirmed e-mails, oldest first, keyset-paged on id."""
    query = select(*(CE.c[name] for name in FailedEmail.__dataclass_fields__)).where(
        CE.c.status.in_(FAILED_EMAIL_STATUSES)
    )
    if after_id is not None:
        query = query.where(CE.c.id > after_id)
    rows = session.execute(query.order_by(CE.c.id).limit(limit))
    return [FailedEmail(**row._mapping) for row in rows]


def retry_failed_email(*, session: Session, email_id: int, actor: str, now: datetime) -> None:
    """Queue a failed e-mail again, due now, audited. A receipt is never sent again: its
    status and confirmation links were erased when it was given up, and without them it
    would tell an unconfirmed claimant that the removal runs at once."""
    kind = session.scalar(select(CE.c.kind).where(CE.c.id == email_id))
    if kind == EmailKind.receipt:
        raise Conflict(
            f"E-mail {email_id} is a receipt: its links were erased when it failed, so it "
            "cannot be sent again."
        )
    email = EMAILS.retry_failed(session=session, job_id=email_id, now=now)
    wakeups.wake(session, EMAIL_KIND)
    audit.record(
        session=session,
        action=Action.email_retried,
        actor=actor,
        now=now,
        takedown_id=email.takedown_id,
        verification_id=email.verification_id,
        reason=f"e-mail {email.id} ({email.kind})",
    )


def list_failed_deliveries(
    *, session: Session, after_id: int | None, limit: int
) -> list[FailedDelivery]:
    """Webhook deliveries given up, oldest first, keyset-paged on id."""
    query = (
        select(
            D.c.id,
            D.c.endpoint_id,
            EP.c.url.label("endpoint_url"),
            EP.c.disabled_at.is_not(None).label("endpoint_disabled"),
            EV.c.uid.label("event_uid"),
            EV.c.kind.label("event_kind"),
            D.c.article_id,
            D.c.attempts,
            D.c.last_status_code,
            D.c.last_error,
            D.c.last_attempt_at,
            D.c.created_at,
        )
        .join(EP, EP.c.id == D.c.endpoint_id)
        .join(EV, EV.c.id == D.c.event_id)
        .where(D.c.status == JobStatus.failed.value)
    )
    if after_id is not None:
        query = query.where(D.c.id > after_id)
    rows = session.execute(query.order_by(D.c.id).limit(limit))
    return [FailedDelivery(**row._mapping) for row in rows]


def retry_failed_delivery(*, session: Session, delivery_id: int, actor: str, now: datetime) -> None:
    """Queue a failed delivery again, due now, audited. The endpoint's backoff is lifted: the
    operator asks for a try now, not after the wait its earlier failures earned. A disabled
    endpoint stays disabled (the delivery waits until it is enabled)."""
    delivery = DELIVERIES.retry_failed(session=session, job_id=delivery_id, now=now)
    session.execute(
        update(EP).where(EP.c.id == delivery.endpoint_id, EP.c.retry_at > now).values(retry_at=None)
    )
    wakeups.wake(session, WEBHOOK_KIND)
    audit.record(
        session=session,
        action=Action.webhook_delivery_retried,
        actor=actor,
        now=now,
        reason=f"delivery {delivery.id} to endpoint {delivery.endpoint_id}",
    )
