"""GET /v1/transparency matches figures computed by hand from a fixed set of requests."""

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.clock import FrozenClock
from app.db import new_session, writer
from app.takedowns.models import AuditEvent
from tests.factories import make_takedown

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def request(
    engine: Engine,
    received: str,
    reason: str,
    status: str,
    *,
    completed_after: timedelta | None = None,
    decided_after: timedelta | None = None,
    escalated: bool = False,
    removed_article: int | None = None,
) -> str:
    """A request as the figures see it; `removed_article` gives it the `removed` audit row
    of a removal it carried out (without one, a completed request removed nothing)."""
    received_at = at(received)
    completed_at = received_at + completed_after if completed_after is not None else None
    takedown_id = make_takedown(
        engine,
        received_at=received_at,
        reason=reason,
        status=status,
        completed_at=completed_at,
        decided_at=received_at + decided_after if decided_after is not None else None,
    )
    events = []
    if escalated:
        events.append(
            AuditEvent(
                at=received_at,
                actor="policy",
                action="escalated",
                takedown_id=takedown_id,
                from_status="received",
                to_status="escalated",
            )
        )
    if removed_article is not None:
        events.append(
            AuditEvent(
                at=completed_at or received_at,
                actor="scheduler",
                action="removed",
                takedown_id=takedown_id,
                article_id=removed_article,
            )
        )
    with new_session(writer(engine)) as session, session.begin():
        session.add_all(events)
    return takedown_id


H = 3600
# Thirteen requests, and what each contributes to the figures at NOW (2026-03-10 12:00).
# (received, reason, status, seconds to completion, seconds to decision, ever escalated,
#  removed an article)
REQUESTS = [
    # January 2026
    ("2026-01-05T09:00", "copyright", "completed", 30, None, False, True),  # A: on time
    ("2026-01-06T10:00", "copyright", "completed", 4 * H, None, False, True),  # B: on time
    ("2026-01-07T00:00", "privacy", "completed", 26 * H, None, False, True),  # C: late, a breach
    ("2026-01-10T12:00", "owner_request", "completed", 1.5 * H, None, True, True),  # D: on time
    ("2026-01-12T08:00", "copyright", "rejected", None, 2 * H, True, False),  # E: answered in time
    ("2026-01-15T08:00", "copyright", "completed", 0, None, False, False),  # L: matched nothing
    ("2026-01-20T08:00", "defamation", "withdrawn", None, None, False, False),  # F
    ("2026-01-30T08:00", "other", "escalated", None, None, False, False),  # G: unanswered, past due
    ("2026-01-31T23:59:59", "copyright", "completed", 86_399, None, False, True),  # K: 1 s inside
    # February 2026
    ("2026-02-01T00:00", "copyright", "completed", 10 * H, None, False, True),  # H: on time
    ("2026-02-14T00:00", "privacy", "rejected", None, 48 * H, True, False),  # J: answered late
    ("2026-02-20T00:00", "owner_request", "completed", 0, None, False, False),  # M: matched nothing
    # March 2026
    ("2026-03-10T00:00", "copyright", "queued", None, None, False, False),  # I: due tomorrow
]  # fmt: skip


@pytest.fixture
def requests(engine: Engine, clock: FrozenClock) -> None:
    clock.set(NOW)
    for n, row in enumerate(REQUESTS, start=1):
        received, reason, status, to_completion, to_decision, escalated, removed = row
        request(
            engine,
            received,
            reason,
            status,
            completed_after=timedelta(seconds=to_completion) if to_completion is not None else None,
            decided_after=timedelta(seconds=to_decision) if to_decision is not None else None,
            escalated=escalated,
            removed_article=n if removed else None,
        )


def outcomes(received: int, completed: int = 0, removed_content: int = 0,
             removed_nothing: int = 0, rejected: int = 0, withdrawn: int = 0,
             escalated: int = 0, open: int = 0) -> dict[str, int]:  # fmt: skip
    assert removed_content + removed_nothing == completed
    return {
        "received": received,
        "completed": completed,
        "removed_content": removed_content,
        "removed_nothing": removed_nothing,
        "rejected": rejected,
        "withdrawn": withdrawn,
        "escalated": escalated,
        "open": open,
    }


@pytest.mark.usefixtures("requests")
def test_all_time_figures_match_the_hand_computed_ones(client: TestClient) -> None:
    response = client.get("/v1/transparency")

    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=60"
    body = response.json()
    assert body["period"] == {"month": None, "received_from": None, "received_before": None}
    assert body["totals"] == outcomes(13, completed=8, removed_content=6, removed_nothing=2,
                                      rejected=2, withdrawn=1, escalated=4, open=2)  # fmt: skip
    assert body["by_reason"] == [
        {"reason": "copyright", **outcomes(7, completed=5, removed_content=4, removed_nothing=1,
                                           rejected=1, escalated=1, open=1)},
        {"reason": "owner_request", **outcomes(2, completed=2, removed_content=1,
                                               removed_nothing=1, escalated=1)},
        {"reason": "privacy", **outcomes(2, completed=1, removed_content=1, rejected=1,
                                         escalated=1)},
        {"reason": "defamation", **outcomes(1, withdrawn=1)},
        {"reason": "other", **outcomes(1, escalated=1, open=1)},
    ]  # fmt: skip
    # Removals only (L and M removed nothing): 30, 5400, 14400, 36000, 86399, 93600. With
    # L's and M's 0 s counted the median would fall to (5,400 + 14,400) / 2 = 9,900.
    assert body["time_to_removal"] == {
        "requests": 6,
        "median_seconds": 25_200.0,  # (14,400 + 36,000) / 2
        "p95_seconds": 93_600.0,  # rank ceil(0.95 * 6) = 6
    }
    # On time A B D H K = 5, over removals 6 + open past due 1 (G); L and M in neither.
    assert body["share_within_24h"] == 5 / 7
    assert body["breaches"] == {
        "total": 3,
        "completed_late": 1,  # C
        "open_past_due": 1,  # G
        "escalations_unanswered": 1,  # G
        "answered_late": 1,  # J
    }
    assert body["generated_at"] == "2026-03-10T12:00:00Z"
    assert "Privata" not in response.text and "claimant" not in response.text


@pytest.mark.usefixtures("requests")
def test_figures_by_month_count_requests_received_in_that_month(client: TestClient) -> None:
    january = client.get("/v1/transparency?month=2026-01").json()
    assert january["period"] == {
        "month": "2026-01",
        "received_from": "2026-01-01T00:00:00Z",
        "received_before": "2026-02-01T00:00:00Z",
    }
    assert january["totals"] == outcomes(9, completed=6, removed_content=5, removed_nothing=1,
                                         rejected=1, withdrawn=1, escalated=3,
                                         open=1)  # fmt: skip
    # Removals sorted: 30, 5400, 14400, 86399, 93600 (L's 0 s left out).
    assert january["time_to_removal"] == {
        "requests": 5,
        "median_seconds": 14_400.0,
        "p95_seconds": 93_600.0,  # rank ceil(0.95 * 5) = 5
    }
    assert january["share_within_24h"] == 4 / 6
    assert january["breaches"]["total"] == 2

    february = client.get("/v1/transparency?month=2026-02").json()
    assert february["totals"] == outcomes(3, completed=2, removed_content=1, removed_nothing=1,
                                          rejected=1, escalated=1)  # fmt: skip
    # H alone: M's 0 s would have made the median 18,000.
    assert february["time_to_removal"] == {
        "requests": 1,
        "median_seconds": 36_000.0,
        "p95_seconds": 36_000.0,
    }
    assert february["share_within_24h"] == 1.0
    assert february["breaches"] == {
        "total": 1,
        "completed_late": 0,
        "open_past_due": 0,
        "escalations_unanswered": 0,
        "answered_late": 1,
    }

    empty = client.get("/v1/transparency?month=2025-12").json()
    assert empty["totals"] == outcomes(0)
    assert empty["time_to_removal"] == {
        "requests": 0,
        "median_seconds": None,
        "p95_seconds": None,
    }
    assert empty["share_within_24h"] is None


@pytest.mark.parametrize("month", ["2026-13", "jan", "2026-1-1", ""])
def test_a_bad_month_is_a_422_naming_the_field(client: TestClient, month: str) -> None:
    response = client.get(f"/v1/transparency?month={month}")
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"] == [
        {"field": "month", "message": "must be a month as YYYY-MM, e.g. 2026-01"}
    ]


def test_the_last_representable_month_is_an_empty_report_not_an_error(
    client: TestClient,
) -> None:
    response = client.get("/v1/transparency?month=9999-12")
    assert response.status_code == 200, response.text
    assert response.json()["totals"]["received"] == 0
