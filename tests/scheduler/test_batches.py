"""A claimed batch runs in one transaction: few statements per removal, and a row that fails
inside it neither sinks nor doubles the others."""

import logging
from collections import Counter
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError

from app.clock import FrozenClock
from app.config import Settings
from app.scheduler.queue import RemovalRefused
from app.takedowns.service import carry_out_removals
from tests.factories import audit_log
from tests.scheduler.factories import (
    ingest_articles,
    jobs,
    moved,
    queue_takedown,
    removal_audit_counts,
    removed_article_ids,
)
from tests.takedowns.factories import load
from tests.workers import removal_worker


def test_a_batch_of_removals_takes_few_statements_per_row(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    article_ids = ingest_articles(client, ingest_headers, 40, publishers=2)
    now = clock.now()
    first = queue_takedown(engine, article_ids[:20], received_at=now, run_at=now)
    second = queue_takedown(engine, article_ids[20:], received_at=now, run_at=now)
    worker = removal_worker(engine, settings.model_copy(update={"removal_batch_size": 50}), clock)
    statements: Counter[str] = Counter()

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements[" ".join(statement.split()[:3])] += 1

    event.listen(engine, "before_cursor_execute", count)
    try:
        removals = worker.run_once(now).of("removal")
    finally:
        event.remove(engine, "before_cursor_execute", count)

    assert (removals["removed"], removals["completed_takedowns"]) == (40, 2)
    assert removal_audit_counts(engine) == dict.fromkeys(article_ids, 1)
    assert {load(engine, t).status for t in (first, second)} == {"completed"}
    # The article's own removal takes a few statements; everything the queue and the
    # takedown add is per batch or per takedown (it was ~11 per row, one row per transaction).
    assert sum(statements.values()) <= 5 * 40 + 60, statements


def test_a_row_failing_inside_a_batch_is_retried_alone_and_the_rest_done_once(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    article_ids = ingest_articles(client, ingest_headers, 6)
    now = clock.now()
    takedowns = [
        queue_takedown(engine, article_ids[i : i + 2], received_at=now, run_at=now)
        for i in (0, 2, 4)
    ]
    stuck = article_ids[3]

    def broken_for_one(**kwargs: Any) -> Any:
        if any(stuck in ids for ids in kwargs["removals"].values()):
            raise RuntimeError("storage unavailable")
        return carry_out_removals(**kwargs)

    worker = removal_worker(engine, settings, clock, carry_out=broken_for_one)
    caplog.set_level(logging.WARNING, logger="byline.scheduler")

    result = worker.run_once(now)

    removals = result.of("removal")
    assert (result.claimed["removal"], removals["removed"], removals["retried"]) == (6, 5, 1)
    assert removals["completed_takedowns"] == 2
    assert removed_article_ids(engine) == set(article_ids) - {stuck}
    assert removal_audit_counts(engine) == dict.fromkeys(set(article_ids) - {stuck}, 1)
    [retried] = [job for job in jobs(engine) if job.article_id == stuck]
    assert (retried.status, retried.attempts) == ("queued", 1)
    assert [load(engine, t).status for t in takedowns] == [
        "completed",
        "executing",
        "completed",
    ]
    assert any("one per transaction" in r.message for r in caplog.records)

    # The next try, alone and healthy, removes it; its request completes once.
    healthy = removal_worker(engine, settings, clock)
    removals = healthy.run_once(moved(now, seconds=30)).of("removal")
    assert (removals["removed"], removals["completed_takedowns"]) == (1, 1)
    assert removal_audit_counts(engine) == dict.fromkeys(article_ids, 1)
    assert load(engine, takedowns[1]).status == "completed"


def test_a_withdrawn_request_inside_a_batch_is_cancelled_and_the_others_removed(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    article_ids = ingest_articles(client, ingest_headers, 4)
    now = clock.now()
    kept = queue_takedown(engine, article_ids[:2], received_at=now, run_at=now)
    withdrawn = queue_takedown(engine, article_ids[2:], received_at=now, run_at=now)

    def refuse_withdrawn(**kwargs: Any) -> Any:
        if withdrawn in kwargs["removals"]:
            raise RemovalRefused("The takedown was withdrawn; nothing may be removed.")
        return carry_out_removals(**kwargs)

    worker = removal_worker(engine, settings, clock, carry_out=refuse_withdrawn)
    removals = worker.run_once(now).of("removal")

    assert (removals["removed"], removals["cancelled"], removals["retried"]) == (2, 2, 0)
    assert removed_article_ids(engine) == set(article_ids[:2])
    assert {job.status for job in jobs(engine, withdrawn)} == {"cancelled"}
    assert load(engine, kept).status == "completed"


def test_a_batch_whose_commit_fails_is_redone_row_by_row_within_the_same_attempt(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    article_ids = ingest_articles(client, ingest_headers, 3)
    now = clock.now()
    takedown_id = queue_takedown(engine, article_ids, received_at=now, run_at=now)
    calls: list[int] = []

    def locked_once(**kwargs: Any) -> Any:
        calls.append(sum(len(ids) for ids in kwargs["removals"].values()))
        if len(calls) == 1:  # the whole batch, once: "database is locked"
            raise OperationalError("UPDATE articles", None, Exception("database is locked"))
        return carry_out_removals(**kwargs)

    worker = removal_worker(engine, settings, clock, carry_out=locked_once)
    removals = worker.run_once(now).of("removal")

    assert calls == [3, 1, 1, 1]
    assert (removals["removed"], removals["retried"], removals["completed_takedowns"]) == (3, 0, 1)
    # One try each, the one their claim counted: the batch's failure is not a failed try.
    assert {(job.status, job.attempts) for job in jobs(engine)} == {("done", 1)}
    assert removal_audit_counts(engine) == dict.fromkeys(article_ids, 1)
    assert load(engine, takedown_id).status == "completed"


def test_a_batch_that_runs_past_half_its_lease_renews_it_for_the_rows_left(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    article_ids = ingest_articles(client, ingest_headers, 3)
    start = clock.now()
    queue_takedown(engine, article_ids, received_at=start, run_at=start)
    leases_seen: list[set[object]] = []

    def slow(**kwargs: Any) -> Any:
        # Rows not executed yet must stay leased beyond the clock, however slow this is.
        waiting = [job for job in jobs(engine) if job.status == "running"]
        leases_seen.append({job.lease_expires_at > clock.now() for job in waiting})
        removed = carry_out_removals(**kwargs)
        clock.advance(moved(start, seconds=40) - start)  # each removal takes 40 s
        return removed

    worker = removal_worker(engine, settings, clock, carry_out=slow, rows_per_transaction=1)
    removals = worker.run_once().of("removal")  # the clock read afresh at every step

    assert (removals["removed"], removals["lost"], removals["completed_takedowns"]) == (3, 0, 1)
    assert leases_seen == [{True}, {True}, {True}]
    assert removal_audit_counts(engine) == dict.fromkeys(article_ids, 1)


def two_requests_due(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine, clock: FrozenClock
) -> list[str]:
    """Two queued requests of two articles each, due now."""
    article_ids = ingest_articles(client, ingest_headers, 4)
    now = clock.now()
    return [
        queue_takedown(engine, article_ids[i : i + 2], received_at=now, run_at=now) for i in (0, 2)
    ]


def test_a_batchs_queued_requests_start_in_a_transaction_of_their_own_before_its_removals(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    """The move to executing (an exclusive lock on the request) commits before the batch's
    removals begin, so another worker's batch sharing the request waits only for that move;
    a failing batch leaves its requests executing, moved once."""
    now = clock.now()
    takedowns = two_requests_due(client, ingest_headers, engine, clock)
    seen_by_the_batch: list[str] = []

    def failing_batch(**kwargs: Any) -> Any:
        seen_by_the_batch.extend(load(engine, t).status for t in kwargs["removals"])
        raise RuntimeError("storage unavailable")

    worker = removal_worker(engine, settings, clock, carry_out=failing_batch)
    worker.run_once(now)

    assert seen_by_the_batch[:2] == ["executing", "executing"]  # committed before the batch
    assert [load(engine, t).status for t in takedowns] == ["executing", "executing"]
    assert Counter(action for action, _, _ in audit_log(engine))["executing"] == 2

    healthy = removal_worker(engine, settings, clock)
    removals = healthy.run_once(moved(now, seconds=60)).of("removal")
    assert (removals["removed"], removals["completed_takedowns"]) == (4, 2)
    assert Counter(action for action, _, _ in audit_log(engine))["executing"] == 2


def test_a_batch_whose_start_fails_starts_its_requests_itself(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    now = clock.now()
    takedowns = two_requests_due(client, ingest_headers, engine, clock)

    def unavailable(**_: Any) -> None:
        raise OperationalError("UPDATE takedowns", {}, Exception("server closed the connection"))

    worker = removal_worker(engine, settings, clock, start=unavailable)
    removals = worker.run_once(now).of("removal")

    assert (removals["removed"], removals["completed_takedowns"]) == (4, 2)
    assert [load(engine, t).status for t in takedowns] == ["completed", "completed"]
    log = Counter(action for action, _, _ in audit_log(engine))
    assert (log["executing"], log["completed"]) == (2, 2)
