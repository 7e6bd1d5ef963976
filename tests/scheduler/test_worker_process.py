"""`byline worker` as a real process: --once, SIGTERM, SIGKILL mid-batch, and (PostgreSQL)
four workers draining one queue. Workers use the system clock, so rows here are due relative
to the real now; the tests wait on the processes (with timeouts), never on a fixed sleep."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, insert, select
from sqlmodel import col

from app.clock import FrozenClock
from app.config import TAKEDOWN_DEADLINE, Settings
from app.db import new_session, writer
from app.scheduler.models import RemovalJob
from app.takedowns.models import AuditEvent
from tests.factories import make_takedown
from tests.scheduler.factories import (
    ingest_articles,
    jobs,
    queue_takedown,
    removal_audit_counts,
    removed_article_ids,
)
from tests.takedowns.factories import load
from tests.workers import removal_worker

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 60.0


class Worker:
    """A `python -m app worker` process with its output in a file (a pipe could fill up)."""

    def __init__(self, database_url: str, log: Path, *args: str, **env: str) -> None:
        self.log = log
        environment = {
            **os.environ,
            "BYLINE_DATABASE_URL": database_url,
            "BYLINE_SCHEDULER_INTERVAL_SECONDS": "0.2",
            "BYLINE_SCHEDULER_LEASE_SECONDS": "60",
            "BYLINE_LOG_LEVEL": "INFO",
            **env,
        }
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app", "worker", *args],
                cwd=REPO,
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float = TIMEOUT) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"worker did not exit in {timeout} s:\n{self.output()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(TIMEOUT)


@pytest.fixture
def start_worker(database_url: str, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def start(*args: str, **env: str) -> Worker:
        # E-mails (no SMTP here) go to files in the test's directory, not the repository.
        env = {"BYLINE_MAIL_DIR": str(tmp_path / "mail"), **env}
        worker = Worker(database_url, tmp_path / f"worker-{len(started)}.log", *args, **env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def wait_for(
    condition: Callable[[], bool],
    workers: list[Worker],
    what: str,
    timeout: float = TIMEOUT,
    poll: float = 0.05,
) -> None:
    """Poll the database until `condition` holds, failing early if a worker died."""
    deadline = time.monotonic() + timeout
    while not condition():
        for worker in workers:
            if worker.process.poll() is not None:
                pytest.fail(f"worker exited ({worker.process.returncode}):\n{worker.output()}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:\n{workers[0].output()}")
        time.sleep(poll)


def status_counts(engine: Engine) -> Counter[str]:
    with new_session(engine) as session:
        rows = session.execute(
            select(RemovalJob.status, func.count()).group_by(col(RemovalJob.status))
        ).all()
    return Counter({status: count for status, count in rows})


def real_now() -> datetime:
    return datetime.now(UTC)


def test_worker_once_runs_one_tick_and_exits(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    start_worker: Callable[..., Worker],
) -> None:
    article_ids = ingest_articles(client, ingest_headers, 3)
    now = real_now()
    takedown_id = queue_takedown(engine, article_ids, received_at=now, run_at=now)

    worker = start_worker("--once")

    assert worker.wait() == 0, worker.output()
    assert "claimed 3, removed 3" in worker.output()
    assert removed_article_ids(engine) == set(article_ids)
    assert load(engine, takedown_id).status == "completed"


def test_worker_on_sigterm_finishes_the_current_row_and_gives_back_the_rest(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    start_worker: Callable[..., Worker],
) -> None:
    article_ids = ingest_articles(client, ingest_headers, 4)
    now = real_now()
    queue_takedown(engine, article_ids, received_at=now, run_at=now - timedelta(seconds=1))
    worker = start_worker("--test-pause-after-removal", "30")
    wait_for(lambda: status_counts(engine)["done"] == 1, [worker], "the first removal")

    worker.process.send_signal(signal.SIGTERM)

    assert worker.wait() == 0, worker.output()
    assert status_counts(engine) == {"done": 1, "queued": 3}
    # Given back untried: their claim's try is not counted.
    assert all(job.lease_owner is None and job.attempts == 0 for job in jobs(engine)[1:])
    assert "SIGTERM, stopping" in worker.output()


def test_worker_killed_mid_batch_is_finished_by_another_after_lease_expiry_exactly_once(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    start_worker: Callable[..., Worker],
    clock: FrozenClock,
    settings: Settings,
) -> None:
    article_ids = ingest_articles(client, ingest_headers, 6)
    now = real_now()
    takedown_id = queue_takedown(
        engine, article_ids, received_at=now, run_at=now - timedelta(seconds=1)
    )
    # The pause holds the worker between its first and second row of one claimed batch.
    worker = start_worker("--test-pause-after-removal", "30", BYLINE_SCHEDULER_BATCH_SIZE="6")
    wait_for(lambda: status_counts(engine)["done"] == 1, [worker], "the first removal")
    assert status_counts(engine) == {"done": 1, "running": 5}

    worker.process.send_signal(signal.SIGKILL)
    assert worker.wait() == -signal.SIGKILL

    survivor = removal_worker(engine, settings, clock, owner="survivor")
    lease_expires = max(job.lease_expires_at for job in jobs(engine) if job.lease_expires_at)
    assert survivor.run_once(lease_expires - timedelta(seconds=1)).claimed["removal"] == 0
    clock.set(lease_expires + timedelta(seconds=1))
    result = survivor.run_once(clock.now())

    removals = result.of("removal")
    assert (
        result.recovered["removal"],
        removals["removed"],
        removals["completed_takedowns"],
    ) == (5, 5, 1)
    assert removed_article_ids(engine) == set(article_ids)
    assert removal_audit_counts(engine) == dict.fromkeys(article_ids, 1)
    rows = jobs(engine)
    assert {job.status for job in rows} == {"done"}
    # The row done before the kill took one try; the five others the killed worker's and the
    # survivor's.
    assert sorted(job.attempts for job in rows) == [1, 2, 2, 2, 2, 2]
    assert Counter(job.lease_owner == survivor.owner for job in rows) == {True: 5, False: 1}
    assert load(engine, takedown_id).status == "completed"
    with new_session(engine) as session:
        completions = session.scalar(
            select(func.count()).where(
                col(AuditEvent.action) == "completed", col(AuditEvent.takedown_id) == takedown_id
            )
        )
    assert completions == 1


def test_four_workers_drain_5000_removals_each_exactly_once(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    start_worker: Callable[..., Worker],
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip(
            "several worker processes share one queue on PostgreSQL (SKIP LOCKED); SQLite "
            "deployments run one writer, so this test is PostgreSQL-only"
        )
    # 50 requests of 100 articles, each naming one publisher's articles, all filed at once.
    article_ids = ingest_articles(client, ingest_headers, 5_000, publishers=50)
    now = real_now()
    takedown_ids = [make_takedown(engine, received_at=now) for _ in range(50)]
    # The rows are interleaved (as enqueue_removals would leave them for requests filed in
    # the same instant, one article at a time), so each claimed batch spans many requests
    # and the workers finish rows of one request concurrently: the hard case for completing
    # each request exactly once.
    with new_session(writer(engine)) as session, session.begin():
        session.execute(
            insert(RemovalJob),
            [
                {
                    "takedown_id": takedown_ids[index % 50],
                    "article_id": article_id,
                    "status": "queued",
                    "run_at": now - timedelta(seconds=1),
                    "deadline_at": now + TAKEDOWN_DEADLINE,
                    "attempts": 0,
                    "created_at": now,
                }
                for index, article_id in enumerate(article_ids)
            ],
        )

    workers = [start_worker(BYLINE_SCHEDULER_BATCH_SIZE="20") for _ in range(4)]
    started = time.monotonic()
    # Generous: the CI machine has two cores shared with other jobs.
    wait_for(
        lambda: status_counts(engine)["done"] == 5_000, workers, "5,000 removals", 300, poll=0.5
    )
    print(f"4 workers drained 5,000 removals in {time.monotonic() - started:.1f} s")
    for worker in workers:
        worker.process.send_signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait() == 0, worker.output()

    assert status_counts(engine) == {"done": 5_000}
    assert removal_audit_counts(engine) == dict.fromkeys(article_ids, 1)
    # Each row claimed once: no lease expired and nothing was retried.
    assert all(job.attempts == 1 for job in jobs(engine))
    owners = Counter(job.lease_owner for job in jobs(engine))
    assert len(owners) >= 2, owners
    with new_session(engine) as session:
        completions = Counter(
            session.scalars(
                select(AuditEvent.takedown_id).where(col(AuditEvent.action) == "completed")
            )
        )
    assert completions == dict.fromkeys(takedown_ids, 1)
