"""The OpenAPI document tells the truth about errors: every error status an operation lists is
a problem+json, the answers every route shares are listed, and the links resolve."""

import pytest
from fastapi import FastAPI

from app.errors import PROBLEM_MEDIA_TYPE
from app.openapi import LINKS, complete_openapi


def test_every_error_an_operation_declares_is_a_problem(app: FastAPI) -> None:
    document = app.openapi()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.isdigit() and int(status) >= 400:
                    assert list(response["content"]) == [PROBLEM_MEDIA_TYPE], (method, path, status)
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert "Problem" in document["components"]["schemas"]


def test_shared_answers_are_declared_where_they_can_happen(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    batch = paths["/v1/articles/batch"]["post"]["responses"]
    assert {"400", "401", "403", "413", "422", "503"} <= set(batch)
    assert {"404", "422", "451", "503"} <= set(
        paths["/v1/articles/{article_id}"]["get"]["responses"]
    )
    assert "429" in paths["/v1/takedowns"]["post"]["responses"]
    assert "503" not in paths["/healthz"]["get"]["responses"]


def test_links_lead_from_what_was_created_to_where_it_is_read(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    filed = paths["/v1/takedowns"]["post"]["responses"]["202"]["links"]
    assert filed["GetTakedown"]["parameters"] == {
        "path.takedown_id": "$response.body#/id",
        "query.token": "$response.body#/status_token",
    }
    created = paths["/v1/articles"]["post"]["responses"]["201"]["links"]
    assert created["GetArticle"]["operationRef"] == "#/paths/~1v1~1articles~1{article_id}/get"


def test_a_link_to_a_route_that_does_not_exist_is_refused(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = app.openapi()
    broken = {
        ("post", "/v1/articles"): {"201": {"Nowhere": {"operationRef": "#/paths/~1nope/get"}}}
    }
    monkeypatch.setattr("app.openapi.LINKS", broken)
    with pytest.raises(LookupError, match="GET /nope"):
        complete_openapi(document)
    assert LINKS  # the real links are untouched
