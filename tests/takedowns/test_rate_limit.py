"""Filing is rate limited per client address and per targeted domain, confirmation per
mailbox (never the e-mail someone typed: nobody can lock a rights holder out by filing in
their name), in the database, so that every API process shares the counts. The clock
moves; nothing sleeps."""

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import Engine, select

from app.clock import FrozenClock
from app.config import Settings
from app.db import create_db_engine, new_session
from app.main import create_app
from app.takedowns.models import RateLimitCounter, Takedown
from tests.factories import row_count
from tests.takedowns.factories import (
    CLAIMANT_EMAIL,
    assert_problem,
    client_from,
    confirmation_code,
    file,
    filing,
)


@pytest.fixture
def limited_app(settings: Settings, engine: Engine, clock: FrozenClock) -> FastAPI:
    limited = settings.model_copy(
        update={
            "takedown_rate_per_address": "3/hour",
            "takedown_rate_per_domain": "5/hour",
            "takedown_rate_per_email": "2/minute",
        }
    )
    return create_app(limited, engine=engine, clock=clock)


@pytest.fixture
def limited(limited_app: FastAPI) -> Iterator[TestClient]:
    with client_from(limited_app, "198.51.100.7") as client:
        yield client


def body(n: int, email: str | None = None) -> dict[str, object]:
    return filing(
        [f"https://www.reuters.com/world/story-{n}"],
        claimant={"email": email or f"person{n}@agency.example"},
    )


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
    assert row_count(engine, Takedown) == 3


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


def post_confirm(client: TestClient, engine: Engine, takedown_id: str) -> Response:
    code = confirmation_code(engine, takedown_id)
    return client.post(f"/v1/takedowns/{takedown_id}/confirm", json={"code": code})


def test_filings_in_one_name_from_other_addresses_are_not_limited_by_the_email(
    limited: TestClient, limited_app: FastAPI
) -> None:
    # More filings in the rights holder's name than the e-mail limit (2/minute), by a stranger...
    file(limited, body(1, CLAIMANT_EMAIL))
    file(limited, body(2, CLAIMANT_EMAIL))
    file(limited, body(3, CLAIMANT_EMAIL.upper()))
    # ...do not lock the rights holder out: their own filing is accepted.
    with client_from(limited_app, "203.0.113.10") as owner:
        file(owner, body(4, CLAIMANT_EMAIL))


def test_confirmations_over_the_mailbox_limit_are_429_however_the_address_is_spelled(
    limited: TestClient, limited_app: FastAPI, engine: Engine, clock: FrozenClock
) -> None:
    ids = [file(limited, body(1, CLAIMANT_EMAIL))["id"]]
    with client_from(limited_app, "203.0.113.10") as other:
        ids += [
            file(other, body(n, email))["id"]
            for n, email in ((2, "Legal+a@reuters.com"), (3, "legal+b@REUTERS.com"))
        ]
    assert post_confirm(limited, engine, ids[0]).status_code == 200
    assert post_confirm(limited, engine, ids[1]).status_code == 200
    response = post_confirm(limited, engine, ids[2])
    assert_problem(response, 429)
    assert response.headers["retry-after"] == "60"
    with new_session(engine) as session:
        takedown = session.get(Takedown, ids[2])
        assert takedown is not None and takedown.email_confirmed_at is None
    # The link keeps working once the window ends.
    clock.advance(timedelta(minutes=1))
    assert post_confirm(limited, engine, ids[2]).status_code == 200


def test_filings_count_against_each_targeted_domain_from_any_address(
    limited_app: FastAPI, engine: Engine
) -> None:
    for n in range(5):
        with client_from(limited_app, f"198.51.100.{n + 10}") as client:
            file(client, body(n))
    with client_from(limited_app, "198.51.100.99") as client:
        response = client.post("/v1/takedowns", json=body(5))
        problem = assert_problem(response, 429)
        assert "reuters.com" in problem["detail"]
        # Another domain has its own count.
        file(
            client,
            filing(["https://apnews.com/article/x"], claimant={"email": "a@agency.example"}),
        )
    assert row_count(engine, Takedown) == 6


def test_duplicates_count_as_filings_but_invalid_filings_do_not(
    limited: TestClient, engine: Engine
) -> None:
    for _ in range(5):
        assert_problem(limited.post("/v1/takedowns", json={**body(1), "accurate": False}), 422)
    file(limited, body(1))
    file(limited, body(1))  # a repeat is a new filing (202), and counts like one
    file(limited, body(2))
    assert_problem(limited.post("/v1/takedowns", json=body(3)), 429)
    assert row_count(engine, Takedown) == 3


def test_counters_hold_hashes_never_addresses_domains_or_emails(
    limited: TestClient, engine: Engine
) -> None:
    filed = file(limited, body(1))
    assert post_confirm(limited, engine, filed["id"]).status_code == 200
    with new_session(engine) as session:
        rows = session.scalars(select(RateLimitCounter)).all()
    assert len(rows) == 3  # the address and the domain filed, the mailbox confirmed
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
