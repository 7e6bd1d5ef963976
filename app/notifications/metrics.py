"""Prometheus gauges of the outbox, read from the database before each scrape (so they are
right whichever processes deliver)."""

from collections.abc import Callable

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, func, select

from app.db import new_session
from app.jobs.models import JobStatus
from app.notifications.models import EMAIL_UNCONFIRMED
from app.notifications.outbox import CE, EP, D
from app.observability import database_gauge

# Counted: what is still to do, and what needs an operator's eye. Sent and delivered rows
# pile up and are left out, so the scrape stays on the status indexes.
EMAIL_STATUSES = (
    JobStatus.queued.value,
    JobStatus.running.value,
    JobStatus.failed.value,
    EMAIL_UNCONFIRMED,
)
DELIVERY_STATUSES = (JobStatus.queued.value, JobStatus.running.value, JobStatus.failed.value)


class OutboxGauges:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.emails = database_gauge(
            "byline_claimant_emails",
            "Claimant e-mails by status (failed and unconfirmed ones need an operator).",
            ["status"],
            registry=registry,
        )
        self.deliveries = database_gauge(
            "byline_webhook_deliveries",
            "Webhook deliveries still to do, or given up (failed).",
            ["status"],
            registry=registry,
        )
        self.endpoints = database_gauge(
            "byline_webhook_endpoints",
            "Webhook endpoints by state: active, failing (retrying) or disabled.",
            ["state"],
            registry=registry,
        )

    def refresh(self, *, engine: Engine) -> None:
        with new_session(engine) as session:
            emails = dict(
                session.execute(
                    select(CE.c.status, func.count())
                    .where(CE.c.status.in_(EMAIL_STATUSES))
                    .group_by(CE.c.status)
                ).all()
            )
            deliveries = dict(
                session.execute(
                    select(D.c.status, func.count())
                    .where(D.c.status.in_(DELIVERY_STATUSES))
                    .group_by(D.c.status)
                ).all()
            )
            disabled, failing, total = session.execute(
                select(
                    func.count().filter(EP.c.disabled_at.is_not(None)),
                    func.count().filter(
                        EP.c.disabled_at.is_(None), EP.c.failing_since.is_not(None)
                    ),
                    func.count(),
                ).select_from(EP)
            ).one()
        for email_status in EMAIL_STATUSES:
            self.emails.labels(email_status).set(emails.get(email_status, 0))
        for delivery_status in DELIVERY_STATUSES:
            self.deliveries.labels(delivery_status).set(deliveries.get(delivery_status, 0))
        self.endpoints.labels("disabled").set(disabled)
        self.endpoints.labels("failing").set(failing)
        self.endpoints.labels("active").set(total - disabled - failing)


def install_outbox_metrics(
    *, registry: CollectorRegistry, refreshers: list[Callable[[], None]], engine: Engine
) -> None:
    """Register the outbox's gauges, refreshed before every scrape."""
    gauges = OutboxGauges(registry)
    refreshers.append(lambda: gauges.refresh(engine=engine))
