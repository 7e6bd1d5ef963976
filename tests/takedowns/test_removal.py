"""The removal the scheduler carries out, called directly: it deletes the content, keeps the
tombstone and the block, answers 451 afterwards, and refuses requests that do not allow it."""

import hashlib
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from app.articles.models import Article, ArticleTombstone
from app.clock import FrozenClock
from app.db import new_session, writer
from app.scheduler.queue import RemovalRefused
from app.takedowns.service import complete_takedowns
from tests.articles.factories import article_payload
from tests.takedowns.factories import (
    assert_problem,
    audit_actions,
    carry_out,
    confirm,
    file,
    file_confirmed,
    filing,
    ingest,
    load,
)


def test_removal_deletes_content_keeps_tombstone_and_answers_451(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine, clock: FrozenClock
) -> None:
    article = ingest(client, ingest_headers)
    filed = file_confirmed(client, engine, filing([article["id"]]))
    clock.advance(timedelta(minutes=5))
    assert carry_out(engine, clock, filed["id"], article["id"]) is True
    with new_session(engine) as session:
        row = session.get(Article, article["id"])
        assert row is not None
        assert (row.title, row.body_html, row.excerpt, row.image_url, row.authors) == (
            None,
            None,
            None,
            None,
            None,
        )
        assert row.canonical_url == "https://www.reuters.com/world/story-1"
        assert row.removed_by_takedown_id == filed["id"]
        assert len(row.content_hash) == 64
        # No word of the title stays: the slug is kept only as a hash.
        assert row.slug == "~" + hashlib.sha256(article["slug"].encode()).hexdigest()
        tombstones = session.scalars(
            select(ArticleTombstone).where(ArticleTombstone.article_id == article["id"])  # type: ignore[arg-type]
        ).all()
        assert [(t.takedown_id, t.content_hash, t.restored_at) for t in tombstones] == [
            (filed["id"], row.content_hash, None)
        ]
    for path in (f"/v1/articles/{article['id']}", f"/v1/articles/by-slug/{article['slug']}"):
        response = client.get(path)
        problem = assert_problem(response, 451)
        assert problem["takedown_id"] == filed["id"]
        assert problem["removed_at"] == "2026-01-05T09:05:00Z"
        assert response.headers["link"] == '<https://news.example/takedown>; rel="blocked-by"'
        assert response.headers["cache-control"] == "no-store"
    assert client.get("/v1/articles").json()["items"] == []
    assert client.get("/v1/articles?q=flood").json()["items"] == []
    publishers = client.get("/v1/publishers").json()["items"]
    assert [p["article_count"] for p in publishers] == [0]


def test_removed_url_is_refused_at_ingest_alone_and_in_a_batch(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine, clock: FrozenClock
) -> None:
    article = ingest(client, ingest_headers)
    filed = file_confirmed(client, engine, filing([article["id"]]))
    carry_out(engine, clock, filed["id"], article["id"])
    again = article_payload(1, source_url="https://www.reuters.com/world/story-1?utm_source=x")
    assert_problem(client.post("/v1/articles", json=again, headers=ingest_headers), 451)
    batch = client.post("/v1/articles/batch", json={"items": [again]}, headers=ingest_headers)
    assert batch.json()["items"][0]["status"] == "blocked"


def test_removing_twice_changes_nothing(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine, clock: FrozenClock
) -> None:
    article = ingest(client, ingest_headers)
    filed = file_confirmed(client, engine, filing([article["id"]]))
    assert carry_out(engine, clock, filed["id"], article["id"]) is True
    first = load(engine, filed["id"])
    clock.advance(timedelta(minutes=1))
    assert carry_out(engine, clock, filed["id"], article["id"]) is False
    with new_session(engine) as session:
        row = session.get(Article, article["id"])
        assert row is not None and row.removed_at == first.received_at
    removed = [a for a in audit_actions(engine, filed["id"]) if a[0] == "removed"]
    assert removed == [("removed", "scheduler", None, None)]


def test_first_removal_moves_the_request_to_executing_and_completion_is_audited_once(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine, clock: FrozenClock
) -> None:
    a, b = ingest(client, ingest_headers, 1), ingest(client, ingest_headers, 2)
    filed = file_confirmed(client, engine, filing([a["id"], b["id"]]))
    carry_out(engine, clock, filed["id"], a["id"])
    assert load(engine, filed["id"]).status == "executing"
    view = client.get(f"/v1/takedowns/{filed['id']}?token={filed['status_token']}").json()
    assert [t["state"] for t in view["targets"]] == ["removed", "pending"]
    carry_out(engine, clock, filed["id"], b["id"])
    for _ in range(2):
        with new_session(writer(engine)) as session, session.begin():
            complete_takedowns(session=session, takedown_ids=[filed["id"]], now=clock.now())
    takedown = load(engine, filed["id"])
    assert (takedown.status, takedown.completed_at) == ("completed", clock.now())
    assert [a[0] for a in audit_actions(engine, filed["id"])] == [
        "filed",
        "email_confirmed",
        "queued",
        "blocked",
        "blocked",
        "executing",
        "removed",
        "removed",
        "completed",
    ]


@pytest.mark.parametrize("state", ["received", "withdrawn", "rejected", "escalated"])
def test_removal_is_refused_for_requests_that_do_not_allow_it(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    state: str,
) -> None:
    article = ingest(client, ingest_headers)
    filed = file(client, filing([article["id"]], claimant={"email": "x@other.example.org"}))
    if state != "received":  # an unconfirmed request is never removed; the others were queued
        confirm(client, engine, filed["id"])
    if state == "withdrawn":
        client.post(f"/v1/takedowns/{filed['id']}/withdraw?token={filed['status_token']}")
    elif state == "rejected":
        client.post(
            f"/v1/admin/takedowns/{filed['id']}/reject",
            json={"reason": "No."},
            headers=admin_headers,
        )
    elif state == "escalated":
        client.post(f"/v1/admin/takedowns/{filed['id']}/escalate", headers=admin_headers)
    with pytest.raises(RemovalRefused, match=f"is {state}; its removals do not run"):
        carry_out(engine, clock, filed["id"], article["id"])
    assert client.get(f"/v1/articles/{article['id']}").status_code == 200
    assert load(engine, filed["id"]).status == state


def test_article_removed_by_an_earlier_request_shows_as_removed(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine, clock: FrozenClock
) -> None:
    article = ingest(client, ingest_headers)
    first = file_confirmed(client, engine, filing([article["id"]]))
    carry_out(engine, clock, first["id"], article["id"])
    second = file(client, filing([article["id"]], claimant={"email": "desk@reuters.com"}))
    assert second["targets"][0]["state"] == "removed"
    assert second["status"] == "received"
    # Nothing left to remove: done as soon as the mailbox is confirmed.
    assert confirm(client, engine, second["id"])["status"] == "completed"
