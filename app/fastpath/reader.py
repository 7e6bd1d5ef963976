"""Where each engine runs the fast path's reads by key (`RowReader`).

SQLite: in the calling thread, the event loop's: an in-process read costs less than handing
it to a thread. PostgreSQL: on async connections from the event loop
itself (app/fastpath/libpq.py), a round trip the loop spends serving other requests."""

from typing import Any

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine

from app.fastpath.libpq import AsyncConnections, ReadBatcher
from app.fastpath.rows import SingleRowRead


class RowReader:
    """Runs SingleRowReads for one app, on one event loop (`open` and `close` come from the
    app's lifespan). Before `open`, and after `close`, PostgreSQL reads run on the thread pool
    instead, so an app used without its lifespan still answers."""

    def __init__(self, engine: Engine, *, pool_size: int = 10) -> None:
        self.engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._pool: AsyncConnections | None = None
        self._pool_size = pool_size
        self._batchers: dict[SingleRowRead, ReadBatcher] = {}

    async def open(self) -> None:
        if self._postgres and self._pool is None:
            self._pool = AsyncConnections(self.engine, self._pool_size)

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
            batcher = self._batchers[read] = ReadBatcher(read, self._pool, self.engine.dialect)
        return await batcher.first(key)
