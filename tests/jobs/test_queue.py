"""The lease behaviour of every kind of job, tested once, on both engines: claims, leases,
expiry and recovery, backoff, attempts, an operator's retry. The queue's statements run in
the test's rolled-back session (`db`); claims that race and a worker's tick commit on
`engine`."""

import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from app.clock import FrozenClock
from app.db import new_session
from app.errors import Conflict, NotFound
from app.jobs.models import JobStatus
from app.jobs.queue import RetryPolicy
from app.jobs.worker import Worker
from tests.factories import Bind, writing
from tests.jobs.factories import QUEUE, RecordingHandler, add_jobs, job, statuses

LEASE = timedelta(seconds=60)


def claim(bind: Bind, owner: str, now: datetime, limit: int = 10) -> list[int]:
    """Lease due rows to `owner` (on an engine in a transaction of their own); their ids."""
    with writing(bind) as session:
        return [row.id for row in QUEUE.claim(session=session, owner=owner, now=now,
                                               limit=limit, lease=LEASE)]  # fmt: skip


def test_a_claim_takes_due_rows_in_queue_order_up_to_its_limit_and_counts_a_try(
    db: Session, clock: FrozenClock
) -> None:
    now = clock.now()
    late, early = (add_jobs(db, 1, run_at=now - timedelta(minutes=m), now=now)[0]
                   for m in (1, 5))  # fmt: skip
    held = add_jobs(db, 1, run_at=None, now=now)[0]
    future = add_jobs(db, 1, run_at=now + timedelta(seconds=1), now=now)[0]

    assert claim(db, "w1", now, limit=1) == [early]
    assert claim(db, "w1", now) == [late]
    assert claim(db, "w1", now) == []
    row = job(db, early)
    assert (row.status, row.attempts, row.lease_owner) == ("running", 1, "w1")
    assert row.lease_expires_at == now + LEASE
    assert statuses(db)[held] == statuses(db)[future] == "queued"


def test_concurrent_claims_never_share_a_row(engine: Engine, clock: FrozenClock) -> None:
    now = clock.now()
    add_jobs(engine, 60, run_at=now, now=now)
    claimed: list[list[int]] = [[] for _ in range(4)]

    def worker(index: int) -> None:
        while batch := claim(engine, f"w{index}", now, limit=7):
            claimed[index].extend(batch)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [job_id for batch in claimed for job_id in batch]
    assert len(every) == len(set(every)) == 60


def test_only_the_holder_renews_finishes_or_fails_a_row(db: Session, clock: FrozenClock) -> None:
    now = clock.now()
    [job_id] = add_jobs(db, 1, run_at=now, now=now)
    claim(db, "holder", now)
    later = now + timedelta(seconds=30)
    policy = RetryPolicy()
    assert QUEUE.renew(session=db, ids=[job_id], owner="other", now=later, lease=LEASE) == set()
    assert QUEUE.finish(session=db, ids=[job_id], owner="other", now=later) == set()
    assert QUEUE.fail(session=db, job_id=job_id, owner="other", error="x", now=later,
                      policy=policy) is None  # fmt: skip
    assert QUEUE.renew(session=db, ids=[job_id], owner="holder", now=later,
                       lease=LEASE) == {job_id}  # fmt: skip
    assert job(db, job_id).lease_expires_at == later + LEASE
    assert QUEUE.finish(session=db, ids=[job_id], owner="holder", now=later) == {job_id}
    row = job(db, job_id)
    assert (row.status, row.finished_at, row.lease_owner) == ("done", later, "holder")


def test_a_released_claim_is_queued_again_without_counting_a_try(
    db: Session, clock: FrozenClock
) -> None:
    now = clock.now()
    ids = add_jobs(db, 2, run_at=now, now=now)
    claim(db, "stopping", now)
    assert QUEUE.release(session=db, ids=ids, owner="stopping") == 2
    for job_id in ids:
        row = job(db, job_id)
        assert (row.status, row.attempts, row.lease_owner) == ("queued", 0, None)


def test_an_expired_lease_is_due_again_and_runs_out_of_attempts_rather_than_looping(
    db: Session, clock: FrozenClock
) -> None:
    now = clock.now()
    [job_id] = add_jobs(db, 1, run_at=now, now=now)
    policy = RetryPolicy(max_attempts=2)
    for attempt in (1, 2):
        assert claim(db, f"dies-{attempt}", now) == [job_id]
        assert QUEUE.recover_expired(session=db, now=now + LEASE / 2, policy=policy) == []
        now += LEASE + timedelta(seconds=1)
        [recovered] = QUEUE.recover_expired(session=db, now=now, policy=policy)
        assert recovered.id == job_id
        row = job(db, job_id)
        assert row.attempts == attempt
        assert row.last_error.startswith("lease expired")
    assert (row.status, row.finished_at) == ("failed", now)
    assert claim(db, "another", now) == []


def test_a_failed_try_backs_off_exponentially_up_to_a_cap_then_gives_up(
    db: Session, clock: FrozenClock
) -> None:
    now = clock.now()
    [job_id] = add_jobs(db, 1, run_at=now, now=now)
    policy = RetryPolicy(base=timedelta(seconds=30), cap=timedelta(minutes=1), max_attempts=4)
    delays = []
    for _ in range(3):
        claim(db, "w", now)
        failure = QUEUE.fail(session=db, job_id=job_id, owner="w", error="refused", now=now,
                             policy=policy)  # fmt: skip
        assert failure is not None and failure.run_at is not None
        delays.append(failure.run_at - now)
        now = failure.run_at
    assert delays == [timedelta(seconds=30), timedelta(minutes=1), timedelta(minutes=1)]
    claim(db, "w", now)
    failure = QUEUE.fail(session=db, job_id=job_id, owner="w", error="refused", now=now,
                         policy=policy)  # fmt: skip
    assert failure is not None and (failure.status, failure.run_at) == ("failed", None)
    row = job(db, job_id)
    assert (row.status, row.attempts, row.last_error) == ("failed", 4, "refused")


def test_a_retry_policy_gives_up_after_its_window_and_lands_before_a_deadline() -> None:
    start = FrozenClock().now()
    window = RetryPolicy(give_up_after=timedelta(hours=24))
    assert not window.gives_up(attempts=50, created_at=start, now=start + timedelta(hours=23))
    assert window.gives_up(attempts=1, created_at=start, now=start + timedelta(hours=24))
    deadline = RetryPolicy(
        base=timedelta(minutes=10), floor=timedelta(seconds=10),
        before_deadline=timedelta(minutes=5),
    )  # fmt: skip
    assert deadline.retry_at(attempts=1, now=start, deadline_at=start + timedelta(hours=1)) == (
        start + timedelta(minutes=10)
    )
    assert deadline.retry_at(attempts=1, now=start, deadline_at=start + timedelta(minutes=8)) == (
        start + timedelta(minutes=3)
    )
    assert deadline.retry_at(attempts=1, now=start, deadline_at=start) == start + timedelta(
        seconds=10
    )


def test_recurring_work_is_rescheduled_with_its_tries_afresh(
    db: Session, clock: FrozenClock
) -> None:
    now = clock.now()
    [job_id] = add_jobs(db, 1, run_at=now, now=now)
    claim(db, "w", now)
    tomorrow = now + timedelta(days=1)
    assert QUEUE.reschedule(session=db, ids=[job_id], owner="w", run_at=tomorrow) == {job_id}
    assert QUEUE.next_run_at(session=db, now=now) == tomorrow
    row = job(db, job_id)
    assert (row.status, row.run_at, row.attempts, row.lease_owner) == (
        "queued", tomorrow, 0, None
    )  # fmt: skip


def test_rows_are_rescheduled_each_for_its_own_moment_in_one_statement(
    db: Session, clock: FrozenClock
) -> None:
    now = clock.now()
    first, second, lost = add_jobs(db, 3, run_at=now, now=now)
    claim(db, "w", now)
    db.execute(QUEUE.table.update().where(QUEUE.c.id == lost).values(lease_owner="v"))
    moments = {
        first: now + timedelta(minutes=5),
        second: now + timedelta(hours=3),
        lost: now + timedelta(days=1),
    }
    queued = QUEUE.reschedule(session=db, ids=list(moments), owner="w", run_at=moments)
    assert queued == {first, second}
    assert [job(db, job_id).run_at for job_id in (first, second)] == [
        moments[first],
        moments[second],
    ]
    assert (job(db, lost).status, job(db, lost).lease_owner) == ("running", "v")


def test_an_operator_retries_only_failed_rows_due_at_once_with_fresh_attempts(
    db: Session, clock: FrozenClock
) -> None:
    now = clock.now()
    [failed, queued] = add_jobs(db, 2, run_at=now, now=now)
    db.execute(
        QUEUE.table.update()
        .where(QUEUE.c.id == failed)
        .values(status=JobStatus.failed.value, attempts=5, finished_at=now)
    )
    later = now + timedelta(hours=1)
    row = QUEUE.retry_failed(session=db, job_id=failed, now=later)
    assert (row.status, row.attempts, row.run_at, row.finished_at) == ("queued", 0, later, None)
    with pytest.raises(Conflict):
        QUEUE.retry_failed(session=db, job_id=queued, now=later)
    with pytest.raises(NotFound):
        QUEUE.retry_failed(session=db, job_id=10**6, now=later)


def test_a_tick_drains_every_full_batch_and_counts_what_it_did(
    engine: Engine, clock: FrozenClock
) -> None:
    now = clock.now()
    ids = add_jobs(engine, 25, run_at=now, now=now)
    handler = RecordingHandler(fail_ids=ids[:1])
    worker = Worker(engine=engine, clock=clock, handlers=[handler], batch_size=10, lease=LEASE,
                    interval=3600)  # fmt: skip
    result = worker.run_once()
    assert sorted(handler.ran) == ids[1:]
    assert result.claimed[QUEUE.kind] == 25
    assert result.of(QUEUE.kind) == {"done": 24, "retried": 1}
    # The failed row waits out its backoff; the worker's next wake-up is then.
    with new_session(engine) as session:
        assert handler.next_run_at(session=session, now=now) == now + timedelta(seconds=30)
    assert worker.run_once().claimed[QUEUE.kind] == 0
