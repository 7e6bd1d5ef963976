"""Fill the removal queue of a benchmark database the way confirmed, proven claimants leave it.

A filing stays `received` until its claimant confirms the address with the e-mailed code.
When a claimant whose mailbox is at the registrable domain of every article confirms
(`confirm_takedown`, policy `schedule_on_confirmation`), the request is queued with run_at =
now and takes effect: its URL blocks (by matching key) are written, and one `removal_jobs`
row per article is due at once. What such a request leaves in the database, and what this
module writes in bulk with SQLAlchemy Core:

- a `takedowns` row, `queued`, with `confirmation_hash` (the SHA-256 of the code) and
  `email_confirmed_at` set, run_at = the confirmation, and `blocked_at` = the confirmation
  (its blocks took effect then);
- one target row per article (`source_url`, with its `match_key`), `pending`;
- one URL block per article, its value the matching key (`app.articles.urls.match_key`);
- the audit rows `filed`, `email_confirmed`, `queued` and one `blocked` per block;
- the receipt e-mail in the outbox, sent (its status token and code erased, as sending does);
- the `removal_jobs` rows, due now.

Filing and confirming 100,000 removals through the API would measure the API (and its rate
limits), not the scheduler.
"""

import hashlib
import random
import secrets
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, select

from app.articles.models import Article, Publisher
from app.articles.urls import match_key, source_domain
from app.auth import hash_secret
from app.config import TAKEDOWN_DEADLINE
from app.notifications.models import ClaimantEmail
from app.scheduler.models import RemovalJob
from app.takedowns.models import AuditEvent, Block, Takedown, TakedownTarget

articles_table = Article.__table__  # type: ignore[attr-defined]
publishers_table = Publisher.__table__  # type: ignore[attr-defined]
blocks_table = Block.__table__  # type: ignore[attr-defined]
CHUNK = 5_000
# How long before confirming the claimant filed (the e-mail read, the link opened).
CONFIRMED_AFTER = timedelta(minutes=3)
QUEUED_WHY = "the confirmed mailbox is at the domain of every target: runs at once"


def pick_articles(engine: Engine, count: int, *, seed: int = 451) -> dict[int, list[Any]]:
    """`count` live articles at random from about one publisher in fifty removals (so a
    publisher's rights desk names a few dozen articles, as at 100,000 of 1M), by publisher:
    {publisher_id: [(article id, canonical URL), ...]}."""
    rng = random.Random(seed)
    articles_seen = 0
    with engine.connect() as connection:
        publishers = list(
            connection.execute(
                select(publishers_table.c.id, publishers_table.c.article_count).order_by(
                    publishers_table.c.id
                )
            )
        )
        rng.shuffle(publishers)
        chosen: list[int] = []
        for publisher_id, articles in publishers:
            if len(chosen) >= -(-count // 50) and articles_seen >= count * 5 // 4:
                break
            chosen.append(publisher_id)
            articles_seen += articles
        rows = list(
            connection.execute(
                select(
                    articles_table.c.id,
                    articles_table.c.publisher_id,
                    articles_table.c.canonical_url,
                ).where(
                    articles_table.c.publisher_id.in_(chosen),
                    articles_table.c.removed_at.is_(None),
                )
            )
        )
    if len(rows) < count:
        raise SystemExit(f"fewer than {count:,} live articles to remove")
    by_publisher: dict[int, list[Any]] = defaultdict(list)
    for row in sorted(rng.sample(rows, count)):
        by_publisher[row.publisher_id].append((row.id, row.canonical_url))
    return by_publisher


def _insert(connection: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
    for offset in range(0, len(rows), CHUNK):
        connection.execute(table.insert(), rows[offset : offset + CHUNK])


def _insert_blocks(connection: Connection, rows: list[dict[str, Any]]) -> list[int]:
    """The blocks' ids, in the order of `rows` (their audit rows name them)."""
    ids: list[int] = []
    for offset in range(0, len(rows), CHUNK):
        inserted = connection.execute(
            blocks_table.insert().returning(blocks_table.c.id, sort_by_parameter_order=True),
            rows[offset : offset + CHUNK],
        )
        ids.extend(inserted.scalars())
    return ids


def queue_verified_takedowns(
    engine: Engine, *, count: int, per_takedown: int, now: datetime, claimant: str = "Rights Desk"
) -> tuple[list[str], list[int]]:
    """Queue `count` removals in requests of up to `per_takedown` articles of one publisher,
    each filed a few minutes before `now` and confirmed at `now` by a mailbox at the
    articles' domain, so due at once. Returns the takedown ids and the article ids."""
    by_publisher = pick_articles(engine, count)
    received_at = now - CONFIRMED_AFTER
    due_at = received_at + TAKEDOWN_DEADLINE
    takedowns: list[dict[str, Any]] = []
    targets: list[dict[str, Any]] = []
    blocks: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    emails: list[dict[str, Any]] = []
    jobs: list[dict[str, Any]] = []
    blocked_keys: set[str] = set()

    def event(action: str, actor: str, takedown_id: str, **values: Any) -> dict[str, Any]:
        return {
            "at": values.pop("at", now),
            "actor": actor,
            "action": action,
            "takedown_id": takedown_id,
            "from_status": values.pop("from_status", None),
            "to_status": values.pop("to_status", None),
            "reason": values.pop("reason", None),
            "block_id": None,
        }

    for articles in by_publisher.values():
        for offset in range(0, len(articles), per_takedown):
            group = articles[offset : offset + per_takedown]
            takedown_id = str(uuid.uuid4())
            email = f"rights@{source_domain(group[0][1])}"
            takedowns.append(
                {
                    "id": takedown_id,
                    "status": "queued",
                    "reason": "copyright",
                    "claimant_name": claimant,
                    "claimant_email": email,
                    "claimant_role": "owner",
                    "explanation": "Republished without a licence.",
                    "signature": "Rights Desk",
                    "token_hash": hash_secret(secrets.token_urlsafe(32)),
                    "confirmation_hash": hash_secret(secrets.token_urlsafe(32)),
                    "email_confirmed_at": now,
                    "fingerprint": hashlib.sha256(f"fp:{takedown_id}".encode()).hexdigest(),
                    "received_at": received_at,
                    "due_at": due_at,
                    "run_at": now,
                    "blocked_at": now,
                }
            )
            events.append(
                event("filed", "claimant", takedown_id, at=received_at, to_status="received")
            )
            events.append(
                event("email_confirmed", "claimant", takedown_id, reason="the e-mailed link")
            )
            events.append(
                event(
                    "queued",
                    "policy",
                    takedown_id,
                    from_status="received",
                    to_status="queued",
                    reason=QUEUED_WHY,
                )
            )
            emails.append(
                {
                    "uid": str(uuid.uuid4()),
                    "takedown_id": takedown_id,
                    "kind": "receipt",
                    "recipient": email,
                    "context": {
                        "takedown_id": takedown_id,
                        "reason": "copyright",
                        "domain": None,
                        "received_at": received_at.isoformat(),
                        "due_at": due_at.isoformat(),
                        "statement_of_reasons": None,
                        "escalated": False,
                        "proof": "unconfirmed",
                        "review_window_ends_at": (received_at + timedelta(hours=4)).isoformat(),
                        "unmatched_targets": [],
                    },
                    "secret": None,
                    "confirmation_code": None,
                    "status": "done",
                    "attempts": 1,
                    "run_at": received_at,
                    "created_at": received_at,
                    "finished_at": received_at + timedelta(seconds=5),
                }
            )
            keys = []
            for position, (article_id, url) in enumerate(group):
                key = match_key(url)
                keys.append(key)
                targets.append(
                    {
                        "takedown_id": takedown_id,
                        "position": position,
                        "input": url,
                        "kind": "source_url",
                        "canonical_url": url,
                        "match_key": key,
                        "article_id": article_id,
                        "state": "pending",
                    }
                )
                jobs.append(
                    {
                        "takedown_id": takedown_id,
                        "article_id": article_id,
                        "status": "queued",
                        "run_at": now,
                        "deadline_at": due_at,
                        "attempts": 0,
                        "created_at": now,
                    }
                )
            # block_takedown blocks a request's keys in sorted order, with an audit row for
            # each block it made active (a key blocked already is left as it is).
            for key in sorted(set(keys) - blocked_keys):
                blocked_keys.add(key)
                blocks.append(
                    {"kind": "url", "value": key, "takedown_id": takedown_id, "created_at": now}
                )
    with engine.begin() as connection:
        _insert(connection, Takedown.__table__, takedowns)  # type: ignore[attr-defined]
        _insert(connection, TakedownTarget.__table__, targets)  # type: ignore[attr-defined]
        block_ids = _insert_blocks(connection, blocks)
        for block, block_id in zip(blocks, block_ids, strict=True):
            blocked = event(
                "blocked", "policy", block["takedown_id"], reason=f"url {block['value']}"
            )
            events.append({**blocked, "block_id": block_id})
        # Audit rows in the order the requests wrote them: each request's rows together.
        order = {takedown["id"]: index for index, takedown in enumerate(takedowns)}
        events.sort(key=lambda e: order[e["takedown_id"]])
        _insert(connection, AuditEvent.__table__, events)  # type: ignore[attr-defined]
        _insert(connection, ClaimantEmail.__table__, emails)  # type: ignore[attr-defined]
        # Jobs in the order a stream of confirmations leaves them: each request's rows together.
        _insert(connection, RemovalJob.__table__, jobs)  # type: ignore[attr-defined]
    return [t["id"] for t in takedowns], [job["article_id"] for job in jobs]
