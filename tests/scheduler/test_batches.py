"""A claimed batch runs in one transaction: few statements per removal, and a row that fails
inside it neither sinks nor doubles the others."""

import logging
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError

from app.clock import FrozenClock
from app.config import Settings
from app.errors import Conflict
from app.scheduler.runner import RemovalActions
from tests.scheduler.conftest import MakeRunner
from tests.scheduler.factories import (
    ingest_articles,
    jobs,
    moved,
    queue_takedown,
    removal_audit_counts,
    removed_article_ids,
    takedown,
)


def test_a_batch_of_removals_takes_few_statements_per_row(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    make_runner: MakeRunner,
    settings: Settings,
) -> None:
    article_ids = ingest_articles(client, ingest_headers, 40, publishers=2)
    now = clock.now()
    first = queue_takedown(engine, article_ids[:20], received_at=now, run_at=now)
    second = queue_takedown(engine, article_ids[20:], received_at=now, run_at=now)
    runner = make_runner(settings=settings.model_copy(update={"scheduler_batch_size": 50}))
    statements: Counter[str] = Counter()

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements[" ".join(statement.split()[:3])] += 1

    event.listen(engine, "before_cursor_execute", count)
    try:
        result = runner.run_once(now)
    finally:
        event.remove(engine, "before_cursor_execute", count)

    assert (result.removed, result.completed_takedowns) == (40, 2)
    assert removal_audit_counts(engine) == dict.fromkeys(article_ids, 1)
    assert {takedown(engine, t).status for t in (first, second)} == {"completed"}
    # The article's own removal takes a few statements; everything the queue and the
    # takedown add is per batch or per takedown (it was ~11 per row, one row per transaction).
    assert sum(statements.values()) <= 5 * 40 + 60, statements


def test_a_row_failing_inside_a_batch_is_retried_alone_and_the_rest_done_once(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    make_runner: MakeRunner,
    actions: RemovalActions,
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
        return actions.carry_out(**kwargs)

    runner = make_runner(actions=replace(actions, carry_out=broken_for_one))
    caplog.set_level(logging.WARNING, logger="byline.scheduler")

    result = runner.run_once(now)

    assert (result.claimed, result.removed, result.retried) == (6, 5, 1)
    assert result.completed_takedowns == 2
    assert removed_article_ids(engine) == set(article_ids) - {stuck}
    assert removal_audit_counts(engine) == dict.fromkeys(set(article_ids) - {stuck}, 1)
    [retried] = [job for job in jobs(engine) if job.article_id == stuck]
    assert (retried.status, retried.attempts) == ("queued", 1)
    assert [takedown(engine, t).status for t in takedowns] == [
        "completed",
        "executing",
        "completed",
    ]
    assert any("one per transaction" in r.message for r in caplog.records)

    # The next try, alone and healthy, removes it; its request completes once.
    result = make_runner().run_once(moved(now, seconds=30))
    assert (result.removed, result.completed_takedowns) == (1, 1)
    assert removal_audit_counts(engine) == dict.fromkeys(article_ids, 1)
    assert takedown(engine, takedowns[1]).status == "completed"


def test_a_withdrawn_request_inside_a_batch_is_cancelled_and_the_others_removed(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    make_runner: MakeRunner,
    actions: RemovalActions,
) -> None:
    article_ids = ingest_articles(client, ingest_headers, 4)
    now = clock.now()
    kept = queue_takedown(engine, article_ids[:2], received_at=now, run_at=now)
    withdrawn = queue_takedown(engine, article_ids[2:], received_at=now, run_at=now)

    def refuse_withdrawn(**kwargs: Any) -> Any:
        if withdrawn in kwargs["removals"]:
            raise Conflict("The takedown was withdrawn; nothing may be removed.")
        return actions.carry_out(**kwargs)

    result = make_runner(actions=replace(actions, carry_out=refuse_withdrawn)).run_once(now)

    assert (result.removed, result.cancelled, result.retried) == (2, 2, 0)
    assert removed_article_ids(engine) == set(article_ids[:2])
    assert {job.status for job in jobs(engine, withdrawn)} == {"cancelled"}
    assert takedown(engine, kept).status == "completed"


def test_a_batch_whose_commit_fails_is_redone_row_by_row_without_counting_an_attempt(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    make_runner: MakeRunner,
    actions: RemovalActions,
) -> None:
    article_ids = ingest_articles(client, ingest_headers, 3)
    now = clock.now()
    takedown_id = queue_takedown(engine, article_ids, received_at=now, run_at=now)
    calls: list[int] = []

    def locked_once(**kwargs: Any) -> Any:
        calls.append(sum(len(ids) for ids in kwargs["removals"].values()))
        if len(calls) == 1:  # the whole batch, once: "database is locked"
            raise OperationalError("UPDATE articles", None, Exception("database is locked"))
        return actions.carry_out(**kwargs)

    result = make_runner(actions=replace(actions, carry_out=locked_once)).run_once(now)

    assert calls == [3, 1, 1, 1]
    assert (result.removed, result.retried, result.completed_takedowns) == (3, 0, 1)
    assert {(job.status, job.attempts) for job in jobs(engine)} == {("done", 0)}
    assert removal_audit_counts(engine) == dict.fromkeys(article_ids, 1)
    assert takedown(engine, takedown_id).status == "completed"


def test_a_batch_that_runs_past_half_its_lease_renews_it_for_the_rows_left(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    make_runner: MakeRunner,
    actions: RemovalActions,
) -> None:
    article_ids = ingest_articles(client, ingest_headers, 3)
    start = clock.now()
    queue_takedown(engine, article_ids, received_at=start, run_at=start)
    leases_seen: list[set[object]] = []

    def slow(**kwargs: Any) -> Any:
        # Rows not executed yet must stay leased beyond the clock, however slow this is.
        waiting = [job for job in jobs(engine) if job.status == "running"]
        leases_seen.append({job.lease_expires_at > clock.now() for job in waiting})
        removed = actions.carry_out(**kwargs)
        clock.advance(moved(start, seconds=40) - start)  # each removal takes 40 s
        return removed

    runner = make_runner(actions=replace(actions, carry_out=slow), rows_per_transaction=1)
    result = runner.run_once()  # the clock read afresh at every step

    assert (result.removed, result.lost, result.completed_takedowns) == (3, 0, 1)
    assert leases_seen == [{True}, {True}, {True}]
    assert removal_audit_counts(engine) == dict.fromkeys(article_ids, 1)
