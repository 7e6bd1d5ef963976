"""Rights reservations, honoured before an entry is republished:

- the host's robots.txt for byline's user agent (`byline`), read with protego: a URL it
  disallows is reserved; a robots.txt that cannot be read because of a server error reserves
  the whole host for now (RFC 9309, 2.3.1.4), one that does not exist (4xx) reserves nothing;
- `X-Robots-Tag: noarchive` or `none` on the feed's answer (for every robot or for `byline`);
- the W3C TDM Reservation Protocol: a `tdm-reservation: 1` header on the feed's answer, or a
  rule of the host's `/.well-known/tdmrep.json` whose location matches the entry's path.

What a host publishes is fetched once per `CACHE_FOR` per worker, through the same fetcher
(and address guard) as the feeds.
"""

import json
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from protego import Protego

from app.feeds.fetching import Fetched, FetchRequest

ROBOT_NAME = "byline"
CACHE_FOR = timedelta(hours=24)
# A host whose rules could not be read is asked again sooner.
CACHE_UNREADABLE_FOR = timedelta(hours=1)
MAX_RULES_BYTES = 512 * 1024

Fetch = Callable[[FetchRequest], Awaitable[Fetched]]


@dataclass(frozen=True)
class TdmRule:
    pattern: re.Pattern[str]
    reserved: bool


@dataclass(frozen=True)
class HostRules:
    """What one origin publishes about reuse."""

    robots: Any  # Protego, or None: nothing disallowed
    robots_unreadable: str | None  # why robots.txt could not be read (everything reserved)
    tdm_rules: tuple[TdmRule, ...]
    expires_at: datetime

    def reservation(self, url: str) -> str | None:
        """Why `url` may not be republished, or None."""
        if self.robots_unreadable:
            return f"robots.txt unreadable ({self.robots_unreadable})"
        if self.robots is not None and not self.robots.can_fetch(url, ROBOT_NAME):
            return "robots.txt disallows byline"
        path = _path(url)
        for rule in self.tdm_rules:
            if rule.pattern.match(path):
                return "TDM reservation (tdmrep.json)" if rule.reserved else None
        return None


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class Reservations:
    """Each origin's rules, cached for this worker."""

    def __init__(self) -> None:
        self.hosts: dict[str, HostRules] = {}

    def missing(self, urls: Iterable[str], now: datetime) -> set[str]:
        """The origins of `urls` whose rules are not known (or are stale) at `now`."""
        return {
            o for o in map(origin, urls) if o not in self.hosts or self.hosts[o].expires_at <= now
        }

    async def learn(self, origins: Iterable[str], fetch: Fetch, now: datetime) -> None:
        """Fetch the robots.txt and tdmrep.json of `origins` (one after the other per origin;
        callers run origins concurrently)."""
        for each in origins:
            robots = await fetch(FetchRequest(url=f"{each}/robots.txt", accept="text/plain"))
            tdmrep = await fetch(
                FetchRequest(url=f"{each}/.well-known/tdmrep.json", accept="application/json")
            )
            self.hosts[each] = _host_rules(robots, tdmrep, now)

    def reservation(self, url: str) -> str | None:
        rules = self.hosts.get(origin(url))
        return rules.reservation(url) if rules is not None else None


def answer_reservation(headers: httpx.Headers | None) -> str | None:
    """A reservation the feed's own answer carries (X-Robots-Tag, tdm-reservation)."""
    if headers is None:
        return None
    if headers.get("tdm-reservation", "").strip() == "1":
        return "TDM reservation (tdm-reservation header)"
    for value in headers.get_list("x-robots-tag"):
        robot, _, directives = value.rpartition(":")
        if robot.strip() and robot.strip().lower() not in (ROBOT_NAME, "*"):
            continue
        names = {d.strip().lower() for d in directives.split(",")}
        if names & {"noarchive", "none"}:
            return f"X-Robots-Tag: {', '.join(sorted(names & {'noarchive', 'none'}))}"
    return None


def _host_rules(robots: Fetched, tdmrep: Fetched, now: datetime) -> HostRules:
    unreadable: str | None = None
    parsed: Any = None
    if robots.ok and robots.body is not None:
        parsed = Protego.parse(robots.body[:MAX_RULES_BYTES].decode("utf-8", "replace"))
    elif robots.status is not None and robots.status >= 500:
        unreadable = f"HTTP {robots.status}"
    elif robots.status is None:
        unreadable = robots.error or "no answer"
    rules = _tdm_rules(tdmrep.body) if tdmrep.ok else ()
    ttl = CACHE_UNREADABLE_FOR if unreadable else CACHE_FOR
    return HostRules(
        robots=parsed, robots_unreadable=unreadable, tdm_rules=rules, expires_at=now + ttl
    )


def _tdm_rules(body: bytes | None) -> tuple[TdmRule, ...]:
    try:
        document = json.loads(body or b"")
    except (ValueError, UnicodeDecodeError):
        return ()
    if not isinstance(document, list):
        return ()
    rules = []
    for rule in document:
        if not isinstance(rule, dict) or not isinstance(rule.get("location"), str):
            continue
        reserved = str(rule.get("tdm-reservation", "0")).strip() == "1"
        rules.append(TdmRule(pattern=_location_pattern(rule["location"]), reserved=reserved))
    return tuple(rules)


def _location_pattern(location: str) -> re.Pattern[str]:
    """A TDMRep location (robots.txt syntax: `*` any characters, a final `$` the end)."""
    anchored = location.endswith("$")
    body = location[:-1] if anchored else location
    if not body.startswith("/"):
        body = "/" + body
    regex = ".*".join(re.escape(part) for part in body.split("*"))
    return re.compile(regex + ("$" if anchored else ""))


def _path(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
