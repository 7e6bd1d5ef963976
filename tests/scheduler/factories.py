"""Plain-function factories for the scheduler tests: articles through the real ingest API,
takedowns with their queued removals, claims made as a worker makes them, and what the
database says happened (takedown rows and articles stored in-process: tests/factories.py)."""

import threading
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlmodel import col

from app.articles.models import Article
from app.config import TAKEDOWN_DEADLINE
from app.db import new_session
from app.jobs.worker import JobRun, TickResult, Worker
from app.scheduler.models import RemovalJob
from app.scheduler.queue import enqueue_removals
from app.scheduler.removals import ClaimedRemoval, RemovalHandler
from app.takedowns.models import AuditEvent
from app.takedowns.service import carry_out_removals, complete_takedowns
from tests.articles.factories import article_payload, ingest_all
from tests.factories import Bind, make_takedown, reading, writing

LEASE = timedelta(seconds=60)

# Claims only (a claim does not depend on how rows are carried out or retried).
_CLAIMS = RemovalHandler(carry_out=carry_out_removals, complete=complete_takedowns, max_attempts=1)


def ingest_articles(
    client: TestClient, headers: dict[str, str], count: int, *, publishers: int = 1
) -> list[int]:
    """Ingest `count` articles through the batch API, spread round-robin over `publishers`;
    their ids in order."""
    payloads = [
        article_payload(n, publisher={"name": f"Harbour News {n % publishers}"})
        for n in range(1, count + 1)
    ]
    return ingest_all(client, headers, payloads)


def queue_takedown(
    bind: Bind,
    article_ids: Sequence[int],
    *,
    received_at: datetime,
    run_at: datetime | None,
    **overrides: Any,
) -> str:
    """A queued takedown whose removals run at `run_at` (None: held for review)."""
    with writing(bind) as session:
        takedown_id = make_takedown(session, received_at=received_at, **overrides)
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
    bind: Bind, *, owner: str, now: datetime, limit: int = 10, lease: timedelta = LEASE
) -> list[ClaimedRemoval]:
    """Lease due rows to `owner` (on an engine in a transaction of their own), as a removal
    worker claims them (earliest deadline first, a try counted per row)."""
    with writing(bind) as session:
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


def jobs(bind: Bind, takedown_id: str | None = None) -> list[RemovalJob]:
    with reading(bind) as session:
        query = select(RemovalJob).order_by(col(RemovalJob.id))
        if takedown_id is not None:
            query = query.where(col(RemovalJob.takedown_id) == takedown_id)
        return list(session.scalars(query))


def moved(moment: datetime, **delta: float) -> datetime:
    return moment + timedelta(**delta)
