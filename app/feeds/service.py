"""Subscriptions (subscribe, change, pause, resume, delete, fetch now, OPML import) and what
a poll records: entries ingested through the articles' service, the feed's health, and its
next fetch. Every change a worker records is conditional on it still holding the feed's row.
"""

import hashlib
import json
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import ColumnElement, delete, select, update
from sqlmodel import Session

from app.articles.schemas import ArticleIn, HttpUrl
from app.articles.service import PreparedArticle, prepare_article, store_articles
from app.errors import Conflict, FieldError, InvalidInput, NotFound
from app.feeds.fetching import Fetched
from app.feeds.models import Feed, FeedState
from app.feeds.parsing import ParsedFeed
from app.jobs.models import JobStatus
from app.jobs.queue import JobQueue
from app.jobs.wakeups import wake
from app.outbound import refuse_internal_url
from app.takedowns import audit
from app.takedowns.audit import Action
from app.takedowns.blocks import find_blocked
from app.takedowns.models import Block

F = Feed.__table__  # type: ignore[attr-defined]
FEED_KIND = "feed"
FEEDS = JobQueue(kind=FEED_KIND, table=F, order_by=(F.c.run_at, F.c.id))
MAX_OPML_OUTLINES = 1000
FEED_URL: TypeAdapter[str] = TypeAdapter(HttpUrl)


@dataclass(frozen=True)
class ClaimedFeed:
    """What a poll needs of a feed's row."""

    id: int
    url: str
    etag: str | None
    last_modified: str | None
    publisher_name: str | None
    publisher_url: str | None
    language: str | None
    tags: list[str] | None
    title: str | None
    site_url: str | None
    consecutive_errors: int
    interval_seconds: int | None
    opted_out_block_id: int | None
    entry_digests: list[str] | None

    @classmethod
    def columns(cls) -> list[ColumnElement[Any]]:
        return [F.c[f.name] for f in fields(cls) if f.name != "id"]


# Subscriptions --------------------------------------------------------------------------------


def find_feed_by_url(*, session: Session, url: str) -> Feed | None:
    return session.scalars(select(Feed).where(F.c.url == url)).first()


def subscribe(
    *,
    session: Session,
    url: str,
    publisher_name: str | None,
    publisher_url: str | None,
    language: str | None,
    tags: Sequence[str],
    actor: str,
    now: datetime,
    allow_private: bool,
) -> Feed:
    """Subscribe to a feed, fetched at once. 409 when the URL is already subscribed to."""
    refuse_internal_url(url, allow_private=allow_private)
    existing = find_feed_by_url(session=session, url=url)
    if existing is not None:
        raise Conflict(f"Feed {existing.id} already has this URL.")
    feed = Feed(
        url=url,
        publisher_name=publisher_name,
        publisher_url=publisher_url,
        language=language,
        tags=sorted(set(tags)),
        status=JobStatus.queued.value,
        run_at=now,
        created_at=now,
        created_by=actor,
        updated_at=now,
    )
    session.add(feed)
    session.flush()
    audit.record(
        session=session,
        action=Action.feed_subscribed,
        actor=actor,
        now=now,
        feed_id=feed.id,
        reason=url,
    )
    wake(session, FEED_KIND)
    return feed


def list_feeds(
    *, session: Session, state: FeedState | None, after_id: int | None, limit: int
) -> list[Feed]:
    """Feeds in id order, keyset-paged."""
    query = select(Feed).order_by(F.c.id).limit(limit)
    if state is not None:
        query = query.where(F.c.state == state.value)
    if after_id is not None:
        query = query.where(F.c.id > after_id)
    return list(session.scalars(query))


def get_feed(*, session: Session, feed_id: int) -> Feed:
    feed = session.get(Feed, feed_id)
    if feed is None:
        raise NotFound(f"No feed with id {feed_id}.")
    return feed


def change_feed(
    *,
    session: Session,
    feed_id: int,
    changes: Mapping[str, Any],
    actor: str,
    now: datetime,
) -> Feed:
    """Pause, resume, or change a feed's publisher, language or tags (audited)."""
    feed = session.get(Feed, feed_id, with_for_update=True)
    if feed is None:
        raise NotFound(f"No feed with id {feed_id}.")
    said: list[str] = []
    state = changes.get("status")
    if state is not None and state != feed.state:
        if feed.state == FeedState.gone.value:
            raise Conflict(f"Feed {feed_id} is gone (410); subscribe to its new URL instead.")
        if state == FeedState.paused.value:
            feed.state, feed.paused_reason, feed.opted_out_block_id = state, f"by {actor}", None
            feed.run_at = None
        else:
            feed.state, feed.paused_reason = FeedState.active.value, None
            _due_now(feed, now)
            wake(session, FEED_KIND)
        said.append(f"status -> {state}")
    for name in ("publisher_name", "publisher_url", "language", "tags"):
        if name in changes and changes[name] != getattr(feed, name):
            setattr(feed, name, changes[name])
            said.append(f"{name} changed")
    if said:
        feed.updated_at = now
        audit.record(
            session=session,
            action=Action.feed_changed,
            actor=actor,
            now=now,
            feed_id=feed_id,
            reason="; ".join(said),
        )
    session.flush()
    return feed


def delete_feed(*, session: Session, feed_id: int, actor: str, now: datetime) -> None:
    """Unsubscribe; the articles it brought stay."""
    feed = get_feed(session=session, feed_id=feed_id)
    session.execute(delete(Feed).where(F.c.id == feed_id))
    audit.record(
        session=session,
        action=Action.feed_deleted,
        actor=actor,
        now=now,
        feed_id=feed_id,
        reason=feed.url,
    )


def fetch_now(*, session: Session, feed_id: int, now: datetime) -> Feed:
    """Make an active feed due now (a worker is woken); 409 for a paused or gone feed."""
    feed = session.get(Feed, feed_id, with_for_update=True)
    if feed is None:
        raise NotFound(f"No feed with id {feed_id}.")
    if feed.state != FeedState.active.value:
        raise Conflict(f"Feed {feed_id} is {feed.state}; resume it first.")
    if feed.status != JobStatus.running.value:
        _due_now(feed, now)
        wake(session, FEED_KIND)
    session.flush()
    return feed


def _due_now(feed: Feed, now: datetime) -> None:
    if feed.status == JobStatus.running.value:
        return  # its worker schedules the next fetch
    feed.status, feed.run_at, feed.attempts = JobStatus.queued.value, now, 0
    feed.finished_at = None


@dataclass(frozen=True)
class OpmlItem:
    url: str
    status: str  # created | exists | invalid
    id: int | None = None
    errors: list[FieldError] | None = None


def opml_feed_urls(document: bytes) -> list[str]:
    """The feed URLs (`xmlUrl`) of an OPML document, in order; 422 for what is not OPML.
    A DOCTYPE is refused outright (entity expansion)."""
    if b"<!DOCTYPE" in document or b"<!ENTITY" in document:
        raise InvalidInput([FieldError(field="body", message="a DOCTYPE is not accepted")])
    try:
        root = ElementTree.fromstring(document)
    except ElementTree.ParseError as exc:
        raise InvalidInput([FieldError(field="body", message=f"not XML: {exc}")]) from None
    if root.tag != "opml":
        raise InvalidInput([FieldError(field="body", message="not an OPML document")])
    urls = [
        outline.attrib["xmlUrl"].strip()
        for outline in root.iter("outline")
        if outline.attrib.get("xmlUrl", "").strip()
    ]
    if len(urls) > MAX_OPML_OUTLINES:
        raise InvalidInput(
            [FieldError(field="body", message=f"more than {MAX_OPML_OUTLINES} feeds")]
        )
    return list(dict.fromkeys(urls))


def import_opml(
    *, session: Session, document: bytes, actor: str, now: datetime, allow_private: bool
) -> list[OpmlItem]:
    """Subscribe to every feed of an OPML document (a feed reader's export): each answered
    created, exists (with its id) or invalid (with why)."""
    # Every URL checked, addresses included, before the first write: DNS must not hold
    # SQLite's write turn.
    malformed: dict[str, list[FieldError]] = {}
    refused: dict[str, list[FieldError]] = {}
    urls = opml_feed_urls(document)
    for url in urls:
        try:
            FEED_URL.validate_python(url)
        except ValidationError as exc:
            message = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
            malformed[url] = [FieldError(field="url", message=message)]
            continue
        try:
            refuse_internal_url(url, allow_private=allow_private)
        except InvalidInput as exc:
            refused[url] = list(exc.errors or [])
    items = []
    for url in urls:
        existing = None if url in malformed else find_feed_by_url(session=session, url=url)
        if url in malformed:
            items.append(OpmlItem(url=url[:2048], status="invalid", errors=malformed[url]))
        elif existing is not None:
            items.append(OpmlItem(url=url, status="exists", id=existing.id))
        elif url in refused:
            items.append(OpmlItem(url=url, status="invalid", errors=refused[url]))
        else:
            feed = subscribe(
                session=session,
                url=url,
                publisher_name=None,
                publisher_url=None,
                language=None,
                tags=(),
                actor=actor,
                now=now,
                allow_private=True,  # its address was checked above
            )
            items.append(OpmlItem(url=url, status="created", id=feed.id))
    return items


# What a poll records ------------------------------------------------------------------------


def _reschedule(
    session: Session, feed: ClaimedFeed, owner: str, run_at: datetime, values: dict[str, Any]
) -> bool:
    """Queue the feed for `run_at` with `values`, if `owner` still holds it."""
    return bool(
        FEEDS.reschedule(session=session, ids=[feed.id], owner=owner, run_at=run_at, values=values)
    )


def record_opted_out(
    session: Session,
    feed: ClaimedFeed,
    block: Block,
    *,
    run_at: datetime,
    now: datetime,
    owner: str,
) -> str:
    """The feed's publisher opted out: paused, not fetched, looked at again at `run_at`."""
    reason = f"publisher opted out: domain {block.value} is blocked" + (
        f" (takedown {block.takedown_id})" if block.takedown_id else ""
    )
    first = feed.opted_out_block_id is None
    values = {
        "state": FeedState.paused.value,
        "paused_reason": reason,
        "opted_out_block_id": block.id,
        "updated_at": now,
    }
    if not _reschedule(session, feed, owner, run_at, values):
        return "lost"
    if first:
        audit.record(
            session=session,
            action=Action.feed_opted_out,
            actor=audit.SCHEDULER,
            now=now,
            feed_id=feed.id,
            block_id=block.id,
            takedown_id=block.takedown_id,
            reason=reason,
        )
    return "opted_out"


def resume_after_opt_out(session: Session, feed: ClaimedFeed, *, now: datetime, owner: str) -> bool:
    """The block that paused the feed is lifted: active again (audited). False when lost."""
    resumed = session.execute(
        update(F)
        .where(FEEDS.held([feed.id], owner))
        .values(
            state=FeedState.active.value,
            paused_reason=None,
            opted_out_block_id=None,
            updated_at=now,
        )
    )
    if not resumed.rowcount:  # type: ignore[attr-defined]
        return False
    audit.record(
        session=session,
        action=Action.feed_opt_out_lifted,
        actor=audit.SCHEDULER,
        now=now,
        feed_id=feed.id,
        block_id=feed.opted_out_block_id,
        reason="the publisher's domain is no longer blocked",
    )
    return True


def record_gone(session: Session, feed: ClaimedFeed, *, now: datetime, owner: str) -> str:
    values = {
        "state": FeedState.gone.value,
        "last_fetched_at": now,
        "updated_at": now,
        "last_status": "HTTP 410 Gone: not fetched again",
        "fetches": F.c.fetches + 1,
        "run_at": None,
    }
    if not FEEDS.finish(session=session, ids=[feed.id], owner=owner, now=now, values=values):
        return "lost"
    audit.record(
        session=session,
        action=Action.feed_gone,
        actor=audit.SCHEDULER,
        now=now,
        feed_id=feed.id,
        from_status=FeedState.active.value,
        to_status=FeedState.gone.value,
        reason=f"{feed.url} answered 410 Gone",
    )
    return "gone"


def record_not_modified(
    session: Session, run_at: Mapping[int, datetime], *, now: datetime, owner: str
) -> set[int]:
    """Feeds that answered 304, each queued for its `run_at`, in one statement (most polls
    end here); the ids recorded, a feed missing was lost."""
    values = {
        "last_fetched_at": now,
        "last_status": "HTTP 304 Not Modified",
        "consecutive_errors": 0,
        "fetches": F.c.fetches + 1,
        "not_modified": F.c.not_modified + 1,
    }
    return FEEDS.reschedule(
        session=session, ids=list(run_at), owner=owner, run_at=run_at, values=values
    )


def record_error(
    session: Session,
    feed: ClaimedFeed,
    *,
    why: str,
    now: datetime,
    owner: str,
    run_at: datetime,
    fetched: bool,
) -> str:
    """A fetch that brought no feed: backoff (never given up), and health says why."""
    values: dict[str, Any] = {
        "last_status": why[:500],
        "consecutive_errors": F.c.consecutive_errors + 1,
    }
    if fetched:
        values.update(last_fetched_at=now, fetches=F.c.fetches + 1)
    return "error" if _reschedule(session, feed, owner, run_at, values) else "lost"


def record_fetched(
    session: Session,
    feed: ClaimedFeed,
    *,
    fetched: Fetched,
    parsed: ParsedFeed,
    reserved_feed: str | None,
    reserved_entries: Mapping[str, str],
    interval: timedelta,
    run_at: datetime,
    now: datetime,
    owner: str,
) -> str:
    """A feed fetched and parsed: its entries ingested, its health and validators kept."""
    # Locked first: the entries are written only while this worker holds the feed.
    row = session.execute(
        select(F.c.id).where(FEEDS.held([feed.id], owner)).with_for_update()
    ).first()
    if row is None:
        return "lost"
    counts, digests = ingest_entries(
        session,
        feed,
        parsed,
        reserved_feed=reserved_feed,
        reserved_entries=reserved_entries,
        now=now,
    )
    headers = fetched.headers
    status = "HTTP 200" + (f"; {parsed.error}" if parsed.error else "")
    values: dict[str, Any] = {
        "interval_seconds": int(interval.total_seconds()),
        "last_fetched_at": now,
        "last_status": status[:500],
        "consecutive_errors": 0,
        "etag": (headers.get("etag") or None) if headers is not None else None,
        "last_modified": (headers.get("last-modified") or None) if headers is not None else None,
        "title": parsed.title[:1000] if parsed.title else feed.title,
        "site_url": parsed.site_url or feed.site_url,
        "reserved_reason": reserved_feed or next(iter(reserved_entries.values()), None),
        "entry_digests": digests,
        "fetches": F.c.fetches + 1,
        "updated_at": now,
        **{name: F.c[name] + n for name, n in counts.items()},
    }
    if fetched.moved_to and find_feed_by_url(session=session, url=fetched.moved_to) is None:
        values["url"] = fetched.moved_to
        audit.record(
            session=session,
            action=Action.feed_moved,
            actor=audit.SCHEDULER,
            now=now,
            feed_id=feed.id,
            reason=f"permanent redirect: {feed.url} -> {fetched.moved_to}",
        )
    _reschedule(session, feed, owner, run_at, values)
    return "fetched"


def ingest_entries(
    session: Session,
    feed: ClaimedFeed,
    parsed: ParsedFeed,
    *,
    reserved_feed: str | None,
    reserved_entries: Mapping[str, str],
    now: datetime,
) -> tuple[Counter[str], list[str]]:
    """Store a feed's entries as articles, through the same preparation and upsert as
    `POST /v1/articles`: the counts of the feed's health, and the digests of the entries
    stored. An entry whose digest the last poll stored is unchanged: counted so, not
    prepared or written again (a takedown since removed or blocked it: it stays so)."""
    counts: Counter[str] = Counter(
        entries_seen=len(parsed.entries) + parsed.invalid, entries_invalid=parsed.invalid
    )
    publisher = _publisher(feed, parsed)
    language = feed.language or parsed.language
    stored_before = set(feed.entry_digests or ())
    prepared: dict[str, tuple[PreparedArticle, str]] = {}
    unchanged: list[str] = []
    for entry in parsed.entries:
        if reserved_feed or entry["source_url"] in reserved_entries:
            counts["entries_reserved"] += 1
            continue
        payload = {
            **entry,
            "publisher": publisher,
            "tags": list(dict.fromkeys([*(feed.tags or []), *entry["tags"]]))[:30],
        }
        if language:
            payload["language"] = language
        digest = _digest(payload)
        if digest in stored_before:
            unchanged.append(digest)
            continue
        try:
            article = prepare_article(ArticleIn.model_validate(payload), now=now)
        except (ValidationError, InvalidInput, ValueError):
            counts["entries_invalid"] += 1
            continue
        # The same article twice in one feed: its first (newest) entry stands.
        prepared.setdefault(article.canonical_url, (article, digest))
    counts["articles_unchanged"] += len(unchanged)
    blocked = find_blocked(
        session=session,
        match_keys={url: article.match_key for url, (article, _) in prepared.items()},
    )
    counts["entries_blocked"] += len(blocked)
    storable = [pair for url, pair in prepared.items() if url not in blocked]
    if storable:
        stored = store_articles(session=session, articles=[a for a, _ in storable], now=now)
        for result in stored:
            counts[f"articles_{result.status}"] += 1
    return counts, unchanged + [digest for _, digest in storable]


def _digest(payload: Mapping[str, Any]) -> str:
    encoded = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(encoded.encode(), digest_size=8).hexdigest()


def _publisher(feed: ClaimedFeed, parsed: ParsedFeed) -> dict[str, Any]:
    """The subscription's publisher, else the feed's own title and site, else its host."""
    if feed.publisher_name:
        return {"name": feed.publisher_name, "url": feed.publisher_url}
    name = (parsed.title or feed.title or "").strip()[:300]
    site = parsed.site_url or feed.site_url
    if not name:
        name = (urlsplit(site or feed.url).hostname or feed.url).removeprefix("www.")
    return {"name": name, "url": site}
