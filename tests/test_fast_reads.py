"""The fast path answers exactly as the plain path: the reads by key served by app/fastpath
and by plain FastAPI routes on a session (BYLINE_FAST_READS=false) give the same status,
headers (in order) and body for every request a frontend, a cache or a fuzzer sends."""

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.clock import FrozenClock
from app.config import Settings
from app.fastpath.keyed_reads import ReadByKey
from app.main import create_app
from tests.articles.factories import ingest
from tests.factories import make_takedown, remove_article

ORIGIN = "https://front.example"  # the tests' settings allow it (CORS)


@pytest.fixture
def fast_and_plain(
    settings: Settings, engine: Engine, clock: FrozenClock
) -> Iterator[tuple[TestClient, TestClient]]:
    """Two apps on one database, each with its lifespan (PostgreSQL's async reads open)."""
    fast = create_app(settings.model_copy(update={"fast_reads": True}), engine=engine, clock=clock)
    plain = create_app(
        settings.model_copy(update={"fast_reads": False}), engine=engine, clock=clock
    )
    assert isinstance(fast.router.routes[0], ReadByKey)
    assert not any(isinstance(route, ReadByKey) for route in plain.router.routes)
    with TestClient(fast) as fast_client, TestClient(plain) as plain_client:
        yield fast_client, plain_client


def _answer(response: Any) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    headers = [(name, value) for name, value in response.headers.raw if name != b"date"]
    return response.status_code, headers, response.content


def _requests(articles: list[dict[str, Any]], removed: dict[str, Any]) -> list[Any]:
    first = articles[0]
    etag = f'"{first["etag"]}"'
    by_id, by_slug = f"/v1/articles/{first['id']}", f"/v1/articles/by-slug/{first['slug']}"
    requests: list[tuple[str, str, dict[str, str]]] = []
    for article in articles:
        requests += [
            ("GET", f"/v1/articles/{article['id']}", {}),
            ("GET", f"/v1/articles/by-slug/{article['slug']}", {}),
        ]
    requests += [
        ("GET", f"/v1/articles/{removed['id']}", {}),
        ("GET", f"/v1/articles/by-slug/{removed['slug']}", {}),
        ("GET", "/v1/articles/999999", {}),
        ("GET", "/v1/articles/by-slug/no-such-article", {}),
        ("GET", "/v1/articles/by-slug/%22a%2Cb%7B%7D%5C", {}),
        ("GET", by_id, {"If-None-Match": etag}),
        ("GET", by_slug, {"If-None-Match": f'"other", W/{etag}'}),
        ("GET", by_id, {"If-None-Match": "*"}),
        ("GET", by_id, {"If-None-Match": '"other"'}),
        ("HEAD", by_id, {}),
        ("HEAD", by_slug, {"If-None-Match": etag}),
        ("HEAD", f"/v1/articles/{removed['id']}", {}),
        ("HEAD", "/v1/articles/0", {}),
        ("GET", by_id, {"Origin": ORIGIN}),
        ("GET", by_slug, {"Origin": "https://elsewhere.example"}),
        ("GET", f"/v1/articles/{removed['id']}", {"Origin": ORIGIN}),
        (
            "OPTIONS",
            by_id,
            {
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "If-None-Match",
            },
        ),
        ("GET", by_id, {"Accept": "application/xml"}),
        ("GET", by_slug, {"Accept": "text/html"}),
        ("GET", by_id, {"Accept": "application/json;q=0.1, */*;q=0.5"}),
        ("GET", by_id, {"Accept-Encoding": "gzip"}),
        ("DELETE", by_id, {}),
        ("POST", by_slug, {}),
    ]
    for bad in ("0", "-1", "abc", "1.5", "1e3", "99999999999999999999999", "%00", "%20"):
        requests.append(("GET", f"/v1/articles/{bad}", {}))
    return requests


@pytest.mark.parametrize("published_at", ["2023-03-20T10:01:00Z", None])
def test_fast_and_plain_reads_answer_byte_for_byte_the_same(
    fast_and_plain: tuple[TestClient, TestClient],
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    published_at: str | None,
) -> None:
    fast, plain = fast_and_plain
    articles = [
        ingest(fast, ingest_headers, 1, published_at=published_at),
        ingest(fast, ingest_headers, 2, authors=[], tags=[], language=None, published_at=None),
        ingest(
            fast,
            ingest_headers,
            3,
            title='Quotes " and \\ and \u00e9 \U0001f30a',
            image={"url": "https://img.example/a.jpg"},
            license="CC BY 4.0",
        ),
    ]
    removed = ingest(fast, ingest_headers, 4)
    takedown_id = make_takedown(engine, received_at=clock.now())
    assert remove_article(engine, clock, removed["id"], takedown_id) is True
    for article in articles:
        article["etag"] = fast.get(f"/v1/articles/{article['id']}").headers["etag"].strip('"')
    statuses = []
    for method, path, headers in _requests(articles, removed):
        fast_answer = _answer(fast.request(method, path, headers=headers))
        plain_answer = _answer(plain.request(method, path, headers=headers))
        assert fast_answer == plain_answer, (method, path, headers)
        statuses.append(fast_answer[0])
    # The requests reach every kind of answer (so the comparison compared something).
    assert {200, 304, 404, 405, 422, 451} <= set(statuses)


def test_fast_and_plain_reads_are_documented_the_same(
    fast_and_plain: tuple[TestClient, TestClient],
) -> None:
    fast, plain = fast_and_plain
    assert _answer(fast.get("/openapi.json")) == _answer(plain.get("/openapi.json"))


def test_an_app_without_fast_reads_answers_a_removed_article_by_slug_451(
    settings: Settings,
    engine: Engine,
    clock: FrozenClock,
    ingest_headers: dict[str, str],
) -> None:
    """The plain path finds a removed article by its old slug (kept only as a hash)."""
    plain = create_app(
        settings.model_copy(update={"fast_reads": False}), engine=engine, clock=clock
    )
    with TestClient(plain) as client:
        article = ingest(client, ingest_headers)
        takedown_id = make_takedown(engine, received_at=clock.now())
        assert remove_article(engine, clock, article["id"], takedown_id) is True
        response = client.get(f"/v1/articles/by-slug/{article['slug']}")
    assert response.status_code == 451
    assert response.headers["cache-control"] == "no-store"
