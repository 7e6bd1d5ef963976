"""An article's attribution is its own: no other ingest (or feed) rewrites it, its credit line
states only what we know and links the cleaned URL, its ETag changes whenever a read of it
does; batches answer as if their items came one after the other; dates, titles and hosts no
real article has are refused; plain text comes back as text, as documented."""

import socket
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from app.clock import FrozenClock
from app.config import Settings
from app.migrate import alembic_config, upgrade_to_head
from tests.articles.factories import article_payload, ingest
from tests.factories import make_takedown, remove_article
from tests.feeds.conftest import Answer, FeedServer
from tests.feeds.factories import RSS, rss, rss_item, run_feeds

PROBLEM = "application/problem+json"
REUTERS = {"name": "Reuters", "url": "https://www.reuters.com"}
EVIL = {"name": "Reuters", "url": "https://evil.example"}


def read(client: TestClient, article: dict[str, Any]) -> tuple[str, bytes]:
    """(ETag, body) of the article read by id; by slug answers the same."""
    by_id = client.get(f"/v1/articles/{article['id']}")
    by_slug = client.get(f"/v1/articles/by-slug/{article['slug']}")
    assert by_id.status_code == by_slug.status_code == 200, by_id.text
    assert (by_id.headers["etag"], by_id.content) == (by_slug.headers["etag"], by_slug.content)
    return by_id.headers["etag"], by_id.content


def publishers(client: TestClient) -> dict[str, str | None]:
    return {p["name"]: p["url"] for p in client.get("/v1/publishers").json()["items"]}


def post(client: TestClient, headers: dict[str, str], payload: Any) -> Any:
    return client.post("/v1/articles", json=payload, headers=headers)


def batch(client: TestClient, headers: dict[str, str], items: list[Any]) -> list[dict[str, Any]]:
    response = client.post("/v1/articles/batch", json={"items": items}, headers=headers)
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["items"]
    return results


def error_fields(response: Any) -> set[str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    return {error["field"] for error in response.json()["errors"]}


# 1. Attribution no one else can rewrite -------------------------------------------------------


def test_an_ingest_naming_a_publisher_with_another_homepage_changes_no_other_article(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    genuine = ingest(client, ingest_headers, 1, publisher=REUTERS)
    etag, body = read(client, genuine)

    response = post(client, ingest_headers, article_payload(2, publisher=EVIL))
    assert response.status_code == 201, response.text

    assert read(client, genuine) == (etag, body), "the other article answers as before"
    assert publishers(client) == {"Reuters": "https://www.reuters.com"}
    listed = {
        a["id"]: a["attribution"]["publisher"] for a in client.get("/v1/articles").json()["items"]
    }
    # Each article credits the publisher as it was sent with it.
    assert listed == {genuine["id"]: REUTERS, response.json()["article"]["id"]: EVIL}
    assert (
        client.get(f"/v1/articles/{genuine['id']}", headers={"If-None-Match": etag}).status_code
        == 304
    )


def test_a_batch_naming_a_publisher_with_another_homepage_changes_no_other_article(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    genuine = ingest(client, ingest_headers, 1, publisher=REUTERS)
    etag, body = read(client, genuine)
    results = batch(client, ingest_headers, [article_payload(n, publisher=EVIL) for n in (2, 3)])
    assert [r["status"] for r in results] == ["created", "created"]
    assert read(client, genuine) == (etag, body)
    assert publishers(client) == {"Reuters": "https://www.reuters.com"}


def test_a_publisher_keeps_the_homepage_it_was_created_with(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    """Created without a homepage, it stays without one: a later ingest fills in nothing."""
    ingest(client, ingest_headers, 1, publisher={"name": "Reuters"})
    later = ingest(client, ingest_headers, 2, publisher=REUTERS)
    assert publishers(client) == {"Reuters": None}
    assert later["attribution"]["publisher"] == REUTERS


def test_an_article_sent_again_with_another_homepage_changes_with_its_etag(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    article = ingest(client, ingest_headers, 1, publisher=REUTERS)
    etag, _ = read(client, article)
    response = post(client, ingest_headers, article_payload(1, publisher=EVIL))
    assert response.json()["status"] == "updated"
    new_etag, body = read(client, article)
    assert new_etag != etag
    assert b"https://evil.example" in body
    assert publishers(client) == {"Reuters": "https://www.reuters.com"}


@pytest.fixture
def feed_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FeedServer]:
    """The feeds tests' server on 127.0.0.1; no other name resolves (as in tests/feeds)."""

    def resolve(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, f"{host} does not resolve in tests")

    monkeypatch.setattr("app.outbound.resolve_with_system", resolve)
    server = FeedServer()
    server.start()
    yield server
    server.stop()


def test_a_feed_titled_like_a_publisher_cannot_rewrite_its_attribution(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    feed_server: FeedServer,
) -> None:
    genuine = ingest(client, ingest_headers, 1, publisher=REUTERS)
    etag, body = read(client, genuine)
    feed_server.routes["/rss.xml"] = Answer(
        200,
        rss([rss_item(1, host=feed_server.base)], title="Reuters", link="https://evil.example/"),
        {"Content-Type": RSS},
    )
    response = client.post(
        "/v1/feeds", json={"url": feed_server.url("/rss.xml")}, headers=ingest_headers
    )
    assert response.status_code == 201, response.text

    run_feeds(engine, settings, clock)

    items = client.get("/v1/articles").json()["items"]
    from_feed = [a for a in items if a["id"] != genuine["id"]]
    assert [a["attribution"]["publisher"] for a in from_feed] == [
        {"name": "Reuters", "url": "https://evil.example/"}
    ]
    assert read(client, genuine) == (etag, body)
    assert publishers(client) == {"Reuters": "https://www.reuters.com"}


def test_the_etag_of_a_read_changes_whenever_what_it_shows_does(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine, clock: FrozenClock
) -> None:
    """Whatever happens to an article (and to others of its publisher), one ETag always
    stands for one body: a client holding it never gets 304 for a changed article."""
    bodies: dict[str, set[bytes]] = {}
    article = ingest(client, ingest_headers, 1, publisher=REUTERS, published_at=None)

    def seen() -> None:
        etag, body = read(client, article)
        bodies.setdefault(etag, set()).add(body)

    steps: list[dict[str, Any]] = [
        {"published_at": "2023-03-20T10:01:00Z"},  # a date, sent late
        {"published_at": None},  # sent again without it: the date stays
        {"published_at": "2023-03-21T08:00:00Z"},
        {"published_at": None, "publisher": EVIL},
        {"published_at": None, "source_url": article["attribution"]["source_url"] + "?ref=x"},
    ]
    seen()
    payload = article_payload(1)
    for step in steps:
        clock.advance(timedelta(minutes=5))
        payload = article_payload(1, **{"publisher": REUTERS, **step})
        post(client, ingest_headers, payload)
        seen()
        ingest(client, ingest_headers, 2, publisher=EVIL)  # another article of the publisher
        seen()
    # Removed, then published again once no block holds it: first as it was, then changed.
    for title in (payload["title"], "Changed on the way back"):
        remove_article(engine, clock, article["id"], make_takedown(engine, received_at=clock.now()))
        clock.advance(timedelta(days=1))
        restored = post(client, ingest_headers, {**payload, "title": title})
        assert restored.json()["status"] == "updated", restored.text
        article["slug"] = restored.json()["article"]["slug"]
        seen()
    assert all(len(distinct) == 1 for distinct in bodies.values()), bodies
    assert len(bodies) >= 6


# 2. The credit line --------------------------------------------------------------------------


def test_without_a_publication_date_the_credit_states_none(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    article = ingest(client, ingest_headers, published_at=None)
    attribution = article["attribution"]
    assert attribution["credit"] == (
        "Originally published by Example News (Jane Reporter). "
        "Read the original: https://www.example-news.com/2023/03/20/story-1"
    )
    assert attribution["published_at"] is None
    # Lists still order it: at the time it was first seen.
    assert article["published_at"] == attribution["first_seen_at"] == "2026-01-05T09:00:00Z"
    listed = client.get("/v1/articles").json()["items"][0]["attribution"]
    assert listed == attribution


def test_a_date_sent_later_is_stated_and_kept_by_a_send_without_one(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    ingest(client, ingest_headers, published_at=None)
    dated = post(client, ingest_headers, article_payload(published_at="2023-03-20T10:01:00Z"))
    assert dated.json()["status"] == "updated"
    assert dated.json()["article"]["attribution"]["published_at"] == "2023-03-20T10:01:00Z"
    again = post(client, ingest_headers, article_payload(published_at=None))
    assert again.json()["status"] == "unchanged"
    credit = again.json()["article"]["attribution"]["credit"]
    assert " on 20 March 2023. " in credit


def test_an_undated_article_is_listed_at_the_time_it_was_first_seen(
    client: TestClient, ingest_headers: dict[str, str], clock: FrozenClock
) -> None:
    old = ingest(client, ingest_headers, 1, published_at="2025-12-01T00:00:00Z")
    undated = ingest(client, ingest_headers, 2, published_at=None)
    clock.advance(timedelta(days=2))
    newer = ingest(client, ingest_headers, 3, published_at="2026-01-06T00:00:00Z")
    ids = [a["id"] for a in client.get("/v1/articles").json()["items"]]
    assert ids == [newer["id"], undated["id"], old["id"]]


def test_the_credit_links_the_cleaned_url_not_the_trackers(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    sent = "https://WWW.Example-News.com:443/2023/03/20/story-1?utm_source=x&fbclid=1&page=2#top"
    article = ingest(client, ingest_headers, source_url=sent)
    attribution = article["attribution"]
    assert attribution["source_url"] == sent
    assert attribution["credit"].endswith(
        "Read the original: https://www.example-news.com/2023/03/20/story-1?page=2"
    )
    detail = client.get(f"/v1/articles/by-slug/{article['slug']}").json()["attribution"]
    assert detail["credit"] == attribution["credit"]


# 3. A batch answers as if its items came one after the other ---------------------------------


def test_a_batch_with_an_article_twice_answers_created_then_unchanged(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    results = batch(client, ingest_headers, [article_payload(1), article_payload(1)])
    assert [r["status"] for r in results] == ["created", "unchanged"]
    assert results[0]["id"] == results[1]["id"]


def test_a_batch_with_an_article_changed_in_between_answers_each_copy_in_input_order(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    items = [
        article_payload(1),
        article_payload(2),
        article_payload(1, title="Second version"),
        article_payload(1, title="Second version"),
        article_payload(1, title="Third version"),
    ]
    results = batch(client, ingest_headers, items)
    assert [r["status"] for r in results] == [
        "created",
        "created",
        "updated",
        "unchanged",
        "updated",
    ]
    assert len({results[i]["id"] for i in (0, 2, 3, 4)}) == 1
    stored = client.get(f"/v1/articles/{results[0]['id']}").json()
    assert stored["title"] == "Third version"
    # Sent again, the last copy is what is stored.
    assert batch(client, ingest_headers, [items[4]])[0]["status"] == "unchanged"


# 4. What no real article has ------------------------------------------------------------------


@pytest.mark.parametrize("published_at", ["9999-12-31T23:59:59Z", "2026-01-06T09:00:01Z"])
def test_a_publication_date_more_than_a_day_ahead_is_422(
    client: TestClient, ingest_headers: dict[str, str], published_at: str
) -> None:
    response = post(client, ingest_headers, article_payload(published_at=published_at))
    assert error_fields(response) == {"published_at"}
    assert client.get("/v1/articles").json()["items"] == []


def test_a_publication_date_up_to_a_day_ahead_is_taken(
    client: TestClient, ingest_headers: dict[str, str], clock: FrozenClock
) -> None:
    article = ingest(client, ingest_headers, published_at="2026-01-06T09:00:00Z")
    assert article["attribution"]["published_at"] == "2026-01-06T09:00:00Z"
    clock.advance(timedelta(days=30))  # the clock decides, not the wall
    future = post(client, ingest_headers, article_payload(2, published_at="2026-02-05T08:00:00Z"))
    assert future.status_code == 201, future.text


def test_a_batch_item_dated_far_ahead_is_invalid_naming_the_field(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    results = batch(
        client,
        ingest_headers,
        [article_payload(1, published_at="9999-01-01T00:00:00Z"), article_payload(2)],
    )
    assert [r["status"] for r in results] == ["invalid", "created"]
    assert [e["field"] for e in results[0]["errors"]] == ["published_at"]
    items = client.get("/v1/articles").json()["items"]
    assert [a["id"] for a in items] == [results[1]["id"]]


INVISIBLE = [
    "\u200b",  # zero-width space
    "\u200b\u200c\u200d",  # and non-joiner, joiner
    "\u2060\ufeff",  # word joiner, byte order mark
    "\u00ad",  # soft hyphen
    "\u200e\u200f",  # direction marks
    " \u200b \u3000 ",  # with spaces
    "\u0301\u0308",  # combining marks with nothing to mark
    "\x7f\x85",  # controls
    "&#8203;",  # a zero-width space written as a reference
]


@pytest.mark.parametrize("title", INVISIBLE)
def test_an_invisible_title_is_422(
    client: TestClient, ingest_headers: dict[str, str], title: str
) -> None:
    assert error_fields(post(client, ingest_headers, article_payload(title=title))) == {"title"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"publisher": {"name": "\u200b\u200b"}}, "publisher.name"),
        ({"authors": [{"name": "\u2060"}]}, "authors.0.name"),
        ({"tags": ["\u200d"]}, "tags.0"),
    ],
)
def test_invisible_names_and_tags_are_422(
    client: TestClient, ingest_headers: dict[str, str], change: dict[str, Any], field: str
) -> None:
    assert field in error_fields(post(client, ingest_headers, article_payload(**change)))


@pytest.mark.parametrize("title", ["\U0001f30a", "\u2026", "3", "\u00e9t\u00e9", "\u5927\u6c34"])
def test_a_title_of_one_visible_character_is_taken(
    client: TestClient, ingest_headers: dict[str, str], title: str
) -> None:
    assert ingest(client, ingest_headers, title=title)["title"] == title


LABEL_63 = "a" * 63
HOST_253 = ".".join([LABEL_63] * 3 + ["b" * 57, "com"])  # 63 * 3 + 57 + 3 + 4 dots


@pytest.mark.parametrize(
    "url",
    [
        f"https://{'a' * 300}.example.com/story",
        f"https://{'a' * 64}.example.com/story",
        f"https://{HOST_253}x/story",
        "https://www..example.com/story",
        "https://www.example.com:0/story",
        "https://www.example.com:65536/story",
        "https://www.example.com:99999/story",
    ],
)
def test_an_invalid_host_or_port_is_422_naming_the_field(
    client: TestClient, ingest_headers: dict[str, str], url: str
) -> None:
    assert error_fields(post(client, ingest_headers, article_payload(source_url=url))) == {
        "source_url"
    }
    publisher = {"name": "Example News", "url": url}
    assert error_fields(post(client, ingest_headers, article_payload(publisher=publisher))) == {
        "publisher.url"
    }
    [result] = batch(client, ingest_headers, [article_payload(image={"url": url})])
    assert result["status"] == "invalid"
    assert [e["field"] for e in result["errors"]] == ["image.url"]
    assert client.get("/v1/articles").json()["items"] == []


def test_the_longest_valid_host_and_label_and_the_highest_port_are_taken(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    assert len(HOST_253) == 253
    for n, url in enumerate(
        [f"https://{HOST_253}/story", f"https://{LABEL_63}.example.com:65535/story"]
    ):
        article = ingest(client, ingest_headers, n, source_url=url)
        assert article["attribution"]["source_url"] == url


# 5. Plain text is text -----------------------------------------------------------------------


def test_plain_text_comes_back_as_text_with_its_angle_brackets_as_documented(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    """Plain-text fields may hold `<`: markup sent is stripped, character references are
    decoded, and what is left is text that frontends escape, as the OpenAPI document says."""
    article = ingest(
        client,
        ingest_headers,
        title="&lt;script&gt;alert(1)&lt;/script&gt; in a title",
        excerpt="Why 1 &lt; 2 &amp;&amp; 3 &gt; 2",
        publisher={"name": "&lt;b&gt;Bold&lt;/b&gt; Times"},
        authors=[{"name": "Ann &lt;Editor&gt;"}],
        tags=["&lt;html&gt;"],
        license="&lt;CC&gt;",
    )
    stored = client.get(f"/v1/articles/{article['id']}").json()
    assert stored["title"] == "<script>alert(1)</script> in a title"
    assert stored["excerpt"] == "Why 1 < 2 && 3 > 2"
    assert stored["tags"] == ["<html>"]
    attribution = stored["attribution"]
    assert attribution["publisher"]["name"] == "<b>Bold</b> Times"
    assert attribution["authors"][0]["name"] == "Ann <Editor>"
    assert attribution["license"] == "<CC>"
    assert attribution["credit"].startswith(
        "Originally published by <b>Bold</b> Times (Ann <Editor>)"
    )

    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    documented = {
        "ArticleIn": ["title", "excerpt", "license"],
        "PublisherIn": ["name"],
        "Author": ["name"],
        "Image": ["alt"],
        "ArticlePublic": ["title", "excerpt", "tags"],
        "ArticleSummary": ["title", "excerpt", "tags"],
        "PublisherPublic": ["name"],
        "AuthorPublic": ["name"],
        "ImagePublic": ["alt"],
        "Attribution": ["license", "credit"],
        "PublisherWithCount": ["name"],
    }
    for schema, fields in documented.items():
        for field in fields:
            described = schemas[schema]["properties"][field]
            description = described.get("description") or described["items"]["description"]
            assert "escape it wherever it is written into HTML" in description, (schema, field)
    tags = schemas["ArticleIn"]["properties"]["tags"]["items"]["description"]
    assert "escape it wherever it is written into HTML" in tags


# The migration -------------------------------------------------------------------------------


def test_0013_gives_existing_articles_their_publishers_homepage_and_a_date_only_if_sent(
    client: TestClient, database_url: str, engine: Engine
) -> None:
    """Existing articles keep showing what they showed (the publisher's homepage as it stood);
    one whose date was never sent (stored as the time first seen) states none from now on."""
    command.downgrade(alembic_config(database_url), "0012_feeds")
    postgres = engine.dialect.name == "postgresql"
    seen = "2026-01-01 09:00:00" + ("+00" if postgres else ".000000")
    published = "2025-12-24 18:30:00" + ("+00" if postgres else ".000000")
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO publishers (id, name, url, article_count, created_at)"
                    " VALUES (1, 'Reuters', 'https://www.reuters.com', 2, :at),"
                    " (2, 'Wire', NULL, 0, :at)"
                ),
                {"at": seen},
            )
            for article_id, publisher_id, published_at in [
                (7, 1, published),
                (8, 1, seen),
                (9, 2, seen),
            ]:
                connection.execute(
                    text(
                        "INSERT INTO articles (id, canonical_url, source_url, source_domain,"
                        " slug, publisher_id, published_at, first_seen_at, updated_at,"
                        " content_hash, title, body_html, body_text, authors, tags)"
                        " VALUES (:id, :url, :url, 'reuters.com', :slug, :publisher_id,"
                        " :published_at, :seen, :seen, :hash, 'Harbour strike',"
                        " '<p>Dockers walk out</p>', 'Dockers walk out', '[]', '[]')"
                    ),
                    {
                        "id": article_id,
                        "url": f"https://www.reuters.com/world/{article_id}",
                        "slug": f"harbour-strike-{article_id}",
                        "publisher_id": publisher_id,
                        "published_at": published_at,
                        "seen": seen,
                        "hash": f"{article_id}" * 64,
                    },
                )
        upgrade_to_head(database_url)
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT id, publisher_url, published_at_known FROM articles ORDER BY id")
            ).all()
        assert [tuple(row) for row in rows] == [
            (7, "https://www.reuters.com", True),
            (8, "https://www.reuters.com", False),
            (9, None, False),
        ]
        dated = client.get("/v1/articles/7").json()["attribution"]
        assert dated["publisher"] == REUTERS
        assert dated["published_at"] == "2025-12-24T18:30:00Z"
        assert " on 24 December 2025. " in dated["credit"]
        undated = client.get("/v1/articles/by-slug/harbour-strike-8").json()
        assert undated["attribution"]["published_at"] is None
        assert undated["published_at"] == "2026-01-01T09:00:00Z"
        assert undated["attribution"]["credit"] == (
            "Originally published by Reuters. Read the original: https://www.reuters.com/world/8"
        )
    finally:
        upgrade_to_head(database_url)
