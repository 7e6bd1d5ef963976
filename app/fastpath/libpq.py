"""PostgreSQL's reads by key on the event loop: psycopg's async connections, driven on libpq
directly, with the keys that callers ask for while the loop is busy sent together as one
`key = ANY(...)` statement (the DataLoader pattern), prepared once per connection.

The loop spends the round trip serving other requests, without the thread pool's hop and
its GIL hand-overs, which cost a read more CPU than the query itself (bench/README.md)."""

import asyncio
import hashlib
from collections import deque
from collections.abc import Sequence
from typing import Any

import psycopg
import psycopg.adapt
import psycopg.errors
from psycopg.abc import Buffer, Transformer
from psycopg.adapt import PyFormat
from psycopg.pq import ExecStatus
from psycopg.pq.abc import PGresult
from psycopg.types.json import set_json_loads
from sqlalchemy import Engine, Select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

from app.db import JSON_LOADS
from app.fastpath.rows import SingleRowRead


class ReadBatcher:
    """Collects the keys that callers ask one SingleRowRead for and reads them together.

    A read waits for no timer: the keys asked for while the event loop is busy with other
    requests (and while every connection is busy) go in one `key = ANY(...)` statement, sent
    as soon as the loop and a connection are free; a read alone goes alone. Each caller gets
    its own row, None for an unknown key, or the statement's error."""

    MAX_KEYS = 100

    def __init__(self, read: SingleRowRead, pool: "AsyncConnections", dialect: Dialect) -> None:
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


class AsyncConnections:
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
    statement's path together (bench/README.md)."""

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
