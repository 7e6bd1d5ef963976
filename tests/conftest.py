"""Test harness: one migrated database per run (SQLite, or PostgreSQL when asked), emptied
after every test, an injected FrozenClock, and a TestClient on the real app."""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, make_url, text

from app.auth import Scope, create_api_key
from app.clock import FrozenClock
from app.config import Settings
from app.db import create_db_engine, new_session
from app.main import create_app
from app.migrate import upgrade_to_head
from app.models import metadata

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
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_db_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def _empty_tables_after_test(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "engine" not in request.fixturenames:
        return
    engine: Engine = request.getfixturevalue("engine")
    tables = [table.name for table in reversed(metadata.sorted_tables)]
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                connection.execute(text(f"DELETE FROM {table}"))


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


def make_key(engine: Engine, scope: Scope, name: str = "test-key") -> str:
    with new_session(engine) as session, session.begin():
        _, secret = create_api_key(session=session, name=name, scope=scope, now=FrozenClock().now())
    return secret


@pytest.fixture
def ingest_headers(engine: Engine) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key(engine, Scope.ingest, 'crawler')}"}


@pytest.fixture
def admin_headers(engine: Engine) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key(engine, Scope.admin, 'operator')}"}


@pytest.fixture
def admin_route() -> str:
    """A route that needs an admin key."""
    return "/v1/admin/keys"
