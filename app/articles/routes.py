"""HTTP routes of the articles domain: thin, the rules live in service.py."""

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic_core import to_json
from sqlalchemy import Engine, Row
from sqlmodel import Session

from app.articles import service
from app.articles.cursor import BadCursor, Position, decode_cursor, encode_cursor
from app.articles.listing import page_rows
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
from app.auth import IngestKey
from app.clock import RequestNow
from app.cursor import NextPage, page_url
from app.db import MAX_BIG_ROW_ID, ReadSessionDep, WriteSessionDep
from app.errors import ProblemError, problem_responses
from app.fastpath import KeyedRead, RowReader
from app.inputs import QueryDateTime

router = APIRouter(prefix="/v1", tags=["articles"])

READ_CACHE_CONTROL = "public, max-age=60"
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
    validate and encode the model, cost more than the read (bench/README.md). The dicts are
    in the model's field order; a test holds these bytes equal to the model's JSON."""
    return to_json(_article_fields(row, base))


def etag_of(digest: str) -> str:
    """The ETag of an answer, from a SHA-256 (hex) of what it shows: its first 24 digits.
    An article's is its content hash (which covers every field its reads show that can
    change: the publisher as sent with it and the date it shows included); a feed's, the
    hash of its body."""
    return f'"{digest[:24]}"'


async def _read_article(rows: RowReader, article_id: int, request: Request) -> Any:
    return await service.read_article(
        rows=rows, article_id=article_id, blocked_by=_blocked_by(request)
    )


def _get_article(session: Session, article_id: int, request: Request) -> Any:
    return service.get_article(
        session=session, article_id=article_id, blocked_by=_blocked_by(request)
    )


async def _read_article_by_slug(rows: RowReader, slug: str, request: Request) -> Any:
    return await service.read_article_by_slug(rows=rows, slug=slug, blocked_by=_blocked_by(request))


def _get_article_by_slug(session: Session, slug: str, request: Request) -> Any:
    return service.get_article_by_slug(session=session, slug=slug, blocked_by=_blocked_by(request))


def _article_etag(row: Row[Any]) -> str:
    return etag_of(row.content_hash)


def _article_json_for(row: Row[Any], request: Request) -> bytes:
    return _article_json(row, _base(request))


# The reads by key, what frontends request most: served by the fast path (app/fastpath),
# mounted by create_app. The OpenAPI document lists them in this order.
ARTICLE_READS = (
    KeyedRead(
        path=f"{router.prefix}/articles/by-slug/{{slug}}",
        name="get_article_by_slug",
        description="One article by its slug, with its attribution.",
        parameter="slug",
        annotation=str,
        fetch=_read_article_by_slug,
        fetch_in_session=_get_article_by_slug,
        etag=_article_etag,
        render=_article_json_for,
        cache_control=READ_CACHE_CONTROL,
        response_model=ArticlePublic,
        tags=list(router.tags),
        responses={304: {"description": "Not modified"}, **problem_responses(404, 451)},
    ),
    KeyedRead(
        path=f"{router.prefix}/articles/{{article_id}}",
        name="get_article",
        description="One article by id, with its attribution. Removed articles answer 451.",
        parameter="article_id",
        annotation=ArticleId,
        fetch=_read_article,
        fetch_in_session=_get_article,
        etag=_article_etag,
        render=_article_json_for,
        cache_control=READ_CACHE_CONTROL,
        response_model=ArticlePublic,
        tags=list(router.tags),
        responses={304: {"description": "Not modified"}, **problem_responses(404, 422, 451)},
    ),
)


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
    article: ArticleIn,
    request: Request,
    now: RequestNow,
    response: Response,
    session: WriteSessionDep,
    _: IngestKey,
) -> IngestResult:
    """Store an article with its attribution (an upsert on the canonical URL)."""
    stored = service.ingest_article(session=session, data=article, now=now)
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
    now: RequestNow,
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
    results = service.ingest_batch(session=session, items=items, now=now)
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
