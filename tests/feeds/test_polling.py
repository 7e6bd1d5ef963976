"""Feeds polled from a real HTTP server on 127.0.0.1: each format becomes articles through the
ingest service, politely (conditional GET, redirects, 410, 429, backoff), safely (body cap,
slow servers, malformed XML, entity bombs) and within publishers' reservations and blocks."""

import gzip
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import brotli
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlmodel import col

from app import background
from app.articles.urls import match_key
from app.clock import FrozenClock
from app.config import Settings
from app.db import new_session
from app.feeds import fetching
from app.feeds import service as feeds_service
from app.feeds.models import Feed
from app.feeds.polls import FeedHandler
from app.takedowns.blocks import add_block, lift_block
from app.takedowns.models import AuditEvent
from tests.feeds.conftest import Answer, Asked, FeedServer
from tests.feeds.factories import ATOM, JSON_FEED, RSS, feed_worker, rss, rss_item, run_feeds

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


def subscribe(
    client: TestClient, headers: dict[str, str], url: str, **extra: Any
) -> dict[str, Any]:
    response = client.post("/v1/feeds", json={"url": url, **extra}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def feed_health(client: TestClient, headers: dict[str, str], feed_id: int) -> dict[str, Any]:
    response = client.get(f"/v1/feeds/{feed_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def articles(client: TestClient) -> list[dict[str, Any]]:
    response = client.get("/v1/articles", params={"limit": 100})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def article(client: TestClient, summary: dict[str, Any]) -> dict[str, Any]:
    """The article read by id, its attribution's fields beside the others."""
    response = client.get(f"/v1/articles/{summary['id']}")
    assert response.status_code == 200, response.text
    body = response.json()
    return {**body, **body["attribution"]}


def audit_actions(engine: Engine, feed_id: int) -> list[str]:
    with new_session(engine) as session:
        return list(
            session.scalars(
                select(col(AuditEvent.action))
                .where(col(AuditEvent.feed_id) == feed_id)
                .order_by(col(AuditEvent.id))
            )
        )


def stored_feed(engine: Engine, feed_id: int) -> Feed:
    with new_session(engine) as session:
        feed = session.get(Feed, feed_id)
        assert feed is not None
        return feed


# Formats ----------------------------------------------------------------------------------------


def test_an_rss_feed_becomes_articles_with_their_attribution(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    feed_server: FeedServer,
) -> None:
    items = [
        rss_item(
            1,
            host=feed_server.base,
            when=NOW - timedelta(hours=2),
            creator="Jane Doe",
            category="World",
            raw='<enclosure url="https://img.example/1.jpg" type="image/jpeg" length="9"/>',
        ),
        {
            "title": "Relative",
            "link": "/news/relative?utm_source=rss",
            "description": "<p>Resolved against the feed's URL.</p>",
        },
        {"title": "No link at all", "description": "<p>Nothing to credit.</p>"},
    ]
    feed_server.routes["/rss.xml"] = Answer(200, rss(items), {"Content-Type": RSS})
    feed = subscribe(
        client,
        ingest_headers,
        feed_server.url("/rss.xml"),
        publisher={"name": "Example News", "url": "https://example.com"},
        language="en",
        tags=["wire"],
    )
    assert feed["status"] == "active" and feed["next_fetch_at"] is not None

    result = run_feeds(engine, settings, clock)

    assert result.of("feed")["fetched"] == 1
    [asked] = feed_server.requests_to("/rss.xml")
    assert (
        asked.headers["user-agent"].startswith("byline/")
        and "news.example" in asked.headers["user-agent"]
    )
    by_title = {a["title"]: a for a in articles(client)}
    assert set(by_title) == {"Story 1", "Relative"}
    story = article(client, by_title["Story 1"])
    assert story["source_url"] == feed_server.url("/news/story-1")
    assert story["publisher"] == {"name": "Example News", "url": "https://example.com"}
    assert [a["name"] for a in story["authors"]] == ["Jane Doe"]
    assert set(story["tags"]) == {"world", "wire"}
    assert story["language"] == "en"
    assert story["image"]["url"] == "https://img.example/1.jpg"
    assert story["published_at"].startswith((NOW - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"))
    relative = article(client, by_title["Relative"])
    assert relative["source_url"].startswith(feed_server.url("/news/relative"))
    health = feed_health(client, ingest_headers, feed["id"])
    assert health["last_status"] == "HTTP 200"
    assert health["consecutive_errors"] == 0
    assert health["counts"] | {} == {
        "fetches": 1,
        "not_modified": 0,
        "entries_seen": 3,
        "articles_created": 2,
        "articles_updated": 0,
        "articles_unchanged": 0,
        "entries_blocked": 0,
        "entries_invalid": 1,
        "entries_reserved": 0,
    }
    next_fetch = datetime.fromisoformat(health["next_fetch_at"])
    assert NOW + settings.feeds_min_interval * 0.9 <= next_fetch <= NOW + timedelta(hours=24)


def test_atom_and_json_feed_credit_the_feed_itself_without_a_publisher(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    feed_server: FeedServer,
) -> None:
    atom = (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom" '
        'xml:lang="fr"><title>Le Atom</title><link href="https://atom.example/"/>'
        "<id>urn:atom</id><updated>2026-12-07T10:00:00Z</updated>"
        f'<entry><title>Atom entry</title><link rel="alternate" href="{feed_server.base}/a/1"/>'
        "<id>urn:1</id><updated>2026-12-07T09:00:00Z</updated>"
        "<author><name>Marie</name><uri>https://atom.example/marie</uri></author>"
        '<category term="Politique"/><summary>Short</summary>'
        '<content type="html">&lt;p&gt;Full &lt;b&gt;text&lt;/b&gt;&lt;/p&gt;</content>'
        "</entry></feed>"
    ).encode()
    json_feed = json.dumps(
        {
            "version": "https://jsonfeed.org/version/1.1",
            "title": "JSON Daily",
            "home_page_url": "https://json.example/",
            "language": "de",
            "authors": [{"name": "Desk"}],
            "items": [
                {
                    "id": "1",
                    "url": f"{feed_server.base}/j/1",
                    "title": "JSON item",
                    "content_html": "<p>Hallo</p>",
                    "date_published": "2026-12-07T08:00:00Z",
                    "tags": ["Tech"],
                    "image": "https://json.example/j/1.png",
                },
                {"id": "2", "title": "No URL", "content_text": "x"},
            ],
        }
    ).encode()
    feed_server.routes["/atom"] = Answer(200, atom, {"Content-Type": ATOM})
    feed_server.routes["/feed.json"] = Answer(200, json_feed, {"Content-Type": JSON_FEED})
    atom_feed = subscribe(client, ingest_headers, feed_server.url("/atom"))
    json_feed_sub = subscribe(client, ingest_headers, feed_server.url("/feed.json"))

    run_feeds(engine, settings, clock)

    by_title = {a["title"]: article(client, a) for a in articles(client)}
    entry = by_title["Atom entry"]
    assert entry["publisher"] == {"name": "Le Atom", "url": "https://atom.example/"}
    assert entry["authors"] == [{"name": "Marie", "url": "https://atom.example/marie"}]
    assert "<b>text</b>" in entry["body_html"] and entry["excerpt"] == "Short"
    assert entry["language"] == "fr" and entry["tags"] == ["politique"]
    item = by_title["JSON item"]
    assert item["publisher"] == {"name": "JSON Daily", "url": "https://json.example/"}
    assert (
        item["authors"] == [{"name": "Desk", "url": None}] or item["authors"][0]["name"] == "Desk"
    )
    assert item["language"] == "de" and item["image"]["url"] == "https://json.example/j/1.png"
    assert (
        feed_health(client, ingest_headers, json_feed_sub["id"])["counts"]["entries_invalid"] == 1
    )
    assert feed_health(client, ingest_headers, atom_feed["id"])["title"] == "Le Atom"


# Polite fetching --------------------------------------------------------------------------------


def test_conditional_get_counts_304_and_an_unchanged_feed_changes_nothing(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    feed_server: FeedServer,
) -> None:
    body = rss([rss_item(1, host=feed_server.base), rss_item(2, host=feed_server.base)])

    def answer(asked: Asked) -> Answer:
        if asked.headers.get("if-none-match") == '"v1"':
            return Answer(304)
        return Answer(
            200,
            body,
            {"Content-Type": RSS, "ETag": '"v1"', "Last-Modified": "Mon, 07 Dec 2026 11:00:00 GMT"},
        )

    feed_server.routes["/rss"] = answer
    feed = subscribe(client, ingest_headers, feed_server.url("/rss"))
    run_feeds(engine, settings, clock)
    clock.advance(timedelta(hours=25))
    result = run_feeds(engine, settings, clock)

    assert result.of("feed")["not_modified"] == 1
    second = feed_server.requests_to("/rss")[1]
    assert second.headers["if-none-match"] == '"v1"'
    assert second.headers["if-modified-since"] == "Mon, 07 Dec 2026 11:00:00 GMT"
    health = feed_health(client, ingest_headers, feed["id"])
    assert health["counts"]["fetches"] == 2 and health["counts"]["not_modified"] == 1
    assert health["counts"]["articles_created"] == 2
    assert health["last_status"] == "HTTP 304 Not Modified"
    assert len(articles(client)) == 2


def test_entries_seen_unchanged_are_not_prepared_again_and_changed_ones_are(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    feed_server: FeedServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A changed feed (a new ETag) brings mostly old entries: each is known by the digest of
    what it would be ingested as, and only new or changed ones go through the ingest again,
    also after the subscription's tags change."""
    base = feed_server.base
    versions = {
        '"v1"': rss([rss_item(n, host=base) for n in (1, 2, 3)]),
        '"v2"': rss(
            [rss_item(4, host=base), rss_item(1, host=base, title="Story 1, corrected")]
            + [rss_item(n, host=base) for n in (2, 3)]
        ),
    }
    current = ['"v1"']
    feed_server.routes["/rss"] = lambda asked: Answer(
        200, versions[current[0]], {"Content-Type": RSS, "ETag": current[0]}
    )
    prepared: list[str] = []
    real_prepare = feeds_service.prepare_article

    def counted(article: Any, **options: Any) -> Any:
        prepared.append(str(article.source_url))
        return real_prepare(article, **options)

    monkeypatch.setattr(feeds_service, "prepare_article", counted)
    feed = subscribe(client, ingest_headers, feed_server.url("/rss"))
    run_feeds(engine, settings, clock)
    assert len(prepared) == 3

    current[0] = '"v2"'
    prepared.clear()
    clock.advance(timedelta(days=1))
    run_feeds(engine, settings, clock)
    assert sorted(url.rsplit("-", 1)[1] for url in prepared) == ["1", "4"]
    counts = feed_health(client, ingest_headers, feed["id"])["counts"]
    assert (counts["articles_created"], counts["articles_updated"]) == (4, 1)
    assert counts["articles_unchanged"] == 2
    assert "Story 1, corrected" in {a["title"] for a in articles(client)}

    # The subscription's tags are part of every entry's article: all are ingested again.
    changed = client.patch(
        f"/v1/feeds/{feed['id']}", json={"tags": ["harbour"]}, headers=ingest_headers
    )
    assert changed.status_code == 200, changed.text
    current[0] = '"v3"'
    versions['"v3"'] = versions['"v2"']
    prepared.clear()
    clock.advance(timedelta(days=1))
    run_feeds(engine, settings, clock)
    assert len(prepared) == 4
    assert all("harbour" in a["tags"] for a in articles(client))


def test_a_permanent_redirect_moves_the_feed_and_a_temporary_one_does_not(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    feed_server: FeedServer,
) -> None:
    feed_server.routes["/old"] = Answer(301, headers={"Location": "/new"})
    feed_server.routes["/new"] = Answer(
        200, rss([rss_item(1, host=feed_server.base)]), {"Content-Type": RSS}
    )
    feed_server.routes["/moving"] = Answer(302, headers={"Location": "/new-temp"})
    feed_server.routes["/new-temp"] = Answer(
        200, rss([rss_item(2, host=feed_server.base)]), {"Content-Type": RSS}
    )
    feed_server.routes["/loop"] = Answer(302, headers={"Location": "/loop"})
    moved = subscribe(client, ingest_headers, feed_server.url("/old"))
    temporary = subscribe(client, ingest_headers, feed_server.url("/moving"))
    looping = subscribe(client, ingest_headers, feed_server.url("/loop"))

    run_feeds(engine, settings, clock)

    assert feed_health(client, ingest_headers, moved["id"])["url"] == feed_server.url("/new")
    assert "feed_moved" in audit_actions(engine, moved["id"])
    assert feed_health(client, ingest_headers, temporary["id"])["url"] == feed_server.url("/moving")
    assert {a["title"] for a in articles(client)} == {"Story 1", "Story 2"}
    health = feed_health(client, ingest_headers, looping["id"])
    assert health["last_status"] == "more than 5 redirects"
    assert len(feed_server.requests_to("/loop")) == 6


def test_410_marks_the_feed_gone_and_it_is_never_fetched_again(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    feed_server: FeedServer,
) -> None:
    feed_server.routes["/gone"] = Answer(410)
    feed = subscribe(client, ingest_headers, feed_server.url("/gone"))
    run_feeds(engine, settings, clock)
    clock.advance(timedelta(days=3))
    run_feeds(engine, settings, clock)

    health = feed_health(client, ingest_headers, feed["id"])
    assert health["status"] == "gone" and health["next_fetch_at"] is None
    assert len(feed_server.requests_to("/gone")) == 1
    assert "feed_gone" in audit_actions(engine, feed["id"])
    refused = client.post(f"/v1/feeds/{feed['id']}/fetch", headers=ingest_headers)
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"


def test_429_with_retry_after_is_honoured(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    feed_server: FeedServer,
) -> None:
    feed_server.routes["/busy"] = Answer(429, headers={"Retry-After": "7200"})
    http_date = "Mon, 07 Dec 2026 18:00:00 GMT"
    feed_server.routes["/down"] = Answer(503, headers={"Retry-After": http_date})
    busy = subscribe(client, ingest_headers, feed_server.url("/busy"))
    down = subscribe(client, ingest_headers, feed_server.url("/down"))

    run_feeds(engine, settings, clock)

    health = feed_health(client, ingest_headers, busy["id"])
    assert health["last_status"] == "HTTP 429" and health["consecutive_errors"] == 1
    assert datetime.fromisoformat(health["next_fetch_at"]) >= NOW + timedelta(seconds=7200)
    down_health = feed_health(client, ingest_headers, down["id"])
    assert datetime.fromisoformat(down_health["next_fetch_at"]) >= NOW + timedelta(hours=6)
    clock.advance(timedelta(hours=1))
    run_feeds(engine, settings, clock)
    assert len(feed_server.requests_to("/busy")) == 1


def test_errors_back_off_exponentially_capped_at_a_day_and_the_feed_recovers(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    feed_server: FeedServer,
) -> None:
    feed_server.routes["/flaky"] = Answer(500, b"oops")
    feed = subscribe(client, ingest_headers, feed_server.url("/flaky"))
    waits = []
    for _ in range(12):
        run_feeds(engine, settings, clock)
        health = feed_health(client, ingest_headers, feed["id"])
        next_fetch = datetime.fromisoformat(health["next_fetch_at"])
        waits.append(next_fetch - clock.now())
        clock.set(next_fetch)

    assert health["consecutive_errors"] == 12 and health["last_status"] == "HTTP 500"
    assert health["status"] == "active"
    minimum = settings.feeds_min_interval
    assert minimum * 0.9 <= waits[0] <= minimum * 1.1
    assert minimum * 3.6 <= waits[2] <= minimum * 4.4
    assert all(wait <= timedelta(hours=24) for wait in waits)
    assert waits[-1] >= timedelta(hours=24) * 0.9

    feed_server.routes["/flaky"] = Answer(
        200, rss([rss_item(1, host=feed_server.base)]), {"Content-Type": RSS}
    )
    run_feeds(engine, settings, clock)
    health = feed_health(client, ingest_headers, feed["id"])
    assert health["consecutive_errors"] == 0 and health["counts"]["articles_created"] == 1


# Hostile servers --------------------------------------------------------------------------------


def test_a_slow_server_times_out_and_does_not_hold_the_others(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    feed_server: FeedServer,
) -> None:
    quick = settings.model_copy(update={"feeds_timeout_seconds": 0.5})
    feed_server.routes["/slow"] = Answer(
        200, rss([rss_item(1, host=feed_server.base)]), {"Content-Type": RSS}
    )
    feed_server.held_paths.add("/slow")
    feed_server.routes["/fast"] = Answer(
        200, rss([rss_item(2, host=feed_server.base)]), {"Content-Type": RSS}
    )
    slow = subscribe(client, ingest_headers, feed_server.url("/slow"))
    subscribe(client, ingest_headers, feed_server.url("/fast"))

    run_feeds(engine, quick, clock)

    assert feed_health(client, ingest_headers, slow["id"])["last_status"].startswith("timeout")
    assert {a["title"] for a in articles(client)} == {"Story 2"}


def test_a_body_over_the_limit_is_refused_compressed_or_not(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    feed_server: FeedServer,
) -> None:
    small = settings.model_copy(update={"feeds_max_bytes": 20_000})
    big = rss([rss_item(n, host=feed_server.base, description="x" * 1000) for n in range(50)])
    bomb = gzip.compress(b" " * 5_000_000)
    feed_server.routes["/big"] = Answer(200, big, {"Content-Type": RSS})
    feed_server.routes["/bomb"] = Answer(
        200, bomb, {"Content-Type": RSS, "Content-Encoding": "gzip"}
    )
    feed_server.routes["/undeclared"] = lambda asked: Answer(
        200, big, {"Content-Type": RSS, "Transfer-Encoding": "chunked", "Content-Length": ""}
    )
    big_feed = subscribe(client, ingest_headers, feed_server.url("/big"))
    bomb_feed = subscribe(client, ingest_headers, feed_server.url("/bomb"))

    run_feeds(engine, small, clock)

    for feed in (big_feed, bomb_feed):
        health = feed_health(client, ingest_headers, feed["id"])
        assert health["last_status"] == "body over the limit of 20000 bytes"
        assert health["consecutive_errors"] == 1
    assert articles(client) == []


def test_malformed_xml_ingests_what_can_be_read_and_says_so(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    feed_server: FeedServer,
) -> None:
    broken = rss([rss_item(1, host=feed_server.base), rss_item(2, host=feed_server.base)]).replace(
        b"</channel></rss>", b"<item><title>Cut"
    )
    feed_server.routes["/broken"] = Answer(200, broken, {"Content-Type": RSS})
    feed_server.routes["/html"] = Answer(
        200, b"<html><body>Hello</body></html>", {"Content-Type": "text/html"}
    )
    broken_feed = subscribe(client, ingest_headers, feed_server.url("/broken"))
    html_feed = subscribe(client, ingest_headers, feed_server.url("/html"))

    result = run_feeds(engine, settings, clock)

    assert {a["title"] for a in articles(client)} == {"Story 1", "Story 2"}
    health = feed_health(client, ingest_headers, broken_feed["id"])
    assert health["last_status"].startswith("HTTP 200; malformed feed")
    assert health["consecutive_errors"] == 0
    html_health = feed_health(client, ingest_headers, html_feed["id"])
    assert html_health["last_status"].startswith("not a feed")
    assert html_health["consecutive_errors"] == 1
    assert result.of("feed")["fetched"] == 1 and result.of("feed")["error"] == 1


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "aaaaaaaaaa">'
    + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9))
    + ']><rss version="2.0"><channel><title>&j;</title><item><title>&j;</title>'
    "<link>https://example.com/bomb</link><description>&j;</description></item></channel></rss>"
).encode()
EXTERNAL_ENTITY = (
    b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY secret SYSTEM "file:///etc/passwd">]>'
    b'<rss version="2.0"><channel><title>x</title><item><title>&secret;</title>'
    b"<link>https://example.com/xxe</link><description>&secret;</description></item>"
    b"</channel></rss>"
)


def test_entity_bombs_and_external_entities_are_refused(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    feed_server: FeedServer,
) -> None:
    # The DOCTYPE pushed past a long comment is found all the same.
    padded = BILLION_LAUGHS.replace(b"?>", b"?><!--" + b"-" * 100_000 + b"-->", 1)
    feed_server.routes["/bomb"] = Answer(200, BILLION_LAUGHS, {"Content-Type": RSS})
    feed_server.routes["/padded"] = Answer(200, padded, {"Content-Type": RSS})
    feed_server.routes["/xxe"] = Answer(200, EXTERNAL_ENTITY, {"Content-Type": RSS})
    feeds = [
        subscribe(client, ingest_headers, feed_server.url(p)) for p in ("/bomb", "/padded", "/xxe")
    ]

    run_feeds(engine, settings, clock)

    for feed in feeds:
        health = feed_health(client, ingest_headers, feed["id"])
        assert health["last_status"].startswith("entity declarations are refused")
    assert articles(client) == []


# Reservations and blocks ------------------------------------------------------------------------


def test_publishers_reservations_are_honoured(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    feed_server: FeedServer,
) -> None:
    host = feed_server.base
    feed_server.routes["/robots.txt"] = Answer(
        200, b"User-agent: *\nDisallow:\n\nUser-agent: byline\nDisallow: /private/\n"
    )
    feed_server.routes["/.well-known/tdmrep.json"] = Answer(
        200, json.dumps([{"location": "/licensed/*", "tdm-reservation": 1}]).encode()
    )
    mixed = rss(
        [
            {"title": "Open", "link": f"{host}/news/open", "description": "<p>Free.</p>"},
            {"title": "Private", "link": f"{host}/private/one", "description": "<p>No.</p>"},
            {"title": "Licensed", "link": f"{host}/licensed/two", "description": "<p>No.</p>"},
        ]
    )
    feed_server.routes["/mixed"] = Answer(200, mixed, {"Content-Type": RSS})
    feed_server.routes["/noarchive"] = Answer(
        200, rss([rss_item(7, host=host)]), {"Content-Type": RSS, "X-Robots-Tag": "noarchive"}
    )
    feed_server.routes["/tdm"] = Answer(
        200, rss([rss_item(8, host=host)]), {"Content-Type": RSS, "tdm-reservation": "1"}
    )
    mixed_feed = subscribe(client, ingest_headers, feed_server.url("/mixed"))
    noarchive = subscribe(client, ingest_headers, feed_server.url("/noarchive"))
    tdm = subscribe(client, ingest_headers, feed_server.url("/tdm"))

    run_feeds(engine, settings, clock)

    assert {a["title"] for a in articles(client)} == {"Open"}
    health = feed_health(client, ingest_headers, mixed_feed["id"])
    assert health["counts"]["entries_reserved"] == 2
    assert health["reserved_by_publisher"] in (
        "robots.txt disallows byline",
        "TDM reservation (tdmrep.json)",
    )
    assert feed_health(client, ingest_headers, noarchive["id"])["reserved_by_publisher"] == (
        "X-Robots-Tag: noarchive"
    )
    assert feed_health(client, ingest_headers, tdm["id"])["counts"]["entries_reserved"] == 1
    # Each host's rules are fetched once, not once per feed.
    assert len(feed_server.requests_to("/robots.txt")) == 1


def test_a_robots_txt_that_fails_with_a_server_error_reserves_the_host(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    feed_server: FeedServer,
) -> None:
    feed_server.routes["/robots.txt"] = Answer(503)
    feed_server.routes["/rss"] = Answer(
        200, rss([rss_item(1, host=feed_server.base)]), {"Content-Type": RSS}
    )
    feed = subscribe(client, ingest_headers, feed_server.url("/rss"))
    run_feeds(engine, settings, clock)
    assert articles(client) == []
    health = feed_health(client, ingest_headers, feed["id"])
    assert health["reserved_by_publisher"] == "robots.txt unreadable (HTTP 503)"


def test_blocked_entries_are_counted_and_not_republished(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    feed_server: FeedServer,
) -> None:
    with new_session(engine) as session, session.begin():
        add_block(
            session=session,
            kind="url",
            value=match_key(feed_server.url("/news/story-2")),
            takedown_id=None,
            now=NOW,
        )
    # Other spellings of the blocked URL meet its block too (on prepare_article's keys).
    spellings = ("/news/story-2/", "/news/./story-2?utm_source=rss", "//news/%73tory-2")
    items = [rss_item(1, host=feed_server.base), rss_item(2, host=feed_server.base)] + [
        rss_item(n, host=feed_server.base, link=feed_server.url(path), guid=path)
        for n, path in enumerate(spellings, start=3)
    ]
    feed_server.routes["/rss"] = Answer(200, rss(items), {"Content-Type": RSS})
    feed = subscribe(client, ingest_headers, feed_server.url("/rss"))
    run_feeds(engine, settings, clock)
    assert {a["title"] for a in articles(client)} == {"Story 1"}
    counts = feed_health(client, ingest_headers, feed["id"])["counts"]
    assert counts["entries_blocked"] == 1 + len(spellings)


def test_a_feed_of_an_opted_out_publisher_pauses_until_the_block_is_lifted(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    feed_server: FeedServer,
) -> None:
    feed_server.routes["/rss"] = Answer(
        200, rss([rss_item(1, host=feed_server.base)]), {"Content-Type": RSS}
    )
    feed = subscribe(
        client,
        ingest_headers,
        feed_server.url("/rss"),
        publisher={"name": "Example", "url": "https://www.example.com"},
    )
    with new_session(engine) as session, session.begin():
        block, _ = add_block(
            session=session, kind="domain", value="example.com", takedown_id=None, now=NOW
        )
        block_id = block.id
    run_feeds(engine, settings, clock)
    clock.advance(timedelta(hours=2))
    run_feeds(engine, settings, clock)

    health = feed_health(client, ingest_headers, feed["id"])
    assert health["status"] == "paused"
    assert health["paused_reason"] == "publisher opted out: domain example.com is blocked"
    assert feed_server.requests_to("/rss") == []
    assert audit_actions(engine, feed["id"]).count("feed_opted_out") == 1

    with new_session(engine) as session, session.begin():
        assert block_id is not None
        lift_block(
            session=session, block_id=block_id, actor="operator", reason="wrong", now=clock.now()
        )
    clock.advance(timedelta(hours=1))
    run_feeds(engine, settings, clock)
    health = feed_health(client, ingest_headers, feed["id"])
    assert health["status"] == "active" and health["counts"]["articles_created"] == 1
    assert "feed_opt_out_lifted" in audit_actions(engine, feed["id"])


def test_a_worker_never_stops_on_a_feed_that_breaks_the_database_write(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    feed_server: FeedServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    feed_server.routes["/rss"] = Answer(
        200, rss([rss_item(1, host=feed_server.base)]), {"Content-Type": RSS}
    )
    feed = subscribe(client, ingest_headers, feed_server.url("/rss"))

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("app.feeds.service.store_articles", broken)
    result = run_feeds(engine, settings, clock)
    assert result.of("feed")["retried"] == 1
    row = stored_feed(engine, feed["id"])
    assert row.status == "queued" and "disk on fire" in (row.last_error or "")
    handler = FeedHandler(settings=settings)
    assert handler.kind == "feed"


def test_compressed_feeds_are_read(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    feed_server: FeedServer,
) -> None:
    body = rss([rss_item(1, host=feed_server.base), rss_item(2, host=feed_server.base)])
    feed_server.routes["/gz"] = Answer(
        200, gzip.compress(body), {"Content-Type": RSS, "Content-Encoding": "gzip"}
    )
    feed_server.routes["/br"] = Answer(
        200, brotli.compress(body), {"Content-Type": RSS, "Content-Encoding": "br"}
    )
    for path in ("/gz", "/br"):
        subscribe(client, ingest_headers, feed_server.url(path))
    run_feeds(engine, settings, clock)
    assert "br" in feed_server.requests_to("/br")[0].headers["accept-encoding"]
    assert {a["title"] for a in articles(client)} == {"Story 1", "Story 2"}
    health = client.get("/v1/feeds", headers=ingest_headers).json()["items"]
    assert [
        f["counts"]["articles_created"] + f["counts"]["articles_unchanged"] for f in health
    ] == [2, 2]


def test_workers_share_the_feeds_and_fetch_each_once(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    feed_server: FeedServer,
) -> None:
    """Four workers at once (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the single writer on
    SQLite): every feed fetched by exactly one, its articles stored once."""
    for n in range(24):
        feed_server.routes[f"/f/{n}"] = Answer(
            200, rss([rss_item(n, host=feed_server.base)]), {"Content-Type": RSS}
        )
        subscribe(client, ingest_headers, feed_server.url(f"/f/{n}"))
    workers = [
        feed_worker(engine, settings, clock, FeedHandler(settings=settings)) for _ in range(4)
    ]
    for index, worker in enumerate(workers):
        worker.owner = f"feeds-{index}"
        for handler in worker.handlers:
            assert isinstance(handler, FeedHandler)
            handler.batch_size = 3  # several claims each, interleaved
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda worker: worker.run_once(), workers))
    background.close(workers)

    assert sum(result.of("feed")["fetched"] for result in results) == 24
    assert all(len(feed_server.requests_to(f"/f/{n}")) == 1 for n in range(24))
    assert len(articles(client)) == 24


def test_a_worker_keeps_its_connection_to_a_host_between_polls(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    feed_server: FeedServer,
) -> None:
    """No new TCP (and TLS) handshake per poll: the next batch reuses the connection, after
    a 304 too (its end is read although it has no body)."""
    body = rss([rss_item(1, host=feed_server.base)])

    def answer(asked: Asked) -> Answer:
        if asked.headers.get("if-none-match") == '"v1"':
            return Answer(304, headers={"ETag": '"v1"'})
        return Answer(200, body, {"Content-Type": RSS, "ETag": '"v1"'})

    feed_server.routes["/rss"] = answer
    subscribe(client, ingest_headers, feed_server.url("/rss"))
    handler = FeedHandler(settings=settings)
    try:
        for _ in range(3):
            run_feeds(engine, settings, clock, handler)
            clock.advance(timedelta(days=1))
    finally:
        handler.close()
    asked = feed_server.requests_to("/rss")
    assert [a.headers.get("if-none-match") for a in asked] == [None, '"v1"', '"v1"']
    assert len({a.client_port for a in asked}) == 1


def test_connections_are_kept_for_the_most_recently_used_origins_only(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    feed_server: FeedServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each origin has its own small pool; past KEPT_ORIGINS the least recently used close."""
    other = FeedServer()
    other.start()
    try:
        for server in (feed_server, other):
            server.routes["/rss"] = Answer(
                200, rss([rss_item(1, host=server.base)]), {"Content-Type": RSS}
            )
            subscribe(client, ingest_headers, server.url("/rss"))
        monkeypatch.setattr(fetching, "KEPT_ORIGINS", 1)
        handler = FeedHandler(settings=settings)
        try:
            run_feeds(engine, settings, clock, handler)
            assert len(handler.fetcher._clients) == 1
            clock.advance(timedelta(days=1))
            run_feeds(engine, settings, clock, handler)
        finally:
            handler.close()
        ports = [
            {asked.client_port for asked in server.requests_to("/rss")}
            for server in (feed_server, other)
        ]
        # Two polls of each: one origin kept its connection, the other had to open a new one.
        assert sorted(len(each) for each in ports) == [1, 2]
    finally:
        other.stop()


def test_one_batch_pauses_only_the_feeds_whose_publisher_opted_out(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    feed_server: FeedServer,
) -> None:
    """The opt-outs of a batch are looked up together: a block of a parent domain pauses
    the feeds under it, a lifted block or another domain's pauses nothing."""
    for path in ("/a", "/b", "/c"):
        feed_server.routes[path] = Answer(
            200, rss([rss_item(len(path), host=feed_server.base)]), {"Content-Type": RSS}
        )
    blocked = subscribe(
        client,
        ingest_headers,
        feed_server.url("/a"),
        publisher={"name": "A", "url": "https://news.blocked.example"},
    )
    lifted = subscribe(
        client,
        ingest_headers,
        feed_server.url("/b"),
        publisher={"name": "B", "url": "https://lifted.example"},
    )
    free = subscribe(
        client,
        ingest_headers,
        feed_server.url("/c"),
        publisher={"name": "C", "url": "https://free.example"},
    )
    with new_session(engine) as session, session.begin():
        add_block(
            session=session, kind="domain", value="blocked.example", takedown_id=None, now=NOW
        )
        old, _ = add_block(
            session=session, kind="domain", value="lifted.example", takedown_id=None, now=NOW
        )
        assert old.id is not None
        lift_block(session=session, block_id=old.id, actor="operator", reason="wrong", now=NOW)

    run_feeds(engine, settings, clock)

    states = {
        feed["id"]: client.get(f"/v1/feeds/{feed['id']}", headers=ingest_headers).json()["status"]
        for feed in (blocked, lifted, free)
    }
    assert states == {blocked["id"]: "paused", lifted["id"]: "active", free["id"]: "active"}
    assert feed_server.requests_to("/a") == []
    assert len(feed_server.requests_to("/b")) == len(feed_server.requests_to("/c")) == 1
