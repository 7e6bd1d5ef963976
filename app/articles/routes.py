"""HTTP routes of the articles domain: thin, the rules live in service.py."""

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Body, Path, Query, Request, Response, status
from sqlalchemy import Row

from app.articles import service
from app.articles.cursor import BadCursor, Position, decode_cursor, encode_cursor
from app.articles.schemas import (
    ArticleIn,
    ArticlePublic,
    ArticlesPublic,
    ArticleSummary,
    Attribution,
    Author,
    BatchResult,
    Image,
    IngestResult,
    PublisherPublic,
    PublishersPublic,
    PublisherWithCount,
)
from app.articles.search import search_articles
from app.auth import IngestKey
from app.db import MAX_ROW_ID, ReadSessionDep, WriteSessionDep
from app.errors import ProblemError, problem_responses

router = APIRouter(prefix="/v1", tags=["articles"])

READ_CACHE_CONTROL = "public, max-age=60"
ArticleId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]


def _base(request: Request) -> str:
    return str(request.app.state.settings.public_base_url)


def _blocked_by(request: Request) -> str:
    return _base(request) + "/takedown"


def credit_line(
    publisher: str, authors: list[dict[str, Any]], published_at: datetime, source_url: str
) -> str:
    """`Originally published by Reuters on 20 March 2023. Read the original: https://...`"""
    by = publisher
    if authors:
        by += " (" + ", ".join(str(author["name"]) for author in authors) + ")"
    day = f"{published_at.day} {published_at:%B %Y}"
    return f"Originally published by {by} on {day}. Read the original: {source_url}"


def _summary_fields(row: Row[Any], base: str) -> dict[str, Any]:
    authors = row.authors or []
    return {
        "id": row.id,
        "slug": row.slug,
        "url": f"{base}/v1/articles/{row.id}",
        "title": row.title,
        "excerpt": row.excerpt,
        "language": row.language,
        "tags": row.tags or [],
        "image": Image(url=row.image_url, alt=row.image_alt) if row.image_url else None,
        "published_at": row.published_at,
        "updated_at": row.updated_at,
        "attribution": Attribution(
            source_url=row.source_url,
            canonical_url=row.canonical_url,
            source_domain=row.source_domain,
            publisher=PublisherPublic(name=row.publisher_name, url=row.publisher_url),
            authors=[Author(**author) for author in authors],
            license=row.license,
            published_at=row.published_at,
            first_seen_at=row.first_seen_at,
            credit=credit_line(row.publisher_name, authors, row.published_at, row.source_url),
        ),
    }


def _article(row: Row[Any], base: str) -> ArticlePublic:
    return ArticlePublic(**_summary_fields(row, base), body_html=row.body_html)


def _etag(row: Row[Any]) -> str:
    return f'"{row.content_hash[:24]}"'


def _not_modified(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match")
    if not header:
        return False
    candidates = {candidate.strip().removeprefix("W/") for candidate in header.split(",")}
    return "*" in candidates or etag in candidates


def _cacheable(request: Request, response: Response, row: Row[Any]) -> ArticlePublic | Response:
    etag = _etag(row)
    headers = {"ETag": etag, "Cache-Control": READ_CACHE_CONTROL}
    if _not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    response.headers.update(headers)
    return _article(row, _base(request))


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


@router.get("/articles", response_model=ArticlesPublic, responses=problem_responses(400, 422))
def list_articles(
    request: Request,
    response: Response,
    session: ReadSessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    publisher: Annotated[str | None, Query(min_length=1, max_length=300)] = None,
    domain: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
    tag: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    language: Annotated[
        str | None, Query(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$")
    ] = None,
    published_after: datetime | None = None,
    published_before: datetime | None = None,
    q: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
) -> ArticlesPublic:
    """Articles newest first (or best match first with `q`), keyset-paged with `cursor`."""
    filters = service.ArticleFilters(
        publisher=publisher,
        domain=domain,
        tag=tag,
        language=language,
        published_after=published_after,
        published_before=published_before,
    )
    position = decode_cursor(cursor) if cursor else None
    base = _base(request)
    if q is not None:
        after_score = (
            (position.rank, position.article_id) if position and position.rank is not None else None
        )
        if position is not None and after_score is None:
            raise BadCursor()  # a search cursor on a listing, or the reverse
        matches = search_articles(
            session=session, q=q, filters=filters, after=after_score, limit=limit
        )
        rows = [row for row, _ in matches]
        last = (
            Position(matches[-1][0].published_at, matches[-1][0].id, matches[-1][1])
            if matches
            else None
        )
    else:
        if position is not None and position.rank is not None:
            raise BadCursor()  # a search cursor on a listing, or the reverse
        after = (position.published_at, position.article_id) if position else None
        rows = service.list_articles(session=session, filters=filters, after=after, limit=limit)
        last = Position(rows[-1].published_at, rows[-1].id) if rows else None
    next_cursor = encode_cursor(last) if last is not None and len(rows) == limit else None
    if next_cursor:
        params = {k: v for k, v in request.query_params.items() if k != "cursor"}
        response.headers["Link"] = (
            f'<{base}/v1/articles?{urlencode({**params, "cursor": next_cursor})}>; rel="next"'
        )
    response.headers["Cache-Control"] = READ_CACHE_CONTROL
    return ArticlesPublic(
        items=[ArticleSummary(**_summary_fields(row, base)) for row in rows],
        next_cursor=next_cursor,
    )


@router.get(
    "/articles/by-slug/{slug}",
    response_model=ArticlePublic,
    responses={304: {"description": "Not modified"}, **problem_responses(404, 451)},
)
def get_article_by_slug(
    slug: str, request: Request, response: Response, session: ReadSessionDep
) -> Any:
    """One article by its slug, with its attribution."""
    row = service.get_article_by_slug(session=session, slug=slug, blocked_by=_blocked_by(request))
    return _cacheable(request, response, row)


@router.get(
    "/articles/{article_id}",
    response_model=ArticlePublic,
    responses={304: {"description": "Not modified"}, **problem_responses(404, 422, 451)},
)
def get_article(
    article_id: ArticleId, request: Request, response: Response, session: ReadSessionDep
) -> Any:
    """One article by id, with its attribution. Removed articles answer 451."""
    row = service.get_article(
        session=session, article_id=article_id, blocked_by=_blocked_by(request)
    )
    return _cacheable(request, response, row)


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
