"""The reads by key answer as Starlette and FastAPI's general machinery would: the same headers
in the same order, the same If-None-Match reading, the same routes, the same error handlers."""

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.responses import Response

from app.articles import routes
from app.fastpath.keyed_reads import ReadByKey
from tests.articles.factories import ingest


def _route_headers(response: httpx.Response) -> list[tuple[bytes, bytes]]:
    """The headers the route wrote: the tests' app adds `Vary: Origin` (CORS) after them."""
    raw: list[tuple[bytes, bytes]] = response.headers.raw
    return [(name, value) for name, value in raw if name != b"vary"]


def test_article_headers_are_those_a_starlette_response_writes(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    article = ingest(client, ingest_headers)
    response = client.get(f"/v1/articles/{article['id']}")
    etag = response.headers["etag"]
    expected = Response(
        response.content,
        media_type="application/json",
        headers={"ETag": etag, "Cache-Control": "public, max-age=60"},
    )
    assert response.status_code == 200
    assert _route_headers(response) == expected.raw_headers


def test_not_modified_headers_are_those_a_starlette_response_writes(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    article = ingest(client, ingest_headers)
    etag = client.get(f"/v1/articles/{article['id']}").headers["etag"]
    response = client.get(
        f"/v1/articles/by-slug/{article['slug']}", headers={"If-None-Match": etag}
    )
    expected = Response(
        status_code=304, headers={"ETag": etag, "Cache-Control": "public, max-age=60"}
    )
    assert response.status_code == 304
    assert response.content == b""
    assert _route_headers(response) == expected.raw_headers


def test_only_the_first_if_none_match_header_counts_as_in_starlette(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    article = ingest(client, ingest_headers)
    etag = client.get(f"/v1/articles/{article['id']}").headers["etag"]
    path = f"/v1/articles/{article['id']}"
    first_other = client.get(path, headers=[("If-None-Match", '"other"'), ("If-None-Match", etag)])
    first_ours = client.get(path, headers=[("If-None-Match", etag), ("If-None-Match", '"other"')])
    assert first_other.status_code == 200
    assert first_ours.status_code == 304


def test_reads_by_key_are_matched_before_every_other_route(app: FastAPI) -> None:
    first_two = app.router.routes[:2]
    assert [getattr(route, "path", None) for route in first_two] == [
        "/v1/articles/by-slug/{slug}",
        "/v1/articles/{article_id}",
    ]
    fast = app.state.settings.fast_reads
    assert all(isinstance(route, ReadByKey) == fast for route in first_two)


def test_documentation_routes_still_answer_behind_the_reads(client: TestClient) -> None:
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs").status_code == 200
    paths = list(client.get("/openapi.json").json()["paths"])
    assert paths.index("/v1/articles/by-slug/{slug}") < paths.index("/v1/articles/{article_id}")


def test_an_unexpected_error_in_a_read_by_key_is_a_500_problem(
    client: TestClient, ingest_headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    article = ingest(client, ingest_headers)

    def broken(**_: object) -> object:
        raise RuntimeError("boom")

    async def broken_read(**_: object) -> object:
        broken()

    monkeypatch.setattr(routes.service, "read_article", broken_read)  # the fast path's read
    monkeypatch.setattr(routes.service, "get_article", broken)  # the plain path's
    response = client.get(f"/v1/articles/{article['id']}")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "https://byline.dev/problems/internal-error"


def test_a_wrong_method_on_a_read_by_key_is_a_405_problem(client: TestClient) -> None:
    response = client.delete("/v1/articles/1")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert response.headers["content-type"] == "application/problem+json"
