"""The `db` fixture (tests/conftest.py) on both engines: one connection whose outer
transaction is rolled back after the test, the session's commits releasing savepoints
inside it (on SQLite too, where the engine's `begin` hook emits BEGIN for pysqlite), and a
test that asks only for it leaves nothing behind and empties no table."""

import uuid

import pytest
from sqlalchemy import Engine, delete, select
from sqlmodel import Session, col

from app.auth import ApiKey, Scope
from tests.factories import make_key, reading

# The keys the first test of the pair below writes (one in its rolled-back transaction, one
# committed for real), for the second to look for; named once per run.
ROLLED_BACK = f"rolled-back-{uuid.uuid4().hex}"
COMMITTED = f"committed-{uuid.uuid4().hex}"
written: list[str] = []


def key_names(bind: Engine | Session) -> set[str]:
    with reading(bind) as session:
        return set(session.scalars(select(col(ApiKey.name))))


def test_a_db_session_commits_to_savepoints_inside_one_outer_transaction(
    db: Session, migrated_engine: Engine
) -> None:
    connection = db.connection()
    assert connection.in_transaction()
    if connection.dialect.name == "sqlite":
        # pysqlite itself opens no transaction here: the engine's hook did (BEGIN).
        assert connection.connection.dbapi_connection.in_transaction  # type: ignore[union-attr]

    make_key(db, Scope.ingest, "kept")
    db.commit()  # as a service commits
    make_key(db, Scope.ingest, "undone")
    db.rollback()  # back to the savepoint the commit left off at

    assert db.connection() is connection and connection.in_transaction()
    assert "kept" in key_names(db) and "undone" not in key_names(db)
    # Committed in the test's transaction only: no other connection sees it.
    assert "kept" not in key_names(migrated_engine)


def test_a_db_test_writes_and_commits_in_its_own_transaction(
    request: pytest.FixtureRequest, db: Session, migrated_engine: Engine
) -> None:
    assert "engine" not in request.fixturenames  # so the tables are not emptied after it
    # Before `db` first reads or writes: on SQLite the rolled-back transaction, once it
    # writes, holds the file's one write lock until the end of the test.
    make_key(migrated_engine, Scope.ingest, COMMITTED)
    make_key(db, Scope.ingest, ROLLED_BACK)
    db.commit()
    assert {COMMITTED, ROLLED_BACK} <= key_names(db)
    written.extend([COMMITTED, ROLLED_BACK])


def test_the_rows_of_the_db_test_before_are_gone_and_no_table_was_emptied(
    migrated_engine: Engine,
) -> None:
    if not written:
        pytest.skip("runs after the test above, which did not run")
    try:
        names = key_names(migrated_engine)
        assert ROLLED_BACK not in names
        assert COMMITTED in names
    finally:
        with migrated_engine.begin() as connection:
            connection.execute(delete(ApiKey).where(col(ApiKey.name) == COMMITTED))
