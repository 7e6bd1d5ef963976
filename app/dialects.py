"""What differs between SQLite and PostgreSQL, all of it: one `Dialect` per engine, chosen
once from the URL or the bind (pgqueuer's shape: one interface, one implementation per
backend) instead of `dialect.name` checks in the domains.

- engines: SQLite's pragmas and write turns, PostgreSQL's pool checks;
- `writer`: SQLite's write transactions take the lock up front (BEGIN IMMEDIATE);
- `insert`: the INSERT that knows ON CONFLICT (both engines spell it the same way);
- `advisory_xact_lock`: PostgreSQL transaction locks in named namespaces (SQLite has one
  writer at a time and needs none);
- `notify`: PostgreSQL NOTIFY, sent when the transaction commits (SQLite has no peer
  process to tell: its workers are woken in-process);
- `sha256_hex`: a text's SHA-256 computed by the database (SQLite: a function of ours,
  registered on every connection).
"""

import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable, Collection
from typing import Any, Protocol

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    String,
    Table,
    create_engine,
    event,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import Insert as PostgreSQLInsert
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import Insert as SQLiteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

SQLITE_BUSY_TIMEOUT_MS = 10_000
SQLITE_MMAP_BYTES = 2**31 - 2**16  # SQLite's default upper limit (SQLITE_MAX_MMAP_SIZE)
# How long a background writer waits in line before it is served next (WriterQueue).
BACKGROUND_TURN_WAIT = 0.25

# The namespaces of PostgreSQL's two-key advisory locks, by name. The migration lock takes
# the one-key form, so the two can never collide.
LOCK_NAMESPACES = ("takedown-completion",)


class Dialect(Protocol):
    name: str
    # Whether `notify` reaches other processes (LISTEN); otherwise workers are woken in-process.
    notifies_other_processes: bool

    def create_engine(self, url: str, *, json_deserializer: Callable[[str], Any]) -> Engine:
        """An engine configured for this database."""
        ...

    def writer(self, engine: Engine, *, background: bool = False) -> Engine:
        """The engine whose transactions are about to write (`background`: a worker's, which
        takes its turns beside the API's)."""
        ...

    def insert(self, table: Table) -> PostgreSQLInsert | SQLiteInsert:
        """An INSERT with `on_conflict_do_nothing` / `on_conflict_do_update`."""
        ...

    def advisory_xact_lock(self, session: Session, namespace: str, keys: Collection[str]) -> None:
        """Lock `keys` in `namespace` to the end of the transaction, in one global order."""
        ...

    def notify(self, session: Session, channel: str, payload: str) -> None:
        """Tell listeners of `channel` when (and only if) the transaction commits."""
        ...

    def sha256_hex(self, value: ColumnElement[str]) -> ColumnElement[str]:
        """SQL for the SHA-256 of `value` (its UTF-8 bytes) in lowercase hex, as
        `hashlib.sha256(value.encode()).hexdigest()` gives it."""
        ...


class SQLite:
    name = "sqlite"
    notifies_other_processes = False

    def create_engine(self, url: str, *, json_deserializer: Callable[[str], Any]) -> Engine:
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=20,
            max_overflow=20,
            hide_parameters=True,
            json_deserializer=json_deserializer,
        )
        _configure_sqlite(engine)
        return engine

    def writer(self, engine: Engine, *, background: bool = False) -> Engine:
        return engine.execution_options(sqlite_begin="IMMEDIATE", sqlite_background=background)

    def insert(self, table: Table) -> SQLiteInsert:
        return sqlite_insert(table)

    def advisory_xact_lock(self, session: Session, namespace: str, keys: Collection[str]) -> None:
        return None  # one writer at a time: the write transaction is the lock

    def notify(self, session: Session, channel: str, payload: str) -> None:
        return None

    def sha256_hex(self, value: ColumnElement[str]) -> ColumnElement[str]:
        return func.byline_sha256_hex(value, type_=String)


class PostgreSQL:
    name = "postgresql"
    notifies_other_processes = True

    def create_engine(self, url: str, *, json_deserializer: Callable[[str], Any]) -> Engine:
        return create_engine(
            url,
            pool_size=10,
            max_overflow=20,
            # A restarted server leaves dead connections in the pool: test them before use.
            pool_pre_ping=True,
            connect_args={"connect_timeout": 5},
            # Errors are logged; their parameters may hold a claimant's name or e-mail.
            hide_parameters=True,
            json_deserializer=json_deserializer,
        )

    def writer(self, engine: Engine, *, background: bool = False) -> Engine:
        return engine  # no single writer: nobody waits for a turn

    def insert(self, table: Table) -> PostgreSQLInsert:
        return postgresql_insert(table)

    def advisory_xact_lock(self, session: Session, namespace: str, keys: Collection[str]) -> None:
        if not keys:
            return
        # Sorted, so two transactions locking overlapping sets never wait on each other in a
        # cycle; PostgreSQL evaluates a volatile function in the select list after the sort.
        session.execute(
            text(
                "SELECT pg_advisory_xact_lock(:namespace, key)"
                " FROM unnest(CAST(:keys AS integer[])) AS key ORDER BY key"
            ),
            {
                "namespace": _lock_namespace(namespace),
                "keys": sorted({_int4(key) for key in keys}),
            },
        )

    def notify(self, session: Session, channel: str, payload: str) -> None:
        session.execute(
            text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload}
        )

    def sha256_hex(self, value: ColumnElement[str]) -> ColumnElement[str]:
        return func.encode(func.sha256(func.convert_to(value, "UTF8")), "hex", type_=String)


DIALECTS: dict[str, Dialect] = {"sqlite": SQLite(), "postgresql": PostgreSQL()}


def dialect_of(bind: Engine | Connection | Session) -> Dialect:
    """The dialect of an engine, a connection or a session's bind."""
    if isinstance(bind, Session):
        bind = bind.get_bind()
    return DIALECTS[bind.dialect.name]


def dialect_for_url(url: str) -> Dialect:
    return DIALECTS["sqlite" if url.startswith("sqlite") else "postgresql"]


def _sha256_hex(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode()).hexdigest()


def _int4(value: str) -> int:
    return int.from_bytes(hashlib.sha256(value.encode()).digest()[:4], "big", signed=True)


def _lock_namespace(name: str) -> int:
    if name not in LOCK_NAMESPACES:
        raise ValueError(f"unknown advisory lock namespace {name!r}")
    return _int4(f"byline:{name}")


# SQLite's connections and write turns -----------------------------------------------------


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
        # article spans several overflow pages, each a copy (figures: bench/README.md).
        cursor.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
        cursor.close()
        dbapi_connection.create_function("byline_sha256_hex", 1, _sha256_hex, deterministic=True)

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
        background = connection.get_execution_options().get("sqlite_background", False)
        if not writers.acquire(SQLITE_BUSY_TIMEOUT_MS / 1000, background=background):
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
    """Turns for the write transactions of one process, in arrival order, except that a
    writer of background work (a removal, a claimant's e-mail) waiting longer than
    `BACKGROUND_TURN_WAIT` is served next. In pure arrival order a stream of API writes
    starved the receipts (18 of 266 confirmable in a minute of the mixed load); served every
    other turn, background work pushed API writes past the busy timeout (503s); both in
    bench/README.md, "Mixed load"."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._line: deque[tuple[threading.Event, bool, float]] = deque()
        self._taken = False

    def waiting(self) -> int:
        with self._lock:
            return len(self._line)

    def acquire(self, timeout: float, *, background: bool = False) -> bool:
        with self._lock:
            if not self._taken:
                self._taken = True
                return True
            turn = threading.Event()
            entry = (turn, background, self._clock())
            self._line.append(entry)
        if turn.wait(timeout):
            return True
        with self._lock:
            if turn.is_set():  # handed over just as the wait ended
                return True
            self._line.remove(entry)
            return False

    def release(self) -> None:
        with self._lock:
            if not self._line:
                self._taken = False
                return
            # Straight to the next in line (no barging), or to background work kept waiting.
            chosen = self._line[0]
            overdue = self._clock() - BACKGROUND_TURN_WAIT
            for entry in self._line:
                if entry[1]:
                    if entry[2] <= overdue:
                        chosen = entry
                    break
            self._line.remove(chosen)
            chosen[0].set()
