"""Ingest: an upsert on the canonical URL that always keeps the attribution."""

import html
import re
import sys
import threading
from datetime import timedelta

import nh3
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.articles.models import Article, ArticleTag, Publisher
from app.articles.sanitise import html_to_text, plain_text
from app.articles.urls import InvalidUrl, normalise_url
from app.clock import FrozenClock
from app.db import new_session
from app.takedowns.blocks import add_block
from tests.articles.factories import article_payload, ingest
from tests.factories import row_count


def test_new_article_is_201_with_location_and_attribution(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    response = client.post("/v1/articles", json=article_payload(), headers=ingest_headers)
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "created"
    article = body["article"]
    assert response.headers["location"] == f"https://news.example/v1/articles/{article['id']}"
    attribution = article["attribution"]
    assert attribution["source_url"] == "https://www.example-news.com/2023/03/20/story-1"
    assert attribution["canonical_url"] == "https://www.example-news.com/2023/03/20/story-1"
    assert attribution["source_domain"] == "example-news.com"
    assert attribution["publisher"] == {
        "name": "Example News",
        "url": "https://www.example-news.com",
    }
    assert attribution["authors"] == [
        {"name": "Jane Reporter", "url": "https://www.example-news.com/jane"}
    ]
    assert attribution["credit"] == (
        "Originally published by Example News (Jane Reporter) on 20 March 2023. "
        "Read the original: https://www.example-news.com/2023/03/20/story-1"
    )
    assert attribution["first_seen_at"] == "2026-01-05T09:00:00Z"


def test_same_article_again_is_200_unchanged(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    first = client.post("/v1/articles", json=article_payload(), headers=ingest_headers).json()
    again = client.post("/v1/articles", json=article_payload(), headers=ingest_headers)
    assert again.status_code == 200
    assert again.json()["status"] == "unchanged"
    assert again.json()["article"]["id"] == first["article"]["id"]
    assert again.json()["article"]["updated_at"] == first["article"]["updated_at"]


def test_changed_article_is_200_updated_and_updated_at_moves_but_first_seen_does_not(
    client: TestClient, ingest_headers: dict[str, str], clock: FrozenClock
) -> None:
    first = ingest(client, ingest_headers)
    clock.advance(timedelta(hours=2))
    response = client.post(
        "/v1/articles", json=article_payload(title="Flood defences fail"), headers=ingest_headers
    )
    assert response.status_code == 200
    assert response.json()["status"] == "updated"
    article = response.json()["article"]
    assert article["id"] == first["id"]
    assert article["title"] == "Flood defences fail"
    assert article["updated_at"] == "2026-01-05T11:00:00Z"
    assert article["attribution"]["first_seen_at"] == first["attribution"]["first_seen_at"]
    assert article["slug"] == first["slug"], "slugs are stable"


def test_tracking_parameters_and_case_find_the_same_article(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine
) -> None:
    ingest(client, ingest_headers, source_url="https://www.Example-News.com/a?utm_source=x&b=1")
    response = client.post(
        "/v1/articles",
        json=article_payload(source_url="HTTPS://www.example-news.com:443/a?b=1&fbclid=9#top"),
        headers=ingest_headers,
    )
    assert response.status_code == 200
    assert row_count(engine, Article) == 1


def test_published_at_defaults_to_first_seen(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    article = ingest(client, ingest_headers, published_at=None)
    assert article["published_at"] == "2026-01-05T09:00:00Z"


def test_content_hash_slug_and_body_text_are_stored(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine
) -> None:
    article = ingest(client, ingest_headers)
    with new_session(engine) as session:
        row = session.get(Article, article["id"])
        assert row is not None
        assert len(row.content_hash) == 64
        assert row.slug.startswith("flood-defences-hold-in-river-town-1-")
        assert row.body_text == "Residents of town 1 watched the water rise. Barriers held."


def test_markup_in_plain_text_fields_is_stripped(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    article = ingest(
        client,
        ingest_headers,
        title="<b>Bold</b> claim <script>alert(1)</script>",
        excerpt="An <i>excerpt</i> &amp; more",
        publisher={"name": "<em>Daily</em> Planet"},
        authors=[{"name": "<img src=x onerror=alert(1)>Lois Lane"}],
    )
    assert article["title"] == "Bold claim"
    assert article["excerpt"] == "An excerpt & more"
    assert article["attribution"]["publisher"]["name"] == "Daily Planet"
    assert article["attribution"]["authors"][0]["name"] == "Lois Lane"


@pytest.mark.parametrize(
    ("hostile", "must_not_contain"),
    [
        ("<p>x</p><script>alert(1)</script>", "<script"),
        ('<p>x<img src="https://e.com/a.png" onerror="alert(1)"></p>', "onerror"),
        ("<p>x</p><svg><script>alert(1)</script></svg>", "alert"),
        ('<p><a href="java&#09;script:alert(1)">x</a></p>', "script:"),
        ('<p>x</p><iframe srcdoc="<script>alert(1)</script>"></iframe>', "iframe"),
        ('<p style="background:url(x)" onclick="go()">x</p>', "onclick"),
        ('<p><a href="data:text/html;base64,PHNjcmlwdD4=">x</a></p>', "data:"),
        ("<p>x</p><style>body{display:none}</style>", "<style"),
    ],
)
def test_hostile_html_is_neutralised_on_the_way_in(
    client: TestClient, ingest_headers: dict[str, str], hostile: str, must_not_contain: str
) -> None:
    article = ingest(client, ingest_headers, body_html=hostile)
    assert must_not_contain not in article["body_html"]
    stored = client.get(f"/v1/articles/{article['id']}").json()
    assert must_not_contain not in stored["body_html"]


def test_links_get_rel_and_relative_links_point_at_the_source(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    article = ingest(client, ingest_headers, body_html='<p><a href="/other">more</a></p>')
    assert (
        '<a href="https://www.example-news.com/other" rel="noopener noreferrer nofollow">more</a>'
        in article["body_html"]
    )


def test_batch_answers_each_item_and_one_bad_item_sinks_nothing(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine
) -> None:
    ingest(client, ingest_headers, n=1)
    items = [
        article_payload(1),  # unchanged
        article_payload(2),  # created
        {"title": "no attribution", "body_html": "<p>x</p>"},  # invalid
        article_payload(1, title="Changed title"),  # updated (after item 0, as if sent later)
        article_payload(3, source_url="javascript:alert(1)"),  # invalid
        42,  # invalid
    ]
    response = client.post("/v1/articles/batch", json={"items": items}, headers=ingest_headers)
    assert response.status_code == 200, response.text
    results = response.json()["items"]
    assert [r["status"] for r in results] == [
        "unchanged",
        "created",
        "invalid",
        "updated",
        "invalid",
        "invalid",
    ]
    assert {e["field"] for e in results[2]["errors"]} == {"source_url", "publisher"}
    assert results[4]["errors"][0]["field"] == "source_url"
    assert results[0]["id"] == results[3]["id"]
    assert row_count(engine, Article) == 2
    assert response.json()["counts"] == {"unchanged": 1, "created": 1, "updated": 1, "invalid": 3}


def test_batch_over_500_items_is_413_and_stores_nothing(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine
) -> None:
    items = [article_payload(n) for n in range(501)]
    response = client.post("/v1/articles/batch", json={"items": items}, headers=ingest_headers)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert row_count(engine, Article) == 0


def test_batch_of_500_is_stored_with_tags_and_publisher_counts(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine
) -> None:
    items = [
        article_payload(n, publisher={"name": f"Publisher {n % 7}"}, tags=[f"t{n % 3}"])
        for n in range(500)
    ]
    response = client.post("/v1/articles/batch", json={"items": items}, headers=ingest_headers)
    assert response.json()["counts"] == {"created": 500}
    assert row_count(engine, Article) == 500
    assert row_count(engine, ArticleTag) == 500
    publishers = client.get("/v1/publishers").json()["items"]
    assert sum(p["article_count"] for p in publishers) == 500
    assert len(publishers) == 7


def test_ingest_needs_an_ingest_key(client: TestClient, admin_headers: dict[str, str]) -> None:
    assert client.post("/v1/articles", json=article_payload()).status_code == 401
    assert (
        client.post("/v1/articles", json=article_payload(), headers=admin_headers).status_code
        == 201
    )


def test_concurrent_posts_of_one_url_make_exactly_one_article(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine
) -> None:
    statuses: list[int] = []
    barrier = threading.Barrier(8)

    def post(n: int) -> None:
        barrier.wait()
        payload = article_payload(1, title=f"Version {n}")
        statuses.append(
            client.post("/v1/articles", json=payload, headers=ingest_headers).status_code
        )

    threads = [threading.Thread(target=post, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 7 + [201]
    assert row_count(engine, Article) == 1
    assert row_count(engine, Publisher) == 1
    assert client.get("/v1/publishers").json()["items"][0]["article_count"] == 1


@pytest.mark.parametrize(
    ("kind", "value", "refused"),
    [
        # Ingest matches URL blocks on the key prepare_article computed: every spelling.
        (
            "url",
            "example-news.com/2023/03/20/story-9",
            (
                "https://www.example-news.com/2023/03/20/story-9",
                "http://example-news.com/2023/03/20/story-9/",
                "https://m.example-news.com/2023//03/20/./story-9?utm_source=feed#top",
                "https://WWW.Example-News.com:443/2023/03/20/%73tory-9",
            ),
        ),
        (
            "domain",
            "example-news.com",
            ("https://www.example-news.com/a", "http://uk.news.example-news.com/b"),
        ),
    ],
)
def test_a_block_refuses_every_url_it_covers_alone_and_in_a_batch(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    kind: str,
    value: str,
    refused: tuple[str, ...],
) -> None:
    with new_session(engine) as session, session.begin():
        add_block(session=session, kind=kind, value=value, takedown_id=None, now=clock.now())
    for url in refused:
        response = client.post(
            "/v1/articles", json=article_payload(source_url=url), headers=ingest_headers
        )
        assert response.status_code == 451, url
    items = [article_payload(n, source_url=url) for n, url in enumerate(refused)]
    items.append(article_payload(source_url="https://example-news.org/free"))
    answered = client.post("/v1/articles/batch", json={"items": items}, headers=ingest_headers)
    assert [item["status"] for item in answered.json()["items"]] == [
        *["blocked"] * len(refused),
        "created",
    ]
    listed = client.get("/v1/articles").json()["items"]
    assert [item["attribution"]["source_url"] for item in listed] == [
        "https://example-news.org/free"
    ]


def test_text_collapses_whitespace_exactly_as_the_regular_expression_did() -> None:
    # html_to_text and plain_text split on str.isspace() where they used re.sub(r"\s+"):
    # the same characters, every one of them.
    code_points = [chr(n) for n in range(sys.maxunicode + 1)]
    assert [c for c in code_points if c.isspace()] == [
        c for c in code_points if re.fullmatch(r"\s", c)
    ]
    every_space = "".join(c for c in code_points if c.isspace())
    text = f"{every_space}a{every_space}b c\u00a0d\u2003\u2003e{every_space}"
    assert plain_text(text) == re.sub(r"\s+", " ", text).strip() == "a b c d e"
    fragment = f"<p>{every_space}one</p><p>two&nbsp;&nbsp;<b>three</b>{every_space}</p>"
    stripped = html.unescape(nh3.clean(fragment.replace("<", " <"), tags=set()))
    assert html_to_text(fragment) == re.sub(r"\s+", " ", stripped).strip() == "one two three"


def test_a_source_url_with_a_space_or_control_character_is_refused_and_no_other() -> None:
    refused = [chr(n) for n in (*range(0x21), 0x7F)]
    for char in refused:
        with pytest.raises(InvalidUrl, match="contains spaces or control characters"):
            normalise_url(f"https://example.com/a{char}b")
    for char in ("!", "~", "\x80", "\x85", "\xa0", "\u2028", "\u3000", "é"):
        assert normalise_url(f"https://example.com/a{char}b").startswith("https://example.com/a")
