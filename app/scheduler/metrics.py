"""Prometheus metrics of the removal queue.

Gauges describe the whole queue, read from the database before each scrape, so they are
right whichever processes run the removals (what one process's workers did is counted by
`app.jobs.worker.JobCounters`).
"""

from collections.abc import Callable
from datetime import timedelta

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from app.clock import Clock
from app.db import new_session
from app.jobs.models import JobStatus
from app.observability import database_gauge
from app.scheduler.queue import queue_stats

NEAR_DEADLINE = timedelta(hours=1)


class QueueGauges:
    """The queue as the database has it."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.rows = database_gauge(
            "byline_removal_queue_rows",
            "Removal rows queued, running, or failed (failed rows need an operator).",
            ["status"],
            registry=registry,
        )
        self.due = database_gauge(
            "byline_removal_queue_depth",
            "Removal rows due now and waiting to be claimed.",
            registry=registry,
        )
        self.held = database_gauge(
            "byline_removal_queue_held_rows",
            "Queued removal rows held for an operator's review (no run time yet).",
            registry=registry,
        )
        self.oldest_due_age = database_gauge(
            "byline_removal_oldest_due_age_seconds",
            "How long the oldest due removal row has waited since its run time.",
            registry=registry,
        )
        self.past_deadline = database_gauge(
            "byline_removal_past_deadline_rows",
            "Removal rows not done whose 24-hour deadline has passed.",
            registry=registry,
        )
        self.near_deadline = database_gauge(
            "byline_removal_near_deadline_rows",
            "Removal rows not done whose deadline is less than an hour away.",
            registry=registry,
        )

    def refresh(self, *, engine: Engine, clock: Clock) -> None:
        """Read the gauges from the database."""
        with new_session(engine) as session:
            stats = queue_stats(session=session, now=clock.now(), warn_within=NEAR_DEADLINE)
        for status in (JobStatus.queued, JobStatus.running, JobStatus.failed):
            self.rows.labels(status.value).set(getattr(stats, status.value))
        self.due.set(stats.due)
        self.held.set(stats.held)
        self.oldest_due_age.set(stats.oldest_due_age_seconds)
        self.past_deadline.set(stats.past_deadline)
        self.near_deadline.set(stats.near_deadline)


def install_removal_metrics(
    *,
    registry: CollectorRegistry,
    refreshers: list[Callable[[], None]],
    engine: Engine,
    clock: Clock,
) -> None:
    """Register the queue's gauges, refreshed before every scrape."""
    gauges = QueueGauges(registry)
    refreshers.append(lambda: gauges.refresh(engine=engine, clock=clock))
