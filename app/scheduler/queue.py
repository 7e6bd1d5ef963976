"""The removal queue's SQL, all of it: enqueue, schedule, cancel, claim, lease, finish, retry.

Takedowns fill the queue (`enqueue_removals`, `schedule_removals`, `cancel_removals`); the
runner drains it (`requeue_expired_leases`, `claim_due_removals`, `renew_leases`,
`finish_claimed_removals`, `record_removal_failure`, `release_claims`).

Claims take row locks with `FOR UPDATE SKIP LOCKED` on PostgreSQL, so any number of workers
share the queue; SQLite ignores the clause and relies on its single writer (callers open
claim transactions with `writer(engine)`, i.e. BEGIN IMMEDIATE).
"""

import hashlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select, text, update
from sqlmodel import Session

from app.db import insert_for
from app.errors import Conflict, NotFound
from app.scheduler.models import JobStatus, RemovalJob

J = RemovalJob.__table__  # type: ignore[attr-defined]

OPEN_STATUSES = (JobStatus.queued.value, JobStatus.running.value)
UNFINISHED_STATUSES = (*OPEN_STATUSES, JobStatus.failed.value)

# Retry backoff: 30 s, 1 min, 2 min, ... capped, and pulled in so that a retry still lands
# before the deadline while there is time left; never sooner than the floor, so one tick
# does not burn every attempt on a row at once.
RETRY_BASE = timedelta(seconds=30)
RETRY_CAP = timedelta(minutes=15)
RETRY_FLOOR = timedelta(seconds=10)
RETRY_SLACK_BEFORE_DEADLINE = timedelta(minutes=5)
LAST_ERROR_MAX_CHARS = 500

# Namespace of the PostgreSQL advisory locks taken per takedown when its last row finishes
# (the migration lock uses the one-argument form, so the two cannot collide).
_COMPLETION_LOCK_NAMESPACE = 5_240_001


# For takedowns --------------------------------------------------------------------------


def enqueue_removals(
    *,
    session: Session,
    takedown_id: str,
    article_ids: Iterable[int],
    run_at: datetime | None,
    deadline_at: datetime,
    now: datetime,
) -> int:
    """Queue one removal per article; `run_at=None` holds the rows until `schedule_removals`
    gives them a time. Idempotent per takedown and article: a queued, running or done row is
    left as it is, a cancelled one is queued again (a row cancelled because its request was
    escalated while it ran must run once the request is approved). Returns the rows queued."""
    ids = sorted(set(article_ids))
    if not ids:
        return 0
    insert = insert_for(session)
    statement = insert(J).values(
        [
            {
                "takedown_id": takedown_id,
                "article_id": article_id,
                "status": JobStatus.queued.value,
                "run_at": run_at,
                "deadline_at": deadline_at,
                "attempts": 0,
                "created_at": now,
            }
            for article_id in ids
        ]
    )
    queued = session.execute(
        statement.on_conflict_do_update(
            index_elements=["takedown_id", "article_id"],
            set_={
                "status": JobStatus.queued.value,
                "run_at": statement.excluded.run_at,
                "attempts": 0,
                "lease_owner": None,
                "lease_expires_at": None,
                "finished_at": None,
            },
            where=J.c.status == JobStatus.cancelled.value,
        ).returning(J.c.id)
    ).all()
    return len(queued)


def schedule_removals(*, session: Session, takedown_id: str, run_at: datetime | None) -> int:
    """Set when the takedown's queued rows run (None holds them). Returns the rows changed."""
    result = session.execute(
        update(J)
        .where(J.c.takedown_id == takedown_id, J.c.status == JobStatus.queued.value)
        .values(run_at=run_at)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def cancel_removals(*, session: Session, takedown_id: str, now: datetime) -> int:
    """Cancel the takedown's queued rows (a running row sees the refusal when it executes)."""
    result = session.execute(
        update(J)
        .where(J.c.takedown_id == takedown_id, J.c.status == JobStatus.queued.value)
        .values(status=JobStatus.cancelled.value, finished_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def open_removal_count(*, session: Session, takedown_id: str) -> int:
    """The takedown's rows still to do: queued, running, or failed (a failed row waits for an
    operator, and its takedown is not complete until the article is gone)."""
    count = session.scalar(
        select(func.count())
        .select_from(J)
        .where(J.c.takedown_id == takedown_id, J.c.status.in_(UNFINISHED_STATUSES))
    )
    return int(count or 0)


# For the runner -------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimedRemoval:
    """A row leased to one runner."""

    id: int
    takedown_id: str
    article_id: int
    deadline_at: datetime
    attempts: int


@dataclass(frozen=True)
class ExpiredLease:
    """A running row whose runner did not finish it within its lease (it died or stalled)."""

    id: int
    takedown_id: str
    article_id: int
    status: str


def requeue_expired_leases(
    *, session: Session, now: datetime, max_attempts: int
) -> list[ExpiredLease]:
    """Put running rows whose lease expired back in the queue; the interrupted try counts as
    a failed attempt, so a row that kills every worker ends `failed` instead of looping."""
    expired = (
        select(J.c.id)
        .where(J.c.status == JobStatus.running.value, J.c.lease_expires_at < now)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    rows = session.execute(
        update(J)
        .where(J.c.id.in_(expired))
        .values(
            status=_status_after_failure(J.c.attempts + 1, max_attempts),
            attempts=J.c.attempts + 1,
            last_error="lease expired: the worker stopped before finishing",
            finished_at=case((J.c.attempts + 1 >= max_attempts, now), else_=None),
            run_at=now,
            lease_owner=None,
            lease_expires_at=None,
        )
        .returning(J.c.id, J.c.takedown_id, J.c.article_id, J.c.status)
    ).all()
    return [
        ExpiredLease(
            id=row.id,
            takedown_id=row.takedown_id,
            article_id=row.article_id,
            status=row.status,
        )
        for row in rows
    ]


def _status_after_failure(attempts: Any, max_attempts: int) -> Any:
    return case((attempts >= max_attempts, JobStatus.failed.value), else_=JobStatus.queued.value)


def claim_due_removals(
    *, session: Session, owner: str, now: datetime, limit: int, lease: timedelta
) -> list[ClaimedRemoval]:
    """Lease up to `limit` due rows to `owner`, earliest deadline first."""
    due = (
        select(J.c.id)
        .where(
            J.c.status == JobStatus.queued.value,
            J.c.run_at.is_not(None),
            J.c.run_at <= now,
        )
        .order_by(J.c.deadline_at, J.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    rows = session.execute(
        update(J)
        .where(J.c.id.in_(due))
        .values(status=JobStatus.running.value, lease_owner=owner, lease_expires_at=now + lease)
        .returning(J.c.id, J.c.takedown_id, J.c.article_id, J.c.deadline_at, J.c.attempts)
    ).all()
    claimed = [
        ClaimedRemoval(
            id=row.id,
            takedown_id=row.takedown_id,
            article_id=row.article_id,
            deadline_at=row.deadline_at,
            attempts=row.attempts,
        )
        for row in rows
    ]
    return sorted(claimed, key=lambda job: (job.deadline_at, job.id))


def finish_claimed_removals(
    *,
    session: Session,
    job_ids: Sequence[int],
    owner: str,
    status: JobStatus,
    now: datetime,
    note: str | None = None,
) -> set[int]:
    """Mark rows `owner` holds done (or cancelled, with why) in one statement, locking them to
    the end of the transaction; the ids marked. A row missing from the answer was lost by
    `owner` (its lease expired and it was requeued or claimed again): nothing may be done
    with it. Called *before* the removals in the same transaction, so the row locks keep out
    every other runner and a failed removal rolls the marking back. `lease_owner` stays: it
    names the runner that executed the row."""
    if not job_ids:
        return set()
    values: dict[str, Any] = {"status": status.value, "finished_at": now, "lease_expires_at": None}
    if note is not None:
        values["last_error"] = note[:LAST_ERROR_MAX_CHARS]
    finished = session.execute(
        update(J)
        .where(
            J.c.id.in_(list(job_ids)),
            J.c.status == JobStatus.running.value,
            J.c.lease_owner == owner,
        )
        .values(values)
        .returning(J.c.id)
    ).scalars()
    return set(finished)


def renew_leases(
    *, session: Session, job_ids: Sequence[int], owner: str, now: datetime, lease: timedelta
) -> set[int]:
    """Extend `owner`'s lease on rows it still holds (a batch that runs long); those ids."""
    if not job_ids:
        return set()
    renewed = session.execute(
        update(J)
        .where(
            J.c.id.in_(list(job_ids)),
            J.c.status == JobStatus.running.value,
            J.c.lease_owner == owner,
        )
        .values(lease_expires_at=now + lease)
        .returning(J.c.id)
    ).scalars()
    return set(renewed)


def lock_takedown_completions(*, session: Session, takedown_ids: Collection[str]) -> None:
    """Serialise the "was this the takedown's last row?" check between runners.

    Taken after the rows' removals and held to commit: whichever runner finishes last sees
    every other runner's rows as done and completes the takedown, exactly once. One
    statement for all the batch's takedowns, in key order, so two runners never wait on each
    other's locks in a cycle. SQLite has a single writer, so there is nothing to do there."""
    if not takedown_ids or session.get_bind().dialect.name != "postgresql":
        return
    keys = sorted(
        {int.from_bytes(hashlib.sha256(t.encode()).digest()[:4], "big", signed=True)
         for t in takedown_ids}
    )  # fmt: skip
    # PostgreSQL evaluates a volatile function in the select list after the sort.
    session.execute(
        text(
            "SELECT pg_advisory_xact_lock(:namespace, key)"
            " FROM unnest(CAST(:keys AS integer[])) AS key ORDER BY key"
        ),
        {"namespace": _COMPLETION_LOCK_NAMESPACE, "keys": keys},
    )


def open_removal_counts(*, session: Session, takedown_ids: Collection[str]) -> dict[str, int]:
    """`open_removal_count` of several takedowns in one query (0 for those with none)."""
    if not takedown_ids:
        return {}
    rows = session.execute(
        select(J.c.takedown_id, func.count())
        .where(J.c.takedown_id.in_(list(takedown_ids)), J.c.status.in_(UNFINISHED_STATUSES))
        .group_by(J.c.takedown_id)
    ).all()
    counts = dict.fromkeys(takedown_ids, 0)
    counts.update({takedown_id: count for takedown_id, count in rows})
    return counts


def retry_at(*, now: datetime, attempts: int, deadline_at: datetime) -> datetime:
    """When a row that failed `attempts` times runs again: exponential backoff, capped, and
    never later than a few minutes before its deadline (soon, when that is already near)."""
    backoff = min(RETRY_BASE * (2 ** max(attempts - 1, 0)), RETRY_CAP)
    latest = deadline_at - RETRY_SLACK_BEFORE_DEADLINE
    return max(now + RETRY_FLOOR, min(now + backoff, latest))


@dataclass(frozen=True)
class FailureOutcome:
    status: str
    attempts: int
    run_at: datetime | None


def record_removal_failure(
    *,
    session: Session,
    job_id: int,
    owner: str,
    error: str,
    now: datetime,
    max_attempts: int,
) -> FailureOutcome | None:
    """Count a failed try: back to the queue with backoff, or `failed` after `max_attempts`.
    None when `owner` no longer holds the row (another runner has it now)."""
    row = session.execute(
        select(J.c.attempts, J.c.deadline_at)
        .where(J.c.id == job_id, J.c.status == JobStatus.running.value, J.c.lease_owner == owner)
        .with_for_update()
    ).first()
    if row is None:
        return None
    attempts = row.attempts + 1
    failed = attempts >= max_attempts
    next_run = None if failed else retry_at(now=now, attempts=attempts, deadline_at=row.deadline_at)
    status = JobStatus.failed if failed else JobStatus.queued
    session.execute(
        update(J)
        .where(J.c.id == job_id)
        .values(
            status=status.value,
            attempts=attempts,
            last_error=error[:LAST_ERROR_MAX_CHARS],
            run_at=next_run if not failed else J.c.run_at,
            finished_at=now if failed else None,
            lease_owner=None,
            lease_expires_at=None,
        )
    )
    return FailureOutcome(status=status.value, attempts=attempts, run_at=next_run)


def release_claims(*, session: Session, owner: str, job_ids: Sequence[int]) -> int:
    """Give back rows claimed but not started (a runner stopping): queued again, no attempt
    counted."""
    if not job_ids:
        return 0
    result = session.execute(
        update(J)
        .where(
            J.c.id.in_(list(job_ids)),
            J.c.status == JobStatus.running.value,
            J.c.lease_owner == owner,
        )
        .values(status=JobStatus.queued.value, lease_owner=None, lease_expires_at=None)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


# For metrics, logs and the admin API ----------------------------------------------------


@dataclass(frozen=True)
class QueueStats:
    """The queue at one instant."""

    queued: int
    running: int
    failed: int
    held: int
    due: int
    oldest_due_age_seconds: float
    past_deadline: int
    near_deadline: int


def queue_stats(*, session: Session, now: datetime, warn_within: timedelta) -> QueueStats:
    """Counts for /metrics: open and failed rows, held rows, due rows and the oldest one's
    age, rows open past their deadline or within `warn_within` of it."""
    is_queued = J.c.status == JobStatus.queued.value
    is_open = J.c.status.in_(OPEN_STATUSES)
    is_due = and_(is_queued, J.c.run_at <= now)
    row = session.execute(
        select(
            func.count().filter(is_queued),
            func.count().filter(J.c.status == JobStatus.running.value),
            func.count().filter(J.c.status == JobStatus.failed.value),
            func.count().filter(is_queued, J.c.run_at.is_(None)),
            func.count().filter(is_due),
            func.min(J.c.run_at).filter(is_due),
            func.count().filter(is_open, J.c.deadline_at < now),
            func.count().filter(
                is_open, J.c.deadline_at >= now, J.c.deadline_at < now + warn_within
            ),
            # Done and cancelled rows pile up and are not counted: the query stays on the
            # (status, deadline_at) index whatever the table's size.
        ).where(J.c.status.in_(UNFINISHED_STATUSES))
    ).one()
    queued, running, failed, held, due, oldest_run_at, past, near = row
    oldest_age = (now - oldest_run_at).total_seconds() if oldest_run_at else 0.0
    return QueueStats(
        queued=queued,
        running=running,
        failed=failed,
        held=held,
        due=due,
        oldest_due_age_seconds=max(oldest_age, 0.0),
        past_deadline=past,
        near_deadline=near,
    )


def open_removals_near_deadline(
    *, session: Session, now: datetime, within: timedelta, limit: int
) -> list[RemovalJob]:
    """Open rows (held ones included) whose deadline is past or less than `within` away,
    earliest first."""
    query = (
        select(RemovalJob)
        .where(
            or_(*(J.c.status == status for status in OPEN_STATUSES)),
            J.c.deadline_at < now + within,
        )
        .order_by(J.c.deadline_at, J.c.id)
        .limit(limit)
    )
    return list(session.scalars(query))


def list_removals(
    *,
    session: Session,
    status: JobStatus | None,
    takedown_id: str | None,
    after_id: int | None,
    limit: int,
) -> list[RemovalJob]:
    """Rows for the admin API, oldest first, keyset-paged on id."""
    query = select(RemovalJob)
    if status is not None:
        query = query.where(J.c.status == status.value)
    if takedown_id is not None:
        query = query.where(J.c.takedown_id == takedown_id)
    if after_id is not None:
        query = query.where(J.c.id > after_id)
    return list(session.scalars(query.order_by(J.c.id).limit(limit)))


def retry_failed_removal(*, session: Session, job_id: int, now: datetime) -> RemovalJob:
    """An operator queues a failed row again, due now, with a fresh set of attempts."""
    job = session.get(RemovalJob, job_id, with_for_update=True)
    if job is None:
        raise NotFound(f"No removal row with id {job_id}.")
    if job.status != JobStatus.failed.value:
        raise Conflict(f"Removal row {job_id} is {job.status}; only failed rows are retried.")
    job.status = JobStatus.queued.value
    job.attempts = 0
    job.run_at = now
    job.finished_at = None
    session.flush()
    return job
