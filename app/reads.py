"""Single-row reads for the hottest routes (an article by id or by slug), run where each
engine makes them cheapest.

- `SingleRowRead`: a SELECT by one key, compiled once per dialect and run on a bare DBAPI
  cursor.
- `RowReader`: where the app runs those reads. On SQLite, in the calling thread (the event
  loop): an in-process read of tens of microseconds, less than handing it to a thread. On
  PostgreSQL, on psycopg's async connections from the event loop itself: a network round trip
  that the loop spends serving other requests, without the thread-pool hop and the GIL
  hand-overs that cost a detail read more CPU than the query (measured: 410 -> 350 us of app
  CPU per read, in process). Reads of the same kind that arrive while the loop is busy are
  sent together, as one `key = ANY(...)` statement: under load, one round trip and one
  statement for several requests (the DataLoader pattern), prepared once per connection
  and run on libpq directly (`_LibpqConnection`).
"""

import asyncio
import hashlib
import threading
from collections import deque, namedtuple
from collections.abc import Sequence
from typing import Any
from weakref import WeakKeyDictionary

import psycopg
import psycopg.adapt
import psycopg.errors
from fastapi.concurrency import run_in_threadpool
from psycopg.abc import Buffer, Transformer
from psycopg.adapt import PyFormat
from psycopg.pq import ExecStatus
from psycopg.pq.abc import PGresult
from psycopg.types.json import set_json_loads
from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Engine,
    Pool,
    PoolProxiedConnection,
    Select,
    any_,
    bindparam,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

from app.db import JSON_LOADS


class SingleRowRead:
    """`query` restricted to the row whose `key` column (a unique one, which `query` selects)
    equals a value: the hottest reads (an article by id or by slug).

    SQLAlchemy compiles it once per dialect and the columns' own result processors decode
    the row, but it runs straight on a DBAPI cursor: a Session or Connection around one
    indexed read cost several times the read itself. Its connections come from a pool of
    their own, so a caller on the event loop never waits for a connection that a request
    needing the loop still holds. No transaction is opened: one statement sees one
    consistent snapshot, so a removal committed before the read is always seen.

    `batch_statement` reads the rows of several keys at once (PostgreSQL's `= ANY`)."""

    def __init__(self, query: Select[Any], key: ColumnElement[Any]) -> None:
        self.statement = query.where(key == bindparam("key"))
        self.batch_statement = query.where(key == any_(bindparam("keys", type_=ARRAY(key.type))))
        self.key_position = next(
            i for i, column in enumerate(query.selected_columns) if column is key
        )
        self._compiled: dict[tuple[str, bool], _CompiledRead] = {}

    def compiled(self, dialect: Dialect, *, batch: bool = False) -> "_CompiledRead":
        compiled = self._compiled.get((dialect.name, batch))
        if compiled is None:
            statement = self.batch_statement if batch else self.statement
            compiled = self._compiled[dialect.name, batch] = _CompiledRead(statement, dialect)
        return compiled

    def first(self, engine: Engine, key: Any) -> Any:
        """The row as a named tuple of the selected columns, or None (a blocking read)."""
        compiled = self.compiled(engine.dialect)
        values = _fetch_one(engine, compiled, compiled.parameters({"key": key}), retry=True)
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
    one connection; PostgreSQL's blocking reads, RowReader's fallback on the thread pool,
    take turns in the pool.)"""
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


class RowReader:
    """Runs SingleRowReads for one app, on one event loop (`open` and `close` come from the
    app's lifespan). Before `open`, and after `close`, PostgreSQL reads run on the thread pool
    instead, so an app used without its lifespan still answers."""

    def __init__(self, engine: Engine, *, pool_size: int = 10) -> None:
        self.engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._pool: _AsyncConnections | None = None
        self._pool_size = pool_size
        self._batchers: dict[SingleRowRead, _ReadBatcher] = {}

    async def open(self) -> None:
        if self._postgres and self._pool is None:
            self._pool = _AsyncConnections(self.engine, self._pool_size)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        self._batchers.clear()
        if pool is not None:
            await pool.close()

    async def first(self, read: SingleRowRead, key: Any) -> Any:
        """The row of `key` as a named tuple of the selected columns, or None."""
        if not self._postgres:
            return read.first(self.engine, key)
        if self._pool is None:
            return await run_in_threadpool(read.first, self.engine, key)
        batcher = self._batchers.get(read)
        if batcher is None:
            batcher = self._batchers[read] = _ReadBatcher(read, self._pool, self.engine.dialect)
        return await batcher.first(key)


class _ReadBatcher:
    """Collects the keys that callers ask one SingleRowRead for and reads them together.

    A read waits for no timer: the keys asked for while the event loop is busy with other
    requests (and while every connection is busy) go in one `key = ANY(...)` statement, sent
    as soon as the loop and a connection are free; a read alone goes alone. Each caller gets
    its own row, None for an unknown key, or the statement's error."""

    MAX_KEYS = 100

    def __init__(self, read: SingleRowRead, pool: "_AsyncConnections", dialect: Dialect) -> None:
        self._compiled = read.compiled(dialect, batch=True)
        self._statement = _PreparedStatement(read.batch_statement, dialect)
        self._key_position = read.key_position
        self._pool = pool
        self._waiting: dict[Any, list[asyncio.Future[Any]]] = {}
        self._sender: asyncio.Task[None] | None = None
        self._senders: set[asyncio.Task[None]] = set()  # the loop keeps only weak references

    async def first(self, key: Any) -> Any:
        future = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        if self._sender is None:
            self._sender = self._start_sender()
        return await future

    def _start_sender(self) -> asyncio.Task[None]:
        sender = asyncio.create_task(self._send())
        self._senders.add(sender)
        sender.add_done_callback(self._senders.discard)
        return sender

    async def _send(self) -> None:
        waiting: dict[Any, list[asyncio.Future[Any]]] = {}
        try:
            async with self._pool.slot():
                # The keys are taken once a connection is free: those asked for meanwhile join.
                keys = list(self._waiting)[: self.MAX_KEYS]
                waiting = {key: self._waiting.pop(key) for key in keys}
                self._sender = self._start_sender() if self._waiting else None
                found = await self._pool.fetch_all(self._statement, keys)
        except Exception as exc:
            for futures in waiting.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
            return
        except BaseException:
            if self._sender is asyncio.current_task():  # cancelled before taking the keys
                self._sender = None
                waiting, self._waiting = self._waiting, {}
            for futures in waiting.values():
                for future in futures:
                    future.cancel()
            raise
        rows = {values[self._key_position]: values for values in found}
        for key, futures in waiting.items():
            values = rows.get(key)
            row = None if values is None else self._compiled.row(values)
            for future in futures:
                if not future.done():
                    future.set_result(row)


class _PreparedStatement:
    """A batch read as libpq takes it: SQL with `$1` for the array of keys, prepared once per
    connection under `name`, the keys sent as a text array literal (quoted by psycopg's own
    dumper) that the server parses as the statement's array type."""

    def __init__(self, statement: Select[Any], dialect: Dialect) -> None:
        dialect_class: Any = type(dialect)
        numbered = dialect_class(paramstyle="numeric_dollar")
        self.sql = str(statement.compile(dialect=numbered))
        self.query = self.sql.encode()
        self.name = f"byline_read_{hashlib.sha1(self.query).hexdigest()[:16]}".encode()

    def parameters(self, transformer: Transformer, keys: list[Any]) -> Sequence[Buffer | None]:
        return transformer.dump_sequence([keys], [PyFormat.TEXT])


class _AsyncConnections:
    """A small pool of PostgreSQL connections in autocommit (one statement sees one snapshot;
    no transaction to open or end), each a `_LibpqConnection`. At most `size` at a time; idle
    ones are kept. A connection that failed or was interrupted is closed, never reused."""

    def __init__(self, engine: Engine, size: int) -> None:
        url = engine.url.set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
        self._dialect = engine.dialect
        self._slots = asyncio.Semaphore(size)
        self._idle: deque[_LibpqConnection] = deque()
        self._closed = False

    def slot(self) -> asyncio.Semaphore:
        """Held around fetch_all: at most `size` statements at a time."""
        return self._slots

    async def fetch_all(self, statement: _PreparedStatement, keys: list[Any]) -> list[Any]:
        """The rows of `statement` for `keys`, as tuples of decoded values."""
        try:
            try:
                return await self._fetch_all(statement, keys)
            except psycopg.OperationalError:
                # A pooled connection the server closed (it restarted): the idle ones are
                # as dead, so they go too, and the read runs once more on a new one.
                await self._close_idle()
                return await self._fetch_all(statement, keys)
        except psycopg.Error as exc:
            # The exceptions a Session would raise: a lost database is a 503, not a 500.
            raise DBAPIError.instance(
                statement.sql,
                {"keys": keys},
                exc,
                psycopg.Error,
                connection_invalidated=isinstance(exc, psycopg.OperationalError),
                dialect=self._dialect,
            ) from exc

    async def _fetch_all(self, statement: _PreparedStatement, keys: list[Any]) -> list[Any]:
        connection = self._idle.pop() if self._idle else await self._connect()
        try:
            values = await connection.fetch_all(statement, keys)
        except BaseException:
            await connection.close()  # broken, or interrupted mid-statement: not reusable
            raise
        if self._closed:
            await connection.close()
        else:
            self._idle.append(connection)
        return values

    async def _connect(self) -> "_LibpqConnection":
        connection = await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, connect_timeout=5
        )
        set_json_loads(JSON_LOADS, connection)
        return _LibpqConnection(connection)

    async def close(self) -> None:
        self._closed = True
        await self._close_idle()

    async def _close_idle(self) -> None:
        while self._idle:
            await self._idle.pop().close()


class _LibpqConnection:
    """A psycopg AsyncConnection that runs prepared reads on its libpq connection (`pgconn`)
    directly: send, wait for the socket on the event loop, decode with psycopg's loaders.
    psycopg's cursor around the same statement (its lock, query conversion, prepared-statement
    cache and wait generators) cost about as many instructions as everything else in the
    statement's path together (measured: 422k -> 231k instructions per single-key read)."""

    # uvloop stops watching a socket that reports an error (a connection the server cut while
    # idle), so a reader alone could wait forever: the answer is also polled this often, as
    # psycopg's own waits do.
    POLL_SECONDS = 0.1

    def __init__(self, connection: "psycopg.AsyncConnection[Any]") -> None:
        self._connection = connection
        self._pgconn = connection.pgconn
        self._transformer: Transformer = psycopg.adapt.Transformer(connection)
        self._prepared: set[bytes] = set()

    async def fetch_all(self, statement: _PreparedStatement, keys: list[Any]) -> list[Any]:
        pgconn = self._pgconn
        if statement.name not in self._prepared:
            pgconn.send_prepare(statement.name, statement.query)
            await self._results()
            self._prepared.add(statement.name)
        parameters = statement.parameters(self._transformer, keys)
        pgconn.send_query_prepared(statement.name, parameters)
        (result,) = await self._results()
        self._transformer.set_pgresult(result)
        return self._transformer.load_rows(0, result.ntuples, tuple)

    async def _results(self) -> list[PGresult]:
        """Flushes what was sent, then waits for and returns every result of it; raises the
        first error the server answered."""
        pgconn = self._pgconn
        loop = asyncio.get_running_loop()
        results: list[PGresult] = []
        done: asyncio.Future[None] = loop.create_future()

        def on_readable() -> None:
            if done.done():
                return
            try:
                pgconn.consume_input()
                while not pgconn.is_busy():
                    result = pgconn.get_result()
                    if result is None:
                        done.set_result(None)
                        return
                    results.append(result)
            except BaseException as exc:
                done.set_exception(exc)

        def on_writable() -> None:
            try:
                if pgconn.flush() == 0:
                    loop.remove_writer(socket)
            except BaseException as exc:
                loop.remove_writer(socket)
                if not done.done():
                    done.set_exception(exc)

        timer: asyncio.TimerHandle

        def poll() -> None:
            nonlocal timer
            on_readable()
            if not done.done():
                timer = loop.call_later(self.POLL_SECONDS, poll)

        socket = pgconn.socket
        loop.add_reader(socket, on_readable)
        if pgconn.flush():  # rare: a request larger than the socket's buffer
            loop.add_writer(socket, on_writable)
        elif not pgconn.is_busy():
            on_readable()  # libpq may have read the whole answer while sending
        timer = loop.call_later(self.POLL_SECONDS, poll)
        try:
            await done
        finally:
            timer.cancel()
            loop.remove_reader(socket)
            loop.remove_writer(socket)
        for result in results:
            if result.status == ExecStatus.FATAL_ERROR:
                raise psycopg.errors.error_from_result(
                    result, encoding=self._connection.info.encoding
                )
        return results

    async def close(self) -> None:
        await self._connection.close()
