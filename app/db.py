"""Engines for SQLite and PostgreSQL, the shared MetaData, and the request session."""

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from pydantic_core import from_json
from sqlalchemy import BigInteger, DateTime, Engine, Integer
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session, SQLModel

from app.dialects import dialect_for_url, dialect_of

# Named constraints and indexes, so that migrations diff cleanly on both engines.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# The ids of the tables that grow without bound (articles and the rows made per article:
# tags, match keys, tombstones, takedown targets, removal jobs, the outbox, audit events) and
# every column that holds one: BIGINT on PostgreSQL. SQLite's INTEGER is 64 bits already, and
# only `INTEGER PRIMARY KEY` is the rowid that numbers new rows (BIGINT PRIMARY KEY would not).
BIG_ROW_ID = BigInteger().with_variant(Integer(), "sqlite")

# Ids in paths are bounded so that no engine sees an integer it cannot bind (a larger id was
# a 500 on PostgreSQL, found by fuzzing): INTEGER columns are 32 bits there, BIG_ROW_ID ones 64.
MAX_ROW_ID = 2**31 - 1
MAX_BIG_ROW_ID = 2**63 - 1


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
# gives the same values as json.loads for less (bench/README.md), which a read by key pays
# on every request.
JSON_LOADS = from_json


def create_db_engine(url: str) -> Engine:
    """One engine factory for both databases (their differences: app/dialects.py)."""
    return dialect_for_url(url).create_engine(url, json_deserializer=JSON_LOADS)


def writer(engine: Engine, *, background: bool = False) -> Engine:
    """The same engine, but transactions that will write take SQLite's write lock first
    (`background`: a worker's, which takes turns with the API's writers)."""
    return dialect_of(engine).writer(engine, background=background)


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
