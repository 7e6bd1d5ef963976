"""Work made due now starts now: an idle worker whose interval is an hour is woken by the
commit that made its work due (in-process on both engines; by NOTIFY from another process on
PostgreSQL), and not by a rollback. The waits below are bounds on a wake-up that happens in
milliseconds, far below the hour the interval would take."""

import threading
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import Engine, make_url, text

from app.clock import SystemClock
from app.db import new_session, writer
from app.jobs import wakeups
from app.jobs.worker import BackgroundWorkers, Worker
from tests.conftest import ENGINE
from tests.jobs.factories import QUEUE, RecordingHandler, add_jobs

HOUR = 3600.0
WAKE_BOUND_SECONDS = 10.0
postgresql_only = pytest.mark.skipif(ENGINE != "postgres", reason="NOTIFY is PostgreSQL's")


@pytest.fixture
def handler() -> RecordingHandler:
    return RecordingHandler()


@pytest.fixture
def idle_worker(engine: Engine, handler: RecordingHandler) -> Iterator[BackgroundWorkers]:
    """One worker with an hour's interval, started and idle (its first tick found nothing)."""
    worker = Worker(engine=engine, clock=SystemClock(), handlers=[handler], batch_size=10,
                    lease=timedelta(seconds=60), interval=HOUR)  # fmt: skip
    running = BackgroundWorkers([worker], listeners=wakeups.listeners_for(engine, worker.kinds))
    running.start()
    for listener in running.listeners:
        assert listener.listening.wait(WAKE_BOUND_SECONDS)
    assert worker.waiting.wait(WAKE_BOUND_SECONDS)
    yield running
    assert running.stop(WAKE_BOUND_SECONDS), "a stop wakes the worker: it ends at once"


def test_a_commit_that_makes_work_due_wakes_an_idle_worker(
    engine: Engine, handler: RecordingHandler, idle_worker: BackgroundWorkers
) -> None:
    now = SystemClock().now()
    [job_id] = add_jobs(engine, 1, run_at=now, now=now)
    assert not handler.ran_event.is_set()
    with new_session(writer(engine)) as session, session.begin():
        wakeups.wake(session, QUEUE.kind)
    assert handler.ran_event.wait(WAKE_BOUND_SECONDS)
    assert handler.ran == [job_id]


def test_a_rolled_back_transaction_wakes_nobody(engine: Engine) -> None:
    bell = wakeups.WakeUp([QUEUE.kind])
    wakeups.SIGNALS.subscribe(bell)
    try:
        with new_session(writer(engine)) as session:
            session.begin()
            wakeups.wake(session, QUEUE.kind)
            session.rollback()
        assert not bell.is_set()
        with new_session(writer(engine)) as session, session.begin():
            wakeups.wake(session, "another-kind")
        assert not bell.is_set()
        with new_session(writer(engine)) as session, session.begin():
            wakeups.wake(session, QUEUE.kind)
        assert bell.is_set()
    finally:
        wakeups.SIGNALS.unsubscribe(bell)


def _notify_from_another_process(engine: Engine, kind: str) -> None:
    """What another API process's commit sends: NOTIFY on a connection of its own."""
    url = make_url(str(engine.url.render_as_string(hide_password=False)))
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f"NOTIFY {wakeups.CHANNEL}, '{kind}'")


@postgresql_only
def test_a_notify_from_another_process_wakes_the_worker(
    engine: Engine, handler: RecordingHandler, idle_worker: BackgroundWorkers
) -> None:
    now = SystemClock().now()
    [job_id] = add_jobs(engine, 1, run_at=now, now=now)
    # This process is not told in-process: only the NOTIFY can wake the worker.
    _notify_from_another_process(engine, QUEUE.kind)
    assert handler.ran_event.wait(WAKE_BOUND_SECONDS)
    assert handler.ran == [job_id]


@postgresql_only
def test_a_listener_whose_connection_is_cut_reconnects_and_wakes_again(
    engine: Engine, handler: RecordingHandler, idle_worker: BackgroundWorkers
) -> None:
    [listener] = idle_worker.listeners
    with engine.connect() as connection:
        cut = (
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND query LIKE 'LISTEN %'"
                )
            )
            .scalars()
            .all()
        )
    assert cut == [True]
    reconnected = threading.Event()

    def wait_for_reconnection() -> None:
        # `listening` is cleared when the loss is noticed, then set again once LISTEN holds.
        while listener.listening.is_set():
            listener.stop_event.wait(0.01)
        if listener.listening.wait(WAKE_BOUND_SECONDS):
            reconnected.set()

    watcher = threading.Thread(target=wait_for_reconnection)
    watcher.start()
    watcher.join(WAKE_BOUND_SECONDS * 2)
    assert reconnected.is_set()
    handler.ran_event.clear()
    now = SystemClock().now()
    [job_id] = add_jobs(engine, 1, run_at=now, now=now)
    _notify_from_another_process(engine, QUEUE.kind)
    assert handler.ran_event.wait(WAKE_BOUND_SECONDS)
    assert job_id in handler.ran


@postgresql_only
def test_a_notify_is_sent_only_where_no_worker_of_this_process_runs_the_kind(
    engine: Engine,
) -> None:
    url = make_url(str(engine.url.render_as_string(hide_password=False)))
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    local = wakeups.WakeUp(["served-here"])
    with psycopg.connect(conninfo, autocommit=True) as listener:
        listener.execute(f"LISTEN {wakeups.CHANNEL}")
        wakeups.SIGNALS.subscribe(local)
        try:
            with new_session(writer(engine)) as session, session.begin():
                wakeups.wake(session, "served-here")
        finally:
            wakeups.SIGNALS.unsubscribe(local)
        assert local.is_set()  # woken in-process, with no NOTIFY: commits stay concurrent
        with new_session(writer(engine)) as session, session.begin():
            wakeups.wake(session, "served-elsewhere")
        # Notifications arrive in commit order: the first one here is the second commit's.
        first = next(listener.notifies(timeout=WAKE_BOUND_SECONDS))
    assert first.payload == "served-elsewhere"
