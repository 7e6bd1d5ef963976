"""Engines for SQLite and PostgreSQL, the shared MetaData, and the request session."""

import threading
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic_core import from_json
from sqlalchemy import DateTime, Engine, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import OperationalError
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session, SQLModel

# Named constraints and indexes, so that migrations diff cleanly on both engines.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SQLITE_BUSY_TIMEOUT_MS = 10_000
SQLITE_MMAP_BYTES = 2**31 - 2**16  # SQLite's default upper limit (SQLITE_MAX_MMAP_SIZE)
# Ids in paths are bounded so that no engine sees an integer it cannot bind: the id columns
# are INTEGER, 32 bits on PostgreSQL (a larger id was a 500 there, found by fuzzing).
MAX_ROW_ID = 2**31 - 1


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both engines (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# How JSON columns (authors, tags, ...) are decoded on both engines: pydantic-core's parser
# gives the same values as json.loads at a third of its cost (11 -> 4 us for a row's authors
# and tags), which a read by key pays on every request.
JSON_LOADS = from_json


def create_db_engine(url: str) -> Engine:
    """One engine factory for both databases."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=20,
            max_overflow=20,
            hide_parameters=True,
            json_deserializer=JSON_LOADS,
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(
        url,
        pool_size=10,
        max_overflow=20,
        # A restarted server leaves dead connections in the pool: test them before use.
        pool_pre_ping=True,
        connect_args={"connect_timeout": 5},
        # Errors are logged; their parameters may hold a claimant's name or e-mail.
        hide_parameters=True,
        json_deserializer=JSON_LOADS,
    )


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy emits BEGIN itself (below); pysqlite's implicit transactions would not
        # let a write transaction start with BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # Reads from the memory-mapped file instead of a read() and a copy per page: an
        # article spans several overflow pages, and this took a third off reading one.
        cursor.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
        cursor.close()

    writers = WriterQueue()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A deferred transaction that later writes skips the busy handler and fails with
        # "database is locked"; writers take the lock up front.
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        if mode != "IMMEDIATE":
            connection.exec_driver_sql(f"BEGIN {mode}")
            return
        # Writers of this process take turns in arrival order before they ask SQLite, whose
        # busy handler polls: under load, one writer could lose every poll for the whole busy
        # timeout and fail with "database is locked" (503s found by the mixed load test).
        if not writers.acquire(SQLITE_BUSY_TIMEOUT_MS / 1000):
            raise OperationalError("BEGIN IMMEDIATE", None, Exception("database is locked"))
        connection.info[_HOLDS_WRITER_TURN] = True
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            _end_turn(connection.info, writers)
            raise

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _on_end(connection: Any) -> None:
        _end_turn(connection.info, writers)

    @event.listens_for(engine.pool, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        # A connection returned without commit or rollback (it was invalidated) ends its turn.
        _end_turn(record.info, writers)


_HOLDS_WRITER_TURN = "byline_holds_writer_turn"


def _end_turn(info: dict[str, Any], writers: "WriterQueue") -> None:
    if info.pop(_HOLDS_WRITER_TURN, False):
        writers.release()


class WriterQueue:
    """A first-come, first-served turn for the write transactions of one process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: deque[threading.Event] = deque()
        self._taken = False

    def acquire(self, timeout: float) -> bool:
        with self._lock:
            if not self._taken:
                self._taken = True
                return True
            turn = threading.Event()
            self._waiting.append(turn)
        if turn.wait(timeout):
            return True
        with self._lock:
            if turn.is_set():  # handed over just as the wait ended
                return True
            self._waiting.remove(turn)
            return False

    def release(self) -> None:
        with self._lock:
            if self._waiting:
                self._waiting.popleft().set()  # straight to the next in line: no barging
            else:
                self._taken = False


def writer(engine: Engine) -> Engine:
    """The same engine, but transactions that will write take SQLite's write lock first."""
    if engine.dialect.name == "sqlite":
        return engine.execution_options(sqlite_begin="IMMEDIATE")
    return engine


def new_session(engine: Engine) -> Session:
    return Session(engine, expire_on_commit=False)


def _session_for(engine: Engine) -> Iterator[Session]:
    with new_session(engine) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def get_read_session(request: Request) -> Iterator[Session]:
    """A session for requests that only read."""
    yield from _session_for(request.app.state.engine)


def get_write_session(request: Request) -> Iterator[Session]:
    """A session that commits when the route succeeds and rolls back on any error."""
    yield from _session_for(writer(request.app.state.engine))


# scope="function": commit happens before the response is sent, so a failed commit is an
# error answer, never an acknowledged write that was lost.
ReadSessionDep = Annotated[Session, Depends(get_read_session, scope="function")]
WriteSessionDep = Annotated[Session, Depends(get_write_session, scope="function")]


def insert_for(session: Session):  # type: ignore[no-untyped-def]
    """The dialect's INSERT, which knows ON CONFLICT (both engines spell it the same way)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert
