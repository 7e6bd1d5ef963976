"""Where the detail reads run: PostgreSQL's on async connections from the event loop (one
pool per app, opened and closed with its lifespan), SQLite's in the calling thread."""

import asyncio
import functools
import random
import string
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.articles import service
from app.config import Settings
from app.fastpath import RowReader
from app.main import create_app
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


def _skip_on_the_plain_path(settings: Settings) -> None:
    if not settings.fast_reads:
        pytest.skip("BYLINE_FAST_READS=false: the app reads on sessions")


def test_postgresql_detail_reads_share_pooled_connections(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine, settings: Settings
) -> None:
    _skip_on_the_plain_path(settings)
    article = ingest(client, ingest_headers)
    for _ in range(20):
        assert client.get(f"/v1/articles/{article['id']}").status_code == 200
    backends = _backends_of_reads(engine)
    assert 1 <= len(backends) <= 2  # reused, not one connection per read


def test_postgresql_detail_read_survives_its_connection_being_killed(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine, settings: Settings
) -> None:
    _skip_on_the_plain_path(settings)
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


def _read_backends_waiting_for_a_lock(engine: Engine) -> set[int]:
    """Backends of reads by id waiting for a lock on articles."""
    with psycopg.connect(_libpq(engine), autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query LIKE 'SELECT articles.id, articles.slug%%'"
        ).fetchall()
    return {pid for (pid,) in rows}


def _locked_reads(engine: Engine) -> int:
    return len(_read_backends_waiting_for_a_lock(engine))


async def _reads_on_separate_connections(engine: Engine, rows: RowReader, article_id: int) -> None:
    """Five reads in flight at once on five connections, left idle: while a lock holds each
    read's statement, the next read cannot join it and takes a connection of its own."""
    read = functools.partial(service.read_article, rows=rows, blocked_by="-")
    with psycopg.connect(_libpq(engine)) as locker:
        locker.execute("LOCK TABLE articles IN ACCESS EXCLUSIVE MODE")
        reads = []
        for waiting in range(1, 6):
            reads.append(asyncio.create_task(read(article_id=article_id)))
            while _locked_reads(engine) < waiting:
                await asyncio.sleep(0.01)
        locker.rollback()
        await asyncio.gather(*reads)


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
            await _reads_on_separate_connections(engine, rows, article["id"])
            backends = set(_backends_of_reads(engine)) - others
            assert len(backends) == 5
            with psycopg.connect(_libpq(engine), autocommit=True) as connection:
                for pid in backends:
                    connection.execute("SELECT pg_terminate_backend(%s)", [pid])
            read = functools.partial(service.read_article, rows=rows, blocked_by="-")
            return [(await read(article_id=article["id"])).id for _ in range(5)]
        finally:
            await rows.close()

    assert asyncio.run(scenario()) == [article["id"]] * 5


def test_postgresql_reads_at_once_share_one_statement_and_each_get_their_row(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine
) -> None:
    """Reads asked for together go as one statement; each caller still gets its own article,
    None for an unknown key, the same row for a key asked twice, by id and by slug alike."""
    articles = [ingest(client, ingest_headers, n) for n in range(1, 5)]
    if engine.dialect.name != "postgresql":
        pytest.skip("the async read connections are PostgreSQL's")
    rows = RowReader(engine)
    by_id = functools.partial(rows.first, service._ARTICLE_BY_ID)
    by_slug = functools.partial(rows.first, service._ARTICLE_BY_SLUG)

    async def scenario() -> tuple[list[Any], list[Any], int]:
        others = set(_backends_of_reads(engine))
        await rows.open()
        try:
            ids = [a["id"] for a in articles] + [articles[0]["id"], 999_999]
            found_by_id = await asyncio.gather(*(by_id(key) for key in ids))
            used = len(set(_backends_of_reads(engine)) - others)
            slugs = [a["slug"] for a in reversed(articles)] + ["no-such-slug"]
            found_by_slug = await asyncio.gather(*(by_slug(key) for key in slugs))
            return found_by_id, found_by_slug, used
        finally:
            await rows.close()

    found_by_id, found_by_slug, connections_used = asyncio.run(scenario())
    assert connections_used == 1  # six reads, one statement
    assert [row.id if row else None for row in found_by_id] == [
        *(a["id"] for a in articles),
        articles[0]["id"],
        None,
    ]
    assert [row.title if row else None for row in found_by_id[:4]] == [a["title"] for a in articles]
    assert [row.slug if row else None for row in found_by_slug] == [
        *(a["slug"] for a in reversed(articles)),
        None,
    ]


def test_postgresql_a_cancelled_read_leaves_the_others_of_its_statement(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine
) -> None:
    """A request that gives up (its client left, its timeout ran out) while its read waits
    does not take the reads sent with it down, and later reads still run."""
    first, second = (ingest(client, ingest_headers, n) for n in (1, 2))
    if engine.dialect.name != "postgresql":
        pytest.skip("the async read connections are PostgreSQL's")
    rows = RowReader(engine)

    async def scenario() -> list[int]:
        await rows.open()
        try:
            with psycopg.connect(_libpq(engine)) as locker:
                locker.execute("LOCK TABLE articles IN ACCESS EXCLUSIVE MODE")
                leaving = asyncio.create_task(rows.first(service._ARTICLE_BY_ID, first["id"]))
                staying = asyncio.create_task(rows.first(service._ARTICLE_BY_ID, second["id"]))
                while _locked_reads(engine) < 1:
                    await asyncio.sleep(0.01)
                leaving.cancel()
                locker.rollback()
            with pytest.raises(asyncio.CancelledError):
                await leaving
            later = await rows.first(service._ARTICLE_BY_ID, first["id"])
            return [(await staying).id, later.id]
        finally:
            await rows.close()

    assert asyncio.run(scenario()) == [second["id"], first["id"]]


HOSTILE_SLUGS = ('a"b', "c,d", "{e}", "f\\g", " h ", "NULL", "i'j", "ü-ñ", "x" * 250, "")


def test_postgresql_batched_keys_are_sent_as_values_whatever_they_contain(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine
) -> None:
    """The keys of a batch travel as one array parameter: quotes, commas, braces, backslashes,
    the word NULL and over-long strings are keys like any other, found or not, never a
    malformed statement that takes the reads sent with them down."""
    articles = [ingest(client, ingest_headers, n) for n in (1, 2)]
    if engine.dialect.name != "postgresql":
        pytest.skip("the async read connections are PostgreSQL's")
    rows = RowReader(engine)
    slugs = [articles[0]["slug"], *HOSTILE_SLUGS, articles[1]["slug"]]

    async def scenario() -> list[Any]:
        await rows.open()
        try:
            return await asyncio.gather(
                *(rows.first(service._ARTICLE_BY_SLUG, slug) for slug in slugs)
            )
        finally:
            await rows.close()

    found = asyncio.run(scenario())
    assert [row.id if row else None for row in found] == [
        articles[0]["id"],
        *(None for _ in HOSTILE_SLUGS),
        articles[1]["id"],
    ]
    for slug in HOSTILE_SLUGS[:-1]:
        response = client.get("/v1/articles/by-slug/" + quote(slug, safe=""))
        assert response.status_code == 404, (slug, response.text)
        assert response.headers["content-type"] == "application/problem+json"


def test_postgresql_a_statement_the_server_cancels_runs_again_on_a_new_connection(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine
) -> None:
    """A read whose statement the server cancels (an operator's pg_cancel_backend, a
    statement timeout) is answered by running it once more on a fresh connection; the
    connection that failed is closed, not put back."""
    article = ingest(client, ingest_headers)
    if engine.dialect.name != "postgresql":
        pytest.skip("the async read connections are PostgreSQL's")
    rows = RowReader(engine)

    async def wait_for_a_locked_read(other_than: set[int]) -> int:
        while not (_read_backends_waiting_for_a_lock(engine) - other_than):
            await asyncio.sleep(0.01)
        (pid,) = _read_backends_waiting_for_a_lock(engine) - other_than
        return pid

    async def scenario() -> tuple[int, int, int]:
        await rows.open()
        try:
            with psycopg.connect(_libpq(engine)) as locker:
                locker.execute("LOCK TABLE articles IN ACCESS EXCLUSIVE MODE")
                read = asyncio.create_task(rows.first(service._ARTICLE_BY_ID, article["id"]))
                first = await wait_for_a_locked_read(other_than=set())
                with psycopg.connect(_libpq(engine), autocommit=True) as operator:
                    operator.execute("SELECT pg_cancel_backend(%s)", [first])
                second = await wait_for_a_locked_read(other_than={first})
                locker.rollback()
            found = await read
            return found.id, first, second
        finally:
            await rows.close()

    found_id, cancelled, retried = asyncio.run(scenario())
    assert found_id == article["id"]
    assert cancelled != retried
    with psycopg.connect(_libpq(engine), autocommit=True) as connection:
        alive = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [cancelled]
        ).fetchone()
    assert alive == (0,)


def _body(rng: random.Random, words: int) -> str:
    vocabulary = ["".join(rng.choices(string.ascii_lowercase, k=7)) for _ in range(400)]
    paragraphs = (" ".join(rng.choices(vocabulary, k=60)) for _ in range(words // 60))
    return "".join(f"<p>{paragraph}</p>" for paragraph in paragraphs)


def _toast_blocks_touched(connection: psycopg.Connection[Any]) -> int:
    connection.execute("SELECT pg_stat_force_next_flush()")
    row = connection.execute(
        "SELECT coalesce(toast_blks_read, 0) + coalesce(toast_blks_hit, 0)"
        " FROM pg_statio_user_tables WHERE relname = 'articles'"
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_postgresql_a_read_by_key_finds_the_body_in_the_row(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine
) -> None:
    """0007 and 0009 keep every column a read returns in the row (storage MAIN; only
    body_text, which reads never return, goes out of line): reading them touches no TOAST
    page. A body too large for a page still goes out of line, and reads back whole."""
    rng = random.Random(7)
    usual = ingest(client, ingest_headers, 1, body_html=_body(rng, 900))  # ~8 KB of HTML
    huge_body = "".join(f"<p>{rng.randbytes(3000).hex()}</p>" for _ in range(50))
    huge = ingest(client, ingest_headers, 2, body_html=huge_body)  # 300 KB, incompressible
    if engine.dialect.name != "postgresql":
        pytest.skip("TOAST storage is PostgreSQL's")
    with psycopg.connect(_libpq(engine), autocommit=True) as connection:
        connection.execute("SET stats_fetch_consistency = none")
        storage = dict(
            connection.execute(
                "SELECT attname, attstorage FROM pg_attribute WHERE attrelid = 'articles'::regclass"
                " AND attnum > 0 AND NOT attisdropped AND attlen = -1"
            ).fetchall()
        )
        assert storage.pop("body_text") == "x"
        assert set(storage.values()) == {"m"}, storage
        read_columns = ", ".join(storage)  # every variable-length column but body_text
        before = _toast_blocks_touched(connection)
        row = connection.execute(
            f"SELECT {read_columns}, length(body_html) FROM articles WHERE id = %s", [usual["id"]]
        ).fetchone()
        assert row is not None and row[-1] > 7_000
        assert _toast_blocks_touched(connection) == before
    for article in (usual, huge):
        response = client.get(f"/v1/articles/{article['id']}")
        assert response.status_code == 200
        assert response.json()["body_html"] == article["body_html"]
    assert len(huge["body_html"]) > 300_000
