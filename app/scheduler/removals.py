"""The removal handler: how a claimed batch of removal rows is carried out.

A batch runs in one transaction: the rows' `done` marking, their removals and audit rows
and, for a takedown whose last row this was, its completion commit together, so a worker
killed at any point leaves either nothing or everything of a batch: the next worker redoes
at most an idempotent no-op, and the audit shows one removal per article. A batch whose
transaction fails is rolled back and its rows run again one per transaction, so one failing
removal is retried on its own and never sinks the others.
"""

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Engine, Row
from sqlmodel import Session

from app.db import new_session
from app.jobs.models import JobStatus
from app.jobs.queue import RetryPolicy
from app.jobs.worker import JobHandler, JobRun, describe_error
from app.scheduler.queue import (
    REMOVALS,
    RJ,
    RemovalRefused,
    lock_takedown_completions,
    open_removal_counts,
    open_removals_near_deadline,
)

logger = logging.getLogger("byline.scheduler")

# A removal not done this close to its deadline logs a warning; past the deadline, an error.
DEADLINE_WARNING = timedelta(hours=1)
DEADLINE_LOG_LIMIT = 100


def removal_retry_policy(max_attempts: int) -> RetryPolicy:
    """30 s, 1 min, 2 min, ... at most 15 min, and pulled in so that a retry still lands
    before the deadline while there is time left; never sooner than 10 s, so one tick does
    not burn every attempt on a row at once."""
    return RetryPolicy(
        base=timedelta(seconds=30),
        cap=timedelta(minutes=15),
        floor=timedelta(seconds=10),
        max_attempts=max_attempts,
        before_deadline=timedelta(minutes=5),
    )


class CarryOutRemovals(Protocol):
    """Remove takedowns' articles ({takedown id: article ids}, locked in that order) in the
    caller's transaction; the ids removed now, by takedown. Raises `RemovalRefused` when a
    takedown no longer allows it."""

    def __call__(
        self, *, session: Session, removals: Mapping[str, Sequence[int]], now: datetime
    ) -> Mapping[str, Collection[int]]: ...


class StartTakedowns(Protocol):
    """Move the queued takedowns among these to executing, in a short transaction of the
    caller's (before their batch's removals)."""

    def __call__(self, *, session: Session, takedown_ids: Sequence[str], now: datetime) -> None: ...


class CompleteTakedowns(Protocol):
    """Complete takedowns whose last row ran (locked in the order given), in the caller's
    transaction."""

    def __call__(self, *, session: Session, takedown_ids: Sequence[str], now: datetime) -> None: ...


@dataclass(frozen=True)
class ClaimedRemoval:
    """A row leased to one worker."""

    id: int
    takedown_id: str
    article_id: int
    deadline_at: datetime


def _by_takedown(removals: Sequence[ClaimedRemoval]) -> dict[str, list[ClaimedRemoval]]:
    """The rows grouped by takedown, the takedowns in one global order (deadline, id; a
    takedown's rows share its deadline), so that workers take their locks in one order."""
    groups: dict[str, list[ClaimedRemoval]] = {}
    for removal in removals:
        groups.setdefault(removal.takedown_id, []).append(removal)
    return dict(sorted(groups.items(), key=lambda group: (group[1][0].deadline_at, group[0])))


class RemovalHandler(JobHandler):
    """Carries out claimed removal rows with the takedowns domain's `carry_out` and
    `complete` (given where the app is assembled)."""

    queue = REMOVALS
    claimed_type = ClaimedRemoval
    claim_columns = (RJ.c.takedown_id, RJ.c.article_id, RJ.c.deadline_at)
    recover_log_columns = (RJ.c.takedown_id, RJ.c.article_id)

    def __init__(
        self,
        *,
        carry_out: CarryOutRemovals,
        complete: CompleteTakedowns,
        start: StartTakedowns | None = None,
        max_attempts: int,
        batch_size: int | None = None,
        rows_per_transaction: int | None = None,
        pause_after_removal: float = 0.0,
    ) -> None:
        self.carry_out = carry_out
        self.complete = complete
        self.start = start
        self.policy = removal_retry_policy(max_attempts)
        self.batch_size = batch_size
        # Test hook (`byline worker --test-pause-after-removal`): lets a test kill a worker
        # deterministically between two rows of one batch, so rows go one per transaction.
        self.pause_after_removal = pause_after_removal
        # None: each claimed batch in one transaction.
        self.rows_per_transaction = 1 if pause_after_removal else rows_per_transaction
        self._deadline_logged: dict[int, int] = {}

    def claim_sort(self, row: Row[Any]) -> Any:
        return (row.deadline_at, row.id)

    def run(self, batch: Sequence[ClaimedRemoval], job: JobRun) -> None:
        size = self.rows_per_transaction or len(batch) or 1
        lease_expires_at = job.moment() + job.lease
        rest = list(batch)
        while rest:
            if job.stop.is_set():
                self.give_back(job, [r.id for r in rest])
                return
            now = job.moment()
            if now >= lease_expires_at - job.lease / 2:
                rest = self._renew(rest, now, job)
                lease_expires_at = now + job.lease
            for outcome in self.execute_together(rest[:size], now, job).values():
                job.count(outcome)
            rest = rest[size:]
            if self.pause_after_removal:
                job.stop.wait(self.pause_after_removal)

    def _renew(
        self, rest: list[ClaimedRemoval], now: datetime, job: JobRun
    ) -> list[ClaimedRemoval]:
        """Extend the lease on the batch's rows not done yet (a slow batch must not be taken
        over while it runs); rows already lost are dropped."""
        with job.transaction() as session:
            held = REMOVALS.renew(
                session=session, ids=[r.id for r in rest], owner=job.owner, now=now, lease=job.lease
            )
        for removal in rest:
            if removal.id not in held:
                self._log_lost(removal, job.owner)
                job.count("lost")
        return [removal for removal in rest if removal.id in held]

    def execute_together(
        self, removals: Sequence[ClaimedRemoval], now: datetime, job: JobRun
    ) -> dict[int, str]:
        """Carry out claimed rows in one transaction; if it fails, each in its own (so a
        failing row is retried or cancelled alone, and the others are done once)."""
        if len(removals) <= 1:
            return {removal.id: self.execute(removal, now, job) for removal in removals}
        self._start(removals, now, job)
        try:
            return self._carry_out(removals, now, job)
        except Exception as exc:
            logger.warning(
                "removal batch failed; running its %d rows one per transaction: %s",
                len(removals),
                describe_error(exc),
            )
            return {removal.id: self.execute(removal, now, job) for removal in removals}

    def _start(self, removals: Sequence[ClaimedRemoval], now: datetime, job: JobRun) -> None:
        """Move the batch's queued takedowns to executing in a transaction of their own, so
        the exclusive locks this takes end here: a worker whose batch shares a takedown
        with this one waits for this short transaction, not for the whole batch. If it
        fails, the batch's transaction moves them itself."""
        if self.start is None:
            return
        try:
            with job.transaction() as session:
                self.start(session=session, takedown_ids=list(_by_takedown(removals)), now=now)
        except Exception as exc:
            logger.warning("starting a removal batch's takedowns failed: %s", describe_error(exc))

    def execute(self, removal: ClaimedRemoval, now: datetime, job: JobRun) -> str:
        """Carry out one claimed row in its own transaction; the outcome's name."""
        try:
            return self._carry_out([removal], now, job)[removal.id]
        except RemovalRefused as exc:
            return self._cancel(removal, exc, now, job)
        except Exception as exc:
            return self._fail(removal, exc, now, job)

    def _carry_out(
        self, removals: Sequence[ClaimedRemoval], now: datetime, job: JobRun
    ) -> dict[int, str]:
        """One transaction: mark the rows done, remove their articles takedown by takedown,
        and complete each takedown whose last row this was."""
        outcomes: dict[int, str] = {}
        with job.transaction() as session:
            held = REMOVALS.finish(
                session=session, ids=[r.id for r in removals], owner=job.owner, now=now
            )
            batch = _by_takedown([removal for removal in removals if removal.id in held])
            order = list(batch)
            removed = self.carry_out(
                session=session,
                removals={t: [r.article_id for r in rows] for t, rows in batch.items()},
                now=now,
            )
            for takedown_id, rows in batch.items():
                for removal in rows:
                    done_now = removal.article_id in removed[takedown_id]
                    outcomes[removal.id] = "removed" if done_now else "already_removed"
            lock_takedown_completions(session=session, takedown_ids=order)
            open_rows = open_removal_counts(session=session, takedown_ids=order)
            completed = [takedown_id for takedown_id in order if open_rows[takedown_id] == 0]
            if completed:
                self.complete(session=session, takedown_ids=completed, now=now)
        for takedown_id in completed:
            job.note("completed_takedowns")
            logger.info("takedown completed", extra={"takedown_id": takedown_id})
        for removal in removals:
            if removal.id not in held:
                self._log_lost(removal, job.owner)
                outcomes[removal.id] = "lost"
        return outcomes

    def _log_lost(self, removal: ClaimedRemoval, owner: str) -> None:
        logger.warning(
            "removal lease lost before executing; another worker has the row",
            extra={"job_id": removal.id, "owner": owner},
        )

    def _cancel(
        self, removal: ClaimedRemoval, exc: RemovalRefused, now: datetime, job: JobRun
    ) -> str:
        # The takedown no longer allows removal (withdrawn or rejected while the row ran):
        # cancelling is the answer, retrying would only fail again.
        cancelled = self.finish_one(
            job, removal.id, now, status=JobStatus.cancelled.value, note=describe_error(exc)
        )
        if not cancelled:
            return "lost"
        logger.info(
            "removal cancelled: the takedown no longer allows it",
            extra={"job_id": removal.id, "takedown_id": removal.takedown_id},
        )
        return "cancelled"

    def _fail(self, removal: ClaimedRemoval, exc: Exception, now: datetime, job: JobRun) -> str:
        error = describe_error(exc)
        failure = self.record_failure(
            job, job_id=removal.id, error=error, now=now, deadline_at=removal.deadline_at
        )
        if failure is None:
            return "lost"
        context = {
            "job_id": removal.id,
            "takedown_id": removal.takedown_id,
            "article_id": removal.article_id,
            "attempts": failure.attempts,
            "deadline_at": removal.deadline_at.isoformat(),
            "error": error,
        }
        if failure.run_at is None:
            logger.error("removal failed for good; an operator must act", extra=context)
            return "failed"
        if failure.run_at >= removal.deadline_at:
            logger.error("removal retry lands past its deadline", extra=context)
        logger.warning("removal failed; retrying at %s", failure.run_at.isoformat(), extra=context)
        return "retried"

    def after_tick(self, *, engine: Engine, now: datetime) -> None:
        """Warn once per row within the last hour before its deadline; error once past it."""
        with new_session(engine) as session:
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
