"""The queue's contract with takedowns, and claims: due rows only, earliest deadline first,
bounded, and never the same row to two workers. The queue's statements run in the test's
rolled-back session (`db`); claims that race commit on `engine`."""

import threading
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session

from app.clock import FrozenClock
from app.scheduler.queue import (
    cancel_removals,
    enqueue_removals,
    open_removal_counts,
    schedule_removals,
)
from tests.factories import make_articles, make_takedown
from tests.scheduler.factories import (
    LEASE,
    claim_removals,
    ingest_articles,
    jobs,
    queue_takedown,
)


def test_enqueue_is_idempotent_per_takedown_and_article(db: Session, clock: FrozenClock) -> None:
    now = clock.now()
    article_ids = make_articles(db, 3, now=now)
    takedown_id = make_takedown(db, received_at=now)
    common = {"takedown_id": takedown_id, "deadline_at": now + timedelta(hours=24), "now": now}
    assert enqueue_removals(session=db, article_ids=article_ids[:2], run_at=now, **common)
    assert enqueue_removals(
        session=db, article_ids=[*article_ids, article_ids[0]], run_at=now, **common
    ) == 1  # fmt: skip
    assert open_removal_counts(session=db, takedown_ids=[takedown_id]) == {takedown_id: 3}
    assert [job.article_id for job in jobs(db)] == article_ids
    assert {(job.status, job.attempts) for job in jobs(db)} == {("queued", 0)}


def test_held_rows_wait_until_scheduled_and_cancelled_rows_never_run(
    db: Session, clock: FrozenClock
) -> None:
    now = clock.now()
    article_ids = make_articles(db, 4, now=now)
    held = queue_takedown(db, article_ids[:2], received_at=now, run_at=None)
    doomed = queue_takedown(db, article_ids[2:], received_at=now, run_at=now)
    assert cancel_removals(session=db, takedown_id=doomed, now=now) == 2
    assert open_removal_counts(session=db, takedown_ids=[doomed]) == {doomed: 0}
    assert claim_removals(db, owner="a", now=now) == []
    assert schedule_removals(session=db, takedown_id=held, run_at=now, now=now) == 2
    claimed = claim_removals(db, owner="a", now=now)
    assert [job.article_id for job in claimed] == article_ids[:2]


def test_claims_take_due_rows_earliest_deadline_first_in_bounded_batches(
    db: Session, clock: FrozenClock
) -> None:
    now = clock.now()
    article_ids = make_articles(db, 5, now=now)
    later = queue_takedown(db, article_ids[:2], received_at=now, run_at=now)
    sooner = queue_takedown(db, article_ids[2:4], received_at=now - timedelta(hours=3), run_at=now)
    queue_takedown(db, article_ids[4:], received_at=now, run_at=now + timedelta(seconds=1))

    first = claim_removals(db, owner="a", now=now, limit=3)
    second = claim_removals(db, owner="b", now=now, limit=3)
    third = claim_removals(db, owner="c", now=now, limit=3)

    assert [job.takedown_id for job in first] == [sooner, sooner, later]
    assert [job.takedown_id for job in second] == [later]
    assert third == []
    running = {job.id: job for job in jobs(db) if job.status == "running"}
    assert {running[job.id].lease_owner for job in first} == {"a"}
    assert {running[job.id].lease_expires_at for job in first} == {now + LEASE}
    assert {running[job.id].attempts for job in first} == {1}  # a try counted per claim


def test_concurrent_claims_never_share_a_row(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine, clock: FrozenClock
) -> None:
    article_ids = ingest_articles(client, ingest_headers, 200)
    now = clock.now()
    for offset in range(0, 200, 20):
        queue_takedown(engine, article_ids[offset : offset + 20], received_at=now, run_at=now)
    claims: dict[str, list[int]] = {}
    start = threading.Barrier(4)

    def claim(owner: str) -> None:
        start.wait()
        mine: list[int] = []
        while True:
            batch = claim_removals(engine, owner=owner, now=now, limit=7)
            if not batch:
                break
            mine.extend(job.id for job in batch)
        claims[owner] = mine

    threads = [threading.Thread(target=claim, args=(f"worker-{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    claimed = [job_id for mine in claims.values() for job_id in mine]
    assert len(claimed) == 200 and len(set(claimed)) == 200
    owners = {job.id: job.lease_owner for job in jobs(engine)}
    assert all(owners[job_id] == owner for owner, mine in claims.items() for job_id in mine)
