"""/metrics shows the queue as it is: depth, the oldest due row's age, held rows, and rows near
or past their deadline, whichever process runs the removals."""

from datetime import timedelta

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.clock import FrozenClock
from app.config import Settings
from tests.scheduler.factories import ingest_articles, queue_takedown
from tests.workers import removal_worker


def test_metrics_show_depth_age_held_and_deadline_rows(
    client: TestClient,
    app: FastAPI,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    a, b, c, d = ingest_articles(client, ingest_headers, 4)
    now = clock.now()
    queue_takedown(engine, [a], received_at=now, run_at=now - timedelta(minutes=10))
    queue_takedown(engine, [b], received_at=now, run_at=now - timedelta(minutes=5))
    queue_takedown(engine, [c], received_at=now - timedelta(hours=23.5), run_at=None)
    queue_takedown(
        engine, [d], received_at=now - timedelta(hours=25), run_at=now - timedelta(hours=25)
    )

    metrics = client.get("/metrics").text

    for line in (
        'byline_removal_queue_rows{status="queued"} 4.0',
        'byline_removal_queue_rows{status="failed"} 0.0',
        "byline_removal_queue_depth 3.0",
        "byline_removal_queue_held_rows 1.0",
        "byline_removal_oldest_due_age_seconds 90000.0",
        "byline_removal_past_deadline_rows 1.0",
        "byline_removal_near_deadline_rows 1.0",
    ):
        assert line in metrics, line

    # A worker of this process: it counts into the app's /metrics.
    removal_worker(engine, settings, clock, counters=app.state.job_counters).run_once(now)
    metrics = client.get("/metrics").text
    for line in (
        'byline_removal_queue_rows{status="queued"} 1.0',
        "byline_removal_queue_depth 0.0",
        "byline_removal_oldest_due_age_seconds 0.0",
        'byline_job_executions_total{kind="removal",outcome="removed"} 3.0',
        "byline_removal_past_deadline_rows 0.0",
        "byline_removal_near_deadline_rows 1.0",
    ):
        assert line in metrics, line
