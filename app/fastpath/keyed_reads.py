"""Reads by key: what a domain declares (`KeyedRead`) and the two ways an app serves it
(`FastPath`): the fast path, or plain FastAPI routes on a session (BYLINE_FAST_READS=false).
Both answer byte for byte the same (tests/test_fast_reads.py)."""

import inspect
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from app.db import ReadSessionDep
from app.fastpath.conditional import names_etag, not_modified
from app.fastpath.reader import RowReader

JSON = "application/json"


@dataclass(frozen=True)
class KeyedRead:
    """One resource read by one path parameter, as its domain declares it: 200 with its JSON,
    its ETag and `cache_control`, or 304 when If-None-Match names that ETag. A fetch raises
    the domain's errors (a ProblemError: unknown, removed); the error handlers answer them."""

    path: str
    # The endpoint's name and description in the OpenAPI document.
    name: str
    description: str
    parameter: str
    # The parameter's type, with its validation (`Annotated[int, Path(ge=1)]`).
    annotation: Any
    # The row of a key on the fast path (outside any session), and on the plain path.
    fetch: Callable[[RowReader, Any, Request], Awaitable[Any]]
    fetch_in_session: Callable[[Session, Any, Request], Any]
    etag: Callable[[Any], str]
    render: Callable[[Any, Request], bytes]
    cache_control: str
    response_model: Any
    tags: list[str | Enum] = field(default_factory=list)
    responses: dict[int | str, dict[str, Any]] = field(default_factory=dict)


class FastPath:
    """The reads by key of one app. `enabled`: served by the fast path (its rows read outside
    any session, ReadByKey routes, CacheableAnswer); otherwise by plain FastAPI routes that
    call the domain's service on a session and answer with Starlette's Response. `open` and
    `close` come from the app's lifespan."""

    def __init__(self, engine: Engine, *, enabled: bool) -> None:
        self.rows = RowReader(engine) if enabled else None

    async def open(self) -> None:
        if self.rows is not None:
            await self.rows.open()

    async def close(self) -> None:
        if self.rows is not None:
            await self.rows.close()

    def mount(self, router: APIRouter, reads: Sequence[KeyedRead]) -> None:
        """Adds the reads to the app's own router, ahead of every route it has (the OpenAPI
        route FastAPI adds first included), in their order.

        They are what frontends request most. An included router is matched twice per request
        (once to find the router, once to find its route), and that matching cost a read by key
        more than its own validation; routes of the app's router are matched once, in order.
        The order changes no answer: the one path they share with another route (POST
        /v1/articles/batch) is another method's, and a GET route is only a partial match for a
        POST, which Starlette passes over for the full match."""
        for read in reads:
            endpoint: Callable[..., Any]
            route_class: type[APIRoute] | None
            if self.rows is None:
                endpoint, route_class = _plain_endpoint(read), None
            else:
                endpoint, route_class = _fast_endpoint(read, self.rows), ReadByKey
            router.add_api_route(
                read.path,
                endpoint,
                methods=["GET"],
                name=read.name,
                description=read.description,
                tags=list(read.tags),
                response_model=read.response_model,
                responses=read.responses,
                route_class_override=route_class,
            )
        added = router.routes[-len(reads) :]
        del router.routes[-len(reads) :]
        router.routes[:0] = added


def _signature(read: KeyedRead, *extra: inspect.Parameter) -> inspect.Signature:
    """What FastAPI reads of an endpoint: the path parameter with its validation, the request."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    return inspect.Signature(
        [
            inspect.Parameter(read.parameter, keyword, annotation=read.annotation),
            inspect.Parameter("request", keyword, annotation=Request),
            *extra,
        ]
    )


def _plain_endpoint(read: KeyedRead) -> Callable[..., Response]:
    def endpoint(**arguments: Any) -> Response:
        request: Request = arguments["request"]
        row = read.fetch_in_session(arguments["session"], arguments[read.parameter], request)
        etag = read.etag(row)
        headers = {"ETag": etag, "Cache-Control": read.cache_control}
        if names_etag(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        return Response(read.render(row, request), media_type=JSON, headers=headers)

    session = inspect.Parameter(
        "session", inspect.Parameter.KEYWORD_ONLY, annotation=ReadSessionDep
    )
    endpoint.__signature__ = _signature(read, session)  # type: ignore[attr-defined]
    return endpoint


def _fast_endpoint(
    read: KeyedRead, rows: RowReader
) -> Callable[[Any, Request], Coroutine[Any, Any, Response]]:
    cache_control = read.cache_control.encode("latin-1")

    async def endpoint(key: Any, request: Request) -> Response:
        row = await read.fetch(rows, key, request)
        etag = read.etag(row)
        if not_modified(request, etag):
            return CacheableAnswer(etag, cache_control, None)
        return CacheableAnswer(etag, cache_control, read.render(row, request))

    endpoint.__signature__ = _signature(read)  # type: ignore[attr-defined]
    return endpoint


class CacheableAnswer(Response):
    """A read's answer: 200 with its JSON, or 304 without a body, each with its ETag and
    Cache-Control. The headers are those `Response(body, media_type=JSON, headers={"ETag":
    ..., "Cache-Control": ...})` writes, in its order, written directly: Response's general
    header handling (lower-casing, encoding, searching the given names for a length and a
    type) is measurable on a read this small (bench/README.md)."""

    def __init__(self, etag: str, cache_control: bytes, body: bytes | None) -> None:
        self.background = None
        self.raw_headers = [(b"etag", etag.encode("latin-1")), (b"cache-control", cache_control)]
        if body is None:
            self.status_code = 304
            self.body = b""
        else:
            self.status_code = 200
            self.body = body
            self.raw_headers += [
                (b"content-length", str(len(body)).encode("latin-1")),
                (b"content-type", _JSON_BYTES),
            ]


_JSON_BYTES = JSON.encode("latin-1")


class ReadByKey(APIRoute):
    """The route class of the fast path's reads. FastAPI documents the path parameter and the
    response as for any route; the handler validates the one path parameter with the same
    annotation and calls the endpoint, without FastAPI's general request handling (dependency
    solving over four parameter kinds, a Response to merge, the response model), which costs
    more than the read itself for one integer or string. A bad value raises the same
    RequestValidationError, so it gets the same 422 problem naming the parameter.

    The route's ASGI app calls the handler and sends its response, without FastAPI's
    wrapper around it (two AsyncExitStacks for dependencies with `yield`, which these
    routes have none of, and a second exception-handling layer). An exception goes on to
    ExceptionMiddleware, whose handlers (the same ones) answer it."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        super().__init__(path, endpoint, **options)
        handler = self.get_route_handler()

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            response = await handler(Request(scope, receive, send))
            await response(scope, receive, send)

        self.app = app

    # Starlette's matching and handling, without APIRoute's look for the context of an
    # included router (three per read): these routes are the app router's own, never included.
    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = Route.matches(self, scope)
        if match != Match.NONE:
            child_scope["route"] = self
        return match, child_scope

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await Route.handle(self, scope, receive, send)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        (name,) = self.param_convertors
        annotation = inspect.signature(self.endpoint).parameters[name].annotation
        parameter: TypeAdapter[Any] = TypeAdapter(annotation)
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            try:
                value = parameter.validate_python(request.path_params[name])
            except ValidationError as exc:
                errors = [{**error, "loc": ("path", name)} for error in exc.errors()]
                raise RequestValidationError(errors) from None
            response: Response = await endpoint(value, request)
            return response

        return handler
