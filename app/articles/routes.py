"""HTTP routes of the articles domain: thin, the rules live in service.py."""

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, get_type_hints

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from pydantic_core import to_json
from sqlalchemy import Connection, Engine, Row
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from app.articles import service
from app.articles.cursor import BadCursor, Position, decode_cursor, encode_cursor
from app.articles.schemas import (
    ArticleIn,
    ArticlePublic,
    ArticlesPublic,
    ArticleSummary,
    BatchResult,
    IngestResult,
    PublishersPublic,
    PublisherWithCount,
)
from app.articles.search import SearchWindow, search_articles
from app.auth import IngestKey
from app.cursor import NextPage, page_url
from app.db import MAX_BIG_ROW_ID, ReadSessionDep, WriteSessionDep
from app.errors import ProblemError, problem_responses
from app.inputs import QueryDateTime

router = APIRouter(prefix="/v1", tags=["articles"])

READ_CACHE_CONTROL = "public, max-age=60"
JSON = "application/json"
MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
ArticleId = Annotated[int, Path(ge=1, le=MAX_BIG_ROW_ID)]


def _base(request: Request) -> str:
    return str(request.app.state.settings.public_base_url)


def _blocked_by(request: Request) -> str:
    return _base(request) + "/takedown"


def credit_line(
    publisher: str, authors: list[dict[str, Any]], published_at: datetime | None, link: str
) -> str:
    """`Originally published by Reuters on 20 March 2023. Read the original: https://...`;
    without a known publication date, no date at all. `link` is the cleaned (canonical) URL:
    no tracking parameters are passed on to readers."""
    by = publisher
    if authors:
        by += " (" + ", ".join(str(author["name"]) for author in authors) + ")"
    if published_at is None:
        return f"Originally published by {by}. Read the original: {link}"
    # English month names whatever the process locale (what %B gives in the C locale).
    day = f"{published_at.day} {MONTHS[published_at.month - 1]} {published_at.year}"
    return f"Originally published by {by} on {day}. Read the original: {link}"


def _summary_fields(row: Row[Any], base: str) -> dict[str, Any]:
    """An article row as the fields of ArticleSummary, as plain values: the model is built
    from them in one validation, in Rust."""
    # As AuthorPublic has them: name and url, in this order (the read path encodes these
    # dicts without the model, see _article_json).
    authors = [{"name": a["name"], "url": a.get("url")} for a in row.authors or ()]
    published_at = row.published_at if row.published_at_known else None
    return {
        "id": row.id,
        "slug": row.slug,
        "url": f"{base}/v1/articles/{row.id}",
        "title": row.title,
        "excerpt": row.excerpt,
        "language": row.language,
        "tags": row.tags or [],
        "image": {"url": row.image_url, "alt": row.image_alt} if row.image_url else None,
        "published_at": row.published_at,
        "updated_at": row.updated_at,
        "attribution": {
            "source_url": row.source_url,
            "canonical_url": row.canonical_url,
            "source_domain": row.source_domain,
            "publisher": {"name": row.publisher_name, "url": row.publisher_url},
            "authors": authors,
            "license": row.license,
            "published_at": published_at,
            "first_seen_at": row.first_seen_at,
            "credit": credit_line(row.publisher_name, authors, published_at, row.canonical_url),
        },
    }


def _article_fields(row: Row[Any], base: str) -> dict[str, Any]:
    return {**_summary_fields(row, base), "body_html": row.body_html}


def _article(row: Row[Any], base: str) -> ArticlePublic:
    # One model_validate of plain dicts: pydantic-core builds the nested models in Rust.
    return ArticlePublic.model_validate(_article_fields(row, base))


def _article_json(row: Row[Any], base: str) -> bytes:
    """The article as ArticlePublic encodes it, without building the model: the stored
    values were validated on the way in, and validating them again, then letting FastAPI
    validate and encode the model, was a fifth of a detail read. The dicts are in the
    model's field order; a test holds these bytes equal to the model's JSON."""
    return to_json(_article_fields(row, base))


def etag_of(digest: str) -> str:
    """The ETag of an answer, from a SHA-256 (hex) of what it shows: its first 24 digits.
    An article's is its content hash (which covers every field its reads show that can
    change: the publisher as sent with it and the date it shows included); a feed's, the
    hash of its body."""
    return f'"{digest[:24]}"'


def _if_none_match(request: Request) -> str | None:
    """The first If-None-Match header, as `request.headers.get` gives it, read from the
    scope: Starlette's Headers answers a missing header (nearly every read) by raising and
    catching a KeyError (measured: 2% of a detail read's instructions)."""
    for name, value in request.scope["headers"]:
        if name == b"if-none-match":
            return value.decode("latin-1")
    return None


def not_modified(request: Request, etag: str) -> bool:
    """Whether the request's If-None-Match names `etag` (or `*`): answer 304."""
    header = _if_none_match(request)
    if not header:
        return False
    candidates = {candidate.strip().removeprefix("W/") for candidate in header.split(",")}
    return "*" in candidates or etag in candidates


class _CacheableRead(Response):
    """An article read's answer: 200 with the article's JSON, or 304 without a body, each
    with its ETag and Cache-Control. The headers are those `Response(body, media_type=JSON,
    headers={"ETag": ..., "Cache-Control": ...})` writes, in its order (tested), written
    directly: Response's general header handling (lower-casing, encoding, searching the
    given names for a length and a type) was 3% of a detail read's instructions."""

    def __init__(self, etag: str, body: bytes | None) -> None:
        self.background = None
        self.raw_headers = [
            (b"etag", etag.encode("latin-1")),
            (b"cache-control", _READ_CACHE_CONTROL_BYTES),
        ]
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


_READ_CACHE_CONTROL_BYTES = READ_CACHE_CONTROL.encode("latin-1")
_JSON_BYTES = JSON.encode("latin-1")


def _cacheable(request: Request, row: Row[Any]) -> Response:
    etag = etag_of(row.content_hash)
    if not_modified(request, etag):
        return _CacheableRead(etag, None)
    return _CacheableRead(etag, _article_json(row, _base(request)))


class ReadByKey(APIRoute):
    """The route class of the two reads by key (an article by id, by slug), the requests
    frontends make most. FastAPI documents their path parameter and response as for any route;
    the handler validates the one path parameter with the same annotation and calls the
    endpoint. FastAPI's general request handling (dependency solving over four parameter
    kinds, a Response to merge, the response model) was a sixth of a detail read's CPU for one
    integer or string (294 -> 243 us per read at 1M articles). A bad value raises the same
    RequestValidationError, so it gets the same 422 problem naming the parameter (tested).

    The route's ASGI app calls the handler and sends its response, without FastAPI's
    wrapper around it (two AsyncExitStacks for dependencies with `yield`, which these
    routes have none of, and a second exception-handling layer: 5% of a detail read's
    instructions). An exception goes on to ExceptionMiddleware, whose handlers (the same
    ones) answer it as before."""

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
        annotation = get_type_hints(self.endpoint, include_extras=True)[name]
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


async def get_article_by_slug(slug: str, request: Request) -> Response:
    """One article by its slug, with its attribution."""
    row = await service.read_article_by_slug(
        rows=request.app.state.rows, slug=slug, blocked_by=_blocked_by(request)
    )
    return _cacheable(request, row)


async def get_article(article_id: ArticleId, request: Request) -> Response:
    """One article by id, with its attribution. Removed articles answer 451."""
    row = await service.read_article(
        rows=request.app.state.rows, article_id=article_id, blocked_by=_blocked_by(request)
    )
    return _cacheable(request, row)


def add_reads_by_key(app_router: APIRouter) -> None:
    """The two reads by key, added to the app's own router rather than through `router`,
    ahead of every other route.

    They are what frontends request most. An included router is matched twice per request
    (once to find the router, once to find its route: FastAPI 0.16x's `_IncludedRouter`),
    and that matching cost a read by key more than its own validation; routes of the app's
    router are matched once, in order. FastAPI adds its documentation routes (/openapi.json,
    /docs, ...) first, when the app is built; behind these two they are no longer matched
    against every read (that was 6% of a detail read's instructions). No path matches both
    one of these and a documentation route, so the order changes no answer; the two keep
    their own order, which is the OpenAPI document's. (POST
    /articles/batch still reaches its route: a GET route whose path matches is only a
    partial match for a POST.)"""
    app_router.add_api_route(
        f"{router.prefix}/articles/by-slug/{{slug}}",
        get_article_by_slug,
        methods=["GET"],
        tags=router.tags,
        route_class_override=ReadByKey,
        response_model=ArticlePublic,
        responses={304: {"description": "Not modified"}, **problem_responses(404, 451)},
    )
    app_router.add_api_route(
        f"{router.prefix}/articles/{{article_id}}",
        get_article,
        methods=["GET"],
        tags=router.tags,
        route_class_override=ReadByKey,
        response_model=ArticlePublic,
        responses={304: {"description": "Not modified"}, **problem_responses(404, 422, 451)},
    )
    reads = app_router.routes[-2:]
    del app_router.routes[-2:]
    app_router.routes[:0] = reads


@router.post(
    "/articles",
    response_model=IngestResult,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": IngestResult, "description": "Updated, or unchanged"},
        **problem_responses(400, 401, 403, 413, 422, 451),
    },
)
def ingest_article(
    article: ArticleIn, request: Request, response: Response, session: WriteSessionDep, _: IngestKey
) -> IngestResult:
    """Store an article with its attribution (an upsert on the canonical URL)."""
    stored = service.ingest_article(
        session=session, data=article, now=request.app.state.clock.now()
    )
    row = service.get_article(
        session=session, article_id=stored.article_id, blocked_by=_blocked_by(request)
    )
    body = _article(row, _base(request))
    if stored.status == "created":
        response.headers["Location"] = body.url
    else:
        response.status_code = status.HTTP_200_OK
    return IngestResult(status=stored.status, article=body)


@router.post(
    "/articles/batch",
    response_model=BatchResult,
    responses=problem_responses(400, 401, 403, 413, 422),
)
def ingest_batch(
    request: Request,
    session: WriteSessionDep,
    _: IngestKey,
    items: Annotated[
        list[Any],
        Body(
            embed=True,
            min_length=1,
            description="Articles as for POST /v1/articles; each is answered on its own.",
        ),
    ],
) -> BatchResult:
    """Store up to 500 articles; each answers created/updated/unchanged/invalid/blocked."""
    limit = request.app.state.settings.max_batch_items
    if len(items) > limit:
        raise ProblemError(
            413,
            "batch-too-large",
            f"A batch holds at most {limit} items; this one has {len(items)}.",
        )
    results = service.ingest_batch(session=session, items=items, now=request.app.state.clock.now())
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    return BatchResult(items=results, counts=counts)


@dataclass(frozen=True)
class ArticleListing:
    """What a request for a page of articles asks: the filters, the search words, where the
    page starts (the cursor's position) and how many rows it holds."""

    filters: service.ArticleFilters
    q: str | None
    position: Position | None
    limit: int


async def article_listing(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    publisher: Annotated[str | None, Query(min_length=1, max_length=300)] = None,
    domain: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
    tag: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    language: Annotated[
        str | None, Query(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$")
    ] = None,
    published_after: QueryDateTime | None = None,
    published_before: QueryDateTime | None = None,
    q: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
) -> ArticleListing:
    """The query parameters of every list of articles (the JSON list and the feeds), read
    once. Async: it waits for nothing, and a sync dependency would cost a threadpool hop."""
    position = decode_cursor(cursor) if cursor else None
    if position is not None and (position.rank is None) != (q is None):
        raise BadCursor()  # a search cursor on a listing, or the reverse
    if position is not None and q is None and position.window_start is not None:
        raise BadCursor()
    filters = service.ArticleFilters(
        publisher=publisher,
        domain=domain,
        tag=tag,
        language=language,
        published_after=published_after,
        published_before=published_before,
    )
    return ArticleListing(filters=filters, q=q, position=position, limit=limit)


ArticleListingDep = Annotated[ArticleListing, Depends(article_listing)]


@router.get("/articles", response_model=ArticlesPublic, responses=problem_responses(400, 422))
async def list_articles(
    request: Request, response: Response, listing: ArticleListingDep
) -> ArticlesPublic:
    """Articles newest first (or best match first with `q`), keyset-paged with `cursor`."""
    # One hop to the threadpool for the query and the conversion (a session dependency and
    # a sync route cost four, each a wait for the GIL under load).
    items, last = await run_in_threadpool(
        article_page,
        request.app.state.engine,
        _base(request),
        listing.q,
        listing.filters,
        listing.position,
        listing.limit,
    )
    next_cursor = next_page(request, response, last=last, count=len(items), limit=listing.limit)
    response.headers["Cache-Control"] = READ_CACHE_CONTROL
    return ArticlesPublic(items=items, next_cursor=next_cursor)


def page_after(
    request: Request, *, last: Position | None, count: int, limit: int
) -> NextPage | None:
    """The page after one of `count` rows that ended at `last`; None when it was the last."""
    if last is None or count < limit:
        return None
    cursor = encode_cursor(last)
    return NextPage(cursor=cursor, url=page_url(request, cursor))


def next_page(
    request: Request, response: Response, *, last: Position | None, count: int, limit: int
) -> str | None:
    """The cursor of the page after one of `count` rows that ended at `last` (None when it
    was the last page), and the Link header to it: this request with that cursor."""
    after = page_after(request, last=last, count=count, limit=limit)
    if after is None:
        return None
    response.headers["Link"] = after.link
    return after.cursor


def page_rows(
    connection: Connection,
    *,
    q: str | None,
    filters: service.ArticleFilters,
    position: Position | None,
    limit: int,
) -> tuple[list[Row[Any]], Position | None]:
    """The summary rows of one page of the listing or of a search, and where it ended."""
    if q is None:
        after = (position.published_at, position.article_id) if position else None
        rows = service.list_articles(session=connection, filters=filters, after=after, limit=limit)
        return rows, (Position(rows[-1].published_at, rows[-1].id) if rows else None)
    after_score, window = None, None
    if position is not None and position.rank is not None:
        after_score = (position.rank, position.article_id)
        if position.window_start is not None:
            window = SearchWindow(position.window_start, position.window_end)
    matches = search_articles(
        session=connection, q=q, filters=filters, after=after_score, window=window, limit=limit
    )
    if not matches:
        return [], None
    end = matches[-1]
    last = Position(
        end.row.published_at,
        end.row.id,
        end.score,
        end.window.start if end.window else None,
        end.window.end if end.window else None,
    )
    return [match.row for match in matches], last


def article_summary(row: Row[Any], base: str) -> ArticleSummary:
    """An article row as the lists show it, attribution and credit line included."""
    return ArticleSummary.model_validate(_summary_fields(row, base))


def article_page(
    engine: Engine,
    base: str,
    q: str | None,
    filters: service.ArticleFilters,
    position: Position | None,
    limit: int,
) -> tuple[list[ArticleSummary], Position | None]:
    """One page of the listing or of a search, and where it ended. A single statement: run
    on a connection, without a session."""
    with engine.connect() as connection:
        rows, last = page_rows(connection, q=q, filters=filters, position=position, limit=limit)
    return [article_summary(row, base) for row in rows], last


@router.get("/publishers", response_model=PublishersPublic)
def list_publishers(session: ReadSessionDep, response: Response) -> PublishersPublic:
    """Publishers with their article counts."""
    response.headers["Cache-Control"] = READ_CACHE_CONTROL
    rows = service.list_publishers(session=session)
    return PublishersPublic(
        items=[
            PublisherWithCount(id=r.id, name=r.name, url=r.url, article_count=r.article_count)
            for r in rows
        ]
    )
