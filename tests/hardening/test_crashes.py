"""Crashes of the real server: SIGKILL in the middle of a write, and what a restart finds.

"In the middle" is observed, not guessed: the test waits until the server is inside its
write transaction (SQLite: the write lock is taken; PostgreSQL: its backend holds a
transaction id, i.e. has written), freezes the server with SIGSTOP, checks it is still
inside (a frozen process cannot commit), then kills it. See servers.py.
"""

import contextlib
import json
import threading
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import Engine, func, select, text

from app.articles.models import Article, ArticleTag, Publisher
from app.auth import Scope
from app.db import new_session
from app.models import metadata
from app.scheduler.models import RemovalJob
from app.takedowns.models import Block, Takedown, TakedownTarget
from tests.articles.factories import article_payload
from tests.factories import make_key
from tests.hardening.servers import Server, kill_inside_write_transaction, write_probe
from tests.takedowns.factories import bearer, filing

BATCH = 500
HOST = "crash-daily.com"
ARTICLE_TABLES = {"articles", "article_tags", "article_match_keys", "publishers", "api_keys"}


def batch_items(first: int, count: int = BATCH) -> list[dict[str, Any]]:
    """Articles from a few publishers, each with its own tags and a body of some size."""
    return [
        article_payload(
            n,
            source_url=f"https://{HOST}/2024/story-{n}",
            publisher={"name": f"Crash Daily {n % 7}", "url": f"https://{HOST}"},
            tags=[f"batch-{first}", f"story-{n}"],
            body_html=f"<p>Story {n}.</p>" + "<p>Paragraph of reporting.</p>" * 30,
        )
        for n in range(first, first + count)
    ]


def send_in_background(url: str, body: dict[str, Any], headers: dict[str, str]) -> threading.Thread:
    """POST on a thread; the server dies under it, so no answer is expected."""
    payload = json.dumps(body).encode()

    def post() -> None:
        with contextlib.suppress(httpx.TransportError):
            httpx.post(
                url,
                content=payload,
                headers={**headers, "Content-Type": "application/json"},
                timeout=120,
            )

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    return thread


def stored_articles(engine: Engine) -> dict[str, Any]:
    """Articles of the crash host by source URL, each with its tags."""
    with new_session(engine) as session:
        rows = session.execute(
            select(Article.id, Article.source_url, Article.title, Article.tags).where(
                Article.source_domain == HOST
            )
        ).all()
        tags = session.execute(select(ArticleTag.article_id, ArticleTag.tag)).all()
    by_article: dict[int, set[str]] = {}
    for article_id, tag in tags:
        by_article.setdefault(article_id, set()).add(tag)
    return {
        row.source_url: {"title": row.title, "tags": set(row.tags), "rows": by_article.get(row.id)}
        for row in rows
    }


def assert_publisher_counts_consistent(engine: Engine) -> None:
    with new_session(engine) as session:
        live = dict(
            session.execute(
                select(Article.publisher_id, func.count())
                .where(Article.removed_at.is_(None))
                .group_by(Article.publisher_id)
            ).all()
        )
        counts = dict(session.execute(select(Publisher.id, Publisher.article_count)).all())
    assert counts == {pid: live.get(pid, 0) for pid in counts}


def assert_each_item_whole_or_absent(engine: Engine, items: list[dict[str, Any]]) -> int:
    """Every item is either absent or stored with its title and all its tags; the count."""
    stored = stored_articles(engine)
    for item in items:
        article = stored.get(item["source_url"])
        if article is not None:
            assert article["title"] == item["title"]
            assert article["tags"] == set(item["tags"]) == article["rows"]
    assert_publisher_counts_consistent(engine)
    return sum(item["source_url"] in stored for item in items)


def test_batch_ingest_killed_mid_transaction_is_all_or_nothing_and_can_be_resent(
    start_server: Callable[..., Server],
    database_url: str,
    engine: Engine,
    ingest_headers: dict[str, str],
) -> None:
    server = start_server()
    items = batch_items(0)
    with write_probe(database_url) as probe:
        send_in_background(f"{server.url}/v1/articles/batch", {"items": items}, ingest_headers)
        killed_inside = kill_inside_write_transaction(server, probe, timeout=60)

    assert killed_inside, "the batch committed before the server could be frozen"
    assert assert_each_item_whole_or_absent(engine, items) == 0

    restarted = start_server()
    resent = httpx.post(
        f"{restarted.url}/v1/articles/batch", json={"items": items}, headers=ingest_headers
    )
    assert resent.status_code == 200, resent.text
    assert resent.json()["counts"] == {"created": BATCH}
    assert assert_each_item_whole_or_absent(engine, items) == BATCH
    again = httpx.post(
        f"{restarted.url}/v1/articles/batch", json={"items": items}, headers=ingest_headers
    )
    assert again.json()["counts"] == {"unchanged": BATCH}


def rows_outside_articles(engine: Engine) -> dict[str, int]:
    """Row counts of every table a filing may write (all but articles and keys)."""
    counts = {}
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            if table.name not in ARTICLE_TABLES:
                counts[table.name] = connection.execute(
                    text(f"SELECT count(*) FROM {table.name}")
                ).scalar_one()
    return counts


def test_takedown_filing_killed_mid_transaction_leaves_all_or_nothing(
    start_server: Callable[..., Server],
    database_url: str,
    engine: Engine,
    ingest_headers: dict[str, str],
) -> None:
    # A whole-domain request with the domain's publisher key (the one filing that takes
    # effect at once): one request, 1,500 targets and 1,500 queued removals, written in
    # one transaction.
    env = {"BYLINE_TAKEDOWN_MAX_PUBLISHER_TARGETS": "100000"}
    server = start_server(**env)
    for first in range(0, 1500, BATCH):
        response = httpx.post(
            f"{server.url}/v1/articles/batch",
            json={"items": batch_items(first)},
            headers=ingest_headers,
            timeout=60,
        )
        assert response.json()["counts"] == {"created": BATCH}
    body = filing(domain=HOST, claimant={"email": f"legal@{HOST}"})
    publisher = bearer(make_key(engine, Scope.publisher, f"publisher {HOST}", domain=HOST))
    assert set(rows_outside_articles(engine).values()) == {0}

    with write_probe(database_url) as probe:
        send_in_background(f"{server.url}/v1/takedowns", body, publisher)
        killed_inside = kill_inside_write_transaction(server, probe, timeout=60)

    assert killed_inside, "the filing committed before the server could be frozen"
    assert set(rows_outside_articles(engine).values()) == {0}, rows_outside_articles(engine)

    restarted = start_server(**env)
    response = httpx.post(f"{restarted.url}/v1/takedowns", json=body, headers=publisher, timeout=60)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    takedown_id = response.json()["id"]
    with new_session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Takedown)) == 1
        article_ids = set(
            session.scalars(
                select(TakedownTarget.article_id).where(
                    TakedownTarget.takedown_id == takedown_id,
                    TakedownTarget.article_id.is_not(None),
                )
            )
        )
        jobs = session.scalars(
            select(RemovalJob.article_id).where(RemovalJob.takedown_id == takedown_id)
        ).all()
        blocks = session.scalars(select(Block.value)).all()
    assert len(article_ids) == 1500
    assert sorted(jobs) == sorted(article_ids)
    assert blocks == [HOST]
    # Sent again, it is a request of its own, linked to the first for operators only.
    again = httpx.post(f"{restarted.url}/v1/takedowns", json=body, headers=publisher, timeout=60)
    assert again.status_code == 202, again.text
    assert again.json()["id"] != takedown_id
    with new_session(engine) as session:
        repeated = session.get(Takedown, again.json()["id"])
        assert repeated is not None and repeated.duplicate_of == takedown_id
