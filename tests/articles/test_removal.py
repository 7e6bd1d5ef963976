"""What a removal leaves: a tombstone, 451 answers, and an article gone from every list;
and what undoes it: ingest once no block holds the URL."""

import hashlib
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlmodel import Session

from app.articles.models import Article, ArticleTombstone, Publisher
from app.articles.service import remove_articles
from app.articles.urls import match_key
from app.clock import FrozenClock
from app.db import new_session
from app.takedowns.blocks import add_block
from tests.articles.factories import article_payload, ingest
from tests.factories import (
    PRIVATE_EMAIL,
    PRIVATE_NAME,
    make_articles,
    make_takedown,
    remove_article,
)


def block_url(engine: Engine, clock: FrozenClock, url: str, takedown_id: str) -> None:
    """What a takedown does before it removes: block the URL (by its matching key)."""
    with new_session(engine) as session, session.begin():
        add_block(
            session=session,
            kind="url",
            value=match_key(url),
            takedown_id=takedown_id,
            now=clock.now(),
        )


def tombstones(engine: Engine, article_id: int) -> list[ArticleTombstone]:
    with new_session(engine) as session:
        return list(
            session.scalars(
                select(ArticleTombstone).where(ArticleTombstone.article_id == article_id)  # type: ignore[arg-type]
            )
        )


def test_removed_article_answers_451_with_blocked_by_link(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine, clock: FrozenClock
) -> None:
    article = ingest(client, ingest_headers)
    takedown_id = make_takedown(engine, received_at=clock.now())
    assert remove_article(engine, clock, article["id"], takedown_id) is True
    for path in (f"/v1/articles/{article['id']}", f"/v1/articles/by-slug/{article['slug']}"):
        response = client.get(path)
        assert response.status_code == 451
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["link"] == '<https://news.example/takedown>; rel="blocked-by"'
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        assert body["takedown_id"] == takedown_id
        assert body["removed_at"] == "2026-01-05T09:00:00Z"
        assert PRIVATE_NAME not in response.text and PRIVATE_EMAIL not in response.text


def test_removal_keeps_only_the_tombstone(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine, clock: FrozenClock
) -> None:
    article = ingest(client, ingest_headers)
    takedown_id = make_takedown(engine, received_at=clock.now())
    remove_article(engine, clock, article["id"], takedown_id)
    with new_session(engine) as session:
        row = session.get(Article, article["id"])
        assert row is not None
        assert (
            row.title,
            row.body_html,
            row.body_text,
            row.excerpt,
            row.image_url,
            row.authors,
        ) == (
            None,
            None,
            None,
            None,
            None,
            None,
        )
        assert row.canonical_url == article["attribution"]["canonical_url"]
        assert row.first_seen_at.isoformat() == "2026-01-05T09:00:00+00:00"
        assert len(row.content_hash) == 64
        assert row.removed_by_takedown_id == takedown_id
        # The slug kept only as a hash: no word of the title stays.
        assert row.slug == "~" + hashlib.sha256(article["slug"].encode()).hexdigest()
        assert not any(word in row.slug for word in ("flood", "river", "town"))
        content_hash, publisher_id = row.content_hash, row.publisher_id
    [tombstone] = tombstones(engine, article["id"])
    assert (
        tombstone.canonical_url,
        tombstone.publisher_id,
        tombstone.first_seen_at.isoformat(),
        tombstone.content_hash,
        tombstone.takedown_id,
        tombstone.restored_at,
    ) == (
        article["attribution"]["canonical_url"],
        publisher_id,
        "2026-01-05T09:00:00+00:00",
        content_hash,
        takedown_id,
        None,
    )


def test_removed_article_is_gone_from_lists_search_tags_and_counts(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine, clock: FrozenClock
) -> None:
    kept = ingest(client, ingest_headers, 1)
    gone = ingest(client, ingest_headers, 2)
    remove_article(engine, clock, gone["id"], make_takedown(engine, received_at=clock.now()))
    assert [a["id"] for a in client.get("/v1/articles").json()["items"]] == [kept["id"]]
    assert [a["id"] for a in client.get("/v1/articles?q=flood").json()["items"]] == [kept["id"]]
    assert [a["id"] for a in client.get("/v1/articles?tag=weather").json()["items"]] == [kept["id"]]
    assert client.get("/v1/publishers").json()["items"][0]["article_count"] == 1


def test_reingesting_a_removed_url_still_blocked_is_451_and_blocked_in_a_batch(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine, clock: FrozenClock
) -> None:
    article = ingest(client, ingest_headers)
    takedown_id = make_takedown(engine, received_at=clock.now())
    block_url(engine, clock, article["attribution"]["canonical_url"], takedown_id)
    remove_article(engine, clock, article["id"], takedown_id)
    response = client.post(
        "/v1/articles",
        json=article_payload(
            source_url="https://WWW.example-news.com/2023/03/20/story-1?utm_source=x"
        ),
        headers=ingest_headers,
    )
    assert response.status_code == 451
    assert response.headers["content-type"] == "application/problem+json"
    batch = client.post(
        "/v1/articles/batch", json={"items": [article_payload()]}, headers=ingest_headers
    )
    assert batch.json()["items"][0]["status"] == "blocked"
    assert client.get(f"/v1/articles/{article['id']}").status_code == 451
    assert tombstones(engine, article["id"])[0].restored_at is None


def test_reingesting_a_removed_url_no_block_holds_publishes_the_same_article_again(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine, clock: FrozenClock
) -> None:
    article = ingest(client, ingest_headers)
    kept = ingest(client, ingest_headers, 2)
    remove_article(engine, clock, article["id"], make_takedown(engine, received_at=clock.now()))
    remove_article(engine, clock, kept["id"], make_takedown(engine, received_at=clock.now()))
    clock.advance(timedelta(days=1))
    response = client.post("/v1/articles", json=article_payload(), headers=ingest_headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "updated"
    assert response.json()["article"]["id"] == article["id"]
    batch = client.post(
        "/v1/articles/batch", json={"items": [article_payload(2)]}, headers=ingest_headers
    )
    assert batch.json()["items"][0]["status"] == "updated"
    assert batch.json()["items"][0]["id"] == kept["id"]
    for restored in (article, kept):
        assert client.get(f"/v1/articles/{restored['id']}").status_code == 200
        assert client.get(f"/v1/articles/by-slug/{restored['slug']}").status_code == 200
        with new_session(engine) as session:
            row = session.get(Article, restored["id"])
            assert row is not None and row.removed_at is None
            assert row.first_seen_at.isoformat() == "2026-01-05T09:00:00+00:00"
        # The tombstone stays as the record of the removal.
        assert [t.restored_at for t in tombstones(engine, restored["id"])] == [clock.now()]
    assert client.get("/v1/publishers").json()["items"][0]["article_count"] == 2


def test_removing_twice_changes_nothing(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine, clock: FrozenClock
) -> None:
    article = ingest(client, ingest_headers)
    first = make_takedown(engine, received_at=clock.now())
    second = make_takedown(engine, received_at=clock.now())
    assert remove_article(engine, clock, article["id"], first) is True
    assert remove_article(engine, clock, article["id"], second) is False
    with new_session(engine) as session:
        row = session.get(Article, article["id"])
        assert row is not None and row.removed_by_takedown_id == first
    assert client.get("/v1/publishers").json()["items"][0]["article_count"] == 0


def live_count_of_the_publisher(db: Session) -> int:
    db.expire_all()
    return db.scalars(select(Publisher.article_count)).one()


def test_publisher_counts_change_only_with_the_transaction_that_commits(
    db: Session, clock: FrozenClock
) -> None:
    """Counts are written when the transaction commits: a removal rolled back (or inside a
    savepoint rolled back) leaves them as they were; one released and committed counts."""
    ids = make_articles(db, 4, now=clock.now())
    takedown_id = make_takedown(db, received_at=clock.now())
    db.commit()
    assert live_count_of_the_publisher(db) == 4

    remove_articles(session=db, removals={takedown_id: [ids[0]]}, now=clock.now())
    db.rollback()
    assert live_count_of_the_publisher(db) == 4

    with db.begin_nested():
        remove_articles(session=db, removals={takedown_id: [ids[1]]}, now=clock.now())
    with pytest.raises(RuntimeError), db.begin_nested():
        remove_articles(session=db, removals={takedown_id: [ids[2]]}, now=clock.now())
        raise RuntimeError("this savepoint rolls back")
    db.commit()
    assert live_count_of_the_publisher(db) == 3
    assert db.get(Article, ids[2]) is not None and db.get(Article, ids[2]).removed_at is None  # type: ignore[union-attr]
