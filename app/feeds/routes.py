"""Subscriptions to publishers' feeds (scope `ingest` or `admin`)."""

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Request, Response, status

from app.auth import IngestKey
from app.clock import RequestNow, request_now
from app.cursor import link_next_page, parse_int, seal, unseal
from app.db import MAX_ROW_ID, ReadSessionDep, WriteSessionDep
from app.errors import problem_responses
from app.feeds import service
from app.feeds.models import FeedState
from app.feeds.schemas import (
    FeedChange,
    FeedIn,
    FeedPublic,
    FeedsPublic,
    OpmlImported,
    OpmlItemPublic,
)

router = APIRouter(prefix="/v1/feeds", tags=["feeds"], responses=problem_responses(401, 403))

FeedId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
_CURSOR_KEY = b"byline-feeds-cursor-v1"
_OPML_TYPES = ["text/x-opml", "application/xml", "text/xml"]


@router.post(
    "",
    response_model=FeedPublic,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(400, 409, 422),
)
def subscribe(
    body: FeedIn,
    request: Request,
    now: RequestNow,
    response: Response,
    session: WriteSessionDep,
    key: IngestKey,
) -> FeedPublic:
    """Subscribe to a feed: fetched at once, then as often as it publishes. A URL whose host
    is or resolves to an internal address is refused (422)."""
    feed = service.subscribe(
        session=session,
        url=body.url,
        publisher_name=body.publisher.name if body.publisher else None,
        publisher_url=body.publisher.url if body.publisher else None,
        language=body.language,
        tags=body.tags,
        actor=key.name,
        now=now,
        allow_private=request.app.state.settings.allow_private_networks,
    )
    response.headers["Location"] = (
        f"{request.app.state.settings.public_base_url}/v1/feeds/{feed.id}"
    )
    return FeedPublic.of(feed)


@router.get("", response_model=FeedsPublic, responses=problem_responses(400, 422))
def list_feeds(
    request: Request,
    response: Response,
    session: ReadSessionDep,
    _: IngestKey,
    status: FeedState | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> FeedsPublic:
    """Feeds with their health, oldest first; filter by status."""
    after_id = parse_int(unseal(_CURSOR_KEY, cursor, 1)[0]) if cursor else None
    feeds = service.list_feeds(session=session, state=status, after_id=after_id, limit=limit)
    next_cursor = seal(_CURSOR_KEY, str(feeds[-1].id)) if len(feeds) == limit else None
    link_next_page(request, response, next_cursor)
    return FeedsPublic(items=[FeedPublic.of(feed) for feed in feeds], next_cursor=next_cursor)


@router.post(
    "/opml",
    response_model=OpmlImported,
    responses=problem_responses(400, 413, 415, 422),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {kind: {"schema": {"type": "string"}} for kind in _OPML_TYPES},
        }
    },
)
async def import_opml(request: Request, session: WriteSessionDep, key: IngestKey) -> OpmlImported:
    """Subscribe to every feed of an OPML document (what feed readers export): each URL is
    answered `created`, `exists` (with its id) or `invalid` (with why)."""
    document = await request.body()
    items = service.import_opml(
        session=session,
        document=document,
        actor=key.name,
        now=request_now(request),
        allow_private=request.app.state.settings.allow_private_networks,
    )
    return OpmlImported(
        items=[OpmlItemPublic(url=i.url, status=i.status, id=i.id, errors=i.errors) for i in items]
    )


@router.get("/{feed_id}", response_model=FeedPublic, responses=problem_responses(404, 422))
def get_feed(feed_id: FeedId, session: ReadSessionDep, _: IngestKey) -> FeedPublic:
    """One feed with its health."""
    return FeedPublic.of(service.get_feed(session=session, feed_id=feed_id))


@router.patch("/{feed_id}", response_model=FeedPublic, responses=problem_responses(404, 409, 422))
def change_feed(
    feed_id: FeedId,
    body: Annotated[FeedChange, Body()],
    request: Request,
    now: RequestNow,
    session: WriteSessionDep,
    key: IngestKey,
) -> FeedPublic:
    """Pause or resume a feed (resumed: fetched at once), or change its publisher, language
    or tags (for the articles it brings from now on)."""
    changes = body.model_dump(exclude_unset=True)
    if "publisher" in changes:
        publisher = body.publisher
        changes["publisher_name"] = publisher.name if publisher else None
        changes["publisher_url"] = publisher.url if publisher else None
    if changes.get("tags") is not None:
        changes["tags"] = sorted(set(changes["tags"]))
    feed = service.change_feed(
        session=session,
        feed_id=feed_id,
        changes=changes,
        actor=key.name,
        now=now,
    )
    return FeedPublic.of(feed)


@router.delete(
    "/{feed_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(404, 422)
)
def delete_feed(
    feed_id: FeedId, request: Request, now: RequestNow, session: WriteSessionDep, key: IngestKey
) -> Response:
    """Unsubscribe; the articles it brought stay."""
    service.delete_feed(session=session, feed_id=feed_id, actor=key.name, now=now)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{feed_id}/fetch",
    response_model=FeedPublic,
    status_code=status.HTTP_202_ACCEPTED,
    responses=problem_responses(404, 409, 422),
)
def fetch_feed_now(
    feed_id: FeedId, request: Request, now: RequestNow, session: WriteSessionDep, _: IngestKey
) -> FeedPublic:
    """Fetch an active feed now: a worker is woken and fetches it within a second."""
    feed = service.fetch_now(session=session, feed_id=feed_id, now=now)
    return FeedPublic.of(feed)
