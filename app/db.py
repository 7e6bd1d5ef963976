"""Engines for SQLite and PostgreSQL, the shared MetaData, and the request session."""

import threading
from collections import deque, namedtuple
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any
from weakref import WeakKeyDictionary

from fastapi import Depends, Request
from sqlalchemy import DateTime, Engine, Pool, PoolProxiedConnection, Select, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, OperationalError
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


def create_db_engine(url: str) -> Engine:
    """One engine factory for both databases."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=20,
            max_overflow=20,
            hide_parameters=True,
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


class SingleRowRead:
    """A SELECT of at most one row, for the hottest reads (an article by id or by slug).

    SQLAlchemy compiles it once per dialect and the columns' own result processors decode
    the row, but it runs straight on a DBAPI cursor: a Session or Connection around one
    indexed read cost several times the read itself. Its connections come from a pool of
    their own, so a caller on the event loop never waits for a connection that a request
    needing the loop still holds. No transaction is opened: one statement sees one
    consistent snapshot, so a removal committed before the read is always seen."""

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self._compiled: dict[str, _CompiledRead] = {}

    def first(self, engine: Engine, **params: Any) -> Any:
        """The row as a named tuple of the selected columns, or None."""
        compiled = self._compiled.get(engine.dialect.name)
        if compiled is None:
            compiled = self._compiled[engine.dialect.name] = _CompiledRead(
                self.statement, engine.dialect
            )
        values = _fetch_one(engine, compiled, compiled.parameters(params), retry=True)
        return None if values is None else compiled.row(values)


def _fetch_one(
    engine: Engine, compiled: "_CompiledRead", parameters: Any, *, retry: bool
) -> Sequence[Any] | None:
    dialect = engine.dialect
    held = _held_connection(engine)
    connection = held if held is not None else _single_row_pool(engine).connect()
    assert connection.dbapi_connection is not None
    try:
        if not connection.info.get("autocommit"):
            dialect.set_isolation_level(connection.dbapi_connection, "AUTOCOMMIT")
            connection.info["autocommit"] = True
        cursor = connection.cursor()
        try:
            cursor.execute(compiled.sql, parameters)
            values: Sequence[Any] | None = cursor.fetchone()
        finally:
            cursor.close()
        return values
    except dialect.loaded_dbapi.Error as exc:
        invalidated = dialect.is_disconnect(exc, connection.dbapi_connection, None)
        if invalidated:
            if held is not None:
                _release_held_connection(engine)
            connection.invalidate(exc)
            if retry:
                # A pooled connection the server has closed (it restarted): once more, on a
                # new one. This replaces the pool's ping before every use, a round trip each.
                return _fetch_one(engine, compiled, parameters, retry=False)
        # The exceptions a Session would raise: a lost database is a 503, not a 500.
        raise DBAPIError.instance(
            compiled.sql,
            parameters,
            exc,
            dialect.loaded_dbapi.Error,
            connection_invalidated=invalidated,
            dialect=dialect,
        ) from exc
    finally:
        if held is None:
            connection.close()


class _CompiledRead:
    def __init__(self, statement: Select[Any], dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        self._positions = compiled.positiontup if dialect.positional else None
        self._binds = {
            name: bind.type.dialect_impl(dialect).bind_processor(dialect)
            for name, bind in compiled.binds.items()
        }
        processors = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in statement.selected_columns
        ]
        # Only the columns that need it (dates, JSON) are processed.
        self._processors = [(i, process) for i, process in enumerate(processors) if process]
        names = [str(column.key) for column in statement.selected_columns]
        self._row: Any = namedtuple("Row", names)  # type: ignore[misc]

    def parameters(self, params: dict[str, Any]) -> Any:
        values = {}
        for name, value in params.items():
            process = self._binds[name]
            values[name] = process(value) if process else value
        if self._positions is not None:
            return tuple(values[name] for name in self._positions)
        return values

    def row(self, values: Sequence[Any]) -> Any:
        decoded = list(values)
        for i, process in self._processors:
            decoded[i] = process(decoded[i])
        return self._row._make(decoded)


_single_row_pools: WeakKeyDictionary[Engine, Pool] = WeakKeyDictionary()


_held_connections: WeakKeyDictionary[Engine, threading.local] = WeakKeyDictionary()


def _held_connection(engine: Engine) -> PoolProxiedConnection | None:
    """On SQLite, the connection this thread keeps for SingleRowRead: a checkout and return
    per read cost a fifth of the read. (The reads run on the event loop's thread, so this is
    one connection; PostgreSQL's run on the thread pool and take turns in the pool.)"""
    if engine.dialect.name != "sqlite":
        return None
    held = _held_connections.get(engine)
    if held is None:
        held = _held_connections.setdefault(engine, threading.local())
    connection: PoolProxiedConnection | None = getattr(held, "connection", None)
    if connection is None:
        connection = held.connection = _single_row_pool(engine).connect()
    return connection


def _release_held_connection(engine: Engine) -> None:
    held = _held_connections.get(engine)
    if held is not None:
        held.connection = None


def _single_row_pool(engine: Engine) -> Pool:
    """The engine's pool for SingleRowRead: the same settings and connect hooks, apart."""
    pool = _single_row_pools.get(engine)
    if pool is None:
        pool = engine.pool.recreate()
        pool._pre_ping = False  # _fetch_one retries on a dead connection instead
        _single_row_pools[engine] = pool
    return pool


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
