"""Reads of one row by one key (`SingleRowRead`), compiled once per dialect and run on a bare
DBAPI cursor: the blocking half of the fast path, which SQLite runs on the event loop itself
and PostgreSQL on the thread pool when the app's async connections (app/fastpath/libpq.py) are
not open."""

import threading
from collections import namedtuple
from collections.abc import Sequence
from typing import Any
from weakref import WeakKeyDictionary

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


class SingleRowRead:
    """`query` restricted to the row whose `key` column (a unique one, which `query` selects)
    equals a value: the hottest reads (an article by id or by slug).

    SQLAlchemy compiles it once per dialect and the columns' own result processors decode
    the row, but it runs straight on a DBAPI cursor: a Session or Connection around one
    indexed read costs more than the read itself. Its connections come from a pool of
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
                # A connection the server has closed (it restarted) since it was last used:
                # once more, on a new one.
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
    per read would be a good part of the read. (The reads run on the event loop's thread, so
    this is one connection; PostgreSQL's blocking reads, RowReader's fallback on the thread
    pool, take turns in the pool.)"""
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
        _single_row_pools[engine] = pool
    return pool
