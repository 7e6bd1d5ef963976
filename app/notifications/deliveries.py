"""The webhook handler: deliveries from the outbox, each an HTTP POST to one endpoint.

Webhooks are delivered at least once. A worker that dies after the request went out and
before the 2xx was recorded leaves a leased row; when the lease expires it is sent again,
with the same event id, which receivers dedupe on. Losing an `article.removed` would leave a
copy of removed content online; a repeat costs a receiver one lookup.

Two rules of this kind beyond the mechanism: an article's events reach an endpoint in order
(a delivery waits while an earlier one for the same endpoint and article is unfinished), and
an endpoint that fails is in backoff as a whole (none of its deliveries is tried before its
`retry_at`), and disabled once it has failed for the whole retry window.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import ColumnElement, Select, exists, func, or_, select, update
from sqlmodel import Session

from app.config import Settings
from app.jobs.models import OPEN_STATUSES
from app.jobs.queue import LAST_ERROR_MAX_CHARS, JobQueue, RetryPolicy
from app.jobs.worker import JobHandler, JobRun, describe_error
from app.notifications.outbox import EP, EV, WEBHOOK_KIND, D
from app.notifications.webhooks import delivery_headers, event_body, post_event
from app.outbound import AddressRefused, guarded_transport

logger = logging.getLogger("byline.notifications")

DELIVERIES = JobQueue(kind=WEBHOOK_KIND, table=D, order_by=(D.c.id,))


@dataclass(frozen=True)
class ClaimedDelivery:
    """A delivery leased to one worker, with what sending it needs."""

    id: int
    endpoint_id: int
    url: str
    secret: str
    event_uid: str
    kind: str
    payload: dict[str, Any]
    event_created_at: datetime


class WebhookHandler(JobHandler):
    """Delivers claimed events; retried with backoff for the retry window."""

    queue = DELIVERIES
    claimed_type = ClaimedDelivery

    def __init__(self, *, settings: Settings, http: httpx.Client | None = None) -> None:
        self.settings = settings
        self.policy = RetryPolicy(give_up_after=settings.notification_retry_window)
        self._http = http

    @property
    def http(self) -> httpx.Client:
        """The HTTP client of deliveries, made on first use (loading the CA certificates
        takes a while, and many ticks deliver nothing). It connects to public addresses
        only, unless private networks are allowed (app/outbound.py); a client given to the
        handler is used as it is."""
        if self._http is None:
            self._http = httpx.Client(
                transport=guarded_transport(allow_private=self.settings.allow_private_networks),
                timeout=httpx.Timeout(self.settings.webhook_timeout_seconds),
                follow_redirects=False,
                # No proxy from the environment: it would connect in our place, past the guard.
                trust_env=False,
            )
        return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def claimable(self, now: datetime) -> Sequence[ColumnElement[bool]]:
        earlier = D.alias("earlier")
        return [
            exists().where(
                EP.c.id == D.c.endpoint_id,
                EP.c.disabled_at.is_(None),
                or_(EP.c.retry_at.is_(None), EP.c.retry_at <= now),
            ),
            ~exists().where(
                earlier.c.endpoint_id == D.c.endpoint_id,
                earlier.c.article_id == D.c.article_id,
                earlier.c.event_id < D.c.event_id,
                earlier.c.status.in_(OPEN_STATUSES),
            ),
        ]

    def claimed_details(self) -> Select[Any]:
        return (
            select(
                D.c.id,
                D.c.endpoint_id,
                EP.c.url,
                EP.c.secret,
                EV.c.uid.label("event_uid"),
                EV.c.kind,
                EV.c.payload,
                EV.c.created_at.label("event_created_at"),
            )
            .join(EP, EP.c.id == D.c.endpoint_id)
            .join(EV, EV.c.id == D.c.event_id)
        )

    def next_run_at(self, *, session: Session, now: datetime) -> datetime | None:
        endpoint_retry = session.scalar(
            select(func.min(EP.c.retry_at)).where(EP.c.disabled_at.is_(None), EP.c.retry_at > now)
        )
        upcoming = [DELIVERIES.next_run_at(session=session, now=now), endpoint_retry]
        return min((moment for moment in upcoming if moment is not None), default=None)

    def run(self, batch: Sequence[ClaimedDelivery], job: JobRun) -> None:
        # An endpoint that just failed is in backoff: the rest of its batch waits with it
        # instead of each timing out in turn.
        failing: set[int] = set()
        give_back: list[int] = []
        for index, delivery in enumerate(batch):
            if job.stop.is_set():
                give_back.extend(d.id for d in batch[index:])
                break
            if delivery.endpoint_id in failing:
                give_back.append(delivery.id)
                continue
            outcome = self.deliver(delivery, job.moment(), job)
            job.count(outcome)
            if outcome in ("retried", "failed"):
                failing.add(delivery.endpoint_id)
        if give_back:
            self.give_back(job, give_back)

    def deliver(self, delivery: ClaimedDelivery, now: datetime, job: JobRun) -> str:
        """Send one claimed delivery; the outcome's name."""
        if not self.still_held(job, delivery.id, now):
            return "lost"
        body = event_body(
            uid=delivery.event_uid,
            kind=delivery.kind,
            created_at=delivery.event_created_at,
            payload=delivery.payload,
            public_base_url=self.settings.public_base_url,
        )
        headers = delivery_headers(
            secret=delivery.secret,
            timestamp=int(now.timestamp()),
            body=body,
            event_uid=delivery.event_uid,
            kind=delivery.kind,
        )
        code: int | None = None
        try:
            code = post_event(self.http, delivery.url, body, headers)
        except AddressRefused as exc:
            error = str(exc)  # the one fixed message: nothing about what listens there
        except httpx.HTTPError as exc:
            error = describe_error(exc)
        else:
            if 200 <= code < 300:
                return self._delivered(delivery, now, code, job)
            error = f"the endpoint answered HTTP {code}"
        return self._failed(delivery, now, code, error, job)

    def _delivered(self, delivery: ClaimedDelivery, now: datetime, code: int, job: JobRun) -> str:
        with job.transaction() as session:
            delivered = DELIVERIES.finish(
                session=session,
                ids=[delivery.id],
                owner=job.owner,
                now=now,
                values={"last_status_code": code, "last_error": None, "last_attempt_at": now},
            )
            if delivered:
                session.execute(
                    update(EP)
                    .where(EP.c.id == delivery.endpoint_id)
                    .values(
                        consecutive_failures=0,
                        failing_since=None,
                        retry_at=None,
                        last_success_at=now,
                    )
                )
        return "delivered" if delivered else "lost"

    def _failed(
        self, delivery: ClaimedDelivery, now: datetime, code: int | None, error: str, job: JobRun
    ) -> str:
        with job.transaction() as session:
            failure = DELIVERIES.fail(
                session=session,
                job_id=delivery.id,
                owner=job.owner,
                error=error,
                now=now,
                policy=self.policy,
                values={"last_status_code": code, "last_attempt_at": now},
            )
            disabled = failure is not None and self._count_endpoint_failure(
                session, delivery.endpoint_id, now, error
            )
        if failure is None:
            return "lost"
        context = {
            "delivery_id": delivery.id,
            "endpoint_id": delivery.endpoint_id,
            "event_id": delivery.event_uid,
            "event_type": delivery.kind,
            "status_code": code,
            "error": error,
        }
        if disabled:
            job.note("endpoints_disabled")
            logger.error("webhook endpoint disabled: it kept failing", extra=context)
        if failure.run_at is None:
            logger.error("webhook delivery given up after the retry window", extra=context)
            return "failed"
        logger.warning(
            "webhook delivery failed; retrying at %s", failure.run_at.isoformat(), extra=context
        )
        return "retried"

    def _count_endpoint_failure(
        self, session: Session, endpoint_id: int, now: datetime, error: str
    ) -> bool:
        """Put the endpoint in backoff; disable it once it has failed for the whole window
        without a success. True when this failure disabled it."""
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
        if endpoint is None:
            return False
        window = self.settings.notification_retry_window
        values: dict[str, Any] = {
            "retry_at": now + self.policy.delay(endpoint.consecutive_failures)
        }
        disabled = endpoint.disabled_at is None and now - endpoint.failing_since >= window
        if disabled:
            values.update(
                disabled_at=now,
                disabled_reason=f"no delivery succeeded for {window}; last error: {error}"[
                    :LAST_ERROR_MAX_CHARS
                ],
            )
        session.execute(update(EP).where(EP.c.id == endpoint_id).values(values))
        return disabled
