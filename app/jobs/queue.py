"""The queue's SQL, for every kind of job: claim due rows, renew and release leases, finish,
record a failure with backoff, recover rows whose worker died, and an operator's retry.

Claims take row locks with `FOR UPDATE SKIP LOCKED` on PostgreSQL, so any number of workers
share a queue; SQLite leaves the clause out and relies on its single writer (workers open
claim transactions on `writer(engine)`, i.e. BEGIN IMMEDIATE). Every change to a claimed
row is conditional on the worker still holding it (`status = 'running'` and its
`lease_owner`): a worker that outlived its lease changes nothing.

A try is counted when its row is claimed, and given back when a claim is released unrun, so
a row whose worker dies every time runs out of attempts instead of looping.
"""

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Row, Table, and_, case, func, literal, or_, select, update
from sqlmodel import Session

from app.errors import Conflict, NotFound
from app.jobs.models import JobStatus

LAST_ERROR_MAX_CHARS = 500


@dataclass(frozen=True)
class RetryPolicy:
    """When a failed try runs again: `base`, doubled per failure, at most `cap`, never sooner
    than `floor`; pulled in to land `before_deadline` ahead of a row's deadline while there is
    time. Given up (failed) after `max_attempts` tries, or once the row is older than
    `give_up_after`; neither set: retried for ever (at the cap)."""

    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(hours=1)
    floor: timedelta = timedelta(0)
    max_attempts: int | None = None
    give_up_after: timedelta | None = None
    before_deadline: timedelta | None = None

    def delay(self, failures: int) -> timedelta:
        """Backoff after `failures` failed tries in a row: base, 2 base, 4 base, ... cap."""
        return min(self.base * (2 ** min(max(failures - 1, 0), 30)), self.cap)

    def gives_up(self, *, attempts: int, created_at: datetime, now: datetime) -> bool:
        out_of_attempts = self.max_attempts is not None and attempts >= self.max_attempts
        out_of_time = self.give_up_after is not None and now - created_at >= self.give_up_after
        return out_of_attempts or out_of_time

    def retry_at(
        self, *, attempts: int, now: datetime, deadline_at: datetime | None = None
    ) -> datetime:
        run_at = now + self.delay(attempts)
        if deadline_at is not None and self.before_deadline is not None:
            run_at = min(run_at, deadline_at - self.before_deadline)
        return max(run_at, now + self.floor)

    def gives_up_sql(self, *, attempts: Any, created_at: Any, now: datetime) -> Any:
        """`gives_up` as an SQL condition, for rows updated in bulk."""
        conditions = []
        if self.max_attempts is not None:
            conditions.append(attempts >= self.max_attempts)
        if self.give_up_after is not None:
            conditions.append(created_at <= now - self.give_up_after)
        return or_(*conditions) if conditions else literal(False)


@dataclass(frozen=True)
class Failure:
    """What a failed try came to: `queued` again at `run_at`, or `failed` for good."""

    status: str
    attempts: int
    run_at: datetime | None


@dataclass(frozen=True)
class JobQueue:
    """The queue of one kind of job: its table (with `JobColumns`) and its claim order."""

    kind: str
    table: Table
    order_by: Sequence[ColumnElement[Any]]

    @property
    def c(self) -> Any:
        return self.table.c

    def held(self, ids: Collection[int], owner: str) -> Any:
        """The rows among `ids` that `owner` still holds."""
        return and_(
            self.c.id.in_(list(ids)),
            self.c.status == JobStatus.running.value,
            self.c.lease_owner == owner,
        )

    def _due(self, now: datetime, where: Sequence[ColumnElement[bool]]) -> Any:
        return select(self.c.id).where(
            self.c.status == JobStatus.queued.value,
            self.c.run_at.is_not(None),
            self.c.run_at <= now,
            *where,
        )

    def has_due(
        self, *, session: Session, now: datetime, where: Sequence[ColumnElement[bool]] = ()
    ) -> bool:
        """Whether a row (among those `where` allows) is due: a read, no lock taken."""
        return session.execute(self._due(now, where).limit(1)).first() is not None

    def claim(
        self,
        *,
        session: Session,
        owner: str,
        now: datetime,
        limit: int,
        lease: timedelta,
        where: Sequence[ColumnElement[bool]] = (),
        returning: Sequence[ColumnElement[Any]] = (),
        sort: Callable[[Row[Any]], Any] | None = None,
    ) -> list[Row[Any]]:
        """Lease up to `limit` due rows (in the queue's order, among those `where` allows) to
        `owner`, counting a try for each; `returning` their id and these columns, sorted by
        `sort` (by id without one)."""
        due = (
            self._due(now, where)
            .order_by(*self.order_by)
            .limit(limit)
            .with_for_update(skip_locked=True, of=self.table)
            .scalar_subquery()
        )
        rows = session.execute(
            update(self.table)
            .where(self.c.id.in_(due))
            .values(
                status=JobStatus.running.value,
                lease_owner=owner,
                lease_expires_at=now + lease,
                attempts=self.c.attempts + 1,
            )
            .returning(self.c.id, *returning)
        ).all()
        return sorted(rows, key=sort or (lambda row: row.id))

    def renew(
        self,
        *,
        session: Session,
        ids: Collection[int],
        owner: str,
        now: datetime,
        lease: timedelta,
        values: dict[str, Any] | None = None,
    ) -> set[int]:
        """Extend `owner`'s lease on the rows it still holds (setting `values` too); those
        ids."""
        if not ids:
            return set()
        renewed = session.scalars(
            update(self.table)
            .where(self.held(ids, owner))
            .values(lease_expires_at=now + lease, **(values or {}))
            .returning(self.c.id)
        )
        return set(renewed)

    def release(self, *, session: Session, ids: Collection[int], owner: str) -> int:
        """Give back rows claimed but not tried (a worker stopping): queued again, their try
        not counted."""
        if not ids:
            return 0
        result = session.execute(
            update(self.table)
            .where(self.held(ids, owner))
            .values(
                status=JobStatus.queued.value,
                lease_owner=None,
                lease_expires_at=None,
                attempts=self.c.attempts - 1,
            )
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    def finish(
        self,
        *,
        session: Session,
        ids: Collection[int],
        owner: str,
        now: datetime,
        status: str = JobStatus.done.value,
        note: str | None = None,
        values: dict[str, Any] | None = None,
    ) -> set[int]:
        """End the rows `owner` holds with `status` (and `note` as their last error) in one
        statement; the ids ended. A row missing from the answer was lost (its lease expired
        and another worker has it): nothing may be done with it. `lease_owner` stays: it names
        the worker that ran the row."""
        if not ids:
            return set()
        changes: dict[str, Any] = {
            "status": status,
            "finished_at": now,
            "lease_expires_at": None,
            **(values or {}),
        }
        if note is not None:
            changes["last_error"] = note[:LAST_ERROR_MAX_CHARS]
        finished = session.scalars(
            update(self.table).where(self.held(ids, owner)).values(changes).returning(self.c.id)
        )
        return set(finished)

    def reschedule(
        self,
        *,
        session: Session,
        ids: Collection[int],
        owner: str,
        run_at: datetime | Mapping[int, datetime],
        values: dict[str, Any] | None = None,
    ) -> set[int]:
        """Queue rows `owner` holds again for `run_at` (recurring work, its run a success),
        one moment for all or one per id, writing `values` too: their tries start afresh.
        The ids queued again; a row missing was lost."""
        if not ids:
            return set()
        when: Any = run_at
        if isinstance(run_at, Mapping):
            moment_type = self.c.run_at.type
            when = case(
                {job_id: literal(at, moment_type) for job_id, at in run_at.items()},
                value=self.c.id,
            )
        queued = session.scalars(
            update(self.table)
            .where(self.held(ids, owner))
            .values(
                status=JobStatus.queued.value,
                run_at=when,
                attempts=0,
                last_error=None,
                lease_owner=None,
                lease_expires_at=None,
                **(values or {}),
            )
            .returning(self.c.id)
        )
        return set(queued)

    def fail(
        self,
        *,
        session: Session,
        job_id: int,
        owner: str,
        error: str,
        now: datetime,
        policy: RetryPolicy,
        deadline_at: datetime | None = None,
        values: dict[str, Any] | None = None,
        on_give_up: dict[str, Any] | None = None,
    ) -> Failure | None:
        """Record a failed try (with `values`): queued again after the policy's backoff, or
        failed once the policy gives up (with `on_give_up` too). None when `owner` no longer
        holds the row."""
        row = session.execute(
            select(self.c.attempts, self.c.created_at)
            .where(self.held([job_id], owner))
            .with_for_update()
        ).first()
        if row is None:
            return None
        if policy.gives_up(attempts=row.attempts, created_at=row.created_at, now=now):
            status, run_at = JobStatus.failed.value, None
        else:
            status = JobStatus.queued.value
            run_at = policy.retry_at(attempts=row.attempts, now=now, deadline_at=deadline_at)
        changes: dict[str, Any] = {
            "status": status,
            "last_error": error[:LAST_ERROR_MAX_CHARS],
            "finished_at": now if run_at is None else None,
            "lease_expires_at": None,
            **(values or {}),
        }
        if run_at is not None:
            changes.update(run_at=run_at, lease_owner=None)
        else:
            changes.update(on_give_up or {})
        session.execute(update(self.table).where(self.c.id == job_id).values(changes))
        return Failure(status=status, attempts=row.attempts, run_at=run_at)

    def recover_expired(
        self,
        *,
        session: Session,
        now: datetime,
        policy: RetryPolicy,
        where: Sequence[ColumnElement[bool]] = (),
        returning: Sequence[ColumnElement[Any]] = (),
        on_give_up: dict[str, Any] | None = None,
    ) -> list[Row[Any]]:
        """Rows (among those `where` allows) whose worker did not finish them within the
        lease (it died or stalled): due again at once, or failed, with `on_give_up`, when the
        policy gives up (the interrupted try counted)."""
        expired = (
            select(self.c.id)
            .where(
                self.c.status == JobStatus.running.value,
                self.c.lease_expires_at < now,
                *where,
            )
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        gives_up = policy.gives_up_sql(
            attempts=self.c.attempts, created_at=self.c.created_at, now=now
        )
        return list(
            session.execute(
                update(self.table)
                .where(self.c.id.in_(expired))
                .values(
                    status=case((gives_up, JobStatus.failed.value), else_=JobStatus.queued.value),
                    finished_at=case((gives_up, now), else_=None),
                    last_error="lease expired: the worker stopped before finishing",
                    run_at=now,
                    lease_owner=None,
                    lease_expires_at=None,
                    **{
                        name: case((gives_up, value), else_=self.c[name])
                        for name, value in (on_give_up or {}).items()
                    },
                )
                .returning(self.c.id, self.c.status, *returning)
            ).all()
        )

    def retry_failed(self, *, session: Session, job_id: int, now: datetime) -> Row[Any]:
        """An operator queues a failed row again, due now, with a fresh set of attempts."""
        row = session.execute(
            select(self.c.status).where(self.c.id == job_id).with_for_update()
        ).first()
        if row is None:
            raise NotFound(f"No {self.kind} row with id {job_id}.")
        if row.status != JobStatus.failed.value:
            raise Conflict(f"{self.kind.capitalize()} row {job_id} is {row.status}; only failed "
                           "rows are retried.")  # fmt: skip
        return session.execute(
            update(self.table)
            .where(self.c.id == job_id)
            .values(
                status=JobStatus.queued.value,
                attempts=0,
                run_at=now,
                finished_at=None,
                lease_owner=None,
                lease_expires_at=None,
            )
            .returning(self.table)
        ).one()

    def next_run_at(self, *, session: Session, now: datetime) -> datetime | None:
        """The earliest run time still ahead of `now` among queued rows (None: none)."""
        return session.scalar(
            select(func.min(self.c.run_at)).where(
                self.c.status == JobStatus.queued.value, self.c.run_at > now
            )
        )
