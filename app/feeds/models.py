"""Tables of the feeds domain."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Index, String, Text
from sqlmodel import Field

from app.db import UTCDateTime
from app.jobs.models import JobColumns


class FeedState(StrEnum):
    active = "active"  # fetched when due
    paused = "paused"  # by an operator, or because its publisher opted out (`paused_reason`)
    gone = "gone"  # the server answered 410 Gone: never fetched again


class Feed(JobColumns, table=True):
    """A subscription to a publisher's feed, and its poll as a job row: queued for its next
    fetch (`run_at`) while active, not scheduled while paused, done once gone. The job's
    `status` is the poll's; `state` is the subscription's."""

    __tablename__ = "feeds"
    __table_args__ = (
        Index("ix_feeds_status_run_at", "status", "run_at"),
        Index("ix_feeds_state_id", "state", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(sa_type=String(2048), unique=True)
    state: str = Field(default=FeedState.active.value, sa_type=String(8))
    paused_reason: str | None = Field(default=None, sa_type=Text)
    # The domain block that paused the feed (its publisher opted out): lifted, it resumes.
    opted_out_block_id: int | None = Field(default=None)
    # What the subscription says about its articles (else the feed's own title and link).
    publisher_name: str | None = Field(default=None, sa_type=String(300))
    publisher_url: str | None = Field(default=None, sa_type=String(2048))
    language: str | None = Field(default=None, sa_type=String(35))
    tags: list[str] = Field(default_factory=list, sa_type=JSON)
    # What the feed says about itself, from its last successful fetch.
    title: str | None = Field(default=None, sa_type=Text)
    site_url: str | None = Field(default=None, sa_type=String(2048))
    # Conditional GET: the validators of the last 200.
    etag: str | None = Field(default=None, sa_type=String(1000))
    last_modified: str | None = Field(default=None, sa_type=String(100))
    # Digests of the entries stored at the last 200: an entry seen again unchanged is not
    # prepared and upserted again (most of a changed feed's entries are old ones).
    entry_digests: list[str] | None = Field(default=None, sa_type=JSON)
    # Health.
    last_fetched_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_status: str | None = Field(default=None, sa_type=String(500))
    consecutive_errors: int = Field(default=0)
    # The interval between fetches, from the feed's publishing pace at its last 200.
    interval_seconds: int | None = Field(default=None)
    reserved_reason: str | None = Field(default=None, sa_type=String(200))
    fetches: int = Field(default=0)
    not_modified: int = Field(default=0)
    entries_seen: int = Field(default=0)
    articles_created: int = Field(default=0)
    articles_updated: int = Field(default=0)
    articles_unchanged: int = Field(default=0)
    entries_blocked: int = Field(default=0)
    entries_invalid: int = Field(default=0)
    entries_reserved: int = Field(default=0)
    created_by: str = Field(sa_type=String(100))
    updated_at: datetime = Field(sa_type=UTCDateTime)
