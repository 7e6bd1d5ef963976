"""The claimant follows the request with its token, and may withdraw it before removal.
Without the token a request is indistinguishable from one that does not exist."""

import uuid
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.clock import FrozenClock
from app.config import Settings
from tests.takedowns.factories import (
    assert_problem,
    audit_actions,
    bearer,
    file,
    filing,
    ingest,
    load,
    tick,
)


@pytest.fixture
def filed(client: TestClient, ingest_headers: dict[str, str]) -> dict[str, object]:
    article = ingest(client, ingest_headers)
    # An unmatched claimant: removal waits for the review window.
    return file(client, filing([article["id"]], claimant={"email": "agent@rights.example.org"}))


def test_token_in_query_or_bearer_header_shows_the_request(
    client: TestClient, filed: dict[str, object]
) -> None:
    by_query = client.get(f"/v1/takedowns/{filed['id']}", params={"token": filed["status_token"]})
    by_header = client.get(f"/v1/takedowns/{filed['id']}", headers=bearer(filed["status_token"]))  # type: ignore[arg-type]
    assert by_query.status_code == by_header.status_code == 200
    assert by_query.json() == by_header.json()
    view = by_query.json()
    assert view["status"] == "queued"
    assert view["received_at"] == "2026-01-05T09:00:00Z"
    assert view["due_at"] == "2026-01-06T09:00:00Z"
    assert view["completed_at"] is None and view["decision"] is None
    assert view["targets"] == filed["targets"]
    assert by_query.headers["cache-control"] == "no-store"


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


def test_withdraw_before_removal_cancels_it_and_lifts_the_block(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    filed: dict[str, object],
) -> None:
    url = f"/v1/takedowns/{filed['id']}/withdraw"
    response = client.post(url, headers=bearer(filed["status_token"]))  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "withdrawn"
    assert response.json()["targets"][0]["state"] == "cancelled"
    clock.advance(timedelta(hours=5))
    assert tick(engine, settings, clock).removed == 0
    article_id = response.json()["targets"][0]["article_ids"][0]
    assert client.get(f"/v1/articles/{article_id}").status_code == 200
    assert ingest(client, ingest_headers)["id"] == article_id  # no longer blocked
    assert audit_actions(engine, str(filed["id"]))[-2:] == [
        ("withdrawn", "claimant", "queued", "withdrawn"),
        ("block_lifted", "claimant", None, None),
    ]
    again = client.post(url, headers=bearer(filed["status_token"]))  # type: ignore[arg-type]
    assert_problem(again, 409)


def test_withdraw_after_removal_is_409(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    filed: dict[str, object],
) -> None:
    clock.advance(settings.takedown_review_window)
    assert tick(engine, settings, clock).removed == 1
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
    filed: dict[str, object],
) -> None:
    clock.advance(timedelta(hours=4, minutes=1))
    tick(engine, settings, clock)
    view = client.get(f"/v1/takedowns/{filed['id']}", params={"token": filed["status_token"]})
    assert view.json()["status"] == "completed"
    assert view.json()["completed_at"] == "2026-01-05T13:01:00Z"
    assert view.json()["targets"][0]["state"] == "removed"
