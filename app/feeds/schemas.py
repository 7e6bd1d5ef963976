"""What ingest clients and operators send and see of feed subscriptions."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.articles.schemas import HttpUrl, Language, PublisherIn, PublisherPublic, Tag
from app.errors import FieldError
from app.feeds.models import Feed, FeedState


class FeedIn(BaseModel):
    """A feed to subscribe to: RSS, Atom or JSON Feed at an absolute http(s) URL."""

    model_config = ConfigDict(extra="forbid")

    url: HttpUrl = Field(description="The feed's absolute http:// or https:// URL.")
    publisher: PublisherIn | None = Field(
        default=None,
        description="Credited on every article of the feed; unset: the feed's own title and "
        "site link.",
    )
    language: Language | None = Field(default=None, description="Unset: the feed's language.")
    tags: list[Tag] = Field(
        default_factory=list, max_length=30, description="Added to every article of the feed."
    )


class FeedChange(BaseModel):
    """Pause or resume a feed, or change what its articles are credited and tagged with."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["active", "paused"] | None = None
    publisher: PublisherIn | None = None
    language: Language | None = None
    tags: list[Tag] | None = Field(default=None, max_length=30)


class FeedCounts(BaseModel):
    fetches: int
    not_modified: int = Field(description="Fetches answered 304 Not Modified.")
    entries_seen: int
    articles_created: int
    articles_updated: int
    articles_unchanged: int
    entries_blocked: int = Field(description="Entries whose URL is blocked by a takedown.")
    entries_invalid: int = Field(description="Entries without a usable link or content.")
    entries_reserved: int = Field(
        description="Entries the publisher reserved (robots.txt, X-Robots-Tag, TDMRep)."
    )


class FeedPublic(BaseModel):
    id: int
    url: str
    status: FeedState = Field(
        description="`active`: fetched when due; `paused`: by a key, or because its publisher "
        "opted out (see `paused_reason`); `gone`: the server answered 410, never fetched again."
    )
    paused_reason: str | None
    publisher: PublisherPublic | None
    language: str | None
    tags: list[str]
    title: str | None = Field(description="The feed's own title, from its last fetch.")
    site_url: str | None
    created_at: datetime
    created_by: str
    next_fetch_at: datetime | None
    last_fetched_at: datetime | None
    last_status: str | None = Field(
        description="The last fetch's HTTP status, or the error class and message."
    )
    consecutive_errors: int
    reserved_by_publisher: str | None = Field(
        description="Why entries were last held back: the publisher reserved them."
    )
    counts: FeedCounts

    @classmethod
    def of(cls, feed: Feed) -> "FeedPublic":
        assert feed.id is not None
        publisher = (
            PublisherPublic(name=feed.publisher_name, url=feed.publisher_url)
            if feed.publisher_name
            else None
        )
        return cls(
            id=feed.id,
            url=feed.url,
            status=FeedState(feed.state),
            paused_reason=feed.paused_reason,
            publisher=publisher,
            language=feed.language,
            tags=feed.tags or [],
            title=feed.title,
            site_url=feed.site_url,
            created_at=feed.created_at,
            created_by=feed.created_by,
            next_fetch_at=feed.run_at if feed.state == FeedState.active.value else None,
            last_fetched_at=feed.last_fetched_at,
            last_status=feed.last_status,
            consecutive_errors=feed.consecutive_errors,
            reserved_by_publisher=feed.reserved_reason,
            counts=FeedCounts.model_validate(feed, from_attributes=True),
        )


class FeedsPublic(BaseModel):
    items: list[FeedPublic]
    next_cursor: str | None


class OpmlItemPublic(BaseModel):
    url: str
    status: Literal["created", "exists", "invalid"]
    id: int | None = None
    errors: list[FieldError] | None = None


class OpmlImported(BaseModel):
    items: list[OpmlItemPublic]
