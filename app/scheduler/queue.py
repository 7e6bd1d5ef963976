"""The removal queue as takedowns fill it (`enqueue_removals`, `schedule_removals`,
`cancel_removals`), operators and metrics see it, and its one rule beyond the jobs
mechanism: a takedown completes exactly once, when its last row is done."""

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlmodel import Session

from app.dialects import dialect_of
from app.jobs import wakeups
from app.jobs.models import OPEN_STATUSES, JobStatus
from app.jobs.queue import JobQueue
from app.scheduler.models import RemovalJob
from app.takedowns import audit
from app.takedowns.audit import Action

RJ = RemovalJob.__table__  # type: ignore[attr-defined]
KIND = "removal"
REMOVALS = JobQueue(kind=KIND, table=RJ, order_by=(RJ.c.deadline_at, RJ.c.id))

# A failed row waits for an operator, and its takedown is not complete until it is done.
UNFINISHED_STATUSES = (*OPEN_STATUSES, JobStatus.failed.value)


class RemovalRefused(Exception):
    """The takedown no longer allows its removals (withdrawn, rejected, or escalated and not
    approved): the row is cancelled, not retried."""


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
    statement = (
        dialect_of(session)
        .insert(RJ)
        .values(
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
            where=RJ.c.status == JobStatus.cancelled.value,
        ).returning(RJ.c.id)
    ).all()
    if queued and run_at is not None and run_at <= now:
        wakeups.wake(session, KIND)
    return len(queued)


def schedule_removals(
    *, session: Session, takedown_id: str, run_at: datetime | None, now: datetime
) -> int:
    """Set when the takedown's queued rows run (None holds them). Returns the rows changed."""
    result = session.execute(
        update(RJ)
        .where(RJ.c.takedown_id == takedown_id, RJ.c.status == JobStatus.queued.value)
        .values(run_at=run_at)
    )
    changed = int(result.rowcount)  # type: ignore[attr-defined]
    if changed and run_at is not None and run_at <= now:
        wakeups.wake(session, KIND)
    return changed


def cancel_removals(*, session: Session, takedown_id: str, now: datetime) -> int:
    """Cancel the takedown's queued rows (a running row sees the refusal when it executes)."""
    result = session.execute(
        update(RJ)
        .where(RJ.c.takedown_id == takedown_id, RJ.c.status == JobStatus.queued.value)
        .values(status=JobStatus.cancelled.value, finished_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def open_removal_counts(*, session: Session, takedown_ids: Collection[str]) -> dict[str, int]:
    """The takedowns' rows still to do (queued, running, or failed); 0 for those with none."""
    if not takedown_ids:
        return {}
    rows = session.execute(
        select(RJ.c.takedown_id, func.count())
        .where(RJ.c.takedown_id.in_(list(takedown_ids)), RJ.c.status.in_(UNFINISHED_STATUSES))
        .group_by(RJ.c.takedown_id)
    ).all()
    counts = dict.fromkeys(takedown_ids, 0)
    counts.update({takedown_id: count for takedown_id, count in rows})
    return counts


def lock_takedown_completions(*, session: Session, takedown_ids: Collection[str]) -> None:
    """Serialise the "was this the takedown's last row?" check between workers.

    Taken after the rows' removals and held to commit: whichever worker finishes last sees
    every other worker's rows as done and completes the takedown, exactly once."""
    dialect_of(session).advisory_xact_lock(session, "takedown-completion", takedown_ids)


# For operators, metrics and logs --------------------------------------------------------


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
    is_queued = RJ.c.status == JobStatus.queued.value
    is_open = RJ.c.status.in_(OPEN_STATUSES)
    is_due = and_(is_queued, RJ.c.run_at <= now)
    row = session.execute(
        select(
            func.count().filter(is_queued),
            func.count().filter(RJ.c.status == JobStatus.running.value),
            func.count().filter(RJ.c.status == JobStatus.failed.value),
            func.count().filter(is_queued, RJ.c.run_at.is_(None)),
            func.count().filter(is_due),
            func.min(RJ.c.run_at).filter(is_due),
            func.count().filter(is_open, RJ.c.deadline_at < now),
            func.count().filter(
                is_open, RJ.c.deadline_at >= now, RJ.c.deadline_at < now + warn_within
            ),
            # Done and cancelled rows pile up and are not counted: the query stays on the
            # (status, deadline_at) index whatever the table's size.
        ).where(RJ.c.status.in_(UNFINISHED_STATUSES))
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
        .where(RJ.c.status.in_(OPEN_STATUSES), RJ.c.deadline_at < now + within)
        .order_by(RJ.c.deadline_at, RJ.c.id)
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
        query = query.where(RJ.c.status == status.value)
    if takedown_id is not None:
        query = query.where(RJ.c.takedown_id == takedown_id)
    if after_id is not None:
        query = query.where(RJ.c.id > after_id)
    return list(session.scalars(query.order_by(RJ.c.id).limit(limit)))


def retry_failed_removal(*, session: Session, job_id: int, actor: str, now: datetime) -> Any:
    """An operator queues a failed row again, due now, with a fresh set of attempts
    (audited under the operator's name)."""
    row = REMOVALS.retry_failed(session=session, job_id=job_id, now=now)
    wakeups.wake(session, KIND)
    audit.record(
        session=session,
        action=Action.removal_retried,
        actor=actor,
        now=now,
        takedown_id=row.takedown_id,
        article_id=row.article_id,
        reason=f"removal {row.id}",
    )
    return row
