"""The claimant confirms the address with the e-mailed code, follows the request with its
token, and may withdraw it before removal. Without the token (or the code) a request is
indistinguishable from one that does not exist."""

import uuid
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.auth import Scope
from app.clock import FrozenClock
from app.config import Settings
from tests.factories import make_key
from tests.takedowns.factories import (
    assert_problem,
    audit_actions,
    bearer,
    confirm,
    confirmation_code,
    file,
    filing,
    ingest,
    load,
    tick,
)


@pytest.fixture
def filed(client: TestClient, ingest_headers: dict[str, str]) -> dict[str, object]:
    article = ingest(client, ingest_headers)
    # An unmatched claimant, not confirmed yet: nothing runs until the address is confirmed,
    # and then removal waits for the review window.
    return file(client, filing([article["id"]], claimant={"email": "agent@rights.example.org"}))


@pytest.fixture
def confirmed(client: TestClient, engine: Engine, filed: dict[str, object]) -> dict[str, object]:
    view = confirm(client, engine, str(filed["id"]))
    assert view["status"] == "queued"
    return filed


def test_token_in_query_or_bearer_header_shows_the_request(
    client: TestClient, filed: dict[str, object]
) -> None:
    by_query = client.get(f"/v1/takedowns/{filed['id']}", params={"token": filed["status_token"]})
    by_header = client.get(f"/v1/takedowns/{filed['id']}", headers=bearer(filed["status_token"]))  # type: ignore[arg-type]
    assert by_query.status_code == by_header.status_code == 200
    assert by_query.json() == by_header.json()
    view = by_query.json()
    assert view["status"] == "received"
    assert (view["proof"], view["email_confirmed_at"], view["run_at"]) == (
        "unconfirmed",
        None,
        None,
    )
    assert view["received_at"] == "2026-01-05T09:00:00Z"
    assert view["due_at"] == "2026-01-06T09:00:00Z"
    assert view["completed_at"] is None and view["decision"] is None
    assert view["targets"] == filed["targets"]
    assert by_query.headers["cache-control"] == "no-store"


def test_confirming_the_address_shows_the_proof_and_when_removal_runs(
    client: TestClient, engine: Engine, clock: FrozenClock, filed: dict[str, object]
) -> None:
    clock.advance(timedelta(minutes=7))
    response = client.post(
        f"/v1/takedowns/{filed['id']}/confirm",
        json={"code": confirmation_code(engine, str(filed["id"]))},
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    confirmed = response.json()
    view = client.get(f"/v1/takedowns/{filed['id']}", params={"token": filed["status_token"]})
    assert view.json() == confirmed
    assert confirmed["status"] == "queued"
    assert confirmed["proof"] == "confirmed_mailbox"
    assert confirmed["email_confirmed_at"] == "2026-01-05T09:07:00Z"
    # Not at the domain of its targets: the review window, counted from receipt.
    assert confirmed["run_at"] == "2026-01-05T13:00:00Z"
    assert audit_actions(engine, str(filed["id"]))[1:3] == [
        ("email_confirmed", "claimant", None, None),
        ("queued", "policy", "received", "queued"),
    ]


def test_wrong_or_foreign_code_or_unknown_id_is_the_same_404_and_confirms_nothing(
    client: TestClient, engine: Engine, filed: dict[str, object]
) -> None:
    other = file(client, filing(["https://www.reuters.com/world/other"]))
    foreign = confirmation_code(engine, other["id"])
    answers = [
        client.post(f"/v1/takedowns/{filed['id']}/confirm", json={"code": "guess"}),
        client.post(f"/v1/takedowns/{filed['id']}/confirm", json={"code": foreign}),
        client.post(f"/v1/takedowns/{filed['id']}/confirm", json={"code": filed["status_token"]}),
        client.post(f"/v1/takedowns/{uuid.uuid4()}/confirm", json={"code": foreign}),
    ]
    for response in answers:
        assert_problem(response, 404)
    assert len({r.text for r in answers}) == 1
    for takedown_id in (filed["id"], other["id"]):
        stored = load(engine, str(takedown_id))
        assert (stored.status, stored.email_confirmed_at) == ("received", None)


def test_a_used_code_is_409_and_a_code_past_the_deadline_is_410(
    client: TestClient, engine: Engine, clock: FrozenClock, filed: dict[str, object]
) -> None:
    code = confirmation_code(engine, str(filed["id"]))
    url = f"/v1/takedowns/{filed['id']}/confirm"
    assert client.post(url, json={"code": code}).status_code == 200
    assert_problem(client.post(url, json={"code": code}), 409)
    late = file(client, filing(["https://www.reuters.com/world/late"]))
    late_code = confirmation_code(engine, late["id"])
    clock.advance(timedelta(hours=24))
    assert_problem(
        client.post(f"/v1/takedowns/{late['id']}/confirm", json={"code": late_code}), 410
    )
    assert load(engine, late["id"]).email_confirmed_at is None


def test_confirming_a_withdrawn_request_is_409(
    client: TestClient, engine: Engine, filed: dict[str, object]
) -> None:
    code = confirmation_code(engine, str(filed["id"]))
    client.post(f"/v1/takedowns/{filed['id']}/withdraw", params={"token": filed["status_token"]})
    assert_problem(client.post(f"/v1/takedowns/{filed['id']}/confirm", json={"code": code}), 409)
    assert load(engine, str(filed["id"])).status == "withdrawn"


def test_wrong_token_and_unknown_id_answer_the_same_404(
    client: TestClient, filed: dict[str, object]
) -> None:
    answers = [
        client.get(f"/v1/takedowns/{filed['id']}", params={"token": "guess"}),
        client.get(f"/v1/takedowns/{filed['id']}", headers=bearer("guess")),
        client.get(f"/v1/takedowns/{filed['id']}"),
        client.get(f"/v1/takedowns/{uuid.uuid4()}", params={"token": filed["status_token"]}),
        client.get("/v1/takedowns/1", params={"token": filed["status_token"]}),
        client.get(f"/v1/takedowns/{'x' * 500}", params={"token": "guess"}),
    ]
    for response in answers:
        assert_problem(response, 404)
    assert len({(r.text, r.headers.get("content-length")) for r in answers}) == 1


def test_token_of_one_request_does_not_open_another(
    client: TestClient, ingest_headers: dict[str, str], filed: dict[str, object]
) -> None:
    other = file(client, filing(["https://www.reuters.com/world/other"]))
    response = client.get(f"/v1/takedowns/{other['id']}", params={"token": filed["status_token"]})
    assert_problem(response, 404)
    withdraw = client.post(
        f"/v1/takedowns/{other['id']}/withdraw", params={"token": filed["status_token"]}
    )
    assert_problem(withdraw, 404)


def test_withdrawing_an_unconfirmed_request_cancels_it_with_no_block_to_lift(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    filed: dict[str, object],
) -> None:
    response = client.post(
        f"/v1/takedowns/{filed['id']}/withdraw", params={"token": filed["status_token"]}
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "withdrawn"
    assert response.json()["targets"][0]["state"] == "cancelled"
    clock.advance(timedelta(hours=5))
    tick(engine, settings, clock)
    assert load(engine, str(filed["id"])).status == "withdrawn"  # not escalated afterwards
    assert audit_actions(engine, str(filed["id"])) == [
        ("filed", "claimant", None, "received"),
        ("withdrawn", "claimant", "received", "withdrawn"),
    ]


def test_withdraw_before_removal_cancels_it_and_nothing_it_named_was_blocked(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    confirmed: dict[str, object],
) -> None:
    filed = confirmed
    url = f"/v1/takedowns/{filed['id']}/withdraw"
    response = client.post(url, headers=bearer(filed["status_token"]))  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "withdrawn"
    assert response.json()["targets"][0]["state"] == "cancelled"
    clock.advance(timedelta(hours=5))
    assert tick(engine, settings, clock).of("removal")["removed"] == 0
    article_id = response.json()["targets"][0]["article_ids"][0]
    assert client.get(f"/v1/articles/{article_id}").status_code == 200
    assert ingest(client, ingest_headers)["id"] == article_id  # never blocked
    actions = audit_actions(engine, str(filed["id"]))
    assert actions[-1] == ("withdrawn", "claimant", "queued", "withdrawn")
    assert not [action for action in actions if action[0] in ("blocked", "block_lifted")]
    again = client.post(url, headers=bearer(filed["status_token"]))  # type: ignore[arg-type]
    assert_problem(again, 409)


def test_withdraw_after_removal_is_409(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    confirmed: dict[str, object],
) -> None:
    filed = confirmed
    clock.advance(settings.takedown_review_window)
    assert tick(engine, settings, clock).of("removal")["removed"] == 1
    response = client.post(
        f"/v1/takedowns/{filed['id']}/withdraw", params={"token": filed["status_token"]}
    )
    assert_problem(response, 409)
    assert load(engine, str(filed["id"])).status == "completed"


def test_claimant_sees_the_rejection_and_its_statement_of_reasons(
    client: TestClient, admin_headers: dict[str, str], filed: dict[str, object]
) -> None:
    client.post(
        f"/v1/admin/takedowns/{filed['id']}/reject",
        json={"reason": "The article quotes a public court record; no rights are infringed."},
        headers=admin_headers,
    )
    view = client.get(f"/v1/takedowns/{filed['id']}", params={"token": filed["status_token"]})
    body = view.json()
    assert body["status"] == "rejected"
    assert body["decision"] == {
        "outcome": "rejected",
        "statement_of_reasons": "The article quotes a public court record; no rights are "
        "infringed.",
        "decided_at": "2026-01-05T09:00:00Z",
    }
    assert "operator" not in view.text  # the operator's key name is internal


def test_claimant_sees_completion(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    confirmed: dict[str, object],
) -> None:
    filed = confirmed
    clock.advance(timedelta(hours=4, minutes=1))
    tick(engine, settings, clock)
    view = client.get(f"/v1/takedowns/{filed['id']}", params={"token": filed["status_token"]})
    assert view.json()["status"] == "completed"
    assert view.json()["completed_at"] == "2026-01-05T13:01:00Z"
    assert view.json()["targets"][0]["state"] == "removed"


def test_a_request_without_a_confirmation_code_cannot_be_confirmed(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine, clock: FrozenClock
) -> None:
    # A publisher key's filing needs no confirmation (nor do requests filed before it
    # existed): no code, however guessed, confirms it.
    article = ingest(client, ingest_headers)
    key = make_key(engine, Scope.publisher, "reuters", domain="reuters.com")
    response = client.post("/v1/takedowns", json=filing([article["id"]]), headers=bearer(key))
    assert response.status_code == 202, response.text
    filed = response.json()
    assert filed["confirmation"] == "not_needed"
    for code in ("no such request", "guess", filed["status_token"]):
        confirming = client.post(f"/v1/takedowns/{filed['id']}/confirm", json={"code": code})
        assert_problem(confirming, 404)
    assert load(engine, filed["id"]).email_confirmed_at is None
    assert "email_confirmed" not in [a[0] for a in audit_actions(engine, filed["id"])]
