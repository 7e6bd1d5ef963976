"""Fixed-window rate limits counted in the database, so every API process shares them.

Keys are SHA-256 hashes ("addr:...", "domain:...", "mailbox:..."): the counters hold no
address or e-mail.

Who is counted where, so that nobody can lock a rights holder out by filing in their name:
a filing counts against the client address it came from and against each domain it
targets (but a domain its own mailbox is at: junk filed by others must not lock the domain's
own people out), never against the e-mail address it gives (anyone can type that); a
confirmation,
which only the mailbox's owner can make, counts against that mailbox, however its address
is spelled (`mailbox_key`: plus-addressing and Gmail's dots folded).
"""

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import Request
from sqlalchemy import delete
from sqlmodel import Session

from app.config import Rate
from app.dialects import dialect_of
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
            f"Too many {what}; try again in {retry_after} seconds.",
            headers={"Retry-After": str(retry_after)},
        )
        self.retry_after = retry_after


@dataclass(frozen=True)
class Hit:
    """One counted event: the window's count so far, and whether it is within the limit."""

    count: int
    allowed: bool
    retry_after: int


def client_address(request: Request) -> str:
    """The address a request is counted under: the client's, after uvicorn applied the
    X-Forwarded-For of trusted proxies (BYLINE_FORWARDED_ALLOW_IPS)."""
    return request.client.host if request.client else "unknown"


def rate_key(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()


def window_start(now: datetime, period_seconds: int) -> datetime:
    elapsed = int((now - _EPOCH).total_seconds())
    return _EPOCH + timedelta(seconds=elapsed - elapsed % period_seconds)


def count_hit(*, session: Session, key: str, rate: Rate, now: datetime) -> Hit:
    """Count one event for `key` in the current window (one atomic upsert, safe across
    processes) and forget the key's earlier windows."""
    start = window_start(now, rate.period_seconds)
    insert = dialect_of(session).insert
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


def limit(*, session: Session, counts: Sequence[tuple[str, str, Rate, str]], now: datetime) -> None:
    """Count one event under each (kind, value, rate, what it is called); RateLimited for
    the limit that frees up last when any is over (the caller's rollback then stores
    nothing of the attempt, its counts included)."""
    over: dict[str, int] = {}
    for kind, value, rate, what in counts:
        hit = count_hit(session=session, key=rate_key(kind, value), rate=rate, now=now)
        if not hit.allowed:
            over[what] = max(over.get(what, 0), hit.retry_after)
    if over:
        what = max(over, key=lambda name: over[name])
        raise RateLimited(over[what], what)


def limit_filing(
    *,
    session: Session,
    client_address: str,
    domains: Sequence[str],
    per_address: Rate,
    per_domain: Rate,
    now: datetime,
) -> None:
    """Count a filing against its client address and each registrable domain it targets
    (for a publisher key's filing, `domains` is empty: its proof is the key)."""
    counts = [("addr", client_address, per_address, "takedown requests from this address")]
    counts += [
        ("domain", domain, per_domain, f"unconfirmed takedown requests for {domain}")
        for domain in sorted(set(domains))
    ]
    limit(session=session, counts=counts, now=now)


def limit_confirmation(*, session: Session, mailbox: str, per_mailbox: Rate, now: datetime) -> None:
    """Count a confirmation against the mailbox that made it (`mailbox_key`)."""
    limit(
        session=session,
        counts=[("mailbox", mailbox, per_mailbox, "confirmed takedown requests from this mailbox")],
        now=now,
    )
