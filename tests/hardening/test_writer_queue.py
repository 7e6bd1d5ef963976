"""SQLite writers of one process take turns in arrival order (app/dialects.py, WriterQueue).
SQLite's own busy handler polls, so under the mixed load one writer could lose every poll for
the whole busy timeout and fail with "database is locked" (a 503); a queue hands the lock on in
order."""

import threading
from pathlib import Path

import pytest
from sqlalchemy import text

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
        wait_until(lambda: len(queue._waiting) == n + 1, f"writer {n} to queue")  # noqa: B023
    queue.release()
    for thread in threads:
        thread.join(30)
    assert order == [0, 1, 2, 3, 4]
    assert queue.acquire(timeout=0), "the last writer handed the turn back"


def test_a_writer_that_waits_too_long_gives_up_and_leaves_the_line() -> None:
    queue = WriterQueue()
    assert queue.acquire(timeout=0)
    assert not queue.acquire(timeout=0)
    assert len(queue._waiting) == 0
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
