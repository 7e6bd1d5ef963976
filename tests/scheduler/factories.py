"""Plain-function factories for the scheduler tests: articles through the real ingest API,
takedown rows and their queued removals, claims made as a worker makes them, and what the
database says happened."""

import threading
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlmodel import col

from app.articles.models import Article
from app.config import TAKEDOWN_DEADLINE
from app.db import new_session, writer
from app.jobs.worker import JobRun, TickResult, Worker
from app.scheduler.models import RemovalJob
from app.scheduler.queue import enqueue_removals
from app.scheduler.removals import ClaimedRemoval, RemovalHandler
from app.takedowns.models import AuditEvent, Takedown
from app.takedowns.service import carry_out_removals, complete_takedown

LEASE = timedelta(seconds=60)

# Claims only (a claim does not depend on how rows are carried out or retried).
_CLAIMS = RemovalHandler(carry_out=carry_out_removals, complete=complete_takedown, max_attempts=1)


def article_payload(n: int, **overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "title": f"Harbour crane collapses in storm {n}",
        "body_html": f"<p>Crane {n} fell into the harbour overnight.</p>",
        "source_url": f"https://www.harbour-news.example/2025/12/01/crane-{n}",
        "publisher": {"name": "Harbour News", "url": "https://www.harbour-news.example"},
        "published_at": "2025-12-01T08:00:00Z",
    }
    payload.update(overrides)
    return payload


def ingest_articles(
    client: TestClient, headers: dict[str, str], count: int, *, publishers: int = 1
) -> list[int]:
    """Ingest `count` articles through the batch API (500 per request), spread round-robin
    over `publishers`; their ids in order."""
    ids: list[int] = []
    numbers = list(range(1, count + 1))
    for offset in range(0, count, 500):
        items = [
            article_payload(n, publisher={"name": f"Harbour News {n % publishers}"})
            for n in numbers[offset : offset + 500]
        ]
        response = client.post("/v1/articles/batch", json={"items": items}, headers=headers)
        assert response.status_code == 200, response.text
        results = response.json()["items"]
        assert all(item["status"] == "created" for item in results), results
        ids.extend(item["id"] for item in results)
    return ids


def make_takedown(
    engine: Engine,
    *,
    received_at: datetime,
    status: str = "queued",
    reason: str = "copyright",
    **overrides: Any,
) -> str:
    """A takedown row as filing leaves it (claimant data included, to prove it never leaks)."""
    takedown_id = str(uuid.uuid4())
    values: dict[str, Any] = {
        "id": takedown_id,
        "status": status,
        "reason": reason,
        "claimant_name": "Privata Persona",
        "claimant_email": "privata@claimant.example",
        "claimant_role": "owner",
        "explanation": "a private explanation",
        "signature": "P. Persona",
        "token_hash": "0" * 64,
        "fingerprint": uuid.uuid4().hex * 2,
        "received_at": received_at,
        "due_at": received_at + TAKEDOWN_DEADLINE,
    }
    values.update(overrides)
    with new_session(writer(engine)) as session, session.begin():
        session.add(Takedown(**values))
    return takedown_id


def queue_takedown(
    engine: Engine,
    article_ids: Sequence[int],
    *,
    received_at: datetime,
    run_at: datetime | None,
    **overrides: Any,
) -> str:
    """A queued takedown whose removals run at `run_at` (None: held for review)."""
    takedown_id = make_takedown(engine, received_at=received_at, **overrides)
    with new_session(writer(engine)) as session, session.begin():
        enqueue_removals(
            session=session,
            takedown_id=takedown_id,
            article_ids=article_ids,
            run_at=run_at,
            deadline_at=received_at + TAKEDOWN_DEADLINE,
            now=received_at,
        )
    return takedown_id


def claim_removals(
    engine: Engine, *, owner: str, now: datetime, limit: int = 10, lease: timedelta = LEASE
) -> list[ClaimedRemoval]:
    """Lease due rows to `owner` in a transaction of their own, as a removal worker claims
    them (earliest deadline first, a try counted per row)."""
    with new_session(writer(engine)) as session, session.begin():
        return list(_CLAIMS.claim(session=session, owner=owner, now=now, limit=limit, lease=lease))


def run_claimed(worker: Worker, batch: Sequence[ClaimedRemoval], now: datetime) -> TickResult:
    """Hand rows claimed earlier in `worker`'s name to its removal handler, as its tick hands
    a claimed batch (e.g. rows that were claimed before their request changed); what they
    came to."""
    [handler] = worker.handlers
    result = TickResult()
    handler.run(
        batch,
        JobRun(
            kind=handler.kind,
            engine=worker.engine,
            owner=worker.owner,
            lease=worker.lease,
            stop=threading.Event(),
            moment=lambda: now,
            result=result,
        ),
    )
    return result


def removal_audit_counts(engine: Engine) -> Counter[int]:
    """How many times the audit log says each article was removed."""
    with new_session(engine) as session:
        rows = session.execute(
            select(AuditEvent.article_id, func.count())
            .where(col(AuditEvent.action) == "removed")
            .group_by(col(AuditEvent.article_id))
        ).all()
    return Counter({article_id: count for article_id, count in rows})


def removal_order(engine: Engine) -> list[str]:
    """The takedowns of the audit's removals, in the order they were carried out."""
    with new_session(engine) as session:
        return list(
            session.scalars(
                select(col(AuditEvent.takedown_id))
                .where(col(AuditEvent.action) == "removed")
                .order_by(col(AuditEvent.id))
            )
        )


def removed_article_ids(engine: Engine) -> set[int]:
    with new_session(engine) as session:
        return set(
            session.scalars(select(col(Article.id)).where(col(Article.removed_at).is_not(None)))
        )


def jobs(engine: Engine, takedown_id: str | None = None) -> list[RemovalJob]:
    with new_session(engine) as session:
        query = select(RemovalJob).order_by(col(RemovalJob.id))
        if takedown_id is not None:
            query = query.where(col(RemovalJob.takedown_id) == takedown_id)
        return list(session.scalars(query))


def takedown(engine: Engine, takedown_id: str) -> Takedown:
    with new_session(engine) as session:
        row = session.get(Takedown, takedown_id)
        assert row is not None
        return row


def moved(moment: datetime, **delta: float) -> datetime:
    return moment + timedelta(**delta)
