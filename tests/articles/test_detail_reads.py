"""Where the detail reads run: PostgreSQL's on async connections from the event loop (one
pool per app, opened and closed with its lifespan), SQLite's in the calling thread."""

import asyncio
import functools

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.articles import service
from app.config import Settings
from app.main import create_app
from app.reads import RowReader
from tests.articles.factories import ingest


def _libpq(engine: Engine) -> str:
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def _backends_of_reads(engine: Engine) -> list[int]:
    """Backend pids of the async read connections: the only ones that ran the by-id read."""
    if engine.dialect.name != "postgresql":
        pytest.skip("the async read connections are PostgreSQL's")
    with psycopg.connect(_libpq(engine), autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND query LIKE 'SELECT articles.id, articles.slug%%'"
        ).fetchall()
    return [pid for (pid,) in rows]


def test_postgresql_detail_reads_share_pooled_connections(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine
) -> None:
    article = ingest(client, ingest_headers)
    for _ in range(20):
        assert client.get(f"/v1/articles/{article['id']}").status_code == 200
    backends = _backends_of_reads(engine)
    assert 1 <= len(backends) <= 2  # reused, not one connection per read


def test_postgresql_detail_read_survives_its_connection_being_killed(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine
) -> None:
    article = ingest(client, ingest_headers)
    assert client.get(f"/v1/articles/{article['id']}").status_code == 200
    backends = _backends_of_reads(engine)
    assert backends
    with psycopg.connect(_libpq(engine), autocommit=True) as connection:
        for pid in backends:
            connection.execute("SELECT pg_terminate_backend(%s)", [pid])
    response = client.get(f"/v1/articles/{article['id']}")
    assert response.status_code == 200
    assert response.json()["id"] == article["id"]


def test_postgresql_unreachable_detail_read_is_a_503_problem() -> None:
    settings = Settings(
        database_url="postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=1",
        scheduler="off",
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        for path in ("/v1/articles/1", "/v1/articles/by-slug/some-slug"):
            response = client.get(path)
            assert response.status_code == 503
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["retry-after"] == "5"


def test_detail_reads_answer_without_the_lifespan(
    app: FastAPI, ingest_headers: dict[str, str]
) -> None:
    """An app driven without its lifespan (no pool opened) still reads, on the thread pool."""
    with TestClient(app) as client:
        article = ingest(client, ingest_headers)
    bare = TestClient(app)  # no `with`: the lifespan does not run
    response = bare.get(f"/v1/articles/by-slug/{article['slug']}")
    assert response.status_code == 200
    assert response.json()["id"] == article["id"]


def test_postgresql_reads_recover_when_every_pooled_connection_died(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine
) -> None:
    """After a server restart every idle connection is dead: the first failure clears them
    all, so the reads that follow, one after another, never meet another dead one."""
    article = ingest(client, ingest_headers)
    if engine.dialect.name != "postgresql":
        pytest.skip("the async read connections are PostgreSQL's")
    rows = RowReader(engine)

    async def scenario() -> list[int]:
        others = set(_backends_of_reads(engine))  # other apps' (and the thread pool's)
        await rows.open()
        try:
            read = functools.partial(service.read_article, rows=rows, blocked_by="-")
            await asyncio.gather(*(read(article_id=article["id"]) for _ in range(5)))
            backends = set(_backends_of_reads(engine)) - others
            assert len(backends) == 5  # five reads at once: five connections, now idle
            with psycopg.connect(_libpq(engine), autocommit=True) as connection:
                for pid in backends:
                    connection.execute("SELECT pg_terminate_backend(%s)", [pid])
            return [(await read(article_id=article["id"])).id for _ in range(5)]
        finally:
            await rows.close()

    assert asyncio.run(scenario()) == [article["id"]] * 5
