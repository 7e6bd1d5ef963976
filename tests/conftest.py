"""Test harness: one migrated database per run (SQLite, or PostgreSQL when asked), an injected
FrozenClock, and a TestClient on the real app.

Two ways onto the database:
- `db`: a session on one connection whose outer transaction is rolled back after the test,
  commits inside it included (they release savepoints). For tests that call services
  in-process and need no second connection.
- `engine`: for tests whose rows must really be committed, because the app, a worker, a
  thread or another process reads them on connections of their own; every table is emptied
  after such a test."""

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, make_url, text
from sqlmodel import Session
from typer.testing import CliRunner

from app.auth import Scope
from app.clock import FrozenClock
from app.config import Settings, get_settings
from app.db import create_db_engine
from app.main import create_app
from app.migrate import upgrade_to_head
from app.models import metadata
from tests.factories import make_key

POSTGRES_URL = os.environ.get("BYLINE_TEST_POSTGRES_URL", "")
ENGINE = os.environ.get("BYLINE_TEST_ENGINE", "sqlite")


def pytest_report_header() -> str:
    return f"byline test database engine: {ENGINE}"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if ENGINE == "sqlite":
        path: Path = tmp_path_factory.mktemp("db") / "byline-test.db"
        url = f"sqlite:///{path}"
        upgrade_to_head(url)
        yield url
        return
    if not POSTGRES_URL:
        pytest.exit("BYLINE_TEST_ENGINE=postgres needs BYLINE_TEST_POSTGRES_URL", returncode=2)
    name = f"byline_test_{uuid.uuid4().hex[:12]}"
    admin_dsn = make_url(POSTGRES_URL).set(drivername="postgresql")
    with psycopg.connect(admin_dsn.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade_to_head(url)
        yield url
    finally:
        with psycopg.connect(
            admin_dsn.render_as_string(hide_password=False), autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def migrated_engine(database_url: str) -> Iterator[Engine]:
    """The run's one engine. Tests ask for `db` or `engine`, not for this: asked for by this
    name, it leaves the tables as they are after the test."""
    engine = create_db_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def engine(migrated_engine: Engine) -> Engine:
    """The engine, for tests that commit: every table is emptied after a test that asks for it."""
    return migrated_engine


@dataclass
class Numbering:
    """Whether a rolled-back test ran since the tables were last emptied. PostgreSQL's
    sequences are not transactional: it left them advanced."""

    advanced: bool = False


@pytest.fixture(scope="session")
def numbering() -> Numbering:
    return Numbering()


@pytest.fixture
def db(migrated_engine: Engine, numbering: Numbering) -> Iterator[Session]:
    """A session inside a transaction that is rolled back after the test. The session's own
    commits release savepoints (SQLAlchemy's "joining a Session into an external
    transaction"), so services that commit run as they do in the app and leave nothing
    behind. On SQLite the engine's `begin` hook opens the outer transaction (BEGIN)."""
    with migrated_engine.connect() as connection:
        transaction = connection.begin()
        session = Session(
            bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        try:
            yield session
        finally:
            session.close()
            transaction.rollback()
            numbering.advanced = True


def _empty_tables(engine: Engine) -> None:
    tables = [table.name for table in reversed(metadata.sorted_tables)]
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                connection.execute(text(f"DELETE FROM {table}"))


@pytest.fixture(autouse=True)
def _empty_tables_for_engine_tests(
    request: pytest.FixtureRequest, numbering: Numbering
) -> Iterator[None]:
    """Every table emptied after a test that asks for `engine` (and before it, when a
    rolled-back test left the numbering advanced); nothing done for the others."""
    if "engine" not in request.fixturenames:
        yield
        return
    engine: Engine = request.getfixturevalue("engine")
    if numbering.advanced:
        # Tests on `engine` number their rows from 1, as an emptied database does.
        _empty_tables(engine)
    yield
    _empty_tables(engine)
    numbering.advanced = False


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        scheduler="off",
        public_base_url="https://news.example",
        cors_origins="https://front.example",
        mail_dir=tmp_path / "mail",
        # The test peers (webhook receivers, feeds) listen on 127.0.0.1.
        allow_private_networks=True,
    )


@pytest.fixture
def app(settings: Settings, engine: Engine, clock: FrozenClock) -> FastAPI:
    return create_app(settings, engine=engine, clock=clock)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def web_client(app: FastAPI) -> Iterator[TestClient]:
    """A browser on https://news.example: its `__Host-` CSRF cookie is Secure, so the test
    client must speak https to get it back."""
    with TestClient(app, base_url="https://news.example", raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def ingest_headers(engine: Engine) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key(engine, Scope.ingest, 'crawler')}"}


@pytest.fixture
def admin_headers(engine: Engine) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key(engine, Scope.admin, 'operator')}"}


@pytest.fixture
def byline(database_url: str, engine: Engine) -> Iterator[CliRunner]:
    """The `byline` command on the test database (`engine` empties it after the test).
    get_settings is cached per process: cleared so that the command reads this environment,
    and again so that nothing after it keeps these settings."""
    get_settings.cache_clear()
    yield CliRunner(env={"BYLINE_DATABASE_URL": database_url})
    get_settings.cache_clear()


@pytest.fixture
def admin_route() -> str:
    """A route that needs an admin key."""
    return "/v1/admin/keys"
