"""Appeals through the JSON API: a rejected claimant appeals once, within 6 months, with the
request's token; an operator other than the one who rejected it upholds or grants it."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from app.auth import Scope
from app.clock import FrozenClock
from app.config import Settings
from app.db import new_session
from app.notifications.models import EmailKind
from app.takedowns.models import TakedownAppeal
from app.takedowns.policy import appeal_closes_at
from tests.articles.factories import article_payload
from tests.factories import make_key
from tests.notifications.factories import emails
from tests.publishers.factories import mail_written
from tests.takedowns.factories import (
    UNMATCHED,
    assert_problem,
    audit_actions,
    bearer,
    file,
    filing,
    ingest,
    load,
    rejected,
    tick,
)
from tests.workers import run_outside_world

STATEMENT = "Our licence with you ended on 1 March; the letter is attached to our first request."


@pytest.fixture
def other_admin(engine: Engine) -> dict[str, str]:
    return bearer(make_key(engine, Scope.admin, "operator-ben"))


def appeal(client: TestClient, filed: dict[str, Any], **body: Any) -> Any:
    return client.post(
        f"/v1/takedowns/{filed['id']}/appeal",
        json=body or {"statement": STATEMENT},
        headers=bearer(filed["status_token"]),
    )


def test_a_rejected_claimant_appeals_with_the_token_audited_and_acknowledged_by_email(
    client: TestClient, engine: Engine, clock: FrozenClock, admin_headers: dict[str, str]
) -> None:
    filed = rejected(client, admin_headers)
    clock.advance(timedelta(days=3))
    answer = appeal(client, filed)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["status"] == "rejected"
    due = clock.now() + timedelta(days=7)
    assert body["appeal"]["statement"] == STATEMENT
    assert datetime.fromisoformat(body["appeal"]["due_at"]) == due
    assert body["appeal"]["outcome"] is None
    status = client.get(f"/v1/takedowns/{filed['id']}?token={filed['status_token']}")
    assert status.json()["appeal"] == body["appeal"]
    assert ("appeal_filed", "claimant", None, None) in audit_actions(engine, filed["id"])
    [email] = emails(engine, filed["id"], EmailKind.appeal_received)
    assert datetime.fromisoformat(email.context["appeal_due_at"]) == due


def test_the_appeal_deadline_is_the_review_days_setting(
    client: TestClient,
    app: FastAPI,
    settings: Settings,
    clock: FrozenClock,
    admin_headers: dict[str, str],
) -> None:
    app.state.settings = settings.model_copy(update={"appeal_review_days": 3})
    filed = rejected(client, admin_headers)
    body = appeal(client, filed).json()
    assert datetime.fromisoformat(body["appeal"]["due_at"]) == clock.now() + timedelta(days=3)


def test_a_request_that_is_not_rejected_cannot_be_appealed(
    client: TestClient, engine: Engine
) -> None:
    filed = file(client, filing(["https://www.reuters.com/world/x"], claimant=UNMATCHED))
    problem = assert_problem(appeal(client, filed), 409)
    assert "Only a rejected request" in problem["detail"]
    with new_session(engine) as session:
        assert session.scalars(select(TakedownAppeal)).all() == []


def test_a_request_is_appealed_once(
    client: TestClient, engine: Engine, admin_headers: dict[str, str]
) -> None:
    filed = rejected(client, admin_headers)
    assert appeal(client, filed).status_code == 200
    problem = assert_problem(appeal(client, filed, statement="And another thing."), 409)
    assert "appealed already" in problem["detail"]
    assert load(engine, filed["id"]).status == "rejected"
    assert len(emails(engine, filed["id"], EmailKind.appeal_received)) == 1


def test_the_appeal_window_closes_6_calendar_months_after_the_rejection(
    client: TestClient, engine: Engine, clock: FrozenClock, admin_headers: dict[str, str]
) -> None:
    late = rejected(client, admin_headers)
    in_time = rejected(client, admin_headers, ["https://www.reuters.com/world/y"])
    closes_at = appeal_closes_at(clock.now())
    clock.set(closes_at)
    assert appeal(client, in_time).status_code == 200
    clock.advance(timedelta(seconds=1))
    problem = assert_problem(appeal(client, late), 410)
    assert problem["type"].endswith("/appeal-window-closed")
    assert closes_at.isoformat() in problem["detail"]
    assert ("appeal_filed", "claimant", None, None) not in audit_actions(engine, late["id"])


@pytest.mark.parametrize(
    ("rejected_at", "closes_at"),
    [
        (datetime(2026, 1, 15, 9, 30, tzinfo=UTC), datetime(2026, 7, 15, 9, 30, tzinfo=UTC)),
        (datetime(2026, 8, 31, 23, 0, tzinfo=UTC), datetime(2027, 2, 28, 23, 0, tzinfo=UTC)),
        (datetime(2027, 8, 31, 23, 0, tzinfo=UTC), datetime(2028, 2, 29, 23, 0, tzinfo=UTC)),
    ],
)
def test_six_calendar_months_end_on_the_last_day_of_a_shorter_month(
    rejected_at: datetime, closes_at: datetime
) -> None:
    assert appeal_closes_at(rejected_at) == closes_at


@pytest.mark.parametrize("statement", ["", "   ", "x" * 10_001])
def test_an_empty_or_oversized_statement_is_a_422_naming_the_statement(
    client: TestClient, engine: Engine, admin_headers: dict[str, str], statement: str
) -> None:
    filed = rejected(client, admin_headers)
    problem = assert_problem(appeal(client, filed, statement=statement), 422)
    assert [error["field"] for error in problem["errors"]] == ["statement"]
    with new_session(engine) as session:
        assert session.scalars(select(TakedownAppeal)).all() == []


def test_a_wrong_or_missing_token_is_the_same_404_as_the_status_endpoint(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    filed = rejected(client, admin_headers)
    path = f"/v1/takedowns/{filed['id']}"
    wrong = client.post(f"{path}/appeal", json={"statement": STATEMENT}, headers=bearer("nope"))
    missing = client.post(f"{path}/appeal", json={"statement": STATEMENT})
    status = client.get(path, headers=bearer("nope"))
    assert_problem(wrong, 404)
    assert wrong.json() == missing.json() == status.json()


def test_the_key_that_rejected_cannot_decide_the_appeal_another_admin_key_can(
    client: TestClient,
    engine: Engine,
    admin_headers: dict[str, str],
    other_admin: dict[str, str],
) -> None:
    filed = rejected(client, admin_headers)
    appeal(client, filed)
    path = f"/v1/admin/takedowns/{filed['id']}/appeal"
    reasons = {"reason": "The licence letter does not name this article."}
    problem = assert_problem(
        client.post(f"{path}/uphold", json=reasons, headers=admin_headers), 403
    )
    assert problem["type"].endswith("/appeal-same-operator")
    assert_problem(client.post(f"{path}/grant", headers=admin_headers), 403)
    upheld = client.post(f"{path}/uphold", json=reasons, headers=other_admin)
    assert upheld.status_code == 200, upheld.text
    appeal_body = upheld.json()["appeal"]
    assert appeal_body["outcome"] == "upheld" and appeal_body["decided_by"] == "operator-ben"
    assert appeal_body["rejected_by"] == "operator"
    assert load(engine, filed["id"]).status == "rejected"
    assert ("appeal_upheld", "operator-ben", None, None) in audit_actions(engine, filed["id"])
    [email] = emails(engine, filed["id"], EmailKind.appeal_upheld)
    assert email.context["statement_of_reasons"] == reasons["reason"]
    # Decided: final.
    assert_problem(client.post(f"{path}/grant", headers=other_admin), 409)


def test_an_appeal_needs_a_statement_of_reasons_to_be_upheld(
    client: TestClient, admin_headers: dict[str, str], other_admin: dict[str, str]
) -> None:
    filed = rejected(client, admin_headers)
    appeal(client, filed)
    path = f"/v1/admin/takedowns/{filed['id']}/appeal/uphold"
    problem = assert_problem(client.post(path, json={"reason": " "}, headers=other_admin), 422)
    assert [error["field"] for error in problem["errors"]] == ["reason"]


def test_deciding_a_request_without_an_appeal_is_a_404(
    client: TestClient, admin_headers: dict[str, str], other_admin: dict[str, str]
) -> None:
    filed = rejected(client, admin_headers)
    assert_problem(
        client.post(f"/v1/admin/takedowns/{filed['id']}/appeal/grant", headers=other_admin), 404
    )


def test_a_granted_appeal_approves_the_request_and_the_worker_removes_the_article(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    other_admin: dict[str, str],
) -> None:
    article = ingest(client, ingest_headers, 1)
    filed = rejected(client, admin_headers, [article["id"]])
    clock.advance(timedelta(days=10))
    appeal(client, filed)
    clock.advance(timedelta(days=2))
    granted = client.post(
        f"/v1/admin/takedowns/{filed['id']}/appeal/grant",
        json={"reason": "The licence letter settles it."},
        headers=other_admin,
    )
    assert granted.status_code == 200, granted.text
    body = granted.json()
    assert body["status"] == "queued" and body["decision"]["outcome"] == "approved"
    assert body["appeal"]["outcome"] == "granted"
    tick(engine, settings, clock)
    assert client.get(f"/v1/articles/{article['id']}").status_code == 451
    takedown = load(engine, filed["id"])
    assert takedown.status == "completed" and takedown.decided_by == "operator-ben"
    actions = audit_actions(engine, filed["id"])
    assert ("appeal_granted", "operator-ben", None, None) in actions
    assert ("approved", "operator-ben", "rejected", "queued") in actions
    [email] = emails(engine, filed["id"], EmailKind.appeal_granted)
    assert email.context["statement_of_reasons"] == "The licence letter settles it."
    # The appeal's answer is the approval: no second "approved" e-mail.
    assert emails(engine, filed["id"], EmailKind.approved) == []
    # The rejection lifted its block; the approval placed it again.
    again = client.post(
        "/v1/articles",
        json=article_payload(
            1,
            source_url="https://www.reuters.com/world/story-1",
            publisher={"name": "reuters.com", "url": "https://www.reuters.com"},
        ),
        headers=ingest_headers,
    )
    assert again.status_code == 451, again.text
    status = client.get(f"/v1/takedowns/{filed['id']}", headers=bearer(filed["status_token"]))
    assert status.json()["appeal"]["outcome"] == "granted"


def test_the_appeal_emails_say_when_it_is_decided_and_why_the_rejection_stands(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    admin_headers: dict[str, str],
    other_admin: dict[str, str],
) -> None:
    clock.set(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    filed = rejected(client, admin_headers)
    appeal(client, filed)
    client.post(
        f"/v1/admin/takedowns/{filed['id']}/appeal/uphold",
        json={"reason": "The licence letter does not name this article."},
        headers=other_admin,
    )
    for _ in range(4):  # one e-mail of a request at a time, in the order written
        run_outside_world(engine, settings, clock)
    subjects = {message["Subject"]: message for message in mail_written(settings)}
    received = subjects["Your appeal was received: decided by 9 March 2026, 09:00 UTC"]
    assert "9 March 2026" in str(received.get_payload(0))
    upheld = subjects["Your appeal was decided: the rejection stands"]
    assert "does not name this article" in str(upheld.get_payload(0))
    rejection = subjects["Your removal request was rejected"]
    assert "you may appeal once, within 6 months" in str(rejection.get_payload(0))
