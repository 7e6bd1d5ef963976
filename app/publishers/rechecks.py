"""The re-check handler: each verified domain's TXT record is looked up again every day.

Seen: the next check in 24 hours (a record that was missing is audited as back). Not seen,
absent or the lookup failed alike (the record could not be seen): the first miss is audited
and e-mailed; missing for the grace period, the verification lapses and its key is revoked
(audited, e-mailed), and it is not checked again.

DNS is asked outside any transaction (on SQLite a write transaction holds the only write
lock, and a lookup may wait BYLINE_DNS_TIMEOUT_SECONDS); each outcome is recorded in a
transaction of its own that acts only while this worker still holds the row.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, select, update
from sqlmodel import Session

from app.auth import revoke_api_key
from app.config import Settings
from app.jobs.queue import JobQueue, RetryPolicy
from app.jobs.worker import JobHandler, JobRun, describe_error
from app.notifications.models import EmailKind
from app.notifications.outbox import notify_publisher
from app.publishers.dns import TxtAnswer, TxtLookup, txt_lookup
from app.publishers.models import VerificationStatus
from app.publishers.service import (
    PR,
    PV,
    RECHECK_INTERVAL,
    record_details,
    record_name,
    record_seen,
    why_not_seen,
)
from app.takedowns import audit
from app.takedowns.audit import Action

logger = logging.getLogger("byline.publishers")

V = VerificationStatus
RECHECKS = JobQueue(kind="publisher-recheck", table=PR, order_by=(PR.c.run_at, PR.c.id))
# Each re-check may wait the DNS timeout: a batch must not hold the e-mails and webhooks
# that share its worker back for long.
RECHECK_BATCH = 20


@dataclass(frozen=True)
class ClaimedRecheck:
    id: int
    verification_id: str
    domain: str
    email: str
    record_value: str
    record_missing_since: datetime | None
    api_key_id: int | None


class RecheckHandler(JobHandler):
    """Looks each claimed verification's record up and records what it found."""

    queue = RECHECKS
    claimed_type = ClaimedRecheck
    batch_size = RECHECK_BATCH
    # Only the database can fail a re-check (a lookup that fails counts as a miss): retried
    # for as long as it takes.
    policy = RetryPolicy(base=timedelta(minutes=5), cap=timedelta(hours=1))

    def __init__(self, *, settings: Settings, lookup: TxtLookup | None = None) -> None:
        self.settings = settings
        self.lookup = lookup or txt_lookup(settings)

    def claimable(self, now: datetime) -> Sequence[ColumnElement[bool]]:
        return [exists().where(PV.c.id == PR.c.verification_id, PV.c.status == V.verified)]

    def claimed_details(self) -> Select[Any]:
        return select(
            PR.c.id,
            PR.c.verification_id,
            PV.c.domain,
            PV.c.email,
            PV.c.record_value,
            PV.c.record_missing_since,
            PV.c.api_key_id,
        ).join(PV, PV.c.id == PR.c.verification_id)

    def run(self, batch: Sequence[ClaimedRecheck], job: JobRun) -> None:
        for index, recheck in enumerate(batch):
            if job.stop.is_set():
                self.give_back(job, [r.id for r in batch[index:]])
                return
            answer = self.lookup(record_name(recheck.domain))
            now = job.moment()
            try:
                with job.transaction() as session:
                    outcome = self.record(session, recheck, answer, now, job.owner)
            except Exception as exc:
                outcome = self._fail(recheck, exc, now, job)
            job.count(outcome)

    def record(
        self,
        session: Session,
        recheck: ClaimedRecheck,
        answer: TxtAnswer,
        now: datetime,
        owner: str,
    ) -> str:
        """Record one re-check's outcome, if this worker still holds the row."""
        verified = (PV.c.id == recheck.verification_id, PV.c.status == V.verified)
        if record_seen(answer, recheck.record_value):
            if not RECHECKS.reschedule(
                session=session, ids=[recheck.id], owner=owner, run_at=now + RECHECK_INTERVAL
            ):
                return "lost"
            session.execute(
                update(PV)
                .where(*verified)
                .values(record_missing_since=None, last_checked_at=now, last_check_error=None)
            )
            if recheck.record_missing_since is not None:
                audit.record(
                    session=session,
                    action=Action.publisher_record_seen,
                    actor=audit.SCHEDULER,
                    now=now,
                    verification_id=recheck.verification_id,
                    reason=f"missing since {recheck.record_missing_since.isoformat()}",
                )
            return "seen"
        missing_since = recheck.record_missing_since or now
        lapses = now - missing_since >= self.settings.publisher_record_grace
        held = (
            RECHECKS.finish(session=session, ids=[recheck.id], owner=owner, now=now)
            if lapses
            else RECHECKS.reschedule(
                session=session, ids=[recheck.id], owner=owner, run_at=now + RECHECK_INTERVAL
            )
        )
        if not held:
            return "lost"
        why = why_not_seen(answer)
        values: dict[str, Any] = {
            "record_missing_since": missing_since,
            "last_checked_at": now,
            "last_check_error": why,
        }
        if lapses:
            values.update(status=V.lapsed, lapsed_at=now)
        session.execute(update(PV).where(*verified).values(**values))
        details = record_details(recheck.domain, recheck.record_value)
        if recheck.record_missing_since is None:
            self._record_first_miss(session, recheck, details, why, now)
        if lapses:
            self._lapse(session, recheck, details, missing_since, now)
            return "lapsed"
        return "missing"

    def _record_first_miss(
        self,
        session: Session,
        recheck: ClaimedRecheck,
        details: dict[str, Any],
        why: str,
        now: datetime,
    ) -> None:
        audit.record(
            session=session,
            action=Action.publisher_record_missing,
            actor=audit.SCHEDULER,
            now=now,
            verification_id=recheck.verification_id,
            reason=why,
        )
        notify_publisher(
            session=session,
            verification_id=recheck.verification_id,
            recipient=recheck.email,
            kind=EmailKind.publisher_record_missing,
            now=now,
            details={
                **details,
                "missing_since": now.isoformat(),
                "lapses_at": (now + self.settings.publisher_record_grace).isoformat(),
            },
        )

    def _lapse(
        self,
        session: Session,
        recheck: ClaimedRecheck,
        details: dict[str, Any],
        missing_since: datetime,
        now: datetime,
    ) -> None:
        if recheck.api_key_id is not None:
            revoke_api_key(session=session, key_id=recheck.api_key_id, now=now)
        audit.record(
            session=session,
            action=Action.publisher_lapsed,
            actor=audit.SCHEDULER,
            now=now,
            verification_id=recheck.verification_id,
            from_status=V.verified,
            to_status=V.lapsed,
            reason=f"TXT record missing since {missing_since.isoformat()}; "
            f"publisher key {recheck.api_key_id} revoked",
        )
        notify_publisher(
            session=session,
            verification_id=recheck.verification_id,
            recipient=recheck.email,
            kind=EmailKind.publisher_lapsed,
            now=now,
            details={
                **details,
                "missing_since": missing_since.isoformat(),
                "lapsed_at": now.isoformat(),
            },
        )

    def _fail(self, recheck: ClaimedRecheck, exc: Exception, now: datetime, job: JobRun) -> str:
        error = describe_error(exc)
        failure = self.record_failure(job, job_id=recheck.id, error=error, now=now)
        logger.error("publisher re-check failed: %s", error, extra={"job_id": recheck.id})
        return "lost" if failure is None else "retried"
