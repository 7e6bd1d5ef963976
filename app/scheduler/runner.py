"""The runner that drains the removal queue: one loop, embedded in the API or in `byline worker`.

A tick requeues rows whose lease expired, then claims due rows (earliest deadline first) in
bounded batches and executes each in its own transaction. A row's removal, its `done`
marking and, for the takedown's last row, the takedown's completion commit together, so a
worker killed at any point leaves either nothing or everything of that row: the next runner
redoes at most an idempotent no-op, and the audit shows one removal per article.
"""

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, Protocol

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, StatementError
from sqlmodel import Session

from app.clock import Clock
from app.config import Settings
from app.db import new_session, writer
from app.errors import ProblemError
from app.scheduler.metrics import RunnerCounters
from app.scheduler.models import JobStatus
from app.scheduler.queue import (
    ClaimedRemoval,
    claim_due_removals,
    finish_claimed_removal,
    lock_takedown_completion,
    open_removal_count,
    open_removals_near_deadline,
    record_removal_failure,
    release_claims,
    requeue_expired_leases,
)

logger = logging.getLogger("byline.scheduler")

# A removal not done this close to its deadline logs a warning; past the deadline, an error.
DEADLINE_WARNING = timedelta(hours=1)
DEADLINE_LOG_LIMIT = 100


class CarryOutRemoval(Protocol):
    def __call__(
        self, *, session: Session, takedown_id: str, article_id: int, now: datetime
    ) -> bool: ...


class CompleteTakedown(Protocol):
    def __call__(self, *, session: Session, takedown_id: str, now: datetime) -> None: ...


class RecordBreaches(Protocol):
    def __call__(self, *, session: Session, now: datetime) -> int: ...


@dataclass(frozen=True)
class RemovalActions:
    """What the runner asks of the takedowns domain (tests may substitute one)."""

    carry_out: CarryOutRemoval
    complete: CompleteTakedown
    record_breaches: RecordBreaches


def takedown_actions() -> RemovalActions:
    """The takedowns domain's removal, completion and SLA-breach sweep."""
    # Imported here: the takedowns service imports the queue, which this package owns.
    from app.takedowns.service import carry_out_removal, complete_takedown, record_sla_breaches

    return RemovalActions(
        carry_out=carry_out_removal,
        complete=complete_takedown,
        record_breaches=record_sla_breaches,
    )


Outcome = Literal["removed", "already_removed", "cancelled", "retried", "failed", "lost"]


@dataclass(frozen=True)
class Execution:
    """What executing one claimed row came to."""

    outcome: Outcome
    completed_takedown: bool = False


@dataclass
class TickResult:
    """What one tick did."""

    requeued: int = 0  # running rows whose lease had expired, back in the queue (or failed)
    claimed: int = 0
    removed: int = 0  # articles removed by this tick
    already_removed: int = 0  # rows done whose article was removed before (a no-op)
    cancelled: int = 0  # the takedown no longer allows removal (withdrawn, rejected)
    retried: int = 0  # raised; queued again with backoff
    failed: int = 0  # raised for the last allowed time
    lost: int = 0  # lease lost to another runner before executing: not executed here
    released: int = 0  # claimed but given back because the runner is stopping
    completed_takedowns: int = 0
    breaches_recorded: int = 0  # open requests found past their due time for the first time
    outcomes: dict[int, Outcome] = field(default_factory=dict, repr=False)

    def count(self, job_id: int, execution: Execution) -> None:
        self.outcomes[job_id] = execution.outcome
        setattr(self, execution.outcome, getattr(self, execution.outcome) + 1)
        self.completed_takedowns += execution.completed_takedown


def runner_identity(name: str = "") -> str:
    """A lease owner id naming the host, process and runner: whose lease expired, in logs."""
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
    return " ".join(message.split())[:500]


class RemovalRunner:
    """Claims and executes due removals. `run_once` is one tick; `run_forever` ticks every
    `scheduler_interval_seconds` (at once again while a tick fills whole batches)."""

    def __init__(
        self,
        *,
        engine: Engine,
        settings: Settings,
        clock: Clock,
        owner: str | None = None,
        actions: RemovalActions | None = None,
        metrics: RunnerCounters | None = None,
        pause_after_removal: float = 0.0,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.owner = owner or runner_identity()
        self.actions = actions or takedown_actions()
        self.metrics = metrics
        # Test hook (`byline worker --test-pause-after-removal`): lets a test kill a worker
        # deterministically between two rows of one batch.
        self.pause_after_removal = pause_after_removal
        self._deadline_logged: dict[int, int] = {}

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.scheduler_lease_seconds)

    def run_once(
        self, now: datetime | None = None, stop: threading.Event | None = None
    ) -> TickResult:
        """One tick at `now` (default: the clock, read afresh at each step)."""
        moment: Callable[[], datetime] = (lambda: now) if now is not None else self.clock.now
        stop = stop or threading.Event()
        result = TickResult()
        with new_session(writer(self.engine)) as session, session.begin():
            expired = requeue_expired_leases(
                session=session, now=moment(), max_attempts=self.settings.scheduler_max_attempts
            )
        for row in expired:
            log = logger.error if row.status == JobStatus.failed.value else logger.warning
            log(
                "removal lease expired; %s",
                "attempts exhausted, marked failed" if row.status == "failed" else "requeued",
                extra={"job_id": row.id, "takedown_id": row.takedown_id,
                       "article_id": row.article_id},
            )  # fmt: skip
        result.requeued = len(expired)
        with new_session(writer(self.engine)) as session, session.begin():
            result.breaches_recorded = self.actions.record_breaches(session=session, now=moment())
        batch_size = self.settings.scheduler_batch_size
        while not stop.is_set():
            with new_session(writer(self.engine)) as session, session.begin():
                batch = claim_due_removals(
                    session=session,
                    owner=self.owner,
                    now=moment(),
                    limit=batch_size,
                    lease=self.lease,
                )
            result.claimed += len(batch)
            self._execute_batch(batch, moment, stop, result)
            if len(batch) < batch_size:
                break
        self._log_deadlines(moment())
        if self.metrics is not None:
            self.metrics.count(result.outcomes.values())
        return result

    def run_forever(self, stop: threading.Event) -> None:
        """Tick until `stop` is set; a tick that fails (database down) is logged and retried."""
        logger.info("removal runner started", extra={"owner": self.owner})
        interval = self.settings.scheduler_interval_seconds
        while not stop.is_set():
            try:
                result = self.run_once(stop=stop)
            except Exception as exc:
                logger.error("removal tick failed: %s", describe_error(exc))
                stop.wait(interval)
                continue
            if result.claimed:
                logger.info(
                    "removal tick",
                    extra={k: v for k, v in vars(result).items() if k != "outcomes" and v},
                )
            # A tick that stopped on a full batch has more due rows: go again at once.
            if result.claimed < self.settings.scheduler_batch_size or result.released:
                stop.wait(interval)
        logger.info("removal runner stopped", extra={"owner": self.owner})

    def _execute_batch(
        self,
        batch: list[ClaimedRemoval],
        moment: Callable[[], datetime],
        stop: threading.Event,
        result: TickResult,
    ) -> None:
        for index, job in enumerate(batch):
            if stop.is_set():
                with new_session(writer(self.engine)) as session, session.begin():
                    result.released += release_claims(
                        session=session, owner=self.owner, job_ids=[j.id for j in batch[index:]]
                    )
                return
            result.count(job.id, self.execute(job, moment()))
            if self.pause_after_removal:
                stop.wait(self.pause_after_removal)

    def execute(self, job: ClaimedRemoval, now: datetime) -> Execution:
        """Carry out one claimed row in its own transaction; the outcome's name."""
        try:
            with new_session(writer(self.engine)) as session, session.begin():
                if not finish_claimed_removal(
                    session=session,
                    job_id=job.id,
                    owner=self.owner,
                    status=JobStatus.done,
                    now=now,
                ):
                    logger.warning(
                        "removal lease lost before executing; another runner has the row",
                        extra={"job_id": job.id, "owner": self.owner},
                    )
                    return Execution("lost")
                removed = self.actions.carry_out(
                    session=session, takedown_id=job.takedown_id, article_id=job.article_id, now=now
                )
                lock_takedown_completion(session=session, takedown_id=job.takedown_id)
                completed = open_removal_count(session=session, takedown_id=job.takedown_id) == 0
                if completed:
                    self.actions.complete(session=session, takedown_id=job.takedown_id, now=now)
        except ProblemError as exc:
            if exc.status == 409:
                return self._cancel(job, exc, now)
            return self._fail(job, exc, now)
        except Exception as exc:
            return self._fail(job, exc, now)
        if completed:
            logger.info("takedown completed", extra={"takedown_id": job.takedown_id})
        return Execution("removed" if removed else "already_removed", completed)

    def _cancel(self, job: ClaimedRemoval, exc: ProblemError, now: datetime) -> Execution:
        # The takedown no longer allows removal (withdrawn or rejected while the row ran):
        # cancelling is the answer, retrying would only fail again.
        with new_session(writer(self.engine)) as session, session.begin():
            cancelled = finish_claimed_removal(
                session=session,
                job_id=job.id,
                owner=self.owner,
                status=JobStatus.cancelled,
                now=now,
                note=describe_error(exc),
            )
        if not cancelled:
            return Execution("lost")
        logger.info(
            "removal cancelled: the takedown no longer allows it",
            extra={"job_id": job.id, "takedown_id": job.takedown_id},
        )
        return Execution("cancelled")

    def _fail(self, job: ClaimedRemoval, exc: Exception, now: datetime) -> Execution:
        error = describe_error(exc)
        with new_session(writer(self.engine)) as session, session.begin():
            outcome = record_removal_failure(
                session=session,
                job_id=job.id,
                owner=self.owner,
                error=error,
                now=now,
                max_attempts=self.settings.scheduler_max_attempts,
            )
        if outcome is None:
            return Execution("lost")
        context = {
            "job_id": job.id,
            "takedown_id": job.takedown_id,
            "article_id": job.article_id,
            "attempts": outcome.attempts,
            "deadline_at": job.deadline_at.isoformat(),
            "error": error,
        }
        if outcome.status == JobStatus.failed.value:
            logger.error("removal failed for good; an operator must act", extra=context)
            return Execution("failed")
        assert outcome.run_at is not None
        if outcome.run_at >= job.deadline_at:
            logger.error("removal retry lands past its deadline", extra=context)
        logger.warning("removal failed; retrying at %s", outcome.run_at.isoformat(), extra=context)
        return Execution("retried")

    def _log_deadlines(self, now: datetime) -> None:
        """Warn once per row within the last hour before its deadline; error once past it."""
        with new_session(self.engine) as session:
            rows = open_removals_near_deadline(
                session=session, now=now, within=DEADLINE_WARNING, limit=DEADLINE_LOG_LIMIT
            )
        logged: dict[int, int] = {}
        for row in rows:
            assert row.id is not None
            level = logging.ERROR if row.deadline_at <= now else logging.WARNING
            logged[row.id] = level
            if self._deadline_logged.get(row.id) == level:
                continue
            logger.log(
                level,
                "removal past its deadline" if level == logging.ERROR else
                "removal due within the hour and not done",
                extra={
                    "job_id": row.id,
                    "takedown_id": row.takedown_id,
                    "article_id": row.article_id,
                    "status": row.status,
                    "held": row.run_at is None,
                    "deadline_at": row.deadline_at.isoformat(),
                },
            )  # fmt: skip
        # Forget rows that left the window (done, or beyond the limit) so memory stays small.
        self._deadline_logged = logged


class Loop(Protocol):
    """A runner that ticks until told to stop: the removal runner, the notification runner."""

    def run_forever(self, stop: threading.Event) -> None: ...


class BackgroundRunner:
    """A runner's `run_forever` on a thread, with a stop that waits for the current row."""

    def __init__(self, runner: Loop, name: str = "byline-scheduler") -> None:
        self.runner = runner
        self.stop_event = threading.Event()
        self.thread = threading.Thread(
            target=runner.run_forever, args=(self.stop_event,), name=name, daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Ask the loop to stop after the current row; True once the thread has ended."""
        self.stop_event.set()
        self.thread.join(timeout)
        return not self.thread.is_alive()
