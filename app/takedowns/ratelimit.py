"""Fixed-window rate limits counted in the database, so every API process shares them.

Keys are SHA-256 hashes ("addr:..." / "email:..."): the counters hold no address or e-mail.
"""

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete
from sqlmodel import Session

from app.config import Rate
from app.db import insert_for
from app.errors import ProblemError
from app.takedowns.models import RateLimitCounter

C = RateLimitCounter.__table__  # type: ignore[attr-defined]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class RateLimited(ProblemError):
    """429 with Retry-After: the seconds until the window that is full ends."""

    def __init__(self, retry_after: int, what: str) -> None:
        super().__init__(
            429,
            "rate-limited",
            f"Too many takedown requests from this {what}; try again in {retry_after} seconds.",
            headers={"Retry-After": str(retry_after)},
        )
        self.retry_after = retry_after


@dataclass(frozen=True)
class Hit:
    """One counted event: the window's count so far, and whether it is within the limit."""

    count: int
    allowed: bool
    retry_after: int


def rate_key(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()


def window_start(now: datetime, period_seconds: int) -> datetime:
    elapsed = int((now - _EPOCH).total_seconds())
    return _EPOCH + timedelta(seconds=elapsed - elapsed % period_seconds)


def count_hit(*, session: Session, key: str, rate: Rate, now: datetime) -> Hit:
    """Count one event for `key` in the current window (one atomic upsert, safe across
    processes) and forget the key's earlier windows."""
    start = window_start(now, rate.period_seconds)
    insert = insert_for(session)
    statement = insert(C).values(key=key, window_start=start, count=1)
    count = session.execute(
        statement.on_conflict_do_update(
            index_elements=["key", "window_start"], set_={"count": C.c.count + 1}
        ).returning(C.c.count)
    ).scalar_one()
    session.execute(delete(C).where(C.c.key == key, C.c.window_start < start))
    ends = start + timedelta(seconds=rate.period_seconds)
    retry_after = max(1, math.ceil((ends - now).total_seconds()))
    return Hit(count=count, allowed=count <= rate.count, retry_after=retry_after)


def limit_filing(
    *,
    session: Session,
    client_address: str,
    email: str,
    per_address: Rate,
    per_email: Rate,
    now: datetime,
) -> None:
    """Count a filing against its client address and its claimant e-mail; RateLimited when
    either is over its limit (the caller's rollback then stores nothing of the attempt)."""
    hits = {
        "address": count_hit(
            session=session, key=rate_key("addr", client_address), rate=per_address, now=now
        ),
        "e-mail address": count_hit(
            session=session, key=rate_key("email", email.lower()), rate=per_email, now=now
        ),
    }
    over = {what: hit.retry_after for what, hit in hits.items() if not hit.allowed}
    if over:
        what = max(over, key=lambda name: over[name])
        raise RateLimited(over[what], what)
