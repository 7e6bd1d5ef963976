"""Workers as the app assembles them (app/background.py), on the test database and clock:
the one factory every test suite uses to run background work."""

from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import Engine

from app import background
from app.clock import Clock
from app.config import Settings
from app.jobs.worker import JobCounters, TickResult, Worker
from app.notifications.email import Mailer
from app.publishers.dns import TxtLookup


def removal_worker(
    engine: Engine,
    settings: Settings,
    clock: Clock,
    *,
    owner: str = "test-removals",
    counters: JobCounters | None = None,
    **handler_options: Any,
) -> Worker:
    """A removal worker with the takedowns' sweeps; `handler_options` go to RemovalHandler
    (e.g. `rows_per_transaction`, `carry_out`)."""
    handler = background.removal_handler(settings)
    for name, value in handler_options.items():
        setattr(handler, name, value)
    return background.worker(
        engine=engine,
        settings=settings,
        clock=clock,
        handlers=[handler],
        name=owner,
        sweeps=background.takedown_sweeps(settings),
        counters=counters,
    )


def outside_world_worker(
    engine: Engine,
    settings: Settings,
    clock: Clock,
    *,
    owner: str = "test-notifier",
    mailer: Mailer | None = None,
    http: httpx.Client | None = None,
    lookup: TxtLookup | None = None,
) -> Worker:
    """The worker of webhooks, e-mails and publishers' DNS re-checks."""
    return background.worker(
        engine=engine,
        settings=settings,
        clock=clock,
        handlers=background.outside_world_handlers(
            settings, mailer=mailer, http=http, lookup=lookup
        ),
        name=owner,
    )


def run_removals(
    engine: Engine, settings: Settings, clock: Clock, now: datetime | None = None
) -> TickResult:
    """One tick of a removal worker."""
    return removal_worker(engine, settings, clock).run_once(now)


def run_outside_world(
    engine: Engine, settings: Settings, clock: Clock, **options: Any
) -> TickResult:
    """One tick of the worker of webhooks, e-mails and DNS re-checks."""
    worker = outside_world_worker(engine, settings, clock, **options)
    try:
        return worker.run_once()
    finally:
        background.close([worker])
