"""SQLite writers of one process take turns in arrival order (app/dialects.py, WriterQueue).
SQLite's own busy handler polls, so under the mixed load one writer could lose every poll for
the whole busy timeout and fail with "database is locked" (a 503); a queue hands the lock on in
order."""

import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from app import dialects
from app.db import create_db_engine, writer
from app.dialects import WriterQueue
from tests.hardening.servers import wait_until


def test_waiting_writers_take_their_turns_in_arrival_order() -> None:
    queue = WriterQueue()
    assert queue.acquire(timeout=0)
    order: list[int] = []

    def write(n: int) -> None:
        assert queue.acquire(timeout=30)
        order.append(n)
        queue.release()

    threads = []
    for n in range(5):
        thread = threading.Thread(target=write, args=(n,))
        thread.start()
        threads.append(thread)
        # Arrival order is the order the queue saw them in (its waiting line, read from here).
        wait_until(lambda: queue.waiting() == n + 1, f"writer {n} to queue")  # noqa: B023
    queue.release()
    for thread in threads:
        thread.join(30)
    assert order == [0, 1, 2, 3, 4]
    assert queue.acquire(timeout=0), "the last writer handed the turn back"


def test_background_work_waits_in_line_until_kept_waiting_too_long() -> None:
    """In arrival order a stream of API writes starved the claimants' receipts; served every
    other turn, background work pushed API writes into 503s (bench/README.md)."""
    clock = [100.0]
    queue = WriterQueue(clock=lambda: clock[0])
    assert queue.acquire(timeout=0)  # an API write holds the lock
    order: list[str] = []

    def write(name: str, background: bool) -> None:
        assert queue.acquire(timeout=30, background=background)
        order.append(name)

    arrivals = [("api-1", False), ("job-1", True), ("api-2", False), ("api-3", False)]
    threads = []
    for n, (name, background) in enumerate(arrivals):
        thread = threading.Thread(target=write, args=(name, background))
        thread.start()
        threads.append(thread)
        wait_until(lambda: queue.waiting() == n + 1, f"{name} to queue")  # noqa: B023

    def hand_on() -> None:
        served = len(order)
        queue.release()
        wait_until(lambda: len(order) == served + 1, "the next writer")

    hand_on()  # just arrived: the job waits its turn behind api-1
    clock[0] += dialects.BACKGROUND_TURN_WAIT
    hand_on()  # kept waiting long enough: the job goes before api-2
    hand_on()
    hand_on()
    queue.release()
    for thread in threads:
        thread.join(30)
    assert order == ["api-1", "job-1", "api-2", "api-3"]


def test_a_writer_that_waits_too_long_gives_up_and_leaves_the_line() -> None:
    queue = WriterQueue()
    assert queue.acquire(timeout=0)
    assert not queue.acquire(timeout=0)
    assert queue.waiting() == 0
    queue.release()
    assert queue.acquire(timeout=0)


def test_every_way_a_write_transaction_ends_hands_the_turn_on(tmp_path: Path) -> None:
    """Commit, rollback, and a failed statement: the next writer gets its turn at once (a
    turn kept would make it wait the whole busy timeout and fail)."""
    engine = writer(create_db_engine(f"sqlite:///{tmp_path / 'turns.db'}"))
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE notes (body TEXT NOT NULL)"))
        with pytest.raises(RuntimeError), engine.begin() as connection:
            connection.execute(text("INSERT INTO notes VALUES ('rolled back')"))
            raise RuntimeError("the handler failed")
        with pytest.raises(Exception, match="NOT NULL"), engine.begin() as connection:
            connection.execute(text("INSERT INTO notes VALUES (NULL)"))
        with engine.connect() as connection:
            connection.execute(text("INSERT INTO notes VALUES ('left open')"))
            # closed without commit or rollback: the pool rolls it back
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO notes VALUES ('committed')"))
        with engine.connect() as connection:
            assert connection.execute(text("SELECT body FROM notes")).scalars().all() == [
                "committed"
            ]
    finally:
        engine.dispose()
