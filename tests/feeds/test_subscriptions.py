"""Subscriptions as ingest clients and operators manage them: the API (with its refusals of
internal addresses), OPML import, the CLI, and "fetch now" reaching a running worker through
its wake-up."""

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from typer.testing import CliRunner

from app import background
from app.cli import cli
from app.clock import FrozenClock
from app.config import Settings
from app.feeds.polls import FeedHandler
from app.main import create_app
from tests.feeds.conftest import Answer, FeedServer, closed_port
from tests.feeds.factories import RSS, feed_worker, rss, rss_item, run_feeds
from tests.takedowns.factories import assert_problem

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
def guarded(settings: Settings) -> Settings:
    """The production default: internal addresses refused."""
    return settings.model_copy(update={"allow_private_networks": False})


@pytest.fixture
def guarded_client(guarded: Settings, engine: Engine, clock: FrozenClock) -> Iterator[TestClient]:
    with TestClient(create_app(guarded, engine=engine, clock=clock)) as client:
        yield client


def post_feed(client: TestClient, headers: dict[str, str], url: str, **extra: Any) -> Any:
    return client.post("/v1/feeds", json={"url": url, **extra}, headers=headers)


def test_subscriptions_are_created_listed_changed_and_deleted(
    client: TestClient, ingest_headers: dict[str, str], feed_server: FeedServer
) -> None:
    created = post_feed(client, ingest_headers, feed_server.url("/a"), tags=["Wire"])
    assert created.status_code == 201, created.text
    feed = created.json()
    assert created.headers["location"] == f"https://news.example/v1/feeds/{feed['id']}"
    assert feed["status"] == "active" and feed["tags"] == ["wire"]
    assert feed["next_fetch_at"].startswith("2026-12-07T12:00")
    assert_problem(post_feed(client, ingest_headers, feed_server.url("/a")), 409)
    for n in range(4):
        assert post_feed(client, ingest_headers, feed_server.url(f"/more/{n}")).status_code == 201

    page = client.get("/v1/feeds", params={"limit": 2}, headers=ingest_headers)
    seen = [f["id"] for f in page.json()["items"]]
    while page.json()["next_cursor"]:
        assert 'rel="next"' in page.headers["link"]
        page = client.get(
            "/v1/feeds",
            params={"limit": 2, "cursor": page.json()["next_cursor"]},
            headers=ingest_headers,
        )
        seen += [f["id"] for f in page.json()["items"]]
    assert len(seen) == 5 and seen == sorted(seen)

    paused = client.patch(
        f"/v1/feeds/{feed['id']}",
        json={"status": "paused", "publisher": {"name": "Wire Co"}},
        headers=ingest_headers,
    )
    assert paused.status_code == 200, paused.text
    assert paused.json()["status"] == "paused" and paused.json()["next_fetch_at"] is None
    assert paused.json()["publisher"] == {"name": "Wire Co", "url": None}
    only_paused = client.get("/v1/feeds", params={"status": "paused"}, headers=ingest_headers)
    assert [f["id"] for f in only_paused.json()["items"]] == [feed["id"]]
    assert_problem(client.post(f"/v1/feeds/{feed['id']}/fetch", headers=ingest_headers), 409)
    resumed = client.patch(
        f"/v1/feeds/{feed['id']}", json={"status": "active"}, headers=ingest_headers
    )
    assert resumed.json()["status"] == "active" and resumed.json()["next_fetch_at"] is not None

    assert client.delete(f"/v1/feeds/{feed['id']}", headers=ingest_headers).status_code == 204
    assert_problem(client.get(f"/v1/feeds/{feed['id']}", headers=ingest_headers), 404)


def test_bad_subscriptions_are_refused_with_the_field_named(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    for url in ("ftp://example.com/feed", "javascript:alert(1)", "/relative", "https://"):
        response = post_feed(client, ingest_headers, url)
        assert_problem(response, 422)
        assert response.json()["errors"][0]["field"] == "url"
    assert_problem(post_feed(client, ingest_headers, "https://e.com/f", extra=1), 422)
    assert_problem(client.post("/v1/feeds", json={"url": "https://e.com/f"}), 401)
    assert_problem(client.get("/v1/feeds/999999", headers=ingest_headers), 404)
    assert_problem(
        client.patch("/v1/feeds/1", json={"status": "gone"}, headers=ingest_headers), 422
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/feed",
        "http://127.1/feed",
        "http://2130706433/feed",
        "http://0x7f000001/feed",
        "http://[::1]/feed",
        "http://localhost/feed",
        "http://0.0.0.0/feed",
    ],
)
def test_internal_addresses_are_refused_when_subscribing(
    guarded_client: TestClient, ingest_headers: dict[str, str], url: str
) -> None:
    response = post_feed(guarded_client, ingest_headers, url)
    assert_problem(response, 422)
    [error] = response.json()["errors"]
    assert error["field"] == "url"
    if "[" not in url:  # IPv6 literals are refused as URLs already (the ingest URL rule)
        assert error["message"] == "refused: not a public address"


def test_a_feed_that_now_resolves_inside_is_refused_at_the_connection(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    guarded: Settings,
    clock: FrozenClock,
    feed_server: FeedServer,
) -> None:
    """Registered while allowed (or while its name resolved outside), fetched with the guard
    on: refused before connecting, the same words whether something listens there or not."""
    feed_server.routes["/rss"] = Answer(200, rss([rss_item(1, host=feed_server.base)]))
    listening = post_feed(client, ingest_headers, feed_server.url("/rss")).json()
    closed = post_feed(client, ingest_headers, f"http://localhost:{closed_port()}/rss").json()

    run_feeds(engine, guarded, clock)

    assert feed_server.asked == []
    statuses = {
        client.get(f"/v1/feeds/{feed['id']}", headers=ingest_headers).json()["last_status"]
        for feed in (listening, closed)
    }
    assert statuses == {"refused: not a public address"}


OPML = b"""<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0"><head><title>Exported</title></head><body>
<outline text="News">
  <outline type="rss" text="A" xmlUrl="%(a)s"/>
  <outline type="rss" text="B" xmlUrl="%(b)s"/>
</outline>
<outline type="rss" text="Bad" xmlUrl="ftp://nowhere.example/feed"/>
<outline type="rss" text="Internal" xmlUrl="http://127.1/feed"/>
<outline text="A folder without a feed"/>
</body></opml>"""


def test_opml_import_answers_each_feed(
    guarded_client: TestClient, ingest_headers: dict[str, str]
) -> None:
    existing = post_feed(guarded_client, ingest_headers, "https://b.example/rss").json()
    document = OPML % {b"a": b"https://a.example/feed.xml", b"b": b"https://b.example/rss"}
    response = guarded_client.post(
        "/v1/feeds/opml",
        content=document,
        headers={**ingest_headers, "Content-Type": "text/x-opml"},
    )
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [(i["url"], i["status"]) for i in items] == [
        ("https://a.example/feed.xml", "created"),
        ("https://b.example/rss", "exists"),
        ("ftp://nowhere.example/feed", "invalid"),
        ("http://127.1/feed", "invalid"),
    ]
    assert items[1]["id"] == existing["id"]
    assert items[3]["errors"] == [{"field": "url", "message": "refused: not a public address"}]

    for bad in (b"not xml", b"<html/>", b'<!DOCTYPE opml [<!ENTITY a "b">]><opml/>'):
        refused = guarded_client.post(
            "/v1/feeds/opml", content=bad, headers={**ingest_headers, "Content-Type": "text/xml"}
        )
        assert_problem(refused, 422)


def test_fetch_now_wakes_a_running_worker(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    feed_server: FeedServer,
) -> None:
    """The worker waits a 600 s interval and the feed is next due in an hour: only the
    wake-up sent by `POST /fetch` can make it fetch now."""
    feed_server.routes["/rss"] = Answer(
        200, rss([rss_item(1, host=feed_server.base)]), {"Content-Type": RSS}
    )
    feed = post_feed(client, ingest_headers, feed_server.url("/rss")).json()
    run_feeds(engine, settings, clock)
    feed_server.arrived.clear()
    patient = settings.model_copy(update={"scheduler_interval_seconds": 600})
    worker = feed_worker(engine, patient, clock, FeedHandler(settings=patient))
    running = background.background_workers([worker], engine)
    running.start()
    try:
        assert worker.waiting.wait(10)
        fetched_before = len(feed_server.requests_to("/rss"))
        response = client.post(f"/v1/feeds/{feed['id']}/fetch", headers=ingest_headers)
        assert response.status_code == 202, response.text
        assert feed_server.arrived.wait(10)
    finally:
        assert running.stop(timeout=30)
        background.close([worker])
    assert len(feed_server.requests_to("/rss")) == fetched_before + 1


def test_the_cli_adds_lists_and_imports_feeds(byline: CliRunner, tmp_path: Path) -> None:
    added = byline.invoke(cli, ["feeds", "add", "https://a.example/rss", "--publisher", "A"])
    assert added.exit_code == 0, added.output
    assert added.output.startswith("feed ") and "https://a.example/rss" in added.output
    again = byline.invoke(cli, ["feeds", "add", "https://a.example/rss"])
    assert again.exit_code == 2 and "already has this URL" in again.output
    internal = byline.invoke(cli, ["feeds", "add", "http://127.1/rss"])
    assert internal.exit_code == 2 and "not a public address" in internal.output
    opml = tmp_path / "export.opml"
    opml.write_bytes(OPML % {b"a": b"https://a.example/rss", b"b": b"https://b.example/rss"})
    imported = byline.invoke(cli, ["feeds", "import", str(opml)])
    assert imported.exit_code == 0, imported.output
    lines = [line.split("\t")[0] for line in imported.output.splitlines()]
    assert lines == ["exists", "created", "invalid", "invalid"]
    listed = byline.invoke(cli, ["feeds", "list"])
    assert listed.exit_code == 0
    assert [line.split("\t")[-1] for line in listed.output.splitlines()] == [
        "https://a.example/rss",
        "https://b.example/rss",
    ]
    assert byline.invoke(cli, ["feeds", "list", "--status", "gone"]).output == ""
