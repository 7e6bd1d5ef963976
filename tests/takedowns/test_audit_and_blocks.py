"""The append-only audit log, and the block list operators can read and lift."""

from datetime import timedelta

from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import Engine, select

from app.articles.models import Article, ArticleTombstone
from app.clock import FrozenClock
from app.config import Settings
from app.db import new_session
from tests.articles.factories import article_payload
from tests.takedowns.factories import (
    UNMATCHED,
    assert_problem,
    audit_actions,
    carry_out,
    confirm,
    file,
    file_confirmed,
    filing,
    ingest,
    tick,
)


def post_article(client: TestClient, headers: dict[str, str], url: str) -> Response:
    return client.post("/v1/articles", json=article_payload(3, source_url=url), headers=headers)


def test_audit_lists_every_transition_with_actor_and_statuses(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
) -> None:
    article = ingest(client, ingest_headers)
    filed = file_confirmed(client, engine, filing([article["id"]], claimant=UNMATCHED))
    other = file(client, filing(["https://www.reuters.com/x"]))
    client.post(
        f"/v1/admin/takedowns/{filed['id']}/reject",
        json={"reason": "Public record."},
        headers=admin_headers,
    )
    events = client.get(f"/v1/admin/audit?takedown_id={filed['id']}", headers=admin_headers).json()[
        "items"
    ]
    # Rejected inside its review window: nothing it named was ever blocked.
    assert [(e["action"], e["actor"], e["from_status"], e["to_status"]) for e in events] == [
        ("filed", "claimant", None, "received"),
        ("email_confirmed", "claimant", None, None),
        ("queued", "policy", "received", "queued"),
        ("rejected", "operator", "queued", "rejected"),
    ]
    assert events[3]["reason"] == "Public record."
    assert events[0]["at"] == "2026-01-05T09:00:00Z"
    everything = client.get("/v1/admin/audit", headers=admin_headers).json()["items"]
    assert {e["takedown_id"] for e in everything} == {filed["id"], other["id"]}
    pages, cursor = [], None
    while True:
        url = "/v1/admin/audit?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url, headers=admin_headers).json()
        pages += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert pages == [e["id"] for e in everything]


def test_no_endpoint_edits_or_deletes_the_audit_log(
    client: TestClient, admin_headers: dict[str, str], engine: Engine
) -> None:
    file_confirmed(client, engine, filing(["https://www.reuters.com/x"]))
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        response = client.request(method, "/v1/admin/audit", headers=admin_headers)
        assert_problem(response, 405)
        response = client.request(method, "/v1/admin/audit/1", headers=admin_headers)
        assert response.status_code in (404, 405)
    # filed, email_confirmed, queued, blocked, completed
    assert len(client.get("/v1/admin/audit", headers=admin_headers).json()["items"]) == 5


def test_blocks_take_effect_when_removals_may_run_and_at_approval_for_escalated(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
) -> None:
    queued = file(client, filing(["https://www.reuters.com/queued"], claimant=UNMATCHED))
    assert client.get("/v1/admin/blocks", headers=admin_headers).json()["items"] == []
    assert confirm(client, engine, queued["id"])["status"] == "queued"
    # A mailbox elsewhere: nothing is refused while an operator can still stop the request.
    assert client.get("/v1/admin/blocks", headers=admin_headers).json()["items"] == []
    assert post_article(client, ingest_headers, "https://www.reuters.com/queued").status_code == 201
    clock.advance(settings.takedown_review_window)
    tick(engine, settings, clock)
    for url in ("https://www.reuters.com/queued", "http://reuters.com/queued/"):
        assert post_article(client, ingest_headers, url).status_code == 451
    escalated = file(client, filing(domain="bbc.co.uk", claimant={"email": "x@evil.co.uk"}))
    # Confirmed, an escalated request still waits for the operator: no block yet.
    assert confirm(client, engine, escalated["id"])["status"] == "escalated"
    assert post_article(client, ingest_headers, "https://www.bbc.co.uk/a").status_code == 201
    client.post(f"/v1/admin/takedowns/{escalated['id']}/approve", headers=admin_headers)
    assert post_article(client, ingest_headers, "https://www.bbc.co.uk/b").status_code == 451
    blocks = client.get("/v1/admin/blocks", headers=admin_headers).json()["items"]
    assert [(b["kind"], b["value"]) for b in blocks] == [
        ("url", "reuters.com/queued"),  # the matching key: every spelling of the URL
        ("domain", "bbc.co.uk"),
    ]
    domains = client.get("/v1/admin/blocks?kind=domain", headers=admin_headers).json()["items"]
    assert [b["takedown_id"] for b in domains] == [escalated["id"]]


def test_lifting_a_block_lets_the_url_be_ingested_again_and_is_audited(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
) -> None:
    url = "https://www.reuters.com/unseen"
    filed = file_confirmed(client, engine, filing([url]))
    block = client.get("/v1/admin/blocks", headers=admin_headers).json()["items"][0]
    response = client.delete(
        f"/v1/admin/blocks/{block['id']}?reason=Licence renewed.", headers=admin_headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["lifted_at"] == "2026-01-05T09:00:00Z"
    assert response.json()["lifted_by"] == "operator"
    assert post_article(client, ingest_headers, url).status_code == 201
    assert client.get("/v1/admin/blocks?active=true", headers=admin_headers).json()["items"] == []
    lifted = client.get("/v1/admin/blocks?active=false", headers=admin_headers).json()["items"]
    assert [b["id"] for b in lifted] == [block["id"]]
    events = client.get(f"/v1/admin/audit?takedown_id={filed['id']}", headers=admin_headers).json()[
        "items"
    ]
    assert (events[-1]["action"], events[-1]["actor"], events[-1]["block_id"]) == (
        "block_lifted",
        "operator",
        block["id"],
    )
    assert events[-1]["reason"] == "Licence renewed."
    assert_problem(client.delete(f"/v1/admin/blocks/{block['id']}", headers=admin_headers), 409)


def test_lifting_an_unknown_or_malformed_block_is_4xx(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    assert_problem(client.delete("/v1/admin/blocks/999", headers=admin_headers), 404)
    assert_problem(client.delete("/v1/admin/blocks/abc", headers=admin_headers), 422)
    assert_problem(client.delete(f"/v1/admin/blocks/{2**64}", headers=admin_headers), 422)


def test_a_removed_article_stays_refused_while_any_block_holds_it(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
) -> None:
    article = ingest(client, ingest_headers)
    filed = file_confirmed(client, engine, filing([article["id"]]))
    carry_out(engine, clock, filed["id"], article["id"])
    url = article["attribution"]["source_url"]
    # Both the URL and a domain block it; lifting one leaves the other in force.
    domain = file(client, filing(domain="reuters.com"))
    client.post(f"/v1/admin/takedowns/{domain['id']}/approve", headers=admin_headers)
    blocks = client.get("/v1/admin/blocks?kind=url", headers=admin_headers).json()["items"]
    client.delete(f"/v1/admin/blocks/{blocks[0]['id']}", headers=admin_headers)
    assert post_article(client, ingest_headers, url).status_code == 451
    assert client.get(f"/v1/articles/{article['id']}").status_code == 451


def test_lifting_every_block_of_a_removed_article_lets_reingest_publish_it_again(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
) -> None:
    article = ingest(client, ingest_headers)
    filed = file_confirmed(client, engine, filing([article["id"]]))
    carry_out(engine, clock, filed["id"], article["id"])
    url = article["attribution"]["source_url"]
    assert post_article(client, ingest_headers, url).status_code == 451
    clock.advance(timedelta(hours=2))
    block = client.get("/v1/admin/blocks", headers=admin_headers).json()["items"][0]
    lifted = client.delete(
        f"/v1/admin/blocks/{block['id']}?reason=Wrongful removal.", headers=admin_headers
    )
    assert lifted.status_code == 200, lifted.text
    # A wrongful removal undone: the crawler's next ingest publishes the same article again.
    again = post_article(client, ingest_headers, url)
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "updated"
    restored = again.json()["article"]
    assert restored["id"] == article["id"]
    assert client.get(f"/v1/articles/{article['id']}").status_code == 200
    assert client.get(f"/v1/articles/by-slug/{restored['slug']}").status_code == 200
    with new_session(engine) as session:
        row = session.get(Article, article["id"])
        assert row is not None and row.removed_at is None
        assert row.first_seen_at == clock.now() - timedelta(hours=2)  # kept from the first ingest
        tombstones = session.scalars(
            select(ArticleTombstone).where(ArticleTombstone.article_id == article["id"])  # type: ignore[arg-type]
        ).all()
    # The tombstone stays as history, marked restored.
    assert [(t.takedown_id, t.restored_at) for t in tombstones] == [(filed["id"], clock.now())]
    assert audit_actions(engine, filed["id"])[-2:] == [
        ("block_lifted", "operator", None, None),
        ("restored", "ingest", None, None),
    ]


def test_a_new_request_reactivates_a_lifted_block_once_confirmed(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
) -> None:
    url = "https://www.reuters.com/unseen"
    file_confirmed(client, engine, filing([url]))
    block = client.get("/v1/admin/blocks", headers=admin_headers).json()["items"][0]
    client.delete(f"/v1/admin/blocks/{block['id']}", headers=admin_headers)
    second = file(client, filing([url], claimant={"email": "desk@reuters.com"}))
    assert client.get("/v1/admin/blocks?active=true", headers=admin_headers).json()["items"] == []
    confirm(client, engine, second["id"])
    blocks = client.get("/v1/admin/blocks?active=true", headers=admin_headers).json()["items"]
    assert [(b["id"], b["takedown_id"]) for b in blocks] == [(block["id"], second["id"])]
    assert post_article(client, ingest_headers, url).status_code == 451
