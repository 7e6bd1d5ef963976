"""The OpenAPI document: each route declares its own problems (`problem_responses`); this module
adds the answers every route shares and the links between operations, so that the document
tells the truth about every status a client (or a fuzzer) can meet.

Shared answers, and where they come from:
- 422 validation-error: FastAPI documents its own `HTTPValidationError` as application/json;
  byline answers every validation error as problem+json (app/errors.py).
- 400 malformed-json and 413 payload-too-large: any operation that reads a body
  (app/errors.py, app/limits.py); 415 unsupported-media-type: any operation that reads a JSON
  body, sent as something else (app/errors.py).
- 503: the database is unavailable (app/errors.py) or the request ran out of time
  (app/timeouts.py), on every operation but `/healthz`, which touches neither.
"""

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from app.errors import problem_responses, problem_schemas

METHODS = ("get", "put", "post", "delete", "patch")
JSON = "application/json"
_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
_NEVER_UNAVAILABLE = {("get", "/healthz")}
# Operations anyone may call, that take a key if one is sent (a publisher's key proves its
# claim): FastAPI documents every key as required.
_KEY_OPTIONAL = {("post", "/v1/takedowns")}


def _ref(method: str, path: str) -> str:
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method


def _link(method: str, path: str, description: str, **parameters: str) -> dict[str, Any]:
    return {
        "operationRef": _ref(method, path),
        "description": description,
        "parameters": parameters,
    }


_ARTICLE_LINKS = {
    "GetArticle": _link(
        "get",
        "/v1/articles/{article_id}",
        "Read the stored article.",
        article_id="$response.body#/article/id",
    ),
    "GetArticleBySlug": _link(
        "get",
        "/v1/articles/by-slug/{slug}",
        "Read the stored article by its slug.",
        slug="$response.body#/article/slug",
    ),
}
_NEW_ID = "$response.body#/id"
_FEED_LINKS = {
    "GetFeed": _link("get", "/v1/feeds/{feed_id}", "Read the new feed.", feed_id=_NEW_ID),
    "ChangeFeed": _link(
        "patch", "/v1/feeds/{feed_id}", "Pause, resume or change the feed.", feed_id=_NEW_ID
    ),
    "DeleteFeed": _link("delete", "/v1/feeds/{feed_id}", "Unsubscribe.", feed_id=_NEW_ID),
    "FetchFeed": _link("post", "/v1/feeds/{feed_id}/fetch", "Fetch the feed now.", feed_id=_NEW_ID),
}
_WEBHOOK_LINKS = {
    "GetWebhook": _link(
        "get",
        "/v1/admin/webhooks/{endpoint_id}",
        "Read the new endpoint.",
        endpoint_id=_NEW_ID,
    ),
    "DeleteWebhook": _link(
        "delete",
        "/v1/admin/webhooks/{endpoint_id}",
        "Remove the endpoint.",
        endpoint_id=_NEW_ID,
    ),
    "EnableWebhook": _link(
        "post",
        "/v1/admin/webhooks/{endpoint_id}/enable",
        "Enable the endpoint again.",
        endpoint_id=_NEW_ID,
    ),
    "ListWebhookDeliveries": _link(
        "get",
        "/v1/admin/webhooks/{endpoint_id}/deliveries",
        "The endpoint's deliveries.",
        endpoint_id=_NEW_ID,
    ),
}
_VERIFICATION_LINKS = {
    "GetVerification": _link(
        "get",
        "/v1/publishers/verifications/{verification_id}",
        "Read the verification.",
        verification_id=_NEW_ID,
    ),
    "CheckVerification": _link(
        "post",
        "/v1/publishers/verifications/{verification_id}/check",
        "Look the TXT record up now.",
        verification_id=_NEW_ID,
    ),
}
_TAKEDOWN = _NEW_ID
_FILED_LINKS = {
    "GetTakedown": _link(
        "get",
        "/v1/takedowns/{takedown_id}",
        "Follow the request with its status token.",
        **{"path.takedown_id": _TAKEDOWN, "query.token": "$response.body#/status_token"},
    ),
    "WithdrawTakedown": _link(
        "post",
        "/v1/takedowns/{takedown_id}/withdraw",
        "Withdraw the request.",
        **{"path.takedown_id": _TAKEDOWN, "query.token": "$response.body#/status_token"},
    ),
    "ReviewTakedown": _link(
        "get",
        "/v1/admin/takedowns/{takedown_id}",
        "An operator reads the request.",
        takedown_id=_TAKEDOWN,
    ),
    "ApproveTakedown": _link(
        "post",
        "/v1/admin/takedowns/{takedown_id}/approve",
        "An operator approves it.",
        takedown_id=_TAKEDOWN,
    ),
    "RejectTakedown": _link(
        "post",
        "/v1/admin/takedowns/{takedown_id}/reject",
        "An operator rejects it.",
        takedown_id=_TAKEDOWN,
    ),
    "EscalateTakedown": _link(
        "post",
        "/v1/admin/takedowns/{takedown_id}/escalate",
        "An operator escalates it.",
        takedown_id=_TAKEDOWN,
    ),
}
_DECIDED_LINKS = {
    name: link
    for name, link in _FILED_LINKS.items()
    if name in ("ReviewTakedown", "ApproveTakedown", "RejectTakedown")
}
# (method, path) -> status -> links of that response.
LINKS: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("post", "/v1/articles"): {"201": _ARTICLE_LINKS, "200": _ARTICLE_LINKS},
    ("post", "/v1/feeds"): {"201": _FEED_LINKS},
    ("post", "/v1/admin/webhooks"): {"201": _WEBHOOK_LINKS},
    ("post", "/v1/publishers/verifications"): {"201": _VERIFICATION_LINKS},
    ("post", "/v1/takedowns"): {"202": _FILED_LINKS},
    ("post", "/v1/admin/takedowns/{takedown_id}/escalate"): {"200": _DECIDED_LINKS},
    ("post", "/v1/admin/keys"): {
        "201": {
            "RevokeKey": _link(
                "delete",
                "/v1/admin/keys/{key_id}",
                "Revoke the new key.",
                key_id="$response.body#/id",
            )
        }
    },
}


def complete_openapi(document: dict[str, Any]) -> dict[str, Any]:
    """Add the shared problem answers, the Problem schema and the links to `document`."""
    paths = document.get("paths", {})
    for path, operations in paths.items():
        for method, operation in operations.items():
            if method in METHODS:
                _add_shared_problems(method, path, operation)
    for method, path in _KEY_OPTIONAL:
        operation = paths[path][method]
        operation["security"] = [*operation.get("security", []), {}]
    for (method, path), by_status in LINKS.items():
        responses = paths[path][method]["responses"]
        for status, links in by_status.items():
            for link in links.values():
                _check_target(paths, link["operationRef"])
            responses[status].setdefault("links", {}).update(links)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in _FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    schemas.update(problem_schemas())
    return document


def _add_shared_problems(method: str, path: str, operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    shared = []
    if "422" in responses:
        shared.append(422)
    if "requestBody" in operation:
        shared += [400, 413]
        if JSON in operation["requestBody"].get("content", {}):
            shared.append(415)
    if (method, path) not in _NEVER_UNAVAILABLE:
        shared.append(503)
    for status, declared in problem_responses(*shared).items():
        existing = responses.get(str(status), {})
        # A route's own description of the problem is kept; the content is problem+json.
        responses[str(status)] = {**declared, **existing, "content": declared["content"]}


def _check_target(paths: dict[str, Any], operation_ref: str) -> None:
    path, method = operation_ref.removeprefix("#/paths/").rsplit("/", 1)
    path = path.replace("~1", "/").replace("~0", "~")
    if method not in paths.get(path, {}):
        raise LookupError(f"an OpenAPI link points to {method.upper()} {path}, which is no route")


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` build the completed document (once, then cached)."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete_openapi(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
