"""The runner that drains the outbox: webhook deliveries over HTTP, claimant e-mails over SMTP.
It runs beside the removal runner, on the same hosts (the API's lifespan, `byline worker`)
and at the same interval, so `article.removed` goes out within one interval of the removal.

Every try is recorded before it is made, under a lease; its outcome is recorded with an
UPDATE that holds only while the runner still has the lease. What a crash leaves behind:

- Webhooks are delivered at least once. A runner that dies after the request went out and
  before the 2xx was recorded leaves a leased row; when the lease expires it is sent again,
  with the same event id, which receivers dedupe on. Losing an `article.removed` would leave
  a copy of removed content online; a repeat costs a receiver one lookup.
- E-mails are never sent twice. A person cannot dedupe, and the status link of the receipt
  was also shown in the answer to the filing. The SMTP hand-over has a precise point of no
  return: the row is marked `submitting` (committed) once the server has accepted the sender
  and the recipient, just before the message itself goes. A runner that dies before that
  mark has sent nothing, and the e-mail is sent again; one that dies after it may have sent
  it, and the row ends `unconfirmed` (logged as an error, never resent). The window is the
  few milliseconds of the DATA exchange; a server's error answer within it still means "not
  taken", and is retried.
"""

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import Engine

from app.clock import Clock
from app.config import Settings
from app.db import new_session, writer
from app.notifications.email import (
    FileMailer,
    HandOverAborted,
    Mailer,
    OutgoingEmail,
    SmtpMailer,
    SmtpRefused,
    render_email,
)
from app.notifications.models import DeliveryStatus, EmailStatus
from app.notifications.queue import (
    ClaimedDelivery,
    ClaimedEmail,
    claim_due_deliveries,
    claim_due_emails,
    finish_delivery,
    finish_email,
    mark_email_submitting,
    record_delivery_failure,
    recover_expired_deliveries,
    recover_expired_emails,
    release_deliveries,
    release_emails,
    retry_delay,
    start_delivery_attempt,
    start_email_attempt,
)
from app.notifications.webhooks import delivery_headers, event_body, post_event
from app.scheduler.runner import describe_error, runner_identity

logger = logging.getLogger("byline.notifications")


@dataclass
class NotificationTick:
    """What one tick did."""

    delivered: int = 0  # webhook deliveries answered 2xx
    delivery_retries: int = 0  # failed, to be tried again after backoff
    deliveries_failed: int = 0  # failed for the whole retry window: given up
    deliveries_requeued: int = 0  # their runner died: due again
    endpoints_disabled: int = 0
    emails_sent: int = 0
    email_retries: int = 0
    emails_failed: int = 0
    emails_requeued: int = 0  # their runner died before the hand-over: due again
    emails_unconfirmed: int = 0  # their runner died during the hand-over: never resent
    records_checked: int = 0  # publishers' TXT records re-checked (publisher_checks)
    released: int = 0  # claimed but given back (stopping, or the endpoint just failed)
    lost: int = 0  # the lease went to another runner first
    claimed: int = 0

    def summary(self) -> dict[str, int]:
        return {name: value for name, value in vars(self).items() if value}


def mailer_from(settings: Settings) -> Mailer:
    """The SMTP transport of BYLINE_SMTP_URL; unset, .eml files under BYLINE_MAIL_DIR."""
    url = settings.smtp
    if url is None:
        return FileMailer(settings.mail_dir)
    return SmtpMailer(url, sender=settings.email_sender, timeout=settings.smtp_timeout_seconds)


def redact(error: str, recipient: str) -> str:
    """An error fit for logs and the outbox: never the claimant's address."""
    return re.sub(re.escape(recipient), "<recipient>", error, flags=re.IGNORECASE)


class NotificationRunner:
    """Delivers due webhook events and claimant e-mails. `run_once` is one tick: it claims
    batches until nothing is due; `run_forever` ticks every `scheduler_interval_seconds`.

    `publisher_checks(now)` (the daily re-check of publishers' DNS records, which returns
    the records it checked) runs at the end of each tick: this runner is the one that talks
    to the outside world, and DNS joins SMTP and webhooks here rather than in a loop of its
    own."""

    def __init__(
        self,
        *,
        engine: Engine,
        settings: Settings,
        clock: Clock,
        owner: str | None = None,
        mailer: Mailer | None = None,
        http: httpx.Client | None = None,
        publisher_checks: Callable[[datetime], int] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.owner = owner or runner_identity("notifications")
        self.mailer = mailer or mailer_from(settings)
        self._http = http
        self.publisher_checks = publisher_checks

    @property
    def http(self) -> httpx.Client:
        """The HTTP client of webhook deliveries, made on first use (loading the CA
        certificates takes a while, and many ticks deliver nothing)."""
        if self._http is None:
            self._http = httpx.Client(
                timeout=httpx.Timeout(self.settings.webhook_timeout_seconds),
                follow_redirects=False,
            )
        return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.scheduler_lease_seconds)

    @property
    def window(self) -> timedelta:
        return self.settings.notification_retry_window

    def run_once(
        self, now: datetime | None = None, stop: threading.Event | None = None
    ) -> NotificationTick:
        """One tick at `now` (default: the clock, read afresh at each step)."""
        moment: Callable[[], datetime] = (lambda: now) if now is not None else self.clock.now
        stop = stop or threading.Event()
        result = NotificationTick()
        with new_session(writer(self.engine)) as session, session.begin():
            result.deliveries_requeued = recover_expired_deliveries(session=session, now=moment())
            recovered = recover_expired_emails(session=session, now=moment())
        result.emails_requeued = recovered.requeued
        result.emails_unconfirmed = len(recovered.unconfirmed)
        for email_id in recovered.unconfirmed:
            logger.error(
                "e-mail hand-over interrupted: it may have been sent, so it is not sent again",
                extra={"email_id": email_id},
            )
        # Webhooks first: `article.removed` is what keeps removed content from being served.
        self._deliver_webhooks(moment, stop, result)
        self._send_emails(moment, stop, result)
        if self.publisher_checks is not None and not stop.is_set():
            # Last: a slow DNS server holds back nothing already due. What it queues (a
            # record missing, a key lapsed) goes out with the next tick.
            result.records_checked = self.publisher_checks(moment())
        return result

    def run_forever(self, stop: threading.Event) -> None:
        """Tick until `stop` is set; a tick that fails (database down) is logged and retried."""
        logger.info("notification runner started", extra={"owner": self.owner})
        interval = self.settings.scheduler_interval_seconds
        while not stop.is_set():
            try:
                result = self.run_once(stop=stop)
            except Exception as exc:
                logger.error("notification tick failed: %s", describe_error(exc))
                stop.wait(interval)
                continue
            if result.claimed or result.deliveries_requeued or result.records_checked:
                logger.info("notification tick", extra=result.summary())
            # A tick claims until nothing is due, so the next one waits a whole interval.
            stop.wait(interval)
        self.close()
        logger.info("notification runner stopped", extra={"owner": self.owner})

    # Webhooks ------------------------------------------------------------------------------

    def _deliver_webhooks(
        self, moment: Callable[[], datetime], stop: threading.Event, result: NotificationTick
    ) -> None:
        batch_size = self.settings.scheduler_batch_size
        while not stop.is_set():
            with new_session(writer(self.engine)) as session, session.begin():
                batch = claim_due_deliveries(
                    session=session,
                    owner=self.owner,
                    now=moment(),
                    limit=batch_size,
                    lease=self.lease,
                )
            if not batch:
                return
            result.claimed += len(batch)
            # Claimed again until nothing is due: a delivery done may let the next event of
            # its article go (ordering), in this same tick.
            self._deliver_batch(batch, moment, stop, result)

    def _deliver_batch(
        self,
        batch: list[ClaimedDelivery],
        moment: Callable[[], datetime],
        stop: threading.Event,
        result: NotificationTick,
    ) -> None:
        # An endpoint that just failed is in backoff: the rest of its batch waits with it
        # instead of each timing out in turn.
        failing: set[int] = set()
        give_back: list[int] = []
        for index, delivery in enumerate(batch):
            if stop.is_set():
                give_back.extend(d.id for d in batch[index:])
                break
            if delivery.endpoint_id in failing:
                give_back.append(delivery.id)
                continue
            if not self.deliver(delivery, moment(), result):
                failing.add(delivery.endpoint_id)
        if give_back:
            with new_session(writer(self.engine)) as session, session.begin():
                result.released += release_deliveries(
                    session=session, owner=self.owner, delivery_ids=give_back
                )

    def deliver(self, delivery: ClaimedDelivery, now: datetime, result: NotificationTick) -> bool:
        """Send one claimed delivery; False when it failed (the endpoint is in backoff)."""
        with new_session(writer(self.engine)) as session, session.begin():
            started = start_delivery_attempt(
                session=session,
                delivery_id=delivery.id,
                owner=self.owner,
                now=now,
                lease=self.lease,
            )
        if not started:
            result.lost += 1
            return True
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
        except httpx.HTTPError as exc:
            error = describe_error(exc)
        else:
            if 200 <= code < 300:
                with new_session(writer(self.engine)) as session, session.begin():
                    delivered = finish_delivery(
                        session=session,
                        delivery_id=delivery.id,
                        endpoint_id=delivery.endpoint_id,
                        owner=self.owner,
                        now=now,
                        code=code,
                    )
                if delivered:
                    result.delivered += 1
                else:
                    result.lost += 1
                return True
            error = f"the endpoint answered HTTP {code}"
        self._record_failure(delivery, now, code, error, result)
        return False

    def _record_failure(
        self,
        delivery: ClaimedDelivery,
        now: datetime,
        code: int | None,
        error: str,
        result: NotificationTick,
    ) -> None:
        with new_session(writer(self.engine)) as session, session.begin():
            failure = record_delivery_failure(
                session=session,
                delivery_id=delivery.id,
                endpoint_id=delivery.endpoint_id,
                owner=self.owner,
                now=now,
                code=code,
                error=error,
                window=self.window,
            )
        if failure is None:
            result.lost += 1
            return
        context = {
            "delivery_id": delivery.id,
            "endpoint_id": delivery.endpoint_id,
            "event_id": delivery.event_uid,
            "event_type": delivery.kind,
            "status_code": code,
            "error": error,
        }
        if failure.status == DeliveryStatus.failed:
            result.deliveries_failed += 1
            logger.error("webhook delivery given up after the retry window", extra=context)
        else:
            result.delivery_retries += 1
            assert failure.next_attempt_at is not None
            logger.warning(
                "webhook delivery failed; retrying at %s",
                failure.next_attempt_at.isoformat(),
                extra=context,
            )
        if failure.endpoint_disabled:
            result.endpoints_disabled += 1
            logger.error("webhook endpoint disabled: it kept failing", extra=context)

    # E-mails -------------------------------------------------------------------------------

    def _send_emails(
        self, moment: Callable[[], datetime], stop: threading.Event, result: NotificationTick
    ) -> None:
        batch_size = self.settings.scheduler_batch_size
        while not stop.is_set():
            with new_session(writer(self.engine)) as session, session.begin():
                batch = claim_due_emails(
                    session=session,
                    owner=self.owner,
                    now=moment(),
                    limit=batch_size,
                    lease=self.lease,
                )
            if not batch:
                return
            result.claimed += len(batch)
            for index, email in enumerate(batch):
                if stop.is_set():
                    with new_session(writer(self.engine)) as session, session.begin():
                        result.released += release_emails(
                            session=session,
                            owner=self.owner,
                            email_ids=[e.id for e in batch[index:]],
                        )
                    return
                self.send_email(email, moment(), result)

    def send_email(self, email: ClaimedEmail, now: datetime, result: NotificationTick) -> None:
        """Send one claimed e-mail and record the outcome (see the module's docstring)."""
        with new_session(writer(self.engine)) as session, session.begin():
            started = start_email_attempt(
                session=session, email_id=email.id, owner=self.owner, now=now, lease=self.lease
            )
        if not started:
            result.lost += 1
            return
        handed_over = False

        def before_data() -> bool:
            nonlocal handed_over
            with new_session(writer(self.engine)) as session, session.begin():
                handed_over = mark_email_submitting(
                    session=session, email_id=email.id, owner=self.owner
                )
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
            result.lost += 1
            return
        except SmtpRefused as exc:
            outcome = EmailStatus.failed if exc.permanent else self._retry_or_fail(email, now)
            self._finish_email(email, now, outcome, redact(str(exc), email.recipient), result)
            return
        except Exception as exc:
            error = redact(describe_error(exc), email.recipient)
            # Failed during DATA: the server may have taken the message. Never twice.
            outcome = EmailStatus.unconfirmed if handed_over else self._retry_or_fail(email, now)
            self._finish_email(email, now, outcome, error, result)
            return
        self._finish_email(email, now, EmailStatus.sent, None, result)

    def _retry_or_fail(self, email: ClaimedEmail, now: datetime) -> EmailStatus:
        return EmailStatus.failed if now - email.created_at >= self.window else EmailStatus.pending

    def _finish_email(
        self,
        email: ClaimedEmail,
        now: datetime,
        outcome: EmailStatus,
        error: str | None,
        result: NotificationTick,
    ) -> None:
        retry_at = now + retry_delay(email.attempts + 1)
        with new_session(writer(self.engine)) as session, session.begin():
            finished = finish_email(
                session=session,
                email_id=email.id,
                owner=self.owner,
                status=outcome,
                now=now,
                error=error,
                retry_at=retry_at,
            )
        if not finished:
            result.lost += 1
            return
        context = {
            "email_id": email.id,
            "takedown_id": email.takedown_id,
            "verification_id": email.verification_id,
            "kind": email.kind,
        }
        if outcome == EmailStatus.sent:
            result.emails_sent += 1
            logger.info("e-mail sent to the claimant", extra=context)
        elif outcome == EmailStatus.pending:
            result.email_retries += 1
            logger.warning(
                "e-mail not sent; retrying at %s: %s", retry_at.isoformat(), error, extra=context
            )
        elif outcome == EmailStatus.unconfirmed:
            result.emails_unconfirmed += 1
            logger.error("e-mail hand-over failed midway; not sent again: %s", error, extra=context)
        else:
            result.emails_failed += 1
            logger.error("e-mail failed for good: %s", error, extra=context)
