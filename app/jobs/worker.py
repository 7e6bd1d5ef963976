"""The worker loop, one for every kind of job: embedded in `byline serve` or run by
`byline worker`, with any number of workers per queue.

A tick recovers rows whose lease expired, runs the sweeps (rules the clock moves on), then,
kind by kind, claims due rows in batches and hands each batch to its kind's handler, again
at once while batches come back full. Between ticks the worker waits for whichever comes
first: a wake-up of one of its kinds (work made due now), the next run time it knows of,
the interval, or a stop.
"""

import logging
import math
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PrometheusCounter
from sqlalchemy import ColumnElement, Engine, Row, Select
from sqlalchemy.exc import DBAPIError, StatementError
from sqlmodel import Session

from app.clock import Clock
from app.db import new_session, writer
from app.errors import ProblemError
from app.jobs.models import JobStatus
from app.jobs.queue import LAST_ERROR_MAX_CHARS, Failure, JobQueue, RetryPolicy
from app.jobs.wakeups import SIGNALS, NotificationListener, StopSignal, WakeSignals, WakeUp

logger = logging.getLogger("byline.jobs")

# The shortest wait between ticks when a run time is about to come: no busy loop on a row
# that is due but not claimable yet (ordering, an endpoint's backoff).
MIN_WAIT_SECONDS = 0.05


@dataclass
class TickResult:
    """What one tick did, by kind."""

    claimed: Counter[str] = field(default_factory=Counter)
    recovered: Counter[str] = field(default_factory=Counter)  # expired leases taken back
    swept: Counter[str] = field(default_factory=Counter)  # what each sweep moved
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)  # of rows run
    # What else a kind counts: rows claimed and given back unrun ("released"), takedowns
    # completed, endpoints disabled...
    events: Counter[tuple[str, str]] = field(default_factory=Counter)

    def count(self, kind: str, outcome: str, n: int = 1) -> None:
        if n:
            self.outcomes[(kind, outcome)] += n

    def note(self, kind: str, event: str, n: int = 1) -> None:
        if n:
            self.events[(kind, event)] += n

    def of(self, kind: str) -> Counter[str]:
        """Everything one kind counted: {"removed": 3, "retried": 1, "released": 2, ...}."""
        return Counter(
            {name: n for (k, name), n in (self.outcomes + self.events).items() if k == kind}
        )

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for name, counter in (("claimed", self.claimed), ("recovered", self.recovered)):
            counts.update({f"{kind}_{name}": n for kind, n in counter.items() if n})
        counts.update({f"swept_{name}": n for name, n in self.swept.items() if n})
        counts.update(
            {f"{kind}_{name}": n for (kind, name), n in (self.outcomes + self.events).items()}
        )
        return counts


@contextmanager
def background_transaction(engine: Engine) -> Iterator[Session]:
    """A write transaction of background work: committed at the end of the block, rolled
    back on error. On SQLite it waits in background work's own line for the write lock,
    served in turn with the API's writers (`WriterQueue`)."""
    with new_session(writer(engine, background=True)) as session, session.begin():
        yield session


@dataclass
class JobRun:
    """What a handler running a claimed batch needs from its worker."""

    kind: str
    engine: Engine
    owner: str
    lease: timedelta
    stop: threading.Event
    moment: Callable[[], datetime]
    result: TickResult
    claimed_at: datetime | None = None  # when the batch in hand was claimed

    def transaction(self) -> AbstractContextManager[Session]:
        return background_transaction(self.engine)

    def count(self, outcome: str, n: int = 1) -> None:
        """A row ran and came to `outcome`."""
        self.result.count(self.kind, outcome, n)

    def note(self, event: str, n: int = 1) -> None:
        """Something else happened that is worth counting (not a row's outcome)."""
        self.result.note(self.kind, event, n)


class JobHandler:
    """One kind of job: its queue, its retry policy and how a claimed batch runs. A kind
    overrides `run`, and says what differs in its claims: which due rows it may take now
    (`claimable`), what a claimed row carries (`claimed_type`, made from `claim_columns` of
    its own table or from the row joined by `claimed_details`), and its recovery."""

    queue: JobQueue
    policy: RetryPolicy
    claimed_type: Callable[..., Any] | None = None  # None: the rows as claimed
    claim_columns: Sequence[ColumnElement[Any]] = ()
    recover_log_columns: Sequence[ColumnElement[Any]] = ()  # named when a lease expires
    given_up_values: ClassVar[dict[str, Any]] = {}  # written too when a row fails for good
    batch_size: int | None = None  # rows per claim; None: the worker's

    @property
    def kind(self) -> str:
        return self.queue.kind

    def claimable(self, now: datetime) -> Sequence[ColumnElement[bool]]:
        """Conditions a due row must also meet to be claimed now (none by default)."""
        return ()

    def claim_sort(self, row: Row[Any]) -> Any:
        return row.id

    def claimed_details(self) -> Select[Any] | None:
        """A query of what a claimed row carries beyond its own table (joins); None."""
        return None

    def has_due(self, *, session: Session, now: datetime) -> bool:
        """Whether a row could be claimed now (a read, before the claim's write)."""
        return self.queue.has_due(session=session, now=now, where=self.claimable(now))

    def claim(
        self, *, session: Session, owner: str, now: datetime, limit: int, lease: timedelta
    ) -> Sequence[Any]:
        rows = self.queue.claim(
            session=session,
            owner=owner,
            now=now,
            limit=limit,
            lease=lease,
            where=self.claimable(now),
            returning=self.claim_columns,
            sort=self.claim_sort,
        )
        details = self.claimed_details()
        if details is not None and rows:
            ids = self.queue.c.id
            rows = list(
                session.execute(details.where(ids.in_([row.id for row in rows])).order_by(ids))
            )
        if self.claimed_type is None:
            return rows
        return [self.claimed_type(**row._mapping) for row in rows]

    def hold(
        self, job: "JobRun", job_id: int, now: datetime, values: dict[str, Any] | None = None
    ) -> bool:
        """Renew the lease on one row before acting on it, in a transaction of its own (with
        `values` too); False when the worker no longer holds it."""
        with job.transaction() as session:
            return bool(
                self.queue.renew(
                    session=session,
                    ids=[job_id],
                    owner=job.owner,
                    now=now,
                    lease=job.lease,
                    values=values,
                )
            )

    def still_held(self, job: "JobRun", job_id: int, now: datetime) -> bool:
        """Before acting on one row of a batch: its lease is fresh (less than half of it gone
        since the claim), or renewed now; False when the worker no longer holds it."""
        fresh = job.claimed_at is not None and now < job.claimed_at + job.lease / 2
        return fresh or self.hold(job, job_id, now)

    def finish_one(self, job: "JobRun", job_id: int, now: datetime, **options: Any) -> bool:
        """End one row in a transaction of its own (`options` go to `JobQueue.finish`);
        False when the worker no longer holds it."""
        with job.transaction() as session:
            return bool(
                self.queue.finish(
                    session=session, ids=[job_id], owner=job.owner, now=now, **options
                )
            )

    def give_back(self, job: "JobRun", ids: Sequence[int]) -> None:
        """Release rows claimed but not run (the worker is stopping, or cannot run them now)."""
        with job.transaction() as session:
            job.note("released", self.queue.release(session=session, ids=ids, owner=job.owner))

    def record_failure(
        self, job: "JobRun", *, job_id: int, error: str, now: datetime, **options: Any
    ) -> Failure | None:
        """A failed try, in a transaction of its own: backoff or failed for good, by the
        kind's policy (`options` go to `JobQueue.fail`)."""
        with job.transaction() as session:
            return self.queue.fail(
                session=session,
                job_id=job_id,
                owner=job.owner,
                error=error,
                now=now,
                policy=self.policy,
                on_give_up=self.given_up_values,
                **options,
            )

    def recover(self, *, session: Session, now: datetime) -> Counter[str]:
        """Take back rows whose worker died: how many went which way ("requeued", or an
        outcome such as "failed")."""
        rows = self.queue.recover_expired(
            session=session,
            now=now,
            policy=self.policy,
            returning=self.recover_log_columns,
            on_give_up=self.given_up_values,
        )
        for row in rows:
            failed = row.status == JobStatus.failed.value
            (logger.error if failed else logger.warning)(
                "%s lease expired; %s",
                self.kind,
                "attempts exhausted, marked failed" if failed else "requeued",
                extra={"job_id": row.id, **row._mapping},
            )
        return Counter("failed" if row.status == JobStatus.failed.value else "requeued"
                       for row in rows)  # fmt: skip

    def run(self, batch: Sequence[Any], job: JobRun) -> None:
        """Carry out a claimed batch, recording each row's outcome; never raises for a row."""
        raise NotImplementedError

    def next_run_at(self, *, session: Session, now: datetime) -> datetime | None:
        """When this kind next has work that is not due yet (None: nothing known)."""
        return self.queue.next_run_at(session=session, now=now)

    def after_tick(self, *, engine: Engine, now: datetime) -> None:
        """Called once a tick has drained this kind (logs, housekeeping)."""

    def close(self) -> None:
        """Release what the handler holds (clients, connections)."""


@dataclass(frozen=True)
class Sweep:
    """A rule the clock moves on, run in its own transaction with the worker's housekeeping
    (at most once an interval); returns how many things it moved."""

    name: str
    run: Callable[[Session, datetime], int]


class JobCounters:
    """What this process's workers did (Prometheus)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.executions = PrometheusCounter(
            "byline_job_executions_total",
            "Job rows run by this process's workers, by kind and outcome.",
            ["kind", "outcome"],
            registry=registry,
        )
        self.failures = PrometheusCounter(
            "byline_job_failures_total",
            "Tries that failed in this process's workers (retried or failed for good).",
            ["kind"],
            registry=registry,
        )

    def count(self, result: TickResult) -> None:
        for (kind, outcome), n in result.outcomes.items():
            self.executions.labels(kind, outcome).inc(n)
            if outcome in ("retried", "failed"):
                self.failures.labels(kind).inc(n)


def worker_identity(name: str = "") -> str:
    """A lease owner id naming the host, process and worker: whose lease expired, in logs."""
    suffix = f":{name}" if name else ""
    return f"{socket.gethostname()[:60]}:{os.getpid()}{suffix}"[:100]


def describe_error(exc: BaseException) -> str:
    """A one-line error for `last_error` and logs: the exception class and the database's own
    message, never SQL parameters (which could carry content)."""
    if isinstance(exc, DBAPIError | StatementError) and exc.orig is not None:
        message = f"{type(exc).__name__}: {type(exc.orig).__name__}: {exc.orig}"
    elif isinstance(exc, ProblemError):
        message = f"{type(exc).__name__} {exc.status}: {exc.detail}"
    else:
        message = f"{type(exc).__name__}: {exc}"
    return " ".join(message.split())[:LAST_ERROR_MAX_CHARS]


class Worker:
    """Claims and runs due jobs of its handlers' kinds. `run_once` is one tick;
    `run_forever` ticks until stopped, woken by due work (see the module's docstring)."""

    def __init__(
        self,
        *,
        engine: Engine,
        clock: Clock,
        handlers: Sequence[JobHandler],
        batch_size: int,
        lease: timedelta,
        interval: float,
        owner: str | None = None,
        sweeps: Sequence[Sweep] = (),
        counters: JobCounters | None = None,
        signals: WakeSignals = SIGNALS,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.handlers = list(handlers)
        self.batch_size = batch_size
        self.lease = lease
        self.interval = interval
        self.owner = owner or worker_identity()
        self.sweeps = list(sweeps)
        self.counters = counters
        self.signals = signals
        self.wake_up = WakeUp(handler.kind for handler in self.handlers)
        self.waiting = threading.Event()  # set while idle between ticks (tests wait on it)

    @property
    def kinds(self) -> list[str]:
        return [handler.kind for handler in self.handlers]

    def run_once(
        self,
        now: datetime | None = None,
        stop: threading.Event | None = None,
        *,
        housekeeping: bool = True,
    ) -> TickResult:
        """One tick at `now` (default: the clock, read afresh at each step); without
        `housekeeping`, only due rows are claimed (no recovery of expired leases, no
        sweeps)."""
        moment: Callable[[], datetime] = (lambda: now) if now is not None else self.clock.now
        stop = stop or threading.Event()
        result = TickResult()
        if housekeeping:
            self._housekeep(moment, result)
        for handler in self.handlers:
            self._drain(handler, moment, stop, result)
            handler.after_tick(engine=self.engine, now=moment())
        if self.counters is not None:
            self.counters.count(result)
        return result

    def _housekeep(self, moment: Callable[[], datetime], result: TickResult) -> None:
        """Take back rows whose worker died, then run the sweeps."""
        for handler in self.handlers:
            with background_transaction(self.engine) as session:
                recovered = handler.recover(session=session, now=moment())
            result.recovered[handler.kind] += recovered.total()
            for outcome, n in recovered.items():
                if outcome != "requeued":
                    result.count(handler.kind, outcome, n)
        for sweep in self.sweeps:
            with background_transaction(self.engine) as session:
                result.swept[sweep.name] += sweep.run(session, moment())

    def _drain(
        self,
        handler: JobHandler,
        moment: Callable[[], datetime],
        stop: threading.Event,
        result: TickResult,
    ) -> None:
        job = JobRun(
            kind=handler.kind,
            engine=self.engine,
            owner=self.owner,
            lease=self.lease,
            stop=stop,
            moment=moment,
            result=result,
        )
        limit = handler.batch_size or self.batch_size
        while not stop.is_set():
            job.claimed_at = moment()
            # A read first: a claim is a write transaction, which on SQLite waits its turn
            # for the only write lock, and most wake-ups of a busy system find little due.
            with new_session(self.engine) as session:
                if not handler.has_due(session=session, now=job.claimed_at):
                    return
            with background_transaction(self.engine) as session:
                batch = handler.claim(
                    session=session,
                    owner=self.owner,
                    now=job.claimed_at,
                    limit=limit,
                    lease=self.lease,
                )
            if not batch:
                return
            result.claimed[handler.kind] += len(batch)
            handler.run(batch, job)
            # Claimed again until nothing is due, not only while batches are full: a row
            # done may let the next one of an ordered kind go (a request's e-mails, an
            # article's webhook events) in this same tick.

    def run_forever(self, stop: threading.Event) -> None:
        """Tick until `stop` is set; a tick that fails (database down) is logged and the
        worker tries again after its interval."""
        logger.info("worker started", extra={"owner": self.owner, "kinds": self.kinds})
        self.signals.subscribe(self.wake_up)
        housekept_at = -math.inf
        try:
            while not stop.is_set():
                # Cleared before the tick: work made due during it wakes the next one.
                self.wake_up.clear()
                # A tick woken by due work claims it at once; recovery and sweeps, which
                # only time moves on, run at most once an interval (woken by every commit
                # of a busy system, they were most of a worker's ticks).
                housekeeping = time.monotonic() - housekept_at >= self.interval
                if housekeeping:
                    housekept_at = time.monotonic()
                try:
                    result = self.run_once(stop=stop, housekeeping=housekeeping)
                except Exception as exc:
                    logger.error("worker tick failed: %s", describe_error(exc))
                    self.wake_up.wait(self.interval)
                    continue
                if result.claimed.total() or result.recovered.total() or result.swept.total():
                    logger.info("worker tick", extra=result.summary())
                if not stop.is_set():
                    seconds = self._seconds_to_wait()
                    self.waiting.set()
                    self.wake_up.wait(seconds)
                    self.waiting.clear()
        finally:
            self.signals.unsubscribe(self.wake_up)
            logger.info("worker stopped", extra={"owner": self.owner})

    def _seconds_to_wait(self) -> float:
        """Until the earliest run time a handler knows of, at most the interval."""
        now = self.clock.now()
        try:
            with new_session(self.engine) as session:
                times = [h.next_run_at(session=session, now=now) for h in self.handlers]
        except Exception as exc:
            logger.warning("next run time unknown: %s", describe_error(exc))
            return self.interval
        upcoming = [(moment - now).total_seconds() for moment in times if moment is not None]
        return max(min([self.interval, *upcoming]), MIN_WAIT_SECONDS)


class BackgroundWorkers:
    """Workers' `run_forever` on threads of this process, with one stop that waits for the
    rows in hand; on PostgreSQL with the listener that wakes them."""

    def __init__(
        self, workers: Sequence[Worker], listeners: Sequence[NotificationListener] = ()
    ) -> None:
        self.workers = list(workers)
        self.listeners = list(listeners)
        self.stop_event = StopSignal()
        self.threads = [
            threading.Thread(
                target=worker.run_forever,
                args=(self.stop_event,),
                name=f"byline-worker-{index}",
                daemon=True,
            )
            for index, worker in enumerate(self.workers)
        ]

    def start(self) -> None:
        for listener in self.listeners:
            listener.start()
        for thread in self.threads:
            thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Ask every worker to stop after the row in hand; True once all have ended."""
        self.stop_event.set()
        for listener in self.listeners:
            listener.stop(timeout)
        for thread in self.threads:
            thread.join(timeout)
        return not any(thread.is_alive() for thread in self.threads)
