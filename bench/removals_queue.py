"""Fill the removal queue of a benchmark database the way filings by verified claimants do.

`file_takedown` for a claimant whose e-mail domain matches the articles' source domain queues
the request at once: a `takedowns` row (queued, run_at = received_at), one target row per
article, its URL blocks, the `filed` and `queued` audit rows, and one `removal_jobs` row per
article, due now. Filing 100,000 removals through the API would measure the API (and its
rate limit), not the scheduler, so this writes the same rows in bulk with SQLAlchemy Core.
"""

import hashlib
import random
import uuid
from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from app.articles.models import Article, Publisher
from app.config import TAKEDOWN_DEADLINE
from app.scheduler.models import RemovalJob
from app.takedowns.models import AuditEvent, Block, Takedown, TakedownTarget

A = Article.__table__  # type: ignore[attr-defined]
P = Publisher.__table__  # type: ignore[attr-defined]
CHUNK = 5_000


def pick_articles(engine: Engine, count: int, *, seed: int = 451) -> dict[int, list[Any]]:
    """`count` live articles at random from about one publisher in fifty removals (so a
    publisher's rights desk names a few dozen articles, as at 100,000 of 1M), by publisher:
    {publisher_id: [(article id, canonical URL), ...]}."""
    rng = random.Random(seed)
    articles_seen = 0
    with engine.connect() as connection:
        publishers = list(connection.execute(select(P.c.id, P.c.article_count).order_by(P.c.id)))
        rng.shuffle(publishers)
        chosen: list[int] = []
        for publisher_id, articles in publishers:
            if len(chosen) >= -(-count // 50) and articles_seen >= count * 5 // 4:
                break
            chosen.append(publisher_id)
            articles_seen += articles
        rows = list(
            connection.execute(
                select(A.c.id, A.c.publisher_id, A.c.canonical_url).where(
                    A.c.publisher_id.in_(chosen), A.c.removed_at.is_(None)
                )
            )
        )
    if len(rows) < count:
        raise SystemExit(f"fewer than {count:,} live articles to remove")
    by_publisher: dict[int, list[Any]] = defaultdict(list)
    for row in sorted(rng.sample(rows, count)):
        by_publisher[row.publisher_id].append((row.id, row.canonical_url))
    return by_publisher


def queue_verified_takedowns(
    engine: Engine, *, count: int, per_takedown: int, now: datetime, claimant: str = "Rights Desk"
) -> tuple[list[str], list[int]]:
    """Queue `count` removals in requests of up to `per_takedown` articles of one publisher,
    all received at `now` and due at once. Returns the takedown ids and the article ids."""
    by_publisher = pick_articles(engine, count)
    takedowns: list[dict[str, Any]] = []
    targets: list[dict[str, Any]] = []
    blocks: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    jobs: list[dict[str, Any]] = []
    for articles in by_publisher.values():
        for offset in range(0, len(articles), per_takedown):
            group = articles[offset : offset + per_takedown]
            takedown_id = str(uuid.uuid4())
            host = group[0][1].split("/")[2]
            takedowns.append(
                {
                    "id": takedown_id,
                    "status": "queued",
                    "reason": "copyright",
                    "claimant_name": claimant,
                    "claimant_email": f"rights@{host}",
                    "claimant_role": "owner",
                    "explanation": "Republished without a licence.",
                    "signature": "Rights Desk",
                    "token_hash": hashlib.sha256(takedown_id.encode()).hexdigest(),
                    "fingerprint": hashlib.sha256(f"fp:{takedown_id}".encode()).hexdigest(),
                    "received_at": now,
                    "due_at": now + TAKEDOWN_DEADLINE,
                    "run_at": now,
                }
            )
            for position, (article_id, url) in enumerate(group):
                targets.append(
                    {
                        "takedown_id": takedown_id,
                        "position": position,
                        "input": url,
                        "kind": "source_url",
                        "canonical_url": url,
                        "article_id": article_id,
                        "state": "pending",
                    }
                )
                blocks.append(
                    {"kind": "url", "value": url, "takedown_id": takedown_id, "created_at": now}
                )
                jobs.append(
                    {
                        "takedown_id": takedown_id,
                        "article_id": article_id,
                        "status": "queued",
                        "run_at": now,
                        "deadline_at": now + TAKEDOWN_DEADLINE,
                        "attempts": 0,
                        "created_at": now,
                    }
                )
            for action, before, after in (
                ("filed", None, "received"),
                ("queued", "received", "queued"),
            ):
                events.append(
                    {
                        "at": now,
                        "actor": "claimant" if action == "filed" else "policy",
                        "action": action,
                        "takedown_id": takedown_id,
                        "from_status": before,
                        "to_status": after,
                    }
                )
    # Jobs in the order a stream of filings leaves them: each request's rows together.
    with engine.begin() as connection:
        for table, rows in (
            (Takedown.__table__, takedowns),  # type: ignore[attr-defined]
            (TakedownTarget.__table__, targets),  # type: ignore[attr-defined]
            (Block.__table__, blocks),  # type: ignore[attr-defined]
            (AuditEvent.__table__, events),  # type: ignore[attr-defined]
            (RemovalJob.__table__, jobs),  # type: ignore[attr-defined]
        ):
            for offset in range(0, len(rows), CHUNK):
                connection.execute(table.insert(), rows[offset : offset + CHUNK])
    return [t["id"] for t in takedowns], [job["article_id"] for job in jobs]
