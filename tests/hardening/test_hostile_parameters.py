"""Every path and query parameter of every operation, given hostile text: never a 5xx, every
4xx a problem. Schemathesis seldom draws these exact values; a NUL in a query parameter was a
500 on PostgreSQL (which cannot store NUL in text) until the app refused it."""

from typing import Any
from urllib.parse import quote

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.errors import PROBLEM_MEDIA_TYPE

HOSTILE = [
    "\x00",
    "news\x00.example",
    "' OR 1=1 --",
    "%00%27",
    "\t\r\n",
    "😀" * 50,
    "x" * 5000,
    "-1",
    "99999999999999999999999999",
]


def _operations(app: FastAPI) -> list[tuple[str, str, list[dict[str, Any]]]]:
    document = app.openapi()
    return [
        (method, path, operation.get("parameters", []))
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


def _request(
    client: TestClient,
    method: str,
    path: str,
    parameters: list[dict[str, Any]],
    target: str,
    value: str,
    headers: dict[str, str],
) -> Any:
    """The operation with `value` in parameter `target` and a plain `1` in the others."""
    url = path
    query = {}
    for parameter in parameters:
        name, where = parameter["name"], parameter["in"]
        text = value if name == target else "1"
        if where == "path":
            url = url.replace("{" + name + "}", quote(text, safe=""))
        elif where == "query" and name == target:
            query[name] = text
    return client.request(method.upper(), url, params=query, headers=headers)


def test_hostile_text_in_any_parameter_is_a_4xx_problem_never_a_5xx(
    app: FastAPI, client: TestClient, admin_headers: dict[str, str]
) -> None:
    failures = []
    tried = 0
    for method, path, parameters in _operations(app):
        for parameter in parameters:
            if parameter["in"] not in ("path", "query"):
                continue
            for value in HOSTILE:
                tried += 1
                response = _request(
                    client, method, path, parameters, parameter["name"], value, admin_headers
                )
                content_type = response.headers.get("content-type", "")
                if response.status_code >= 500 or (
                    response.status_code >= 400 and content_type != PROBLEM_MEDIA_TYPE
                ):
                    failures.append(
                        f"{method.upper()} {path} {parameter['name']}={value[:20]!r}: "
                        f"{response.status_code} {content_type} {response.text[:200]}"
                    )
    assert tried > 100
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("value", ["\x00", "a\x00b"])
def test_nul_in_a_query_parameter_is_refused_naming_it(client: TestClient, value: str) -> None:
    response = client.get("/v1/articles", params={"publisher": value})
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "publisher", "message": "must not contain NUL characters"}
    ]


def test_nul_in_a_path_parameter_is_refused_naming_it(client: TestClient) -> None:
    response = client.get("/v1/articles/by-slug/a%00b")
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert response.json()["errors"] == [
        {"field": "slug", "message": "must not contain NUL characters"}
    ]
