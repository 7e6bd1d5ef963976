"""Filing a takedown: the 202 answer, what targets resolve to, and refusals that store nothing."""

import uuid
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import Engine, func, select

from app.auth import hash_secret
from app.clock import FrozenClock
from app.config import Settings
from app.db import new_session
from app.takedowns.models import AuditEvent, Block, Takedown, TakedownTarget
from tests.articles.factories import article_payload
from tests.takedowns.factories import (
    assert_problem,
    audit_actions,
    confirm,
    confirmation_code,
    file,
    filing,
    ingest,
    ingest_many,
    load,
    tick,
)


def stored_rows(engine: Engine) -> int:
    with new_session(engine) as session:
        return sum(
            session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Takedown, TakedownTarget, AuditEvent, Block)
        )


def test_filing_answers_202_received_with_id_token_and_24_hour_due_date(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
) -> None:
    article = ingest(client, ingest_headers)
    response = client.post("/v1/takedowns", json=filing([article["id"]]))
    assert response.status_code == 202, response.text
    body = response.json()
    assert uuid.UUID(body["id"]).version == 4
    assert body["received_at"] == "2026-01-05T09:00:00Z"
    assert body["due_at"] == "2026-01-06T09:00:00Z"
    # Even at the domain of its targets: nothing happens on an address someone typed.
    assert body["status"] == "received"
    assert body["confirmation"] == "emailed"
    assert len(body["status_token"]) >= 40
    assert body["status_url"] == (
        f"https://news.example/v1/takedowns/{body['id']}?token={body['status_token']}"
    )
    assert "duplicate" not in body
    assert body["targets"] == [
        {
            "input": str(article["id"]),
            "article_ids": [article["id"]],
            "matched": True,
            "closest": None,
            "state": "pending",
        }
    ]
    assert response.headers["cache-control"] == "no-store"
    stored = load(engine, body["id"])
    assert stored.token_hash == hash_secret(body["status_token"])
    assert body["status_token"] not in str(vars(stored))
    # The receipt carries the code until it is sent; the request keeps only its hash.
    code = confirmation_code(engine, body["id"])
    assert len(code) >= 22  # 128 bits and more, URL-safe
    assert stored.confirmation_hash == hash_secret(code)
    assert code not in str(vars(stored))
    assert (stored.email_confirmed_at, stored.run_at) == (None, None)
    with new_session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Block)) == 0
    assert tick(engine, settings, clock).of("removal")["removed"] == 0
    assert client.get(f"/v1/articles/{article['id']}").status_code == 200


def test_ids_are_random_not_a_sequence(client: TestClient, ingest_headers: dict[str, str]) -> None:
    article = ingest(client, ingest_headers)
    ids = [
        file(client, filing([article["id"]], claimant={"email": f"legal{n}@reuters.com"}))["id"]
        for n in range(3)
    ]
    assert len(set(ids)) == 3
    assert all(uuid.UUID(i).version == 4 for i in ids)


def test_due_at_is_fixed_at_receipt_and_never_moves(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    clock: FrozenClock,
) -> None:
    article = ingest(client, ingest_headers)
    body = file(client, filing([article["id"]], claimant={"email": "someone@other.org"}))
    clock.advance(timedelta(hours=3))
    client.post(f"/v1/admin/takedowns/{body['id']}/escalate", headers=admin_headers)
    clock.advance(timedelta(hours=3))
    detail = client.get(f"/v1/admin/takedowns/{body['id']}", headers=admin_headers).json()
    assert detail["due_at"] == "2026-01-06T09:00:00Z"
    assert detail["received_at"] == "2026-01-05T09:00:00Z"


def test_targets_resolve_from_ids_our_urls_slugs_and_original_urls(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    a, b, c, d, e = (ingest(client, ingest_headers, n) for n in range(1, 6))
    targets = [
        a["id"],
        str(b["id"]),
        f"https://news.example/v1/articles/{c['id']}",
        f"https://news.example/v1/articles/by-slug/{d['slug']}",
        # The original, as a reader would paste it: tracking parameters, fragment, case.
        "HTTPS://WWW.Reuters.com/world/story-5?utm_source=x&fbclid=y#top",
        f"https://news.example/articles/{a['slug']}",
    ]
    body = file(client, filing(targets))
    assert [t["article_ids"] for t in body["targets"]] == [
        [a["id"]],
        [b["id"]],
        [c["id"]],
        [d["id"]],
        [e["id"]],
        [a["id"]],
    ]
    assert [t["input"] for t in body["targets"]] == [str(t) for t in targets]


def test_original_url_we_do_not_have_is_accepted_and_blocked_from_future_ingest_once_confirmed(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine
) -> None:
    target = "https://www.reuters.com/world/not-seen-yet?utm_medium=m"
    body = file(client, filing([target]))
    assert body["targets"] == [
        {"input": target, "article_ids": [], "matched": False, "closest": None, "state": "pending"}
    ]
    assert body["status"] == "received"
    view = confirm(client, engine, body["id"])
    assert [t["state"] for t in view["targets"]] == ["blocked"]
    # Nothing to remove and the mailbox is at the domain: done at once, the URL stays blocked
    # however a crawler spells it.
    assert view["status"] == "completed"
    for url in (
        "https://www.reuters.com/world/not-seen-yet",
        "http://reuters.com/world/not-seen-yet/",
        "https://amp.reuters.com/world/./not-seen-yet",
    ):
        assert_problem(post(client, ingest_headers, url), 451)


def test_article_ingested_before_the_confirmation_is_removed_with_the_request(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
) -> None:
    body = file(client, filing(["https://www.reuters.com/world/not-seen-yet"]))
    # Unconfirmed, the request blocks nothing: the article arrives meanwhile.
    arrived = post(client, ingest_headers, "https://www.reuters.com/world/not-seen-yet")
    assert arrived.status_code == 201, arrived.text
    article_id = arrived.json()["article"]["id"]
    clock.advance(timedelta(minutes=10))
    view = confirm(client, engine, body["id"])
    assert view["status"] == "queued"
    assert [(t["article_ids"], t["state"]) for t in view["targets"]] == [([article_id], "pending")]
    assert tick(engine, settings, clock).of("removal")["removed"] == 1
    assert client.get(f"/v1/articles/{article_id}").status_code == 451
    assert load(engine, body["id"]).status == "completed"


def post(client: TestClient, headers: dict[str, str], url: str) -> Response:
    return client.post("/v1/articles", json=article_payload(1, source_url=url), headers=headers)


@pytest.mark.parametrize(
    "target",
    [
        999_999,
        "999999",
        "https://news.example/v1/articles/999999",
        "https://news.example/v1/articles/by-slug/no-such-slug",
        "https://news.example/about",
        "javascript:alert(1)",
        "not a url",
        "ftp://files.example/x",
        0,
        -3,
        True,
        2**70,
    ],
)
def test_targets_we_cannot_resolve_are_422_naming_them_and_nothing_is_stored(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine, target: object
) -> None:
    article = ingest(client, ingest_headers)
    response = client.post("/v1/takedowns", json=filing([article["id"], target]))
    body = assert_problem(response, 422)
    assert [e["field"] for e in body["errors"]] == ["targets.1"]
    assert stored_rows(engine) == 0


@pytest.mark.parametrize("missing", ["good_faith", "accurate", "signature"])
def test_missing_statement_or_signature_is_422_naming_it_and_nothing_is_stored(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine, missing: str
) -> None:
    article = ingest(client, ingest_headers)
    body = filing([article["id"]])
    del body[missing]
    problem = assert_problem(client.post("/v1/takedowns", json=body), 422)
    assert [e["field"] for e in problem["errors"]] == [missing]
    assert stored_rows(engine) == 0


@pytest.mark.parametrize("statement", ["good_faith", "accurate"])
def test_statements_must_be_true(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine, statement: str
) -> None:
    article = ingest(client, ingest_headers)
    problem = assert_problem(
        client.post("/v1/takedowns", json=filing([article["id"]], **{statement: False})), 422
    )
    assert [e["field"] for e in problem["errors"]] == [statement]
    assert stored_rows(engine) == 0


def test_no_targets_and_no_domain_is_422(client: TestClient, engine: Engine) -> None:
    problem = assert_problem(client.post("/v1/takedowns", json=filing([])), 422)
    assert "1 to 100 targets, or a domain" in problem["detail"]
    assert stored_rows(engine) == 0


def test_more_than_100_targets_is_422(client: TestClient, engine: Engine) -> None:
    targets = [f"https://www.reuters.com/world/story-{n}" for n in range(101)]
    problem = assert_problem(client.post("/v1/takedowns", json=filing(targets)), 422)
    assert problem["errors"][0]["field"] == "targets"
    assert stored_rows(engine) == 0


def test_100_targets_are_accepted(client: TestClient) -> None:
    targets = [f"https://www.reuters.com/world/story-{n}" for n in range(100)]
    body = file(client, filing(targets))
    assert len(body["targets"]) == 100


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("domain", "co.uk"),
        ("domain", "com"),
        ("domain", "https://reuters.com/"),
        ("domain", "not a domain"),
        ("reason", "because"),
        ("original_url", "javascript:alert(1)"),
    ],
)
def test_bad_domain_reason_or_original_url_is_422(
    client: TestClient, engine: Engine, field: str, value: str
) -> None:
    body = filing(["https://www.reuters.com/world/x"], **{field: value})
    problem = assert_problem(client.post("/v1/takedowns", json=body), 422)
    assert problem["errors"][0]["field"] == field
    assert stored_rows(engine) == 0


def test_agent_must_name_who_they_act_for(client: TestClient) -> None:
    body = filing(["https://www.reuters.com/world/x"], claimant={"role": "agent"})
    problem = assert_problem(client.post("/v1/takedowns", json=body), 422)
    assert "acting_for" in problem["detail"]
    body["claimant"]["acting_for"] = "Reuters News"
    file(client, body)


def test_bad_email_is_422_without_repeating_it(client: TestClient) -> None:
    body = filing(["https://www.reuters.com/world/x"], claimant={"email": "secret-person@@x"})
    response = client.post("/v1/takedowns", json=body)
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["field"] == "claimant.email"
    assert "secret-person" not in response.text


def test_disposable_email_is_422_naming_claimant_email_and_nothing_is_stored(
    client: TestClient, engine: Engine
) -> None:
    body = filing(["https://www.reuters.com/world/x"], claimant={"email": "legal@mailinator.com"})
    problem = assert_problem(client.post("/v1/takedowns", json=body), 422)
    assert [e["field"] for e in problem["errors"]] == ["claimant.email"]
    assert "disposable" in problem["errors"][0]["message"]
    assert stored_rows(engine) == 0


def test_original_date_without_original_url_is_422(client: TestClient) -> None:
    body = filing(["https://www.reuters.com/world/x"], original_published_at="2023-01-01T00:00:00Z")
    assert_problem(client.post("/v1/takedowns", json=body), 422)


# Duplicates --------------------------------------------------------------------------------


def duplicate_of(client: TestClient, admin_headers: dict[str, str], takedown_id: str) -> str | None:
    """What operators see of the link; claimants never do."""
    detail = client.get(f"/v1/admin/takedowns/{takedown_id}", headers=admin_headers)
    assert detail.status_code == 200, detail.text
    return detail.json()["duplicate_of"]  # type: ignore[no-any-return]


def test_duplicate_filing_within_24h_is_a_new_request_linked_for_operators_only(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
) -> None:
    article = ingest(client, ingest_headers)
    first = file(client, filing([article["id"]]))
    clock.advance(timedelta(hours=23))
    # The same mailbox naming the same article another way (its original URL, a +tag, case).
    again = filing(
        [article["attribution"]["source_url"] + "?utm_campaign=again"],
        claimant={"email": "Legal+again@Reuters.com"},
    )
    response = client.post("/v1/takedowns", json=again)
    assert response.status_code == 202, response.text
    body = response.json()
    # Answered like any filing: its own id, token and dates, nothing about the other one.
    assert body["id"] != first["id"] and first["id"] not in response.text
    assert body["status"] == "received"
    assert body["status_token"] and body["status_token"] != first["status_token"]
    assert body["received_at"] == "2026-01-06T08:00:00Z"
    assert body["due_at"] == "2026-01-07T08:00:00Z"
    assert "duplicate" not in response.text
    with new_session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Takedown)) == 2
    assert duplicate_of(client, admin_headers, body["id"]) == first["id"]
    assert duplicate_of(client, admin_headers, first["id"]) is None
    assert audit_actions(engine, body["id"])[0] == ("filed", "claimant", None, "received")
    # Each token opens its own request only; the duplicate needs its own confirmation.
    for takedown_id, token in (
        (first["id"], first["status_token"]),
        (body["id"], body["status_token"]),
    ):
        view = client.get(f"/v1/takedowns/{takedown_id}", params={"token": token})
        assert view.status_code == 200 and "duplicate" not in view.text
    assert_problem(
        client.get(f"/v1/takedowns/{first['id']}", params={"token": body["status_token"]}), 404
    )
    assert confirmation_code(engine, body["id"]) != confirmation_code(engine, first["id"])


def test_same_targets_after_24h_or_from_another_mailbox_are_not_linked(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    clock: FrozenClock,
) -> None:
    article = ingest(client, ingest_headers)
    first = file(client, filing([article["id"]]))
    other = file(client, filing([article["id"]], claimant={"email": "desk@reuters.com"}))
    assert other["id"] != first["id"]
    assert duplicate_of(client, admin_headers, other["id"]) is None
    clock.advance(timedelta(hours=24, seconds=1))
    later = file(client, filing([article["id"]]))
    assert later["id"] != first["id"] and later["status_token"]
    assert duplicate_of(client, admin_headers, later["id"]) is None


def test_refiling_after_withdrawing_is_not_linked_to_the_withdrawn_request(
    client: TestClient, ingest_headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    article = ingest(client, ingest_headers)
    first = file(client, filing([article["id"]], claimant={"email": "x@other.org"}))
    withdrawn = client.post(
        f"/v1/takedowns/{first['id']}/withdraw", params={"token": first["status_token"]}
    )
    assert withdrawn.status_code == 200
    second = file(client, filing([article["id"]], claimant={"email": "x@other.org"}))
    assert second["id"] != first["id"]
    assert duplicate_of(client, admin_headers, second["id"]) is None


def test_openapi_declares_the_takedown_routes_and_their_problems(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    filing_responses = paths["/v1/takedowns"]["post"]["responses"]
    assert {"202", "403", "422", "429"} <= set(filing_responses)
    assert "200" not in filing_responses  # a repeat is answered like any filing: 202
    assert "application/problem+json" in filing_responses["429"]["content"]
    confirming = paths["/v1/takedowns/{takedown_id}/confirm"]["post"]["responses"]
    assert {"200", "404", "409", "410", "429"} <= set(confirming)
    assert "404" in paths["/v1/takedowns/{takedown_id}"]["get"]["responses"]
    assert "409" in paths["/v1/admin/takedowns/{takedown_id}/approve"]["post"]["responses"]


def test_domain_with_more_articles_than_one_query_binds_is_resolved_in_slices(
    client: TestClient, ingest_headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("app.takedowns.targets._FACTS_SLICE", 2)
    ids = ingest_many(client, ingest_headers, 5, host="www.bbc.co.uk")
    body = file(client, filing(domain="bbc.co.uk", claimant={"email": "legal@bbc.co.uk"}))
    assert body["targets"] == [
        {
            "input": "bbc.co.uk",
            "article_ids": ids,
            "matched": True,
            "closest": None,
            "state": "pending",
        }
    ]
