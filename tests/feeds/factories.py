"""Feeds as publishers write them, and the feed worker as the app assembles it."""

from collections.abc import Sequence
from datetime import datetime
from email.utils import format_datetime
from xml.sax.saxutils import escape

from sqlalchemy import Engine

from app import background
from app.clock import Clock
from app.config import Settings
from app.feeds.polls import FeedHandler
from app.jobs.worker import TickResult, Worker

RSS = "application/rss+xml; charset=utf-8"
ATOM = "application/atom+xml"
JSON_FEED = "application/feed+json"


def rss(
    items: Sequence[dict[str, str]],
    *,
    title: str = "Example News",
    link: str = "https://example.com/",
    extra_channel: str = "",
) -> bytes:
    """An RSS 2.0 feed; each item's keys become its elements (`creator` is dc:creator)."""
    rendered = []
    for item in items:
        parts = []
        for name, value in item.items():
            if name == "creator":
                parts.append(f"<dc:creator>{escape(value)}</dc:creator>")
            elif name == "raw":
                parts.append(value)
            else:
                parts.append(f"<{name}>{escape(value)}</{name}>")
        rendered.append(f"<item>{''.join(parts)}</item>")
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/" '
        'xmlns:media="http://search.yahoo.com/mrss/">'
        f"<channel><title>{escape(title)}</title><link>{escape(link)}</link>{extra_channel}"
        f"{''.join(rendered)}</channel></rss>"
    ).encode()


def rss_item(
    n: int, *, host: str = "https://example.com", when: datetime | None = None, **extra: str
) -> dict[str, str]:
    item = {
        "title": f"Story {n}",
        "link": f"{host}/news/story-{n}",
        "description": f"<p>Body of story {n}, long enough to read.</p>",
        "guid": f"{host}/news/story-{n}",
    }
    if when is not None:
        item["pubDate"] = format_datetime(when)
    item.update(extra)
    return item


def feed_worker(engine: Engine, settings: Settings, clock: Clock, handler: FeedHandler) -> Worker:
    return background.worker(
        engine=engine, settings=settings, clock=clock, handlers=[handler], name="test-feeds"
    )


def run_feeds(
    engine: Engine, settings: Settings, clock: Clock, handler: FeedHandler | None = None
) -> TickResult:
    """One tick of the feeds' worker at the clock's time (a handler kept across ticks keeps
    its connections and its cache of hosts' reservations; one made here is closed)."""
    own = handler is None
    handler = handler or FeedHandler(settings=settings)
    try:
        return feed_worker(engine, settings, clock, handler).run_once()
    finally:
        if own:
            handler.close()
