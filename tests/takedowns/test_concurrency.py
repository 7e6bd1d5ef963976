"""Races, run with real threads and separate transactions (meaningful on PostgreSQL, where
transactions overlap; SQLite serialises writers): exactly one of them wins."""

import threading
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from app.articles.urls import match_key
from app.clock import FrozenClock
from app.config import Settings
from app.db import new_session, writer
from app.errors import ProblemError
from app.scheduler.queue import RemovalRefused
from app.takedowns.blocks import add_block
from app.takedowns.filing import Filed, confirm_takedown, file_takedown
from app.takedowns.models import AuditEvent, Block, Takedown
from app.takedowns.schemas import TakedownIn
from app.takedowns.service import (
    approve_takedown,
    carry_out_removal,
    reject_takedown,
    withdraw_takedown,
)
from tests.takedowns.factories import (
    confirmation_code,
    file,
    file_confirmed,
    filing,
    ingest,
    ingest_many,
    load,
)


def race(engine: Engine, actions: list[Callable[[Any], object]]) -> list[object]:
    """Run each action in its own thread and transaction, all released at once. Each result
    is the action's return value or the ProblemError (or, for a removal, the RemovalRefused)
    it raised."""
    barrier = threading.Barrier(len(actions))
    results: list[object] = [None] * len(actions)

    def run(index: int) -> None:
        barrier.wait()
        try:
            with new_session(writer(engine)) as session, session.begin():
                results[index] = actions[index](session)
        except (ProblemError, RemovalRefused) as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def conflicts(results: list[object]) -> int:
    """The losers: a 409, or a removal its request no longer allows."""
    return sum(
        (isinstance(r, ProblemError) and r.status == 409) or isinstance(r, RemovalRefused)
        for r in results
    )


def test_concurrent_approve_and_reject_exactly_one_wins(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine, clock: FrozenClock
) -> None:
    ids = ingest_many(client, ingest_headers, 26)
    takedown_id = file(client, filing(ids))["id"]  # escalated: too many articles
    now = clock.now()

    def approve(actor: str) -> Callable[[Any], object]:
        return lambda s: approve_takedown(session=s, takedown_id=takedown_id, actor=actor, now=now)

    def reject(actor: str) -> Callable[[Any], object]:
        return lambda s: reject_takedown(
            session=s, takedown_id=takedown_id, actor=actor, reason="No.", now=now
        )

    results = race(engine, [approve("ops-a"), reject("ops-b"), approve("ops-c"), reject("ops-d")])
    assert conflicts(results) == 3
    with new_session(engine) as session:
        decisions = session.scalars(
            select(AuditEvent.action).where(  # type: ignore[call-overload]
                AuditEvent.takedown_id == takedown_id,
                AuditEvent.action.in_(["approved", "rejected"]),  # type: ignore[attr-defined]
            )
        ).all()
    assert len(decisions) == 1
    assert load(engine, takedown_id).decision == decisions[0]


def test_concurrent_withdraw_and_removal_exactly_one_wins(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine, clock: FrozenClock
) -> None:
    article = ingest(client, ingest_headers)
    filed = file_confirmed(client, engine, filing([article["id"]]))  # queued, runs at once
    now = clock.now()
    results = race(
        engine,
        [
            lambda s: withdraw_takedown(
                session=s, takedown_id=filed["id"], token=filed["status_token"], now=now
            ),
            lambda s: carry_out_removal(
                session=s, takedown_id=filed["id"], article_id=article["id"], now=now
            ),
        ],
    )
    assert conflicts(results) == 1
    status = load(engine, filed["id"]).status
    removed = client.get(f"/v1/articles/{article['id']}").status_code == 451
    assert (status, removed) in {("withdrawn", False), ("executing", True)}


def test_concurrent_identical_filings_each_make_their_own_request(
    engine: Engine, settings: Settings, clock: FrozenClock
) -> None:
    # A repeat is a new request (no answer about another one), linked for operators at most
    # to one of the others: never to itself, and never merged.
    body = TakedownIn.model_validate(filing(["https://www.reuters.com/world/unseen"]))

    def filer(address: str) -> Callable[[Any], object]:
        return lambda s: file_takedown(
            session=s, filing=body, client_address=address, settings=settings, now=clock.now()
        )

    results = race(engine, [filer(f"192.0.2.{n}") for n in range(4)])
    assert all(isinstance(r, Filed) for r in results), results
    filed = [r for r in results if isinstance(r, Filed)]
    ids = {r.takedown.id for r in filed}
    assert len(ids) == 4 and len({r.token for r in filed}) == 4
    with new_session(engine) as session:
        stored = session.scalars(select(Takedown)).all()
    assert {t.id for t in stored} == ids
    assert {t.status for t in stored} == {"received"}
    for takedown in stored:
        assert takedown.duplicate_of in ids - {takedown.id} | {None}


def test_concurrent_confirmations_of_one_code_confirm_once(
    engine: Engine, settings: Settings, clock: FrozenClock
) -> None:
    body = TakedownIn.model_validate(filing(["https://www.reuters.com/world/unseen"]))
    with new_session(writer(engine)) as session, session.begin():
        takedown_id = file_takedown(
            session=session,
            filing=body,
            client_address="192.0.2.1",
            settings=settings,
            now=clock.now(),
        ).takedown.id
    code = confirmation_code(engine, takedown_id)
    results = race(
        engine,
        [
            lambda s: confirm_takedown(
                session=s, takedown_id=takedown_id, code=code, settings=settings, now=clock.now()
            )
            for _ in range(4)
        ],
    )
    assert conflicts(results) == 3
    with new_session(engine) as session:
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.takedown_id == takedown_id)  # type: ignore[call-overload,arg-type]
        ).all()
        blocks = session.scalars(select(Block)).all()
    assert actions.count("email_confirmed") == 1 and actions.count("queued") == 1
    assert len(blocks) == 1
    assert load(engine, takedown_id).status == "completed"  # at the domain: nothing to remove


@pytest.mark.parametrize("lifted_first", [False, True])
def test_concurrent_blocks_of_one_url_make_one_active_block(
    engine: Engine, clock: FrozenClock, lifted_first: bool
) -> None:
    key = match_key("https://www.reuters.com/world/unseen")
    if lifted_first:
        with new_session(engine) as session, session.begin():
            block, _ = add_block(
                session=session, kind="url", value=key, takedown_id=None, now=clock.now()
            )
            block.lifted_at = clock.now()
    results = race(
        engine,
        [
            lambda s: add_block(session=s, kind="url", value=key, takedown_id=None, now=clock.now())
            for _ in range(4)
        ],
    )
    assert sum(activated for _, activated in results) == 1  # type: ignore[misc]
    with new_session(engine) as session:
        blocks = session.scalars(select(Block)).all()
    assert len(blocks) == 1 and blocks[0].lifted_at is None


def test_concurrent_filings_over_the_rate_limit_let_exactly_the_limit_through(
    engine: Engine, settings: Settings, clock: FrozenClock
) -> None:
    limited = settings.model_copy(update={"takedown_rate_per_address": "3/hour"})

    def filer(n: int) -> Callable[[Any], object]:
        body = TakedownIn.model_validate(
            filing([f"https://www.reuters.com/world/{n}"], claimant={"email": f"p{n}@reuters.com"})
        )
        return lambda s: file_takedown(
            session=s, filing=body, client_address="192.0.2.1", settings=limited, now=clock.now()
        )

    results = race(engine, [filer(n) for n in range(6)])
    assert sum(isinstance(r, ProblemError) and r.status == 429 for r in results) == 3
    with new_session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Takedown)) == 3
