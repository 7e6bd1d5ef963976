"""Every error answers application/problem+json (RFC 9457) with a stable `type`."""

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.params import Form
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.http_methods import allow_header

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://byline.dev/problems/"

logger = logging.getLogger("byline.errors")


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details, as every error is answered."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldError] | None = None


class ProblemError(Exception):
    """Raise from services and routes; answered as problem+json with `status`."""

    def __init__(
        self,
        status: int,
        kind: str,
        detail: str,
        *,
        title: str | None = None,
        errors: Sequence[FieldError] | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.errors = list(errors) if errors else None
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


class NotFound(ProblemError):
    def __init__(self, detail: str = "No such resource.") -> None:
        super().__init__(404, "not-found", detail)


class Conflict(ProblemError):
    def __init__(self, detail: str) -> None:
        super().__init__(409, "conflict", detail)


class InvalidInput(ProblemError):
    """A 422 naming each bad field."""

    def __init__(self, errors: Sequence[FieldError], detail: str | None = None) -> None:
        detail = detail or "; ".join(f"{e.field}: {e.message}" for e in errors)
        super().__init__(422, "validation-error", detail, errors=errors)


def problem_response(
    status: int,
    kind: str,
    detail: str,
    *,
    title: str | None = None,
    errors: Sequence[FieldError] | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
    instance: str | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + kind,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = [error.model_dump() for error in errors]
    body.update(extra or {})
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def field_name(location: Sequence[int | str]) -> str:
    """`("body", "publisher", "name")` -> `publisher.name`; query/path params keep their name."""
    parts = [str(part) for part in location]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"}:
        parts = parts[1:]
    return ".".join(parts) or "body"


def _validation_errors(exc: RequestValidationError) -> list[FieldError]:
    errors = []
    for error in exc.errors():
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        errors.append(FieldError(field=field_name(error.get("loc", ())), message=message))
    return errors


def _body_is_not_json(request: Request) -> bool:
    """Whether the request's route takes a JSON body and the request sent another kind: FastAPI
    then validates the body's bytes, and answered 422 for what is a 415. Asked only of a request
    that failed validation."""
    route = request.scope.get("route")
    body_field = route.body_field if isinstance(route, APIRoute) else None
    if body_field is None or isinstance(body_field.field_info, Form):
        return False
    content_type = request.headers.get("content-type")
    if content_type is None:
        # No type: a body is not JSON (FastAPI reads it as bytes); no body is a missing body.
        return request.headers.get("content-length", "0") != "0" or (
            "transfer-encoding" in request.headers
        )
    media_type = content_type.split(";", 1)[0].strip().lower()
    return not (
        media_type == "application/json"
        or (media_type.startswith("application/") and media_type.endswith("+json"))
    )


_STATUS_KINDS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    429: "rate-limited",
    451: "unavailable-for-legal-reasons",
    503: "unavailable",
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(
            exc.status,
            exc.kind,
            exc.detail,
            title=exc.title,
            errors=exc.errors,
            headers=exc.headers,
            extra=exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if _body_is_not_json(request):
            return problem_response(
                415,
                "unsupported-media-type",
                "This operation takes a JSON body: send it with Content-Type: application/json.",
            )
        errors = _validation_errors(exc)
        if any(e.message.startswith("JSON decode error") for e in errors):
            return problem_response(
                400, "malformed-json", "The request body is not valid JSON.", errors=errors
            )
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
        return problem_response(422, "validation-error", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(status).phrase
        if status == 404 and detail == "Not Found":
            detail = f"No route matches {request.url.path}."
        headers = exc.headers
        if status == 405:
            # The route that answered knows only its own methods; Allow lists the path's.
            headers = {**(headers or {}), "Allow": allow_header(request.scope)}
            if detail == "Method Not Allowed":
                detail = f"{request.method} is not allowed on {request.url.path}."
        return problem_response(
            status, _STATUS_KINDS.get(status, "http-error"), detail, headers=headers
        )

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # Lost connections, a restarting server, a locked or read-only SQLite file: the request
        # may succeed if retried; nothing was committed.
        logger.error(
            "database unavailable on %s %s: %s",
            request.method,
            request.url.path,
            type(exc).__name__,
        )
        return problem_response(
            503,
            "database-unavailable",
            "The database is unavailable; retry shortly.",
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            500, "internal-error", "An unexpected error occurred; it has been logged."
        )


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries declaring the problem+json errors a route returns."""
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


def problem_schemas() -> dict[str, Any]:
    """The Problem schema and what it references, for the OpenAPI components section."""
    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions = schema.pop("$defs", {})
    return {"Problem": schema, **definitions}
