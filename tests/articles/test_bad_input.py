"""Bad input gets a clear 4xx problem naming the field, and nothing half-written is stored."""

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from app.articles.models import Article, Publisher
from app.db import new_session
from tests.articles.factories import article_payload

PROBLEM = "application/problem+json"


def nothing_stored(engine: Engine) -> bool:
    with new_session(engine) as session:
        articles = session.scalar(select(func.count()).select_from(Article))
        publishers = session.scalar(select(func.count()).select_from(Publisher))
    return articles == 0 and publishers == 0


def post(client: TestClient, headers: dict[str, str], payload: Any) -> Any:
    return client.post("/v1/articles", json=payload, headers=headers)


def fields(response: Any) -> set[str]:
    assert response.headers["content-type"] == PROBLEM, response.text
    return {error["field"] for error in response.json()["errors"]}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"source_url": None}, "source_url"),
        ({"publisher": None}, "publisher"),
        ({"publisher": {"url": "https://x.example"}}, "publisher.name"),
        ({"publisher": {"name": "   "}}, "publisher.name"),
        ({"publisher": {"name": "<b></b>"}}, "publisher.name"),
        ({"title": None}, "title"),
        ({"body_html": None}, "body_html"),
    ],
)
def test_missing_attribution_or_content_is_422(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    change: dict[str, Any],
    field: str,
) -> None:
    payload = {k: v for k, v in {**article_payload(), **change}.items() if v is not None}
    response = post(client, ingest_headers, payload)
    assert response.status_code == 422
    assert field in fields(response)
    assert nothing_stored(engine)


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "/2023/03/story",
        "story.html",
        "//cdn.example.com/x",
        "ftp://example.com/x",
        "https://",
        "",
    ],
)
def test_non_http_or_relative_source_url_is_422(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine, url: str
) -> None:
    response = post(client, ingest_headers, article_payload(source_url=url))
    assert response.status_code == 422
    assert "source_url" in fields(response)
    assert nothing_stored(engine)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"title": "x" * 5000}, "title"),
        ({"title": 42}, "title"),
        ({"tags": "politics"}, "tags"),
        ({"tags": [1, 2]}, "tags.0"),
        ({"authors": [{"name": "A", "url": "javascript:x"}]}, "authors.0.url"),
        ({"image": {"url": "data:image/png;base64,AAAA"}}, "image.url"),
        ({"published_at": "last tuesday"}, "published_at"),
        ({"language": "English; DROP"}, "language"),
        ({"title": "nul\x00byte"}, "title"),
        ({"body_html": "<p>nul\x00byte</p>"}, "body_html"),
        ({"publisher": {"name": "Pub\x00"}}, "publisher.name"),
        ({"unexpected": True}, "unexpected"),
        ({"body_html": "<script>alert(1)</script>"}, "body_html"),
    ],
)
def test_wrong_types_and_oversized_fields_are_422_naming_the_field(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    change: dict[str, Any],
    field: str,
) -> None:
    response = post(client, ingest_headers, article_payload(**change))
    assert response.status_code == 422, response.text
    assert field in fields(response)
    assert nothing_stored(engine)


def test_ten_megabyte_body_is_413(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine
) -> None:
    payload = article_payload(body_html="<p>" + "a" * 10 * 1024 * 1024 + "</p>")
    response = post(client, ingest_headers, payload)
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
    assert nothing_stored(engine)


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b'{"title": "x",}',
        b"not json at all",
        b"\xff\xfe\x00garbage",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    ],
)
def test_malformed_or_deeply_nested_json_is_a_4xx_problem(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine, raw: bytes
) -> None:
    response = client.post(
        "/v1/articles", content=raw, headers={**ingest_headers, "content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == PROBLEM
    assert nothing_stored(engine)


def test_json_body_of_the_wrong_shape_is_422(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    for body in ([], "string", 3, None):
        response = post(client, ingest_headers, body)
        assert response.status_code == 422


@pytest.mark.parametrize(
    "path", ["/v1/articles/abc", "/v1/articles/1.5", "/v1/articles/99999999999999999999999"]
)
def test_malformed_ids_are_4xx(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code in (404, 422)
    assert response.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (
            "/v1/articles/abc",
            "Input should be a valid integer, unable to parse string as an integer",
        ),
        (
            "/v1/articles/1.5",
            "Input should be a valid integer, unable to parse string as an integer",
        ),
        (
            "/v1/articles/%20",
            "Input should be a valid integer, unable to parse string as an integer",
        ),
        ("/v1/articles/0", "Input should be greater than or equal to 1"),
        ("/v1/articles/-1", "Input should be greater than or equal to 1"),
        (
            "/v1/articles/9223372036854775808",
            "Input should be less than or equal to 9223372036854775807",
        ),
        (
            "/v1/articles/99999999999999999999999",
            "Input should be less than or equal to 9223372036854775807",
        ),
    ],
)
def test_bad_article_ids_are_the_same_422_as_any_route(
    client: TestClient, path: str, message: str
) -> None:
    """The reads by key validate their path parameter themselves (ReadByKey): the answers are
    the ones FastAPI gives for any route (recorded from it), naming the parameter."""
    response = client.get(path)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json() == {
        "type": "https://byline.dev/problems/validation-error",
        "title": "Unprocessable Entity",
        "status": 422,
        "detail": f"article_id: {message}",
        "errors": [{"field": "article_id", "message": message}],
    }


def test_batch_body_that_is_not_a_list_is_422(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    response = client.post("/v1/articles/batch", json={"items": "nope"}, headers=ingest_headers)
    assert response.status_code == 422
    assert "items" in fields(response)
    response = client.post("/v1/articles/batch", json={"items": []}, headers=ingest_headers)
    assert response.status_code == 422
