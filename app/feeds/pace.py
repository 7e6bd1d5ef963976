"""When a feed is fetched next: after a success, from the pace at which it publishes; after
an error, with exponential backoff. Both between `feeds_min_interval` and a day, never sooner
than the feed or its server ask (RSS `<ttl>`, `Cache-Control: max-age`, `Retry-After`), and
jittered so that feeds added together do not stay in step.
"""

import itertools
import random
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from statistics import median

import httpx

MAX_INTERVAL = timedelta(hours=24)
# No pace known yet (fewer than two dated entries): hourly.
DEFAULT_INTERVAL = timedelta(hours=1)
JITTER = 0.1
_MAX_AGE = re.compile(r"(?:^|,)\s*(?:s-)?max-age\s*=\s*\"?(\d+)", re.IGNORECASE)


def publishing_interval(dates: Sequence[datetime], *, minimum: timedelta) -> timedelta:
    """Half the median gap between the feed's latest entries (a new entry waits a quarter of
    its gap on average), within [minimum, a day]."""
    recent = sorted(set(dates), reverse=True)[:20]
    if len(recent) < 2:
        return max(DEFAULT_INTERVAL, minimum)
    gaps = [(newer - older).total_seconds() for newer, older in itertools.pairwise(recent)]
    return _bounded(timedelta(seconds=median(gaps) / 2), minimum)


def error_delay(consecutive_errors: int, *, minimum: timedelta) -> timedelta:
    """The wait after the n-th error in a row: minimum, 2x, 4x, ... a day; never given up."""
    exponent = min(max(consecutive_errors - 1, 0), 20)
    return _bounded(minimum * (2**exponent), minimum)


def asked_wait(
    headers: httpx.Headers | None, *, ttl: timedelta | None, retry_after: timedelta | None
) -> timedelta:
    """The longest wait the feed or its server asked for (zero: none)."""
    waits = [ttl or timedelta(0), retry_after or timedelta(0)]
    match = _MAX_AGE.search(headers.get("cache-control", "")) if headers is not None else None
    if match:
        waits.append(timedelta(seconds=min(int(match.group(1)), 86400 * 7)))
    return max(waits)


def next_fetch_at(
    now: datetime, interval: timedelta, *, asked: timedelta, rng: random.Random
) -> datetime:
    """`now` plus the interval (or what was asked, if longer), jittered by ±10%, at most a
    day ahead and never sooner than asked."""
    wait = max(interval, asked)
    jittered = wait * rng.uniform(1 - JITTER, 1 + JITTER)
    return now + max(min(jittered, MAX_INTERVAL), min(asked, MAX_INTERVAL))


def _bounded(value: timedelta, minimum: timedelta) -> timedelta:
    return min(max(value, minimum), MAX_INTERVAL)
