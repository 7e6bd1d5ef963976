"""The removal worker carries out due removals on time, earliest deadline first, exactly
once."""

import logging
import threading
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update

from app.clock import FrozenClock
from app.config import Settings
from app.db import new_session, writer
from app.jobs.models import JobStatus
from app.scheduler.models import RemovalJob
from app.scheduler.queue import RemovalRefused, cancel_removals
from app.scheduler.removals import removal_retry_policy
from app.takedowns.service import carry_out_removals
from tests.scheduler.factories import (
    claim_removals,
    ingest_articles,
    jobs,
    queue_takedown,
    removal_audit_counts,
    removal_order,
    removed_article_ids,
    run_claimed,
)
from tests.takedowns.factories import load
from tests.workers import removal_worker

WINDOW = timedelta(hours=4)


def test_review_window_removal_waits_for_the_window_then_runs_at_the_first_tick(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    [article_id] = ingest_articles(client, ingest_headers, 1)
    filed_at = clock.now()
    takedown_id = queue_takedown(
        engine, [article_id], received_at=filed_at, run_at=filed_at + WINDOW
    )
    worker = removal_worker(engine, settings, clock)

    result = worker.run_once(filed_at + WINDOW - timedelta(seconds=1))
    assert result.claimed["removal"] == 0
    assert client.get(f"/v1/articles/{article_id}").status_code == 200

    result = worker.run_once(filed_at + WINDOW)
    removals = result.of("removal")
    assert (result.claimed["removal"], removals["removed"], removals["completed_takedowns"]) == (
        1,
        1,
        1,
    )
    assert client.get(f"/v1/articles/{article_id}").status_code == 451
    assert load(engine, takedown_id).status == "completed"
    assert load(engine, takedown_id).completed_at == filed_at + WINDOW
    [job] = jobs(engine, takedown_id)
    # Its one try, counted when it was claimed.
    assert (job.status, job.finished_at, job.attempts) == ("done", filed_at + WINDOW, 1)


def test_verified_claimants_removal_runs_at_the_next_tick(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    article_ids = ingest_articles(client, ingest_headers, 3)
    filed_at = clock.now()
    takedown_id = queue_takedown(engine, article_ids, received_at=filed_at, run_at=filed_at)

    result = removal_worker(engine, settings, clock).run_once(filed_at + timedelta(seconds=5))

    removals = result.of("removal")
    assert (result.claimed["removal"], removals["removed"], removals["completed_takedowns"]) == (
        3,
        3,
        1,
    )
    assert removed_article_ids(engine) == set(article_ids)
    assert removal_audit_counts(engine) == dict.fromkeys(article_ids, 1)
    assert load(engine, takedown_id).status == "completed"


def test_held_rows_of_an_escalated_request_are_never_claimed(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    [article_id] = ingest_articles(client, ingest_headers, 1)
    queue_takedown(engine, [article_id], received_at=clock.now(), run_at=None, status="escalated")

    result = removal_worker(engine, settings, clock).run_once(clock.now() + timedelta(hours=30))

    assert result.claimed["removal"] == 0
    assert removed_article_ids(engine) == set()


def test_after_30_hours_down_overdue_rows_go_first_and_the_breach_shows(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    article_ids = ingest_articles(client, ingest_headers, 8)
    start = clock.now()
    # Filed at T+20h (due, not overdue at T+30h), then T+2h, T+1h, T: queue order is the
    # reverse of deadline order.
    filed_hours = [20, 2, 1, 0]
    takedowns = [
        queue_takedown(
            engine,
            article_ids[2 * i : 2 * i + 2],
            received_at=start + timedelta(hours=hours),
            run_at=start + timedelta(hours=hours),
        )
        for i, hours in enumerate(filed_hours)
    ]
    clock.set(start + timedelta(hours=30))  # the scheduler was down until now
    metrics = client.get("/metrics").text
    assert "byline_removal_past_deadline_rows 6.0" in metrics
    assert "byline_removal_queue_depth 8.0" in metrics

    small_batches = settings.model_copy(update={"removal_batch_size": 2})
    result = removal_worker(engine, small_batches, clock).run_once(clock.now())

    removals = result.of("removal")
    assert (
        removals["removed"],
        removals["completed_takedowns"],
        result.swept["breaches_recorded"],
    ) == (8, 4, 3)
    assert removal_order(engine) == [t for t in reversed(takedowns) for _ in range(2)]
    assert "byline_removal_past_deadline_rows 0.0" in client.get("/metrics").text
    figures = client.get("/v1/transparency").json()
    assert figures["breaches"] == {
        "total": 3,
        "completed_late": 3,
        "open_past_due": 0,
        "escalations_unanswered": 0,
        "answered_late": 0,
    }
    assert figures["share_within_24h"] == 1 / 4


def test_a_removal_that_raises_is_retried_with_backoff_then_failed_and_shown(
    client: TestClient,
    app: FastAPI,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
    admin_headers: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    [article_id] = ingest_articles(client, ingest_headers, 1)
    takedown_id = queue_takedown(engine, [article_id], received_at=clock.now(), run_at=clock.now())

    def broken(**_: object) -> bool:
        raise RuntimeError("storage unavailable")

    # It counts into the app's /metrics.
    worker = removal_worker(
        engine, settings, clock, counters=app.state.job_counters, carry_out=broken
    )
    caplog.set_level(logging.WARNING, logger="byline.scheduler")

    assert worker.run_once(clock.now()).of("removal")["retried"] == 1
    [job] = jobs(engine)
    assert (job.status, job.attempts, job.run_at) == (
        "queued",
        1,
        clock.now() + timedelta(seconds=30),
    )
    assert job.last_error == "RuntimeError: storage unavailable"
    assert worker.run_once(clock.advance(timedelta(seconds=29))).claimed["removal"] == 0
    assert worker.run_once(clock.advance(timedelta(seconds=1))).of("removal")["retried"] == 1
    [job] = jobs(engine)
    assert (job.attempts, job.run_at) == (2, clock.now() + timedelta(seconds=60))
    assert worker.run_once(clock.advance(timedelta(seconds=60))).of("removal")["failed"] == 1
    assert worker.run_once(clock.advance(timedelta(hours=1))).claimed["removal"] == 0

    [job] = jobs(engine)
    assert (job.status, job.attempts) == ("failed", 3)
    assert client.get(f"/v1/articles/{article_id}").status_code == 200
    assert load(engine, takedown_id).status == "queued"
    assert any(
        r.levelno == logging.ERROR and "failed for good" in r.message for r in caplog.records
    )
    metrics = client.get("/metrics").text
    assert 'byline_removal_queue_rows{status="failed"} 1.0' in metrics
    assert 'byline_job_failures_total{kind="removal"} 3.0' in metrics
    assert 'byline_job_executions_total{kind="removal",outcome="failed"} 1.0' in metrics
    listed = client.get("/v1/admin/removals?status=failed", headers=admin_headers)
    assert listed.status_code == 200
    [item] = listed.json()["items"]
    assert (item["id"], item["article_id"], item["attempts"]) == (job.id, article_id, 3)
    assert item["last_error"] == "RuntimeError: storage unavailable"
    assert client.get("/v1/admin/removals?status=failed").status_code == 401


def test_a_failed_row_keeps_its_takedown_open_until_an_operator_retries_it(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
    admin_headers: dict[str, str],
) -> None:
    stuck, fine = ingest_articles(client, ingest_headers, 2)
    takedown_id = queue_takedown(engine, [stuck, fine], received_at=clock.now(), run_at=clock.now())

    def broken_for_one(**kwargs: Any) -> Any:
        if any(stuck in ids for ids in kwargs["removals"].values()):
            raise RuntimeError("storage unavailable")
        return carry_out_removals(**kwargs)

    broken_worker = removal_worker(engine, settings, clock, carry_out=broken_for_one)
    for _ in range(3):
        broken_worker.run_once(clock.advance(timedelta(minutes=10)))
    failed = next(job for job in jobs(engine) if job.status == "failed")
    assert removed_article_ids(engine) == {fine}
    assert load(engine, takedown_id).status == "executing"

    response = client.post(f"/v1/admin/removals/{failed.id}/retry", headers=admin_headers)
    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["attempts"]) == ("queued", 0)
    again = client.post(f"/v1/admin/removals/{failed.id}/retry", headers=admin_headers)
    assert again.status_code == 409
    assert client.post("/v1/admin/removals/999999/retry", headers=admin_headers).status_code == 404

    removals = removal_worker(engine, settings, clock).run_once(clock.now()).of("removal")
    assert (removals["removed"], removals["completed_takedowns"]) == (1, 1)
    assert removed_article_ids(engine) == {stuck, fine}
    assert load(engine, takedown_id).status == "completed"


def test_retries_are_pulled_in_before_the_deadline() -> None:
    retry_at = removal_retry_policy(max_attempts=3).retry_at
    now = FrozenClock().now()
    assert retry_at(attempts=1, now=now, deadline_at=now + timedelta(hours=5)) == now + timedelta(
        seconds=30
    )
    assert retry_at(attempts=10, now=now, deadline_at=now + timedelta(hours=5)) == now + timedelta(
        minutes=15
    )
    assert retry_at(attempts=4, now=now, deadline_at=now + timedelta(minutes=6)) == now + timedelta(
        minutes=1
    )
    assert retry_at(attempts=4, now=now, deadline_at=now - timedelta(minutes=1)) == now + timedelta(
        seconds=10
    )


def test_withdrawn_and_rejected_requests_remove_nothing(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    article_ids = ingest_articles(client, ingest_headers, 4)
    filed_at = clock.now()
    withdrawn = queue_takedown(
        engine, article_ids[:2], received_at=filed_at, run_at=filed_at + WINDOW
    )
    rejected = queue_takedown(
        engine, article_ids[2:], received_at=filed_at, run_at=filed_at + WINDOW
    )
    with new_session(writer(engine)) as session, session.begin():
        assert cancel_removals(session=session, takedown_id=withdrawn, now=clock.now()) == 2
        assert cancel_removals(session=session, takedown_id=rejected, now=clock.now()) == 2

    result = removal_worker(engine, settings, clock).run_once(filed_at + WINDOW)

    assert result.claimed["removal"] == 0
    assert removed_article_ids(engine) == set()
    assert {job.status for job in jobs(engine)} == {"cancelled"}


def test_a_request_withdrawn_while_its_row_runs_is_cancelled_not_removed(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    [article_id] = ingest_articles(client, ingest_headers, 1)
    queue_takedown(engine, [article_id], received_at=clock.now(), run_at=clock.now())

    def refused(**_: object) -> bool:
        raise RemovalRefused("The takedown was withdrawn; nothing may be removed.")

    worker = removal_worker(engine, settings, clock, carry_out=refused)
    removals = worker.run_once(clock.now()).of("removal")

    assert (removals["cancelled"], removals["removed"], removals["retried"]) == (1, 0, 0)
    [job] = jobs(engine)
    assert job.status == "cancelled"
    assert job.last_error is not None and "withdrawn" in job.last_error
    assert removed_article_ids(engine) == set()


def test_an_expired_lease_is_requeued_and_the_row_done_once(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    article_ids = ingest_articles(client, ingest_headers, 2)
    takedown_id = queue_takedown(engine, article_ids, received_at=clock.now(), run_at=clock.now())
    # A worker claimed the rows, then died.
    claimed = claim_removals(engine, owner="dead", now=clock.now())
    assert len(claimed) == 2
    survivor = removal_worker(engine, settings, clock)
    assert survivor.run_once(clock.advance(timedelta(seconds=59))).claimed["removal"] == 0

    result = survivor.run_once(clock.advance(timedelta(seconds=2)))

    removals = result.of("removal")
    assert (
        result.recovered["removal"],
        removals["removed"],
        removals["completed_takedowns"],
    ) == (2, 2, 1)
    assert removal_audit_counts(engine) == dict.fromkeys(article_ids, 1)
    # Two tries each: the dead worker's, then the survivor's.
    assert {(job.status, job.attempts) for job in jobs(engine)} == {("done", 2)}
    assert load(engine, takedown_id).status == "completed"


def test_a_runner_that_lost_its_lease_does_not_execute_the_row(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    [article_id] = ingest_articles(client, ingest_headers, 1)
    queue_takedown(engine, [article_id], received_at=clock.now(), run_at=clock.now())
    slow = removal_worker(engine, settings, clock, owner="slow")
    [job] = claim_removals(engine, owner=slow.owner, now=clock.now(), limit=1)
    # Its lease expired; another worker requeued and finished the row.
    fast = removal_worker(engine, settings, clock, owner="fast")
    assert fast.run_once(clock.advance(timedelta(minutes=2))).of("removal")["removed"] == 1

    assert run_claimed(slow, [job], clock.now()).of("removal") == {"lost": 1}
    assert removal_audit_counts(engine) == {article_id: 1}
    [row] = jobs(engine)
    assert (row.status, row.lease_owner) == ("done", fast.owner)


def test_a_row_whose_article_was_removed_already_is_done_without_a_second_removal(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    [article_id] = ingest_articles(client, ingest_headers, 1)
    first = queue_takedown(engine, [article_id], received_at=clock.now(), run_at=clock.now())
    second = queue_takedown(engine, [article_id], received_at=clock.now(), run_at=clock.now())

    removals = removal_worker(engine, settings, clock).run_once(clock.now()).of("removal")

    assert (
        removals["removed"],
        removals["already_removed"],
        removals["completed_takedowns"],
    ) == (1, 1, 2)
    assert removal_audit_counts(engine) == {article_id: 1}
    assert {load(engine, t).status for t in (first, second)} == {"completed"}


def test_a_stopping_runner_gives_back_the_rest_of_its_batch(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    article_ids = ingest_articles(client, ingest_headers, 5)
    queue_takedown(engine, article_ids, received_at=clock.now(), run_at=clock.now())
    stop = threading.Event()
    worker = removal_worker(engine, settings, clock, rows_per_transaction=2)
    [handler] = worker.handlers
    original = handler.execute_together

    def execute_then_stop(batch, now, job):  # type: ignore[no-untyped-def]
        outcomes = original(batch, now, job)
        stop.set()  # SIGTERM arrives during the first transaction
        return outcomes

    handler.execute_together = execute_then_stop  # type: ignore[method-assign]
    result = worker.run_once(clock.now(), stop=stop)

    removals = result.of("removal")
    assert (result.claimed["removal"], removals["removed"], removals["released"]) == (5, 2, 3)
    assert sorted(job.status for job in jobs(engine)) == ["done"] * 2 + ["queued"] * 3
    # Given back untried: the claim's try is not counted.
    assert all(
        job.lease_owner is None and job.attempts == 0
        for job in jobs(engine)
        if job.status == "queued"
    )


def test_near_and_past_deadline_rows_log_a_warning_then_an_error_once(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    [article_id] = ingest_articles(client, ingest_headers, 1)
    filed_at = clock.now()
    queue_takedown(engine, [article_id], received_at=filed_at, run_at=None, status="escalated")
    worker = removal_worker(engine, settings, clock)
    caplog.set_level(logging.WARNING, logger="byline.scheduler")

    worker.run_once(filed_at + timedelta(hours=22, minutes=59))
    assert not caplog.records
    worker.run_once(filed_at + timedelta(hours=23, minutes=1))
    worker.run_once(filed_at + timedelta(hours=23, minutes=2))
    worker.run_once(filed_at + timedelta(hours=24, minutes=1))
    worker.run_once(filed_at + timedelta(hours=25))

    levels = [(r.levelno, r.message) for r in caplog.records]
    assert levels == [
        (logging.WARNING, "removal due within the hour and not done"),
        (logging.ERROR, "removal past its deadline"),
    ]
    record = caplog.records[1]
    assert record.article_id == article_id and record.held is True  # type: ignore[attr-defined]
    assert "privata" not in caplog.text.lower()


def test_the_takedown_completes_once_when_rows_finish_in_separate_ticks(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    article_ids = ingest_articles(client, ingest_headers, 3)
    takedown_id = queue_takedown(engine, article_ids, received_at=clock.now(), run_at=clock.now())
    with new_session(writer(engine)) as session, session.begin():
        # One row is not due yet.
        session.execute(
            update(RemovalJob)
            .where(RemovalJob.article_id == article_ids[2])  # type: ignore[arg-type]
            .values(run_at=clock.now() + timedelta(hours=1))
        )
    worker = removal_worker(engine, settings, clock)

    assert worker.run_once(clock.now()).of("removal")["completed_takedowns"] == 0
    assert load(engine, takedown_id).status == "executing"
    later = clock.advance(timedelta(hours=1))
    assert worker.run_once(later).of("removal")["completed_takedowns"] == 1
    assert load(engine, takedown_id).status == "completed"
    assert [j.status for j in jobs(engine)] == [JobStatus.done.value] * 3


def test_a_row_whose_worker_dies_every_time_ends_failed_not_looping(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    [article_id] = ingest_articles(client, ingest_headers, 1)
    queue_takedown(engine, [article_id], received_at=clock.now(), run_at=clock.now())
    caplog.set_level(logging.WARNING, logger="byline.scheduler")
    for _ in range(3):  # scheduler_max_attempts: each claim counts a try
        assert claim_removals(engine, owner="doomed", now=clock.now(), limit=1)
        clock.advance(timedelta(seconds=61))
        removal_worker(engine, settings, clock).run_once(clock.now(), stop=_stopped())

    [job] = jobs(engine)
    assert (job.status, job.attempts, job.finished_at) == ("failed", 3, clock.now())
    assert job.last_error == "lease expired: the worker stopped before finishing"
    assert [r.levelname for r in caplog.records if "lease expired" in r.message] == [
        "WARNING",
        "WARNING",
        "ERROR",
    ]


def _stopped() -> threading.Event:
    """A stop already set: the tick only recovers expired leases (and sweeps), it claims
    nothing."""
    stop = threading.Event()
    stop.set()
    return stop


def test_the_tick_forgets_rate_limit_windows_that_have_ended(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    from app.takedowns.models import RateLimitCounter
    from app.takedowns.ratelimit import count_hit

    start = clock.now()
    with new_session(writer(engine)) as session, session.begin():
        count_hit(session=session, key="gone", rate=settings.rate_per_address, now=start)
    later = start + timedelta(hours=1, minutes=30)
    with new_session(writer(engine)) as session, session.begin():
        count_hit(session=session, key="recent", rate=settings.rate_per_address, now=later)

    result = removal_worker(engine, settings, clock).run_once(later)

    assert result.swept["rate_windows_forgotten"] == 1

    with new_session(engine) as session:
        keys = {row.key for row in session.scalars(select(RateLimitCounter))}
    assert keys == {"recent"}
