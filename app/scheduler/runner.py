"""The runner that drains the removal queue: one loop, embedded in the API or in `byline worker`.

A tick requeues rows whose lease expired, then claims due rows (earliest deadline first) in
bounded batches and executes each batch in one transaction: the rows' `done` marking, their
removals and audit rows and, for a takedown whose last row this was, its completion commit
together, so a worker killed at any point leaves either nothing or everything of a batch:
the next runner redoes at most an idempotent no-op, and the audit shows one removal per
article. A batch whose transaction fails is rolled back and its rows run again one per
transaction, so one failing removal is retried on its own and never sinks the others.
"""

import logging
import os
import socket
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
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
    finish_claimed_removals,
    lock_takedown_completions,
    open_removal_counts,
    open_removals_near_deadline,
    record_removal_failure,
    release_claims,
    renew_leases,
    requeue_expired_leases,
)

logger = logging.getLogger("byline.scheduler")

# A removal not done this close to its deadline logs a warning; past the deadline, an error.
DEADLINE_WARNING = timedelta(hours=1)
DEADLINE_LOG_LIMIT = 100


class CarryOutRemovals(Protocol):
    """Remove takedowns' articles ({takedown id: article ids}, locked in that order) in the
    caller's transaction; the ids removed now, by takedown."""

    def __call__(
        self, *, session: Session, removals: Mapping[str, Sequence[int]], now: datetime
    ) -> Mapping[str, Collection[int]]: ...


class CompleteTakedown(Protocol):
    def __call__(self, *, session: Session, takedown_id: str, now: datetime) -> None: ...


class RecordBreaches(Protocol):
    def __call__(self, *, session: Session, now: datetime) -> int: ...


class Sweep(Protocol):
    def __call__(self, *, session: Session, settings: Settings, now: datetime) -> int: ...


@dataclass(frozen=True)
class RemovalActions:
    """What the runner asks of the takedowns domain (tests may substitute one)."""

    carry_out: CarryOutRemovals
    complete: CompleteTakedown
    record_breaches: RecordBreaches
    forget_rate_windows: Sweep
    advance_requests: Sweep


def takedown_actions() -> RemovalActions:
    """The takedowns domain's removal, completion, SLA-breach sweep, the sweep of requests
    the clock moves on (unconfirmed past the review window, blocks-only requests due) and
    the rate-limit cleanup."""
    # Imported here: the takedowns service imports the queue, which this package owns.
    from app.takedowns.service import (
        advance_waiting_requests,
        carry_out_removals,
        complete_takedown,
        forget_ended_rate_windows,
        record_sla_breaches,
    )

    return RemovalActions(
        carry_out=carry_out_removals,
        complete=complete_takedown,
        record_breaches=record_sla_breaches,
        forget_rate_windows=forget_ended_rate_windows,
        advance_requests=advance_waiting_requests,
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
    # unconfirmed requests sent to an operator, blocks-only requests completed
    requests_advanced: int = 0
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
        rows_per_transaction: int | None = None,
        pause_after_removal: float = 0.0,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.owner = owner or runner_identity()
        self.actions = actions or takedown_actions()
        self.metrics = metrics
        # Test hook (`byline worker --test-pause-after-removal`): lets a test kill a worker
        # deterministically between two rows of one batch, so rows go one per transaction.
        self.pause_after_removal = pause_after_removal
        # None: each claimed batch in one transaction.
        self.rows_per_transaction = 1 if pause_after_removal else rows_per_transaction
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
            result.requests_advanced = self.actions.advance_requests(
                session=session, settings=self.settings, now=moment()
            )
        with new_session(writer(self.engine)) as session, session.begin():
            result.breaches_recorded = self.actions.record_breaches(session=session, now=moment())
            self.actions.forget_rate_windows(session=session, settings=self.settings, now=moment())
        batch_size = self.settings.scheduler_batch_size
        while not stop.is_set():
            claimed_at = moment()
            with new_session(writer(self.engine)) as session, session.begin():
                batch = claim_due_removals(
                    session=session,
                    owner=self.owner,
                    now=claimed_at,
                    limit=batch_size,
                    lease=self.lease,
                )
            result.claimed += len(batch)
            self._execute_batch(batch, claimed_at + self.lease, moment, stop, result)
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
        lease_expires_at: datetime,
        moment: Callable[[], datetime],
        stop: threading.Event,
        result: TickResult,
    ) -> None:
        size = self.rows_per_transaction or len(batch) or 1
        rest = batch
        while rest:
            if stop.is_set():
                with new_session(writer(self.engine)) as session, session.begin():
                    result.released += release_claims(
                        session=session, owner=self.owner, job_ids=[j.id for j in rest]
                    )
                return
            now = moment()
            if now >= lease_expires_at - self.lease / 2:
                rest, lease_expires_at = self._renew(rest, now, result)
            for job_id, execution in self.execute_together(rest[:size], now).items():
                result.count(job_id, execution)
            rest = rest[size:]
            if self.pause_after_removal:
                stop.wait(self.pause_after_removal)

    def _renew(
        self, rest: list[ClaimedRemoval], now: datetime, result: TickResult
    ) -> tuple[list[ClaimedRemoval], datetime]:
        """Extend the lease on the batch's rows not done yet (a slow batch must not be taken
        over while it runs); rows already lost are dropped."""
        with new_session(writer(self.engine)) as session, session.begin():
            held = renew_leases(
                session=session,
                job_ids=[job.id for job in rest],
                owner=self.owner,
                now=now,
                lease=self.lease,
            )
        for job in rest:
            if job.id not in held:
                self._log_lost(job)
                result.count(job.id, Execution("lost"))
        return [job for job in rest if job.id in held], now + self.lease

    def execute_together(
        self, jobs: Sequence[ClaimedRemoval], now: datetime
    ) -> dict[int, Execution]:
        """Carry out claimed rows in one transaction; if it fails, each in its own (so a
        failing row is retried or cancelled alone, and the others are done once)."""
        if len(jobs) <= 1:
            return {job.id: self.execute(job, now) for job in jobs}
        try:
            executions = self._carry_out(jobs, now)
        except Exception as exc:
            logger.warning(
                "removal batch failed; running its %d rows one per transaction: %s",
                len(jobs),
                describe_error(exc),
            )
            return {job.id: self.execute(job, now) for job in jobs}
        self._log_completions(jobs, executions)
        return executions

    def execute(self, job: ClaimedRemoval, now: datetime) -> Execution:
        """Carry out one claimed row in its own transaction; the outcome's name."""
        try:
            execution = self._carry_out([job], now)[job.id]
        except ProblemError as exc:
            if exc.status == 409:
                return self._cancel(job, exc, now)
            return self._fail(job, exc, now)
        except Exception as exc:
            return self._fail(job, exc, now)
        self._log_completions([job], {job.id: execution})
        return execution

    def _carry_out(self, jobs: Sequence[ClaimedRemoval], now: datetime) -> dict[int, Execution]:
        """One transaction: mark the rows done, remove their articles takedown by takedown,
        and complete each takedown whose last row this was."""
        executions: dict[int, Execution] = {}
        with new_session(writer(self.engine)) as session, session.begin():
            held = finish_claimed_removals(
                session=session,
                job_ids=[job.id for job in jobs],
                owner=self.owner,
                status=JobStatus.done,
                now=now,
            )
            by_takedown: dict[str, list[ClaimedRemoval]] = {}
            for job in jobs:
                if job.id in held:
                    by_takedown.setdefault(job.takedown_id, []).append(job)
            # Takedowns in one global order (a takedown's rows share its deadline), so two
            # runners take the takedowns' locks in the same order.
            order = sorted(by_takedown, key=lambda t: (by_takedown[t][0].deadline_at, t))
            removed = self.actions.carry_out(
                session=session,
                removals={t: [job.article_id for job in by_takedown[t]] for t in order},
                now=now,
            )
            for takedown_id in order:
                for job in by_takedown[takedown_id]:
                    done_now = job.article_id in removed[takedown_id]
                    executions[job.id] = Execution("removed" if done_now else "already_removed")
            lock_takedown_completions(session=session, takedown_ids=order)
            open_rows = open_removal_counts(session=session, takedown_ids=order)
            for takedown_id in order:
                if open_rows[takedown_id] == 0:
                    self.actions.complete(session=session, takedown_id=takedown_id, now=now)
                    last = by_takedown[takedown_id][-1]
                    executions[last.id] = replace(executions[last.id], completed_takedown=True)
        for job in jobs:
            if job.id not in held:
                self._log_lost(job)
                executions[job.id] = Execution("lost")
        return {job.id: executions[job.id] for job in jobs}

    def _log_lost(self, job: ClaimedRemoval) -> None:
        logger.warning(
            "removal lease lost before executing; another runner has the row",
            extra={"job_id": job.id, "owner": self.owner},
        )

    def _log_completions(
        self, jobs: Sequence[ClaimedRemoval], executions: dict[int, Execution]
    ) -> None:
        for job in jobs:
            if executions[job.id].completed_takedown:
                logger.info("takedown completed", extra={"takedown_id": job.takedown_id})

    def _cancel(self, job: ClaimedRemoval, exc: ProblemError, now: datetime) -> Execution:
        # The takedown no longer allows removal (withdrawn or rejected while the row ran):
        # cancelling is the answer, retrying would only fail again.
        with new_session(writer(self.engine)) as session, session.begin():
            cancelled = finish_claimed_removals(
                session=session,
                job_ids=[job.id],
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
