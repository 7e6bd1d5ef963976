"""The e-mail handler: claimant and publisher e-mails from the outbox, over SMTP (or to
.eml files when BYLINE_SMTP_URL is unset).

E-mails are never sent twice. A person cannot dedupe, and the status link of the receipt was
also shown in the answer to the filing. The SMTP hand-over has a precise point of no return:
`handed_over_at` is set (committed) once the server has accepted the sender and the
recipient, just before the message itself goes. A worker that dies before that mark has sent
nothing, and the e-mail is sent again; one that dies after it may have sent it, and the row
ends `unconfirmed` (logged as an error, never resent). The window is the few milliseconds of
the DATA exchange; a server's error answer within it still means "not taken", and is retried.
"""

import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, exists, update
from sqlmodel import Session

from app.config import Settings
from app.jobs.models import OPEN_STATUSES, JobStatus
from app.jobs.queue import JobQueue, RetryPolicy
from app.jobs.worker import JobHandler, JobRun, describe_error
from app.notifications.email import (
    FileMailer,
    HandOverAborted,
    Mailer,
    OutgoingEmail,
    SmtpMailer,
    SmtpRefused,
    render_email,
)
from app.notifications.models import EMAIL_UNCONFIRMED
from app.notifications.outbox import CE, EMAIL_KIND

logger = logging.getLogger("byline.notifications")

EMAILS = JobQueue(kind=EMAIL_KIND, table=CE, order_by=(CE.c.id,))
# What an e-mail keeps only until it is sent or given up.
ERASED_WHEN_FINISHED: dict[str, Any] = {"secret": None, "confirmation_code": None}


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


def mailer_from(settings: Settings) -> Mailer:
    """The SMTP transport of BYLINE_SMTP_URL; unset, .eml files under BYLINE_MAIL_DIR."""
    url = settings.smtp
    if url is None:
        return FileMailer(settings.mail_dir)
    return SmtpMailer(url, sender=settings.email_sender, timeout=settings.smtp_timeout_seconds)


def redact(error: str, recipient: str) -> str:
    """An error fit for logs and the outbox: never the claimant's address."""
    return re.sub(re.escape(recipient), "<recipient>", error, flags=re.IGNORECASE)


class EmailHandler(JobHandler):
    """Sends claimed e-mails one by one; retried with backoff for the retry window."""

    queue = EMAILS
    claimed_type = ClaimedEmail
    given_up_values = ERASED_WHEN_FINISHED
    claim_columns = tuple(CE.c[name] for name in ClaimedEmail.__dataclass_fields__ if name != "id")

    def __init__(self, *, settings: Settings, mailer: Mailer | None = None) -> None:
        self.settings = settings
        self.mailer = mailer or mailer_from(settings)
        self.policy = RetryPolicy(give_up_after=settings.notification_retry_window)

    def claimable(self, now: datetime) -> Sequence[ColumnElement[bool]]:
        # A request's e-mails go out in the order they were written: none while an earlier
        # one of the same request is unfinished.
        earlier = CE.alias("earlier")
        return [
            ~exists().where(
                earlier.c.takedown_id == CE.c.takedown_id,
                earlier.c.id < CE.c.id,
                earlier.c.status.in_(OPEN_STATUSES),
            )
        ]

    def recover(self, *, session: Session, now: datetime) -> Counter[str]:
        # Died during the hand-over: maybe sent, so never again.
        unconfirmed = session.scalars(
            update(CE)
            .where(
                CE.c.status == JobStatus.running.value,
                CE.c.lease_expires_at < now,
                CE.c.handed_over_at.is_not(None),
            )
            .values(
                status=EMAIL_UNCONFIRMED,
                finished_at=now,
                lease_expires_at=None,
                last_error="the worker stopped while handing the message over: it may have "
                "been sent, so it is not sent again",
                **ERASED_WHEN_FINISHED,
            )
            .returning(CE.c.id)
        ).all()
        for email_id in unconfirmed:
            logger.error(
                "e-mail hand-over interrupted: it may have been sent, so it is not sent again",
                extra={"email_id": email_id},
            )
        # Died before it: nothing was sent, and it is sent again.
        recovered = super().recover(session=session, now=now)
        recovered["unconfirmed"] += len(unconfirmed)
        return recovered

    def run(self, batch: Sequence[ClaimedEmail], job: JobRun) -> None:
        for index, email in enumerate(batch):
            if job.stop.is_set():
                self.give_back(job, [e.id for e in batch[index:]])
                return
            job.count(self.send(email, job.moment(), job))

    def send(self, email: ClaimedEmail, now: datetime, job: JobRun) -> str:
        """Send one claimed e-mail and record the outcome (see the module's docstring)."""
        if not self.still_held(job, email.id, now):
            return "lost"
        handed_over = False

        def before_data() -> bool:
            nonlocal handed_over
            handed_over = self.hold(job, email.id, now, values={"handed_over_at": now})
            return handed_over

        try:
            message = render_email(
                email=OutgoingEmail(
                    uid=email.uid,
                    kind=email.kind,
                    recipient=email.recipient,
                    context=email.context,
                    secret=email.secret,
                    confirmation_code=email.confirmation_code,
                ),
                settings=self.settings,
                now=now,
            )
            self.mailer.send(message, recipient=email.recipient, before_data=before_data)
        except HandOverAborted:
            return "lost"
        except SmtpRefused as exc:
            error = redact(str(exc), email.recipient)
            if exc.permanent:
                return self._finish(email, now, JobStatus.failed.value, error, job)
            return self._retry(email, now, error, job)
        except Exception as exc:
            error = redact(describe_error(exc), email.recipient)
            if handed_over:
                # Failed during DATA: the server may have taken the message. Never twice.
                return self._finish(email, now, EMAIL_UNCONFIRMED, error, job)
            return self._retry(email, now, error, job)
        return self._finish(email, now, JobStatus.done.value, None, job)

    def _finish(
        self, email: ClaimedEmail, now: datetime, status: str, error: str | None, job: JobRun
    ) -> str:
        finished = self.finish_one(
            job, email.id, now, status=status, note=error, values=ERASED_WHEN_FINISHED
        )
        if not finished:
            return "lost"
        context = self._context(email)
        if status == JobStatus.done.value:
            logger.info("e-mail sent", extra=context)
            return "sent"
        if status == EMAIL_UNCONFIRMED:
            logger.error("e-mail hand-over failed midway; not sent again: %s", error, extra=context)
            return "unconfirmed"
        logger.error("e-mail failed for good: %s", error, extra=context)
        return "failed"

    def _retry(self, email: ClaimedEmail, now: datetime, error: str, job: JobRun) -> str:
        failure = self.record_failure(job, job_id=email.id, error=error, now=now)
        if failure is None:
            return "lost"
        context = self._context(email)
        if failure.run_at is None:
            logger.error("e-mail failed for good: %s", error, extra=context)
            return "failed"
        logger.warning(
            "e-mail not sent; retrying at %s: %s", failure.run_at.isoformat(), error, extra=context
        )
        return "retried"

    def _context(self, email: ClaimedEmail) -> dict[str, Any]:
        return {
            "email_id": email.id,
            "takedown_id": email.takedown_id,
            "verification_id": email.verification_id,
            "kind": email.kind,
        }
