"""Operators list, read, approve, reject and escalate requests; illegal moves are 409."""

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.clock import FrozenClock
from app.config import Settings
from app.db import new_session, writer
from app.takedowns.service import advance_waiting_requests, record_sla_breaches
from tests.takedowns.factories import (
    UNMATCHED,
    assert_problem,
    audit_actions,
    confirm,
    file,
    file_confirmed,
    filing,
    ingest,
    ingest_many,
    load,
    tick,
)


def admin(client: TestClient, headers: dict[str, str], path: str, **kwargs: object):  # type: ignore[no-untyped-def]
    return client.post(f"/v1/admin/takedowns/{path}", headers=headers, **kwargs)  # type: ignore[arg-type]


def test_admin_routes_need_an_admin_key(client: TestClient, ingest_headers: dict[str, str]) -> None:
    for method, path in [
        ("GET", "/v1/admin/takedowns"),
        ("GET", "/v1/admin/takedowns/x"),
        ("POST", "/v1/admin/takedowns/x/approve"),
        ("POST", "/v1/admin/takedowns/x/reject"),
        ("POST", "/v1/admin/takedowns/x/escalate"),
        ("GET", "/v1/admin/audit"),
        ("GET", "/v1/admin/blocks"),
        ("DELETE", "/v1/admin/blocks/1"),
    ]:
        assert_problem(client.request(method, path), 401)
        assert_problem(client.request(method, path, headers=ingest_headers), 403)


def test_detail_has_the_claimant_data_the_proof_and_the_open_removals(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
) -> None:
    article = ingest(client, ingest_headers)
    filed = file(
        client,
        filing([article["id"]], claimant={**UNMATCHED, "role": "agent", "acting_for": "Reuters"}),
    )
    unconfirmed = client.get(f"/v1/admin/takedowns/{filed['id']}", headers=admin_headers).json()
    assert (unconfirmed["status"], unconfirmed["proof"]) == ("received", "unconfirmed")
    assert (unconfirmed["run_at"], unconfirmed["open_removals"]) == (None, 0)
    clock.advance(timedelta(minutes=5))
    confirm(client, engine, filed["id"])
    detail = client.get(f"/v1/admin/takedowns/{filed['id']}", headers=admin_headers).json()
    assert detail["claimant"] == {
        "name": "Priya Claimant-Secret",
        "email": "agent@rights.example.org",
        "organization": "Reuters",
        "role": "agent",
        "acting_for": "Reuters",
    }
    assert detail["explanation"].startswith("Confidential")
    assert detail["status"] == "queued"
    assert (detail["proof"], detail["email_confirmed_at"]) == (
        "confirmed_mailbox",
        "2026-01-05T09:05:00Z",
    )
    assert (detail["publisher_key_id"], detail["duplicate_of"]) == (None, None)
    assert detail["run_at"] == "2026-01-05T13:00:00Z"
    assert detail["open_removals"] == 1
    assert detail["overdue"] is False
    unknown = client.get("/v1/admin/takedowns/nope", headers=admin_headers)
    assert_problem(unknown, 404)


def test_list_filters_by_status_reason_and_overdue_and_pages_with_a_cursor(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
) -> None:
    ids = []
    for n in range(5):
        reason = "privacy" if n % 2 else "copyright"
        body = filing([f"https://www.reuters.com/world/s-{n}"], reason=reason, claimant=UNMATCHED)
        if n == 4:
            body["targets"] = [ingest(client, ingest_headers, 40)["id"]]
        ids.append(file(client, body)["id"])
        clock.advance(timedelta(minutes=1))
    listing = client.get("/v1/admin/takedowns", headers=admin_headers).json()
    assert [t["id"] for t in listing["items"]] == ids  # oldest first
    assert listing["items"][0]["claimant"]["email"] == "agent@rights.example.org"
    privacy = client.get("/v1/admin/takedowns?reason=privacy", headers=admin_headers).json()
    assert [t["id"] for t in privacy["items"]] == [ids[1], ids[3]]
    for n in (0, 2, 4):
        confirm(client, engine, ids[n])

    def with_status(status: str) -> list[str]:
        page = client.get(f"/v1/admin/takedowns?status={status}", headers=admin_headers).json()
        return [t["id"] for t in page["items"]]

    assert with_status("received") == [ids[1], ids[3]]
    # Nothing to remove for 0 and 2 (they matched nothing), but an unmatched mailbox: they
    # stay queued until the review window ends.
    assert with_status("queued") == [ids[0], ids[2], ids[4]]
    clock.advance(settings.takedown_review_window)
    tick(engine, settings, clock)
    assert with_status("completed") == [ids[0], ids[2], ids[4]]
    assert with_status("escalated") == [ids[1], ids[3]]  # never confirmed
    clock.advance(timedelta(hours=24))
    overdue = client.get("/v1/admin/takedowns?overdue=true", headers=admin_headers).json()
    assert [t["id"] for t in overdue["items"]] == [ids[1], ids[3]]
    assert overdue["items"][0]["overdue"] is True
    on_time = client.get("/v1/admin/takedowns?overdue=false", headers=admin_headers).json()
    assert [t["id"] for t in on_time["items"]] == [ids[0], ids[2], ids[4]]
    seen: list[str] = []
    url = "/v1/admin/takedowns?limit=2"
    while url:
        page = client.get(url, headers=admin_headers)
        seen += [t["id"] for t in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor:
            assert page.headers["link"].endswith('rel="next"')
        url = f"/v1/admin/takedowns?limit=2&cursor={cursor}" if cursor else ""
    assert seen == ids


def test_tampered_cursor_is_400(client: TestClient, admin_headers: dict[str, str]) -> None:
    for path in ("/v1/admin/takedowns", "/v1/admin/audit", "/v1/admin/blocks"):
        assert_problem(client.get(f"{path}?cursor=AAAAbogus", headers=admin_headers), 400)


def test_approving_an_escalated_request_runs_it_now_and_blocks(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
) -> None:
    article = ingest(client, ingest_headers, host="www.bbc.co.uk")
    filed = file(client, filing(domain="bbc.co.uk", claimant={"email": "x@evil.co.uk"}))
    assert filed["status"] == "escalated"
    clock.advance(timedelta(hours=2))
    # Ingested while escalated (no block yet): the approval picks it up too.
    late = ingest(client, ingest_headers, 2, host="news.bbc.co.uk")
    response = admin(client, admin_headers, f"{filed['id']}/approve")
    assert response.status_code == 200, response.text
    detail = response.json()
    assert detail["status"] == "queued"
    assert detail["decision"]["outcome"] == "approved"
    assert detail["decided_by"] == "operator"
    assert detail["targets"][0]["article_ids"] == [article["id"], late["id"]]
    assert tick(engine, settings, clock).of("removal")["removed"] == 2
    assert load(engine, filed["id"]).status == "completed"
    blocked = client.post(
        "/v1/articles",
        json={**_payload("https://www.bbc.co.uk/new")},
        headers=ingest_headers,
    )
    assert blocked.status_code == 451
    actions = [a[:2] for a in audit_actions(engine, filed["id"])]
    assert actions[:3] == [("filed", "claimant"), ("escalated", "policy"), ("approved", "operator")]
    assert ("blocked", "operator") in actions
    assert actions[-1] == ("completed", "scheduler")


def _payload(url: str) -> dict[str, object]:
    from tests.articles.factories import article_payload

    return article_payload(7, source_url=url)


@pytest.mark.parametrize("confirmed", [True, False])
def test_approving_during_the_review_window_runs_it_at_once_confirmed_or_not(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    confirmed: bool,
) -> None:
    article = ingest(client, ingest_headers)
    body = filing([article["id"]], claimant=UNMATCHED)
    filed = file_confirmed(client, engine, body) if confirmed else file(client, body)
    assert filed["status"] == ("queued" if confirmed else "received")
    assert tick(engine, settings, clock).of("removal")["removed"] == 0
    admin(client, admin_headers, f"{filed['id']}/approve")
    assert tick(engine, settings, clock).of("removal")["removed"] == 1
    assert client.get(f"/v1/articles/{article['id']}").status_code == 451


def test_rejecting_needs_a_statement_of_reasons(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
) -> None:
    filed = file(client, filing([ingest(client, ingest_headers)["id"]], claimant=UNMATCHED))
    for body in (None, {}, {"reason": ""}, {"reason": "   "}):
        assert_problem(admin(client, admin_headers, f"{filed['id']}/reject", json=body), 422)
    assert load(engine, filed["id"]).status == "received"


def test_rejecting_cancels_the_removal_and_lifts_the_blocks(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
) -> None:
    article = ingest(client, ingest_headers)
    filed = file_confirmed(
        client,
        engine,
        filing([article["id"], "https://www.reuters.com/unseen"], claimant=UNMATCHED),
    )
    # Its review window ends and it takes effect (the sweep of the scheduler's tick); the
    # operator rejects it before its removal has run.
    assert client.get("/v1/admin/blocks", headers=admin_headers).json()["items"] == []
    with new_session(writer(engine)) as session, session.begin():
        moved = advance_waiting_requests(
            session=session, settings=settings, now=clock.advance(settings.takedown_review_window)
        )
    assert moved == 1
    blocks = client.get("/v1/admin/blocks?active=true", headers=admin_headers).json()["items"]
    assert sorted(b["value"] for b in blocks) == [
        "reuters.com/unseen",
        "reuters.com/world/story-1",
    ]
    response = admin(client, admin_headers, f"{filed['id']}/reject", json={"reason": "Spam."})
    assert response.status_code == 200
    assert [t["state"] for t in response.json()["targets"]] == ["cancelled", "cancelled"]
    clock.advance(timedelta(hours=5))
    assert tick(engine, settings, clock).of("removal")["removed"] == 0
    assert client.get(f"/v1/articles/{article['id']}").status_code == 200
    assert client.get("/v1/admin/blocks?active=true", headers=admin_headers).json()["items"] == []
    assert (
        client.post(
            "/v1/articles", json=_payload("https://www.reuters.com/unseen"), headers=ingest_headers
        ).status_code
        == 201
    )


def test_block_held_by_two_requests_survives_when_one_is_rejected(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
) -> None:
    url = "https://www.reuters.com/unseen"
    article = ingest(client, ingest_headers)
    spam = file_confirmed(client, engine, filing([article["id"], url], claimant=UNMATCHED))
    genuine = file_confirmed(client, engine, filing(["http://reuters.com/unseen/"]))
    # Nothing to remove and a mailbox at the domain: the block is all it asks, at once.
    assert genuine["status"] == "completed"
    rejected = admin(client, admin_headers, f"{spam['id']}/reject", json={"reason": "Spam."})
    assert rejected.status_code == 200
    blocks = client.get("/v1/admin/blocks?active=true", headers=admin_headers).json()["items"]
    assert [(b["value"], b["takedown_id"]) for b in blocks] == [
        ("reuters.com/unseen", genuine["id"])
    ]
    assert (
        client.post("/v1/articles", json=_payload(url), headers=ingest_headers).status_code == 451
    )


def test_escalating_holds_the_removal_until_approved(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
) -> None:
    article = ingest(client, ingest_headers)
    filed = file_confirmed(client, engine, filing([article["id"]], claimant=UNMATCHED))
    assert filed["status"] == "queued"  # its removal would run when the review window ends
    response = admin(
        client, admin_headers, f"{filed['id']}/escalate", json={"reason": "Check the licence."}
    )
    assert response.json()["status"] == "escalated"
    assert response.json()["escalation_reasons"] == ["Check the licence."]
    clock.advance(timedelta(hours=5))
    assert tick(engine, settings, clock).of("removal")["removed"] == 0
    admin(client, admin_headers, f"{filed['id']}/approve")
    assert tick(engine, settings, clock).of("removal")["removed"] == 1


@pytest.mark.parametrize(
    ("setup", "action", "body"),
    [
        ("completed", "reject", {"reason": "Too late."}),
        ("completed", "approve", None),
        ("completed", "escalate", None),
        ("withdrawn", "approve", None),
        ("withdrawn", "reject", {"reason": "No."}),
        ("approved", "reject", {"reason": "Changed my mind."}),
        ("approved", "approve", None),
        ("approved", "escalate", None),
        ("rejected", "approve", None),
        ("rejected", "escalate", None),
        ("escalated", "escalate", None),
    ],
)
def test_illegal_transitions_are_409_and_change_nothing(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    setup: str,
    action: str,
    body: dict[str, str] | None,
) -> None:
    article = ingest(client, ingest_headers)
    filed = file_confirmed(client, engine, filing([article["id"]], claimant=UNMATCHED))
    takedown_id = filed["id"]
    if setup == "completed":
        clock.advance(timedelta(hours=4))
        tick(engine, settings, clock)
    elif setup == "withdrawn":
        client.post(f"/v1/takedowns/{takedown_id}/withdraw?token={filed['status_token']}")
    elif setup == "approved":
        admin(client, admin_headers, f"{takedown_id}/approve")
    elif setup == "rejected":
        admin(client, admin_headers, f"{takedown_id}/reject", json={"reason": "No."})
    elif setup == "escalated":
        admin(client, admin_headers, f"{takedown_id}/escalate")
    before = load(engine, takedown_id)
    events = audit_actions(engine, takedown_id)
    assert_problem(admin(client, admin_headers, f"{takedown_id}/{action}", json=body), 409)
    after = load(engine, takedown_id)
    assert (after.status, after.decision, after.run_at) == (
        before.status,
        before.decision,
        before.run_at,
    )
    assert audit_actions(engine, takedown_id) == events


def test_decisions_on_unknown_requests_are_404(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    for action in ("approve", "escalate"):
        assert_problem(admin(client, admin_headers, f"no-such-id/{action}"), 404)
    assert_problem(admin(client, admin_headers, "no-such-id/reject", json={"reason": "x"}), 404)


def test_unanswered_escalation_becomes_a_recorded_breach_not_a_deletion(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
) -> None:
    ids = ingest_many(client, ingest_headers, 26)
    filed = file(client, filing(ids))
    assert filed["status"] == "escalated"
    clock.advance(timedelta(hours=23, minutes=59))
    with new_session(engine) as session, session.begin():
        assert record_sla_breaches(session=session, now=clock.now()) == 0
    clock.advance(timedelta(minutes=2))
    with new_session(engine) as session, session.begin():
        assert record_sla_breaches(session=session, now=clock.now()) == 1
    with new_session(engine) as session, session.begin():
        assert record_sla_breaches(session=session, now=clock.now()) == 0  # recorded once
    tick(engine, settings, clock)
    assert all(client.get(f"/v1/articles/{i}").status_code == 200 for i in ids)
    detail = client.get(f"/v1/admin/takedowns/{filed['id']}", headers=admin_headers).json()
    assert detail["breached_at"] == "2026-01-06T09:01:00Z"
    assert detail["overdue"] is True
    assert audit_actions(engine, filed["id"])[-1][:2] == ("sla_breached", "policy")
    # Deciding late does not record it twice.
    admin(client, admin_headers, f"{filed['id']}/reject", json={"reason": "Mass request."})
    assert [a[0] for a in audit_actions(engine, filed["id"])].count("sla_breached") == 1


def test_late_decision_records_the_breach(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
) -> None:
    filed = file(client, filing(domain="bbc.co.uk", claimant={"email": "x@evil.co.uk"}))
    clock.advance(timedelta(hours=30))
    admin(client, admin_headers, f"{filed['id']}/approve")
    takedown = load(engine, filed["id"])
    assert takedown.breached_at == clock.now()
    assert takedown.status == "completed"  # nothing to remove; the domain is blocked now
