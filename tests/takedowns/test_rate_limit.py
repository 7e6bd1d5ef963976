"""Filing is rate limited per client address and per claimant e-mail, in the database, so
that every API process shares the counts. The clock moves; nothing sleeps."""

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from app.clock import FrozenClock
from app.config import Settings
from app.db import create_db_engine, new_session
from app.main import create_app
from app.takedowns.models import RateLimitCounter, Takedown
from tests.takedowns.factories import CLAIMANT_EMAIL, assert_problem, file, filing


@pytest.fixture
def limited_app(settings: Settings, engine: Engine, clock: FrozenClock) -> FastAPI:
    limited = settings.model_copy(
        update={"takedown_rate_per_address": "3/hour", "takedown_rate_per_email": "2/minute"}
    )
    return create_app(limited, engine=engine, clock=clock)


def client_from(app: FastAPI, address: str) -> TestClient:
    return TestClient(app, client=(address, 40000), raise_server_exceptions=False)


@pytest.fixture
def limited(limited_app: FastAPI) -> Iterator[TestClient]:
    with client_from(limited_app, "198.51.100.7") as client:
        yield client


def body(n: int, email: str | None = None) -> dict[str, object]:
    return filing(
        [f"https://www.reuters.com/world/story-{n}"],
        claimant={"email": email or f"person{n}@reuters.com"},
    )


def requests_stored(engine: Engine) -> int:
    with new_session(engine) as session:
        return session.scalar(select(func.count()).select_from(Takedown)) or 0


def test_address_over_its_limit_gets_429_with_retry_after_and_nothing_is_stored(
    limited: TestClient, engine: Engine, clock: FrozenClock
) -> None:
    clock.set(clock.now() + timedelta(minutes=20))  # 09:20: 40 minutes left in the window
    for n in range(3):
        file(limited, body(n))
    response = limited.post("/v1/takedowns", json=body(3))
    problem = assert_problem(response, 429)
    assert problem["type"].endswith("/rate-limited")
    assert response.headers["retry-after"] == str(40 * 60)
    assert requests_stored(engine) == 3


def test_limit_resets_when_the_window_ends(limited: TestClient, clock: FrozenClock) -> None:
    for n in range(3):
        file(limited, body(n))
    assert_problem(limited.post("/v1/takedowns", json=body(3)), 429)
    clock.advance(timedelta(hours=1))
    file(limited, body(4))


def test_another_address_has_its_own_count(limited: TestClient, limited_app: FastAPI) -> None:
    for n in range(3):
        file(limited, body(n))
    with client_from(limited_app, "203.0.113.9") as other:
        file(other, body(5))


def test_one_email_over_its_limit_is_429_from_any_address(
    limited: TestClient, limited_app: FastAPI, clock: FrozenClock
) -> None:
    file(limited, body(1, CLAIMANT_EMAIL))
    file(limited, body(2, CLAIMANT_EMAIL))
    with client_from(limited_app, "203.0.113.10") as other:
        response = other.post("/v1/takedowns", json=body(3, CLAIMANT_EMAIL.upper()))
        assert_problem(response, 429)
        assert response.headers["retry-after"] == "60"
        clock.advance(timedelta(minutes=1))
        file(other, body(3, CLAIMANT_EMAIL))


def test_duplicates_count_but_invalid_filings_do_not(limited: TestClient, engine: Engine) -> None:
    for _ in range(5):
        assert_problem(limited.post("/v1/takedowns", json={**body(1), "accurate": False}), 422)
    file(limited, body(1))
    file(limited, body(1), expect=200)  # the duplicate answer counts as an attempt
    file(limited, body(2))
    assert_problem(limited.post("/v1/takedowns", json=body(3)), 429)
    assert requests_stored(engine) == 2


def test_counters_hold_hashes_never_addresses_or_emails(
    limited: TestClient, engine: Engine
) -> None:
    file(limited, body(1, CLAIMANT_EMAIL))
    with new_session(engine) as session:
        rows = session.scalars(select(RateLimitCounter)).all()
    assert len(rows) == 2
    stored = " ".join(f"{row.key} {row.count}" for row in rows)
    assert "198.51.100.7" not in stored and "reuters" not in stored
    assert all(len(row.key) == 64 for row in rows)


def test_two_api_processes_share_one_count(
    settings: Settings, database_url: str, engine: Engine, clock: FrozenClock
) -> None:
    # `engine` (unused here) makes the harness empty the tables afterwards.
    limited = settings.model_copy(update={"takedown_rate_per_address": "3/hour"})
    engines = [create_db_engine(database_url) for _ in range(2)]
    try:
        first, second = (create_app(limited, engine=own, clock=clock) for own in engines)
        with client_from(first, "198.51.100.7") as a, client_from(second, "198.51.100.7") as b:
            file(a, body(1))
            file(b, body(2))
            file(a, body(3))
            assert_problem(b.post("/v1/takedowns", json=body(4)), 429)
    finally:
        for own in engines:
            own.dispose()
