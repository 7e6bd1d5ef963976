"""The feed handler: claimed feeds are fetched together (one event loop run per batch, at most
`feeds_per_host` at a time per host), parsed, checked against the publishers' reservations,
and each recorded in a transaction of its own: its entries through the articles' ingest
service, its health, and its next fetch.

Nothing is written while the network is waited on (on SQLite a write transaction holds the
only write lock); the batch's leases are renewed meanwhile. A feed whose publisher's domain is
blocked is not fetched: it is paused until the block is lifted (looked at again hourly).
"""

import asyncio
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, and_, or_
from sqlmodel import Session

from app.config import Settings
from app.db import new_session
from app.feeds import pace, service
from app.feeds.fetching import Fetched, Fetcher, FetchRequest
from app.feeds.models import FeedState
from app.feeds.parsing import FeedRefused, ParsedFeed, parse_feed
from app.feeds.reservations import Reservations, answer_reservation
from app.feeds.service import FEEDS, ClaimedFeed, F
from app.jobs.queue import RetryPolicy
from app.jobs.worker import JobHandler, JobRun, describe_error
from app.takedowns.blocks import find_domain_blocks

logger = logging.getLogger("byline.feeds")

FEED_BATCH = 32
# A paused feed whose publisher opted out is looked at again this often (not fetched).
OPT_OUT_RECHECK = timedelta(hours=1)


@dataclass
class Polled:
    """One claimed feed on its way through a batch."""

    feed: ClaimedFeed
    opted_out: Any = None  # the domain block that pauses it
    fetched: Fetched | None = None
    parsed: ParsedFeed | None = None
    parse_error: str | None = None
    reserved: dict[str, str] = field(default_factory=dict)  # source_url -> why


class FeedHandler(JobHandler):
    """Fetches, parses and ingests claimed feeds."""

    queue = FEEDS
    claimed_type = ClaimedFeed
    claim_columns = ClaimedFeed.columns()
    batch_size = FEED_BATCH
    # Only the database fails a feed's row (a fetch that fails is the feed's own backoff).
    policy = RetryPolicy(base=timedelta(minutes=5), cap=timedelta(hours=24))

    def __init__(self, *, settings: Settings, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.rng = rng or random.Random()
        self.reservations = Reservations()
        self._fetcher: Fetcher | None = None

    def claimable(self, now: datetime) -> Sequence[ColumnElement[bool]]:
        return [
            or_(
                F.c.state == FeedState.active.value,
                and_(F.c.state == FeedState.paused.value, F.c.opted_out_block_id.is_not(None)),
            )
        ]

    @property
    def fetcher(self) -> Fetcher:
        """Made on first use (loading the CA certificates takes a while)."""
        if self._fetcher is None:
            self._fetcher = Fetcher(settings=self.settings)
        return self._fetcher

    def close(self) -> None:
        if self._fetcher is not None:
            self._fetcher.close()
            self._fetcher = None

    def run(self, batch: Sequence[ClaimedFeed], job: JobRun) -> None:
        polled = [Polled(feed) for feed in batch]
        self._look_for_opt_outs(polled, job)
        to_fetch = [p for p in polled if p.opted_out is None]
        if to_fetch:
            self.fetcher.run(self._fetch(to_fetch, job))
        not_modified = [item for item in polled if _plainly_not_modified(item)]
        self._record_not_modified(not_modified, job)
        rest = [item for item in polled if not _plainly_not_modified(item)]
        for index, item in enumerate(rest):
            if job.stop.is_set() and item.fetched is None and item.opted_out is None:
                self.give_back(job, [p.feed.id for p in rest[index:]])
                return
            now = job.moment()
            try:
                with job.transaction() as session:
                    outcome = self.record(session, item, now, job.owner)
            except Exception as exc:
                outcome = self._fail(item.feed, exc, now, job)
            job.count(outcome)

    def _record_not_modified(self, items: Sequence[Polled], job: JobRun) -> None:
        """The batch's 304s, in one transaction."""
        if not items:
            return
        now = job.moment()
        run_at = {item.feed.id: self._not_modified_until(item, now) for item in items}
        try:
            with job.transaction() as session:
                recorded = service.record_not_modified(session, run_at, now=now, owner=job.owner)
        except Exception as exc:
            for item in items:
                job.count(self._fail(item.feed, exc, now, job))
            return
        job.count("not_modified", len(recorded))
        job.count("lost", len(items) - len(recorded))

    def _not_modified_until(self, item: Polled, now: datetime) -> datetime:
        """When a feed that answered 304 is fetched next: at its pace, never sooner than the
        server asked."""
        fetched = item.fetched
        assert fetched is not None
        interval = timedelta(seconds=item.feed.interval_seconds or 0) or pace.DEFAULT_INTERVAL
        asked = pace.asked_wait(fetched.headers, ttl=None, retry_after=fetched.retry_after(now))
        minimum = self.settings.feeds_min_interval
        return pace.next_fetch_at(now, max(interval, minimum), asked=asked, rng=self.rng)

    def _look_for_opt_outs(self, polled: Sequence[Polled], job: JobRun) -> None:
        """Each feed's opt-out: a block of its host's or its publisher's domain (one query)."""
        hosts = {
            item.feed.id: [
                urlsplit(url).hostname or ""
                for url in (item.feed.url, item.feed.publisher_url)
                if url
            ]
            for item in polled
        }
        with new_session(job.engine) as session:
            blocks = find_domain_blocks(
                session=session, hosts=[host for each in hosts.values() for host in each]
            )
        for item in polled:
            found = [blocks[host] for host in hosts[item.feed.id] if host in blocks]
            item.opted_out = min(found, key=lambda block: block.id or 0) if found else None

    async def _fetch(self, polled: Sequence[Polled], job: JobRun) -> None:
        """Fetch and parse the feeds, then learn the reservations of their entries' hosts;
        the leases are renewed meanwhile."""
        fetcher = self.fetcher
        renewing = asyncio.create_task(self._renew_leases([p.feed.id for p in polled], job))
        try:
            requests = [
                FetchRequest(url=p.feed.url, etag=p.feed.etag, last_modified=p.feed.last_modified)
                for p in polled
            ]
            for item, fetched in zip(polled, await fetcher.fetch_all(requests), strict=True):
                item.fetched = fetched
                self._parse(item)
            urls = [
                entry["source_url"]
                for item in polled
                if item.parsed is not None
                for entry in item.parsed.entries
            ]
            now = job.moment()
            missing = sorted(self.reservations.missing(urls, now))
            await asyncio.gather(
                *(self.reservations.learn([origin], fetcher.fetch, now) for origin in missing)
            )
        finally:
            renewing.cancel()
        for item in polled:
            if item.parsed is not None:
                item.reserved = {
                    entry["source_url"]: why
                    for entry in item.parsed.entries
                    if (why := self.reservations.reservation(entry["source_url"]))
                }

    def _parse(self, item: Polled) -> None:
        fetched = item.fetched
        if fetched is None or not fetched.ok or fetched.body is None:
            return
        content_type = fetched.headers.get("content-type") if fetched.headers else None
        try:
            item.parsed = parse_feed(fetched.body, url=fetched.url, content_type=content_type)
        except FeedRefused as exc:
            item.parse_error = str(exc)
        except Exception as exc:  # a parser bug must not stop the worker
            logger.exception("feed parser failed", extra={"feed_id": item.feed.id})
            item.parse_error = f"parser failed: {describe_error(exc)}"

    async def _renew_leases(self, ids: Sequence[int], job: JobRun) -> None:
        every = max(job.lease.total_seconds() / 3, 0.05)
        while True:
            await asyncio.sleep(every)
            await asyncio.to_thread(self._renew, ids, job)

    def _renew(self, ids: Sequence[int], job: JobRun) -> None:
        try:
            with job.transaction() as session:
                self.queue.renew(
                    session=session, ids=ids, owner=job.owner, now=job.moment(), lease=job.lease
                )
        except Exception as exc:
            logger.warning("feed leases not renewed: %s", describe_error(exc))

    def record(self, session: Session, item: Polled, now: datetime, owner: str) -> str:
        """Record what became of one feed, if this worker still holds it; its outcome."""
        feed = item.feed
        minimum = self.settings.feeds_min_interval

        def schedule(interval: timedelta, asked: timedelta) -> datetime:
            return pace.next_fetch_at(now, interval, asked=asked, rng=self.rng)

        if item.opted_out is not None:
            return service.record_opted_out(
                session, feed, item.opted_out, run_at=now + OPT_OUT_RECHECK, now=now, owner=owner
            )
        if feed.opted_out_block_id is not None and not service.resume_after_opt_out(
            session, feed, now=now, owner=owner
        ):
            return "lost"
        fetched = item.fetched
        assert fetched is not None
        retry_after = fetched.retry_after(now)
        if fetched.status == 410:
            return service.record_gone(session, feed, now=now, owner=owner)
        if fetched.status == 304:
            run_at = {feed.id: self._not_modified_until(item, now)}
            recorded = service.record_not_modified(session, run_at, now=now, owner=owner)
            return "not_modified" if recorded else "lost"
        if item.parsed is None:
            why = item.parse_error or fetched.error or _http_status(fetched)
            errors = feed.consecutive_errors + 1
            asked = pace.asked_wait(fetched.headers, ttl=None, retry_after=retry_after)
            return service.record_error(
                session,
                feed,
                why=why,
                now=now,
                owner=owner,
                run_at=schedule(pace.error_delay(errors, minimum=minimum), asked),
                fetched=fetched.status is not None,
            )
        parsed = item.parsed
        interval = pace.publishing_interval(parsed.dates, minimum=minimum)
        asked = pace.asked_wait(fetched.headers, ttl=parsed.ttl, retry_after=retry_after)
        return service.record_fetched(
            session,
            feed,
            fetched=fetched,
            parsed=parsed,
            reserved_feed=answer_reservation(fetched.headers),
            reserved_entries=item.reserved,
            interval=interval,
            run_at=schedule(interval, asked),
            now=now,
            owner=owner,
        )

    def _fail(self, feed: ClaimedFeed, exc: Exception, now: datetime, job: JobRun) -> str:
        error = describe_error(exc)
        failure = self.record_failure(job, job_id=feed.id, error=error, now=now)
        logger.error("feed not recorded: %s", error, extra={"feed_id": feed.id})
        return "lost" if failure is None else "retried"


def _plainly_not_modified(item: Polled) -> bool:
    """A 304 from a feed that was not paused: nothing to record but its next fetch."""
    return (
        item.opted_out is None
        and item.feed.opted_out_block_id is None
        and item.fetched is not None
        and item.fetched.status == 304
    )


def _http_status(fetched: Fetched) -> str:
    return f"HTTP {fetched.status}" if fetched.status is not None else "no answer"
