"""byline's own feeds: Atom 1.0 and JSON Feed 1.1 of live articles, read as feed readers read
them (feedparser), with the JSON list's filters and pages, attribution in every entry,
well-formed XML whatever the text, ETags that follow every change, and removed articles gone."""

import json
import xml.etree.ElementTree as ET
from datetime import timedelta
from typing import Any

import feedparser
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine
from starlette.routing import Match

from app.clock import FrozenClock
from app.config import Settings
from app.errors import PROBLEM_MEDIA_TYPE
from app.feeds import out
from tests.articles.factories import article_payload, ingest
from tests.takedowns import factories as takedowns

ATOM = "/v1/articles.atom"
JSON_FEED = "/v1/articles.json"
BASE = "https://news.example"


def atom(client: TestClient, query: str = "") -> Any:
    response = client.get(f"{ATOM}{query}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/atom+xml; charset=utf-8"
    parsed = feedparser.parse(response.content)
    assert not parsed.bozo, parsed.get("bozo_exception")
    return parsed


def json_feed(client: TestClient, query: str = "") -> dict[str, Any]:
    response = client.get(f"{JSON_FEED}{query}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/feed+json"
    feed: dict[str, Any] = json.loads(response.content)
    return feed


def listed(client: TestClient, query: str = "") -> list[str]:
    """Our URLs of the articles the JSON list gives for `query`, every page of it."""
    urls: list[str] = []
    url = f"/v1/articles{query}"
    while url:
        response = client.get(url)
        urls += [item["url"] for item in response.json()["items"]]
        link = response.headers.get("link")
        url = link.split(">")[0].lstrip("<").removeprefix(BASE) if link else ""
    return urls


def a_full_article(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    return ingest(
        client,
        headers,
        1,
        excerpt="Barriers held overnight.",
        image={"url": "https://www.example-news.com/img/flood.jpg", "alt": "A barrier"},
        license="© Example News, all rights reserved",
        authors=[
            {"name": "Jane Reporter", "url": "https://www.example-news.com/jane"},
            {"name": "Sam Photographer"},
        ],
    )


def test_an_atom_entry_carries_the_article_and_its_attribution(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    article = a_full_article(client, ingest_headers)
    feed = atom(client)
    assert feed.version == "atom10"
    assert feed.feed.title == "byline articles"
    assert feed.feed.id == f"{BASE}{ATOM}"
    assert feed.feed.updated == "2026-01-05T09:00:00Z"
    (entry,) = feed.entries
    attribution = article["attribution"]
    assert entry.id == article["url"] == f"{BASE}/v1/articles/{article['id']}"
    assert entry.title == "Flood defences hold in river town 1"
    assert entry.link == attribution["source_url"]  # what a reader opens: the original
    links = {link.rel: link.href for link in entry.links}
    assert links == {"alternate": attribution["source_url"], "related": article["url"]}
    assert entry.published == "2023-03-20T10:01:00Z"
    assert entry.updated == "2026-01-05T09:00:00Z"
    assert [author.name for author in entry.authors] == ["Jane Reporter", "Sam Photographer"]
    assert entry.authors[0].href == "https://www.example-news.com/jane"
    assert entry.source.title == "Example News"
    assert entry.source.link == "https://www.example-news.com"
    assert entry.rights == "© Example News, all rights reserved"
    assert [tag.term for tag in entry.tags] == ["local", "weather"]
    assert entry.media_thumbnail == [{"url": "https://www.example-news.com/img/flood.jpg"}]
    credit = attribution["credit"]
    assert credit == (
        "Originally published by Example News (Jane Reporter, Sam Photographer) on 20 March"
        " 2023. Read the original: https://www.example-news.com/2023/03/20/story-1"
    )
    assert entry.summary == f"Barriers held overnight.\n\n{credit}"
    (content,) = entry.content
    assert content.type == "text/html"
    assert content.value.startswith(article["body_html"])
    assert 'Read the original: <a href="https://www.example-news.com/2023/03/20/story-1"' in (
        content.value
    )


def test_a_json_feed_item_carries_the_article_and_its_attribution(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    article = a_full_article(client, ingest_headers)
    feed = json_feed(client)
    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert feed["title"] == "byline articles"
    assert feed["home_page_url"] == f"{BASE}/v1/articles"
    assert feed["feed_url"] == f"{BASE}{JSON_FEED}"
    assert "next_url" not in feed
    (item,) = feed["items"]
    attribution = article["attribution"]
    assert item["id"] == item["url"] == article["url"]
    assert item["external_url"] == attribution["source_url"]
    assert item["title"] == article["title"]
    assert item["date_published"] == "2023-03-20T10:01:00Z"
    assert item["date_modified"] == "2026-01-05T09:00:00Z"
    assert item["authors"] == [
        {"name": "Jane Reporter", "url": "https://www.example-news.com/jane"},
        {"name": "Sam Photographer"},
    ]
    assert item["tags"] == ["local", "weather"]
    assert item["language"] == "en"
    assert item["image"] == "https://www.example-news.com/img/flood.jpg"
    assert item["summary"] == f"Barriers held overnight.\n\n{attribution['credit']}"
    assert item["content_html"].startswith(article["body_html"])
    assert attribution["credit"].removesuffix(attribution["source_url"]) in item["content_html"]
    # The attribution block of the JSON answers, as they carry it.
    assert item["_byline"] == {"about": f"{BASE}/docs", "attribution": attribution}
    listed_item = client.get("/v1/articles").json()["items"][0]
    assert item["_byline"]["attribution"] == listed_item["attribution"]


def test_an_article_without_authors_is_credited_to_its_publisher_and_unknowns_are_left_out(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    ingest(client, ingest_headers, 1, authors=[], language=None, tags=[])
    (item,) = json_feed(client)["items"]
    assert item["authors"] == [{"name": "Example News", "url": "https://www.example-news.com"}]
    assert "image" not in item and "language" not in item
    assert item["tags"] == []
    assert "Originally published by Example News on 20 March 2023." in item["summary"]
    (entry,) = atom(client).entries
    assert [(author.name, author.href) for author in entry.authors] == [
        ("Example News", "https://www.example-news.com")
    ]
    assert "media_thumbnail" not in entry and "rights" not in entry and "tags" not in entry


def test_an_empty_feed_is_a_valid_feed_that_names_no_date(client: TestClient) -> None:
    feed = atom(client)
    assert feed.entries == [] and "updated" not in feed.feed
    assert json_feed(client)["items"] == []


FILTERS = [
    "?publisher=Other+Paper",
    "?domain=www.example-news.com",
    "?tag=science",
    "?language=FR",
    "?published_after=2025-01-01T00:00:00Z",
    "?published_before=2025-01-01T00:00:00Z",
    "?q=flood",
    "?q=town&tag=science",
]


@pytest.mark.parametrize("query", FILTERS)
def test_feeds_take_the_lists_filters_and_search(
    client: TestClient, ingest_headers: dict[str, str], query: str
) -> None:
    ingest(client, ingest_headers, 1, published_at="2024-05-01T00:00:00Z")
    ingest(
        client,
        ingest_headers,
        2,
        title="Town council votes",
        source_url="https://www.other.example/x",
        publisher={"name": "Other Paper"},
        tags=["science"],
        language="fr",
        published_at="2025-05-01T00:00:00Z",
    )
    expected = listed(client, query)
    assert len(expected) == 1
    assert [entry.id for entry in atom(client, query).entries] == expected
    assert [item["id"] for item in json_feed(client, query)["items"]] == expected


def test_a_filtered_feed_says_so_in_its_title_and_language(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    ingest(client, ingest_headers, 1)
    query = "?tag=weather&language=EN"
    assert atom(client, query).feed.title == "byline articles (tag weather, language EN)"
    assert atom(client, query).feed.language == "en"
    assert json_feed(client, query)["language"] == "en"
    # What the feed describes: the same list, as JSON.
    assert json_feed(client, query)["home_page_url"] == f"{BASE}/v1/articles{query}"
    alternate = [link for link in atom(client, query).feed.links if link.rel == "alternate"]
    assert [(link.type, link.href) for link in alternate] == [
        ("application/json", f"{BASE}/v1/articles{query}")
    ]


@pytest.mark.parametrize("path", [ATOM, JSON_FEED])
def test_feeds_page_as_the_list_does_until_exhausted(
    client: TestClient, ingest_headers: dict[str, str], path: str
) -> None:
    for n in range(7):
        ingest(client, ingest_headers, n, published_at=f"2024-01-01T00:{n:02d}:00Z")
    ingest(client, ingest_headers, 9, tags=["other"])
    query = "?limit=3&tag=weather"
    url = f"{path}{query}"
    seen: list[str] = []
    pages = 0
    while url:
        response = client.get(url)
        list_page = client.get(url.replace(path, "/v1/articles"))
        assert response.status_code == 200
        pages += 1
        if path == ATOM:
            parsed = feedparser.parse(response.content)
            assert not parsed.bozo
            seen += [entry.id for entry in parsed.entries]
            next_links = [link.href for link in parsed.feed.links if link.rel == "next"]
            self_link = [link.href for link in parsed.feed.links if link.rel == "self"]
            assert self_link == [f"{BASE}{url}"]
            assert parsed.feed.id == f"{BASE}{path}{query}"
            next_url = next_links[0] if next_links else None
        else:
            body = response.json()
            seen += [item["id"] for item in body["items"]]
            assert body["feed_url"] == f"{BASE}{path}{query}"
            next_url = body.get("next_url")
        # One pager: the feed's next link is the list's, on the feed's path.
        list_link = list_page.headers.get("link")
        if next_url is None:
            assert list_link is None and "link" not in response.headers
            url = ""
        else:
            assert list_link == f'<{next_url.replace(path, "/v1/articles")}>; rel="next"'
            assert response.headers["link"] == f'<{next_url}>; rel="next"'
            assert "tag=weather" in next_url and "limit=3" in next_url
            url = next_url.removeprefix(BASE)
    assert pages == 3
    assert seen == listed(client, query) and len(seen) == 7


def test_hostile_text_gives_well_formed_xml_and_reaches_readers_as_text(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    hostile = "Tom &amp; Jerry &lt;script&gt;alert(1)&lt;/script&gt; ]]> \x01\x08\x1b\ufffe end"
    article = ingest(
        client,
        ingest_headers,
        1,
        title=hostile,
        excerpt=hostile,
        authors=[{"name": 'Eve "&lt;b&gt;" \x02'}],
        publisher={"name": "Paper \x07 &lt;i&gt;", "url": "https://www.example-news.com"},
        tags=["&lt;tag&gt;"],
        license="\x0c&lt;rights&gt;",
    )
    assert "<script>" in article["title"] and "\x01" in article["title"]
    response = client.get(ATOM)
    root = ET.fromstring(response.content)  # strict XML 1.0: raises on ill-formed input
    namespace = "{http://www.w3.org/2005/Atom}"
    entry = root.find(f"{namespace}entry")
    assert entry is not None
    # The characters XML 1.0 forbids are dropped (the spaces around them stay).
    assert entry.findtext(f"{namespace}title") == ("Tom & Jerry <script>alert(1)</script> ]]>  end")
    parsed = atom(client)
    (parsed_entry,) = parsed.entries
    assert "alert(1)" in parsed_entry.title and "\x01" not in parsed_entry.title
    assert parsed_entry.authors[0].name == 'Eve "<b>"'
    assert parsed_entry.tags[0].term == "<tag>"
    # The JSON Feed keeps the text as stored: JSON escapes every character.
    (item,) = json_feed(client)["items"]
    assert item["title"] == article["title"]


@pytest.mark.parametrize("path", [ATOM, JSON_FEED])
def test_etag_answers_304_and_changes_when_an_article_changes(
    client: TestClient, ingest_headers: dict[str, str], clock: FrozenClock, path: str
) -> None:
    ingest(client, ingest_headers, 1)
    ingest(client, ingest_headers, 2)
    first = client.get(path)
    etag = first.headers["etag"]
    assert etag.startswith('"') and len(etag) == 26
    assert first.headers["cache-control"] == "public, max-age=60"
    again = client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == "public, max-age=60"
    assert client.get(path, headers={"If-None-Match": f'"other", W/{etag}'}).status_code == 304
    assert client.get(path, headers={"If-None-Match": '"other"'}).status_code == 200
    # An update of an article the feed shows.
    clock.advance(timedelta(minutes=10))
    ingest(client, ingest_headers, 1, title="Flood defences fail in river town 1")
    updated = client.get(path, headers={"If-None-Match": etag})
    assert updated.status_code == 200
    assert "Flood defences fail" in updated.text
    assert updated.headers["etag"] != etag
    # The same feed twice: the same ETag (the body holds no clock time).
    clock.advance(timedelta(minutes=10))
    assert client.get(path).headers["etag"] == updated.headers["etag"]


def test_another_articles_publisher_homepage_changes_neither_an_entry_nor_the_etag(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    first = ingest(client, ingest_headers, 1)
    query = "?domain=www.example-news.com"
    before = client.get(f"{ATOM}{query}").headers["etag"]
    # Another article of the same publisher, from another domain, names another homepage:
    # each article credits the homepage sent with it, so the first one's entry is as it was.
    ingest(
        client,
        ingest_headers,
        2,
        source_url="https://mirror.example-news.org/story-2",
        publisher={"name": "Example News", "url": "https://example-news.org"},
    )
    after = client.get(f"{ATOM}{query}", headers={"If-None-Match": before})
    assert after.status_code == 304
    (entry,) = feedparser.parse(client.get(f"{ATOM}{query}").content).entries
    assert entry.id == first["url"]
    assert entry.source.link == "https://www.example-news.com"


def test_a_removed_article_vanishes_from_both_feeds_and_their_etags_change(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
) -> None:
    kept = takedowns.ingest(client, ingest_headers, 1)
    removed = takedowns.ingest(client, ingest_headers, 2)
    before = {path: client.get(path).headers["etag"] for path in (ATOM, JSON_FEED)}
    assert {entry.id for entry in atom(client).entries} == {kept["url"], removed["url"]}
    # A rights holder at the publisher's domain files and confirms; the removal worker runs.
    takedowns.file_confirmed(client, engine, takedowns.filing([removed["id"]]))
    clock.advance(timedelta(minutes=1))
    takedowns.tick(engine, settings, clock)
    takedowns.assert_problem(client.get(f"/v1/articles/{removed['id']}"), 451)
    assert [entry.id for entry in atom(client).entries] == [kept["url"]]
    assert [item["id"] for item in json_feed(client)["items"]] == [kept["url"]]
    assert [item.id for item in atom(client, "?q=flood").entries] == [kept["url"]]
    for path, etag in before.items():
        response = client.get(path, headers={"If-None-Match": etag})
        assert response.status_code == 200
        assert response.headers["etag"] != etag
        assert removed["title"] not in response.text or removed["title"] == kept["title"]
        assert removed["url"] not in response.text


@pytest.mark.parametrize(("path", "content_type"), [(ATOM, out.ATOM), (JSON_FEED, out.JSON_FEED)])
def test_feed_paths_are_not_captured_by_the_reads_by_key(
    app: FastAPI, client: TestClient, path: str, content_type: str
) -> None:
    # The reads by key are matched before every other route; `/v1/articles/{article_id}`
    # taking a feed's path would answer it with a 422 on the id.
    reads_by_key = app.router.routes[:2]
    assert [getattr(route, "path", None) for route in reads_by_key] == [
        "/v1/articles/by-slug/{slug}",
        "/v1/articles/{article_id}",
    ]
    scope = {"type": "http", "path": path, "method": "GET", "root_path": ""}
    assert [route.matches(scope)[0] for route in reads_by_key] == [Match.NONE, Match.NONE]
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(content_type)


@pytest.mark.parametrize("path", [ATOM, JSON_FEED])
@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("limit=0", 422, "limit"),
        ("limit=101", 422, "limit"),
        ("published_after=yesterday", 422, "published_after"),
        ("language=english!", 422, "language"),
        ("cursor=abc", 400, None),
    ],
)
def test_bad_feed_parameters_are_problems_as_on_the_list(
    client: TestClient, path: str, query: str, status: int, field: str | None
) -> None:
    response: Response = client.get(f"{path}?{query}")
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    if field is not None:
        assert response.json()["errors"][0]["field"] == field
    assert client.get(f"/v1/articles?{query}").status_code == status


def test_a_search_cursor_on_a_plain_feed_is_a_400(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    ingest(client, ingest_headers, 1)
    ingest(client, ingest_headers, 2)
    search_next = json_feed(client, "?q=flood&limit=1")["next_url"]
    cursor = search_next.split("cursor=")[1]
    response = client.get(f"{ATOM}?cursor={cursor}")
    assert response.status_code == 400
    assert response.json()["type"].endswith("/bad-cursor")


def test_the_openapi_document_describes_both_feeds(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    atom_answers = paths[ATOM]["get"]["responses"]
    json_answers = paths[JSON_FEED]["get"]["responses"]
    assert list(atom_answers["200"]["content"]) == ["application/atom+xml"]
    assert json_answers["200"]["content"] == {
        "application/feed+json": {"schema": {"$ref": "#/components/schemas/JsonFeed"}}
    }
    for answers in (atom_answers, json_answers):
        assert {"200", "304", "400", "422", "503"} <= set(answers)
    list_parameters = [p["name"] for p in paths["/v1/articles"]["get"]["parameters"]]
    assert [p["name"] for p in paths[ATOM]["get"]["parameters"]] == list_parameters
    assert [p["name"] for p in paths[JSON_FEED]["get"]["parameters"]] == list_parameters


@pytest.mark.parametrize("path", [ATOM, JSON_FEED])
def test_feeds_with_articles_answer_as_the_openapi_document_says(
    app: FastAPI, client: TestClient, ingest_headers: dict[str, str], path: str
) -> None:
    # The fuzzer (tests/hardening) meets the feeds on an empty database; here they hold
    # articles, the JSON Feed's items are checked against its schema, and the 304 too.
    a_full_article(client, ingest_headers)
    ingest(client, ingest_headers, 2, authors=[], language=None)
    operation = schemathesis.openapi.from_dict(app.openapi())[path]["GET"]
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
    ]
    with asgi.get_client(app) as fuzz_client:
        case = operation.Case(query={"limit": 1})
        response = case.call(session=fuzz_client)
        assert response.status_code == 200
        case.validate_response(response, checks=checks)
        etag = response.headers["etag"][0]
        again = operation.Case(query={"limit": 1}, headers={"If-None-Match": etag})
        not_modified = again.call(session=fuzz_client)
        assert not_modified.status_code == 304
        again.validate_response(not_modified, checks=checks)


def test_a_feed_article_is_the_one_ingested(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    payload = article_payload(3, body_html='<p>Safe</p><script>alert("x")</script>')
    created = client.post("/v1/articles", json=payload, headers=ingest_headers).json()["article"]
    (item,) = json_feed(client)["items"]
    assert "<script" not in item["content_html"]
    assert item["content_html"].startswith(created["body_html"])
