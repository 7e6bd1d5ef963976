"""Rules every request's parameters obey, whatever the route."""

import re
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl

from pydantic import AfterValidator, BeforeValidator
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import FieldError, InvalidInput, problem_response

_NUL_MESSAGE = "must not contain NUL characters"
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATE_OR_DATE_TIME = "must be a date (2026-03-20) or a date-time (2026-03-20T09:30:00Z)"


def _written_as_a_date(value: object) -> object:
    """Pydantic also reads a number as seconds since 1970 (`published_before=0.5` was 1970-01-01
    00:00:00.5), which no client means by a date: a query date starts as one, YYYY-MM-DD. A date
    alone is its first instant, UTC."""
    if isinstance(value, str):
        if _DATE.fullmatch(value):
            return value + "T00:00:00Z"
        if not _DATE.match(value):
            raise ValueError(_DATE_OR_DATE_TIME)
    return value


def _with_its_offset(value: datetime) -> datetime:
    # Without an offset the instant is unknown (RFC 3339 requires one).
    if value.tzinfo is None:
        raise ValueError(_DATE_OR_DATE_TIME + " with its offset (Z, +01:00)")
    return value


# A date or date-time query parameter: an instant.
QueryDateTime = Annotated[
    datetime, BeforeValidator(_written_as_a_date), AfterValidator(_with_its_offset)
]


class RefuseNulCharacters:
    """422 for a NUL character in a path or query parameter, naming the parameter.

    PostgreSQL cannot hold a NUL in text, so a NUL that reached a query was a 500 there (found
    by fuzzing); it is refused on both engines. (Bodies are validated by their models.)

    An ASGI layer rather than an app-wide FastAPI dependency: the dependency machinery costs
    every request far more than this layer's two substring tests (bench/README.md). Finding
    which parameter holds the NUL is left to the rare request that has one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = scope["query_string"]
            if "\x00" in scope["path"] or b"%00" in query or b"\x00" in query:
                errors = _path_errors(scope) + _query_errors(query)
                if errors:
                    exc = InvalidInput(errors)
                    response = problem_response(422, exc.kind, exc.detail, errors=errors)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _query_errors(query: bytes) -> list[FieldError]:
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True, encoding="utf-8")
    names = [name for name, value in pairs if "\x00" in name + value]
    return [FieldError(field=name, message=_NUL_MESSAGE) for name in dict.fromkeys(names)]


def _path_errors(scope: Scope) -> list[FieldError]:
    """Name the path parameter holding the NUL, from the app's documented path templates."""
    path = scope["path"]
    if "\x00" not in path:
        return []
    for pattern in _path_patterns(scope["app"]):
        match = pattern.fullmatch(path)
        if match:
            return [
                FieldError(field=name, message=_NUL_MESSAGE)
                for name, value in match.groupdict().items()
                if "\x00" in value
            ]
    return [FieldError(field="path", message=_NUL_MESSAGE)]


def _path_patterns(app: Any) -> list[re.Pattern[str]]:
    patterns: list[re.Pattern[str]] | None = getattr(app.state, "nul_path_patterns", None)
    if patterns is None:
        templates = app.openapi().get("paths", {})
        patterns = [compile_path(template)[0] for template in templates if "{" in template]
        app.state.nul_path_patterns = patterns
    return patterns
