"""The background work of a process, assembled: each kind of job registers its handler with
the one jobs mechanism here, for `byline serve` (embedded) and `byline worker` alike.

Three lanes of workers, so that a slow mail server, webhook receiver or feed host never
holds a removal back: removal workers (any number; they also run the takedowns' sweeps), one
worker for what talks to the outside world on our behalf (webhooks first, since
`article.removed` is what keeps removed content from being served, then e-mails, then the
publishers' DNS re-checks), and one for publishers' feeds (a batch waits on the slowest of
its hosts, up to the fetch timeout).
"""

from collections.abc import Sequence
from datetime import datetime, timedelta

import httpx
from sqlalchemy import Engine
from sqlmodel import Session

from app.clock import Clock
from app.config import Settings
from app.console import sessions as console_sessions
from app.feeds.polls import FeedHandler
from app.jobs.wakeups import listeners_for
from app.jobs.worker import (
    BackgroundWorkers,
    JobCounters,
    JobHandler,
    Sweep,
    Worker,
    worker_identity,
)
from app.notifications.deliveries import WebhookHandler
from app.notifications.email import Mailer
from app.notifications.emails import EmailHandler
from app.publishers.dns import TxtLookup
from app.publishers.rechecks import RecheckHandler
from app.scheduler.removals import RemovalHandler
from app.takedowns import service as takedowns


def removal_handler(settings: Settings, *, pause_after_removal: float = 0.0) -> RemovalHandler:
    """Removals, carried out and completed by the takedowns domain."""
    return RemovalHandler(
        carry_out=takedowns.carry_out_removals,
        complete=takedowns.complete_takedowns,
        start=takedowns.start_takedowns,
        max_attempts=settings.scheduler_max_attempts,
        batch_size=settings.removal_batch_size,
        pause_after_removal=pause_after_removal,
    )


def takedown_sweeps(settings: Settings) -> list[Sweep]:
    """What the clock moves on: requests unconfirmed past their review window go to an
    operator, blocks-only requests complete, overdue requests are recorded as breaches, and
    ended rate-limit windows and console sessions are forgotten."""

    def advance(session: Session, now: datetime) -> int:
        return takedowns.advance_waiting_requests(session=session, settings=settings, now=now)

    def breaches(session: Session, now: datetime) -> int:
        return takedowns.record_sla_breaches(session=session, now=now)

    def forget(session: Session, now: datetime) -> int:
        return takedowns.forget_ended_rate_windows(session=session, settings=settings, now=now)

    def forget_sessions(session: Session, now: datetime) -> int:
        return console_sessions.forget_ended_sessions(session=session, now=now)

    return [
        Sweep("requests_advanced", advance),
        Sweep("breaches_recorded", breaches),
        Sweep("rate_windows_forgotten", forget),
        Sweep("console_sessions_forgotten", forget_sessions),
    ]


def outside_world_handlers(
    settings: Settings,
    *,
    mailer: Mailer | None = None,
    http: httpx.Client | None = None,
    lookup: TxtLookup | None = None,
) -> list[JobHandler]:
    return [
        WebhookHandler(settings=settings, http=http),
        EmailHandler(settings=settings, mailer=mailer),
        RecheckHandler(settings=settings, lookup=lookup),
    ]


def worker(
    *,
    engine: Engine,
    settings: Settings,
    clock: Clock,
    handlers: Sequence[JobHandler],
    name: str,
    sweeps: Sequence[Sweep] = (),
    counters: JobCounters | None = None,
) -> Worker:
    return Worker(
        engine=engine,
        clock=clock,
        handlers=handlers,
        batch_size=settings.scheduler_batch_size,
        lease=timedelta(seconds=settings.scheduler_lease_seconds),
        interval=settings.scheduler_interval_seconds,
        owner=worker_identity(name),
        sweeps=sweeps,
        counters=counters,
    )


def workers(
    *,
    engine: Engine,
    settings: Settings,
    clock: Clock,
    name: str,
    removal_workers: int = 1,
    counters: JobCounters | None = None,
    pause_after_removal: float = 0.0,
) -> list[Worker]:
    """The removal workers, then the worker for the outside world, then the feeds'."""
    removals = removal_handler(settings, pause_after_removal=pause_after_removal)
    sweeps = takedown_sweeps(settings)
    return [
        *(
            worker(
                engine=engine,
                settings=settings,
                clock=clock,
                handlers=[removals],
                name=f"{name}-{index}",
                sweeps=sweeps,
                counters=counters,
            )
            for index in range(removal_workers)
        ),
        worker(
            engine=engine,
            settings=settings,
            clock=clock,
            handlers=outside_world_handlers(settings),
            name=f"{name}-notifications",
            counters=counters,
        ),
        worker(
            engine=engine,
            settings=settings,
            clock=clock,
            handlers=[FeedHandler(settings=settings)],
            name=f"{name}-feeds",
            counters=counters,
        ),
    ]


def background_workers(workers: Sequence[Worker], engine: Engine) -> BackgroundWorkers:
    """The workers on threads, with the listener that wakes them on PostgreSQL."""
    kinds = {kind for worker in workers for kind in worker.kinds}
    return BackgroundWorkers(workers, listeners=listeners_for(engine, kinds))


def close(workers: Sequence[Worker]) -> None:
    """Release what the handlers hold (the webhooks' HTTP client)."""
    for each in workers:
        for handler in each.handlers:
            handler.close()
