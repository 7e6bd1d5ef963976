"""Plain-function factories for rows that several domains' tests build (API keys, takedown
requests, articles stored by the service) and readers of what several domains record.

Each takes where to write or read: the test's rolled-back session (`db`), or an engine, on
which rows are written in a transaction of their own and committed, for the app, workers
and threads of `engine` tests to see."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlmodel import Session, col

from app.articles.service import ingest_batch, remove_articles
from app.auth import Scope, create_api_key
from app.clock import Clock, FrozenClock
from app.config import TAKEDOWN_DEADLINE
from app.db import new_session, writer
from app.takedowns.models import AuditEvent, Takedown
from tests.articles.factories import article_payload

Bind = Engine | Session

# The claimant of `make_takedown`'s requests, to prove that it never leaks.
PRIVATE_NAME = "Privata Persona"
PRIVATE_EMAIL = "privata@claimant.example"


@contextmanager
def writing(bind: Bind) -> Iterator[Session]:
    """A session to write with: the test's own, flushed at the end of the block; or, on an
    engine, a writer's transaction of its own, committed at the end of the block."""
    if isinstance(bind, Session):
        yield bind
        bind.flush()
        return
    with new_session(writer(bind)) as session, session.begin():
        yield session


@contextmanager
def reading(bind: Bind) -> Iterator[Session]:
    """A session to read with: the test's own, its loaded rows expired so that they are read
    afresh (as a new session would read them); or a new session on an engine."""
    if isinstance(bind, Session):
        bind.flush()
        bind.expire_all()
        yield bind
        return
    with new_session(bind) as session:
        yield session


def make_key(bind: Bind, scope: Scope, name: str = "test-key", *, domain: str | None = None) -> str:
    """An API key of `scope` (a publisher key is bound to `domain`); its secret."""
    with writing(bind) as session:
        _, secret = create_api_key(
            session=session, name=name, scope=scope, domain=domain, now=FrozenClock().now()
        )
    return secret


def make_takedown(
    bind: Bind,
    *,
    received_at: datetime,
    status: str = "queued",
    reason: str = "copyright",
    **overrides: Any,
) -> str:
    """A takedown row as filing leaves it (claimant data included, to prove it never leaks);
    its id."""
    takedown_id = str(uuid.uuid4())
    values: dict[str, Any] = {
        "id": takedown_id,
        "status": status,
        "reason": reason,
        "claimant_name": PRIVATE_NAME,
        "claimant_email": PRIVATE_EMAIL,
        "claimant_role": "owner",
        "explanation": "a private explanation",
        "signature": "P. Persona",
        "token_hash": "0" * 64,
        "fingerprint": uuid.uuid4().hex * 2,
        "received_at": received_at,
        "due_at": received_at + TAKEDOWN_DEADLINE,
    }
    values.update(overrides)
    with writing(bind) as session:
        session.add(Takedown(**values))
    return takedown_id


def make_articles(bind: Bind, count: int, *, now: datetime, **overrides: Any) -> list[int]:
    """`count` articles (`article_payload` 1 to `count`) stored as the ingest API stores
    them; their ids in order."""
    items = [article_payload(n, **overrides) for n in range(1, count + 1)]
    with writing(bind) as session:
        results = ingest_batch(session=session, items=items, now=now)
    assert all(result.status == "created" for result in results), results
    return [result.id for result in results if result.id is not None]


def remove_article(bind: Bind, clock: Clock, article_id: int, takedown_id: str) -> bool:
    """Remove the article for the request, as a removal does; whether this removed it."""
    with writing(bind) as session:
        removed = remove_articles(
            session=session, removals={takedown_id: [article_id]}, now=clock.now()
        )
    return article_id in removed[takedown_id]


def row_count(bind: Bind, model: type) -> int:
    """How many rows `model`'s table holds."""
    with reading(bind) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def audit_log(bind: Bind) -> list[tuple[str, str, str | None]]:
    """Every audit row, oldest first: (action, actor, reason)."""
    with reading(bind) as session:
        rows = session.scalars(select(AuditEvent).order_by(col(AuditEvent.id)))
        return [(row.action, row.actor, row.reason) for row in rows]
