"""Reads: keyset pages, filters, search, cacheable details, attribution everywhere."""

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.articles import search
from app.articles.cursor import BadCursor, Position, decode_cursor, encode_cursor
from app.articles.schemas import ArticlePublic
from tests.articles.factories import article_payload, ingest, ingest_all


def published(minute: int) -> str:
    return (datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=minute)).isoformat()


def ingest_many(
    client: TestClient, headers: dict[str, str], count: int, **overrides: object
) -> None:
    payloads = [article_payload(n, published_at=published(n), **overrides) for n in range(count)]
    ingest_all(client, headers, payloads)


def all_pages(client: TestClient, url: str) -> list[int]:
    ids: list[int] = []
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.text
        ids += [item["id"] for item in response.json()["items"]]
        link = response.headers.get("link")
        url = link.split(">")[0].lstrip("<").removeprefix("https://news.example") if link else ""
    return ids


def test_list_is_newest_first_with_cursor_and_link(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    ingest_many(client, ingest_headers, 5)
    response = client.get("/v1/articles?limit=2")
    body = response.json()
    assert [item["title"] for item in body["items"]] == [
        "Flood defences hold in river town 4",
        "Flood defences hold in river town 3",
    ]
    assert body["next_cursor"]
    assert response.headers["link"] == (
        f'<https://news.example/v1/articles?limit=2&cursor={body["next_cursor"]}>; rel="next"'
    )
    assert response.headers["cache-control"] == "public, max-age=60"
    assert all("attribution" in item and item["attribution"]["credit"] for item in body["items"])
    assert len(all_pages(client, "/v1/articles?limit=2")) == 5


def test_paging_while_new_articles_arrive_never_repeats_or_skips(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    ingest_many(client, ingest_headers, 10)
    first = client.get("/v1/articles?limit=4").json()
    seen = [item["id"] for item in first["items"]]
    # Newer articles, and one published in the middle of what is left, arrive between pages.
    for n, minute in [(100, 1000), (101, 1001), (102, -5)]:
        ingest(client, ingest_headers, n, published_at=published(minute))
    cursor = first["next_cursor"]
    while cursor:
        page = client.get("/v1/articles", params={"limit": 4, "cursor": cursor}).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
    original_ids = set(range(1, 11))
    assert len(seen) == len(set(seen)), "no article repeats"
    assert original_ids <= set(seen), "no article is skipped"


def test_ties_on_published_at_are_broken_by_id(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    items = [article_payload(n, published_at="2024-01-01T00:00:00Z") for n in range(7)]
    client.post("/v1/articles/batch", json={"items": items}, headers=ingest_headers)
    assert all_pages(client, "/v1/articles?limit=3") == [7, 6, 5, 4, 3, 2, 1]


# Each filter against two articles, "one" and "other" (see test_filters).
FILTER_CASES = [
    ("publisher=Other+Paper", {"other"}),
    ("domain=other.example", {"other"}),
    ("domain=www.other.example", {"other"}),
    ("tag=Science", {"other"}),
    ("language=fr", {"other"}),
    ("published_after=2025-01-01T00:00:00Z", {"other"}),
    ("published_before=2025-01-01T00:00:00Z", {"one"}),
]


@pytest.mark.parametrize(("query", "expected_titles"), FILTER_CASES)
def test_filters(
    client: TestClient, ingest_headers: dict[str, str], query: str, expected_titles: set[str]
) -> None:
    ingest(client, ingest_headers, 1, title="one", published_at="2024-05-01T00:00:00Z")
    ingest(
        client,
        ingest_headers,
        2,
        title="other",
        source_url="https://www.other.example/x",
        publisher={"name": "Other Paper"},
        tags=["science"],
        language="fr",
        published_at="2025-05-01T00:00:00Z",
    )
    items = client.get(f"/v1/articles?{query}").json()["items"]
    assert {item["title"] for item in items} == expected_titles


def test_search_finds_words_in_title_and_body_best_first(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    ingest(
        client,
        ingest_headers,
        1,
        title="Budget vote delayed",
        body_html="<p>Parliament argued.</p>",
    )
    ingest(
        client,
        ingest_headers,
        2,
        title="Election night",
        body_html="<p>The election was close.</p>",
    )
    ingest(client, ingest_headers, 3, title="Sports", body_html="<p>An election of captains.</p>")
    items = client.get("/v1/articles?q=election").json()["items"]
    assert items[0]["id"] == 2
    assert {item["id"] for item in items} == {2, 3}
    assert client.get("/v1/articles?q=parliament").json()["items"][0]["id"] == 1


@pytest.mark.parametrize(("query", "expected_titles"), [("", {"one", "other"}), *FILTER_CASES])
def test_search_with_filters(
    client: TestClient, ingest_headers: dict[str, str], query: str, expected_titles: set[str]
) -> None:
    """Each filter narrows the matches, and only matches: the article that fits every filter
    but not the words stays out."""
    ingest(client, ingest_headers, 1, title="one", published_at="2024-05-01T00:00:00Z")
    other = {
        "source_url": "https://www.other.example/x",
        "publisher": {"name": "Other Paper"},
        "tags": ["science"],
        "language": "fr",
        "published_at": "2025-05-01T00:00:00Z",
    }
    ingest(client, ingest_headers, 2, title="other", **other)
    unrelated = {**other, "source_url": "https://www.other.example/y"}
    ingest(client, ingest_headers, 3, title="none", body_html="<p>Quiet day.</p>", **unrelated)
    items = client.get(f"/v1/articles?q=residents&{query}").json()["items"]
    assert {item["title"] for item in items} == expected_titles


def test_search_follows_changed_text_and_dates(
    client: TestClient, ingest_headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An article updated by ingest is found by its new words only, and on PostgreSQL (which
    ranks the newest matches first, window by window) a new date moves it."""
    monkeypatch.setattr(search, "RANKED_WINDOW", 1)
    ingest(client, ingest_headers, 1, published_at="2024-05-01T00:00:00Z")
    ingest(client, ingest_headers, 2, published_at="2024-06-01T00:00:00Z")
    ingest(client, ingest_headers, 1, body_html="<p>Cranes stood idle.</p>")

    def found(words: str) -> list[int]:
        return [item["id"] for item in client.get(f"/v1/articles?q={words}").json()["items"]]

    assert found("cranes") == [1]
    assert found("residents") == [2]
    assert set(found("flood")) == {1, 2}
    ingest(client, ingest_headers, 1, body_html="<p>Cranes stood idle.</p>", title="Quiet")
    assert found("flood") == [2]
    assert found("quiet cranes") == [1]
    if client.app.state.engine.dialect.name == "postgresql":  # type: ignore[attr-defined]
        quiet = {"title": "Quiet residents", "body_html": "<p>Cranes stood idle.</p>"}
        ingest(client, ingest_headers, 1, **quiet, published_at="2024-05-01T00:00:00Z")
        assert found("residents&limit=1") == [2]
        ingest(client, ingest_headers, 1, **quiet, published_at="2024-07-01T00:00:00Z")
        assert found("residents&limit=1") == [1]


@pytest.mark.parametrize(
    "hostile",
    [
        "'; DROP TABLE articles; --",
        '" OR 1=1 --',
        "election) OR (1=1",
        "NEAR(a b",
        "title:*",
        "a AND OR NOT",
        "%_\\",
        "🙂",
    ],
)
def test_sql_or_fts_syntax_in_search_is_just_text(
    client: TestClient, ingest_headers: dict[str, str], hostile: str
) -> None:
    ingest(client, ingest_headers)
    response = client.get("/v1/articles", params={"q": hostile})
    assert response.status_code == 200, response.text
    assert client.get("/v1/articles").json()["items"], "the table is still there"


def test_search_pages_with_cursor(client: TestClient, ingest_headers: dict[str, str]) -> None:
    ingest_many(client, ingest_headers, 7)
    ids = all_pages(client, "/v1/articles?q=flood&limit=3")
    assert sorted(ids) == list(range(1, 8))


def _flood_items(first: int, count: int) -> list[dict[str, object]]:
    """Articles mentioning "flood" 1 to 7 times (so their scores differ), a minute apart."""
    return [
        article_payload(
            n,
            published_at=published(n),
            body_html="<p>" + "flood and rain " * (1 + n * 5 % 7) + "</p>",
        )
        for n in range(first, first + count)
    ]


def _search_page(client: TestClient, url: str) -> tuple[list[dict[str, object]], str]:
    response = client.get(url)
    assert response.status_code == 200, response.text
    link = response.headers.get("link")
    next_url = link.split(">")[0].lstrip("<").removeprefix("https://news.example") if link else ""
    return response.json()["items"], next_url


def test_postgresql_ranks_search_window_by_window(
    client: TestClient, ingest_headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search, "RANKED_WINDOW", 3)
    response = client.post(
        "/v1/articles/batch", json={"items": _flood_items(0, 8)}, headers=ingest_headers
    )
    assert response.json()["counts"] == {"created": 8}
    items: list[dict[str, object]] = []
    url = "/v1/articles?q=flood&limit=2"
    while url:
        page, url = _search_page(client, url)
        items += page
    assert len(items) == 8 and len({item["id"] for item in items}) == 8
    newest_first = sorted((str(item["published_at"]) for item in items), reverse=True)
    if client.app.state.engine.dialect.name == "postgresql":  # type: ignore[attr-defined]
        # The 3 newest matches first (best first among them), then the next 3, then the rest.
        for window in (slice(0, 3), slice(3, 6), slice(6, 8)):
            assert {str(item["published_at"]) for item in items[window]} == set(
                newest_first[window]
            )


def test_search_paging_neither_repeats_nor_skips_while_articles_arrive(
    client: TestClient, ingest_headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if client.app.state.engine.dialect.name == "sqlite":  # type: ignore[attr-defined]
        pytest.skip(
            "FTS5's bm25 weighs words by the whole corpus: a new article moves every score, so"
            " a cursor on the score is exact on SQLite only while no article arrives"
        )
    monkeypatch.setattr(search, "RANKED_WINDOW", 3)
    client.post("/v1/articles/batch", json={"items": _flood_items(0, 7)}, headers=ingest_headers)
    first, url = _search_page(client, "/v1/articles?q=flood&limit=2")
    # Newer and better matches arrive while the client pages.
    arrivals = [
        article_payload(
            100 + n,
            published_at=published(1000 + n),
            body_html="<p>" + "flood " * 20 + "</p>",
        )
        for n in range(3)
    ]
    client.post("/v1/articles/batch", json={"items": arrivals}, headers=ingest_headers)
    seen = [item["id"] for item in first]
    while url:
        page, url = _search_page(client, url)
        seen += [item["id"] for item in page]
    assert len(seen) == len(set(seen)), "an article came twice"
    original = [item["id"] for item in client.get("/v1/articles?limit=100").json()["items"]]
    assert set(original[3:]) <= set(seen), "an article that was there all along was skipped"


def test_listing_cursor_on_search_is_a_400(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    ingest_many(client, ingest_headers, 3)
    cursor = client.get("/v1/articles?limit=1").json()["next_cursor"]
    response = client.get("/v1/articles", params={"q": "flood", "cursor": cursor})
    assert response.status_code == 400


def test_detail_by_id_and_slug_with_etag_and_304(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    article = ingest(client, ingest_headers)
    by_id = client.get(f"/v1/articles/{article['id']}")
    assert by_id.status_code == 200
    assert by_id.headers["cache-control"] == "public, max-age=60"
    etag = by_id.headers["etag"]
    assert by_id.json()["body_html"].startswith("<p>Residents")
    by_slug = client.get(f"/v1/articles/by-slug/{article['slug']}")
    assert by_slug.json() == by_id.json()
    not_modified = client.get(f"/v1/articles/{article['id']}", headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.headers["etag"] == etag
    assert (
        client.get(
            f"/v1/articles/{article['id']}", headers={"If-None-Match": '"other"'}
        ).status_code
        == 200
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"authors": [], "tags": [], "language": None, "published_at": None},
        {"authors": [{"name": "Ana"}, {"name": "Ben", "url": "https://example.org/ben"}]},
        {"image": {"url": "https://img.example/a.jpg"}, "license": "CC BY 4.0", "excerpt": "Ex"},
        {"title": 'Quotes " and \\ and \u00e9\u00e8 \U0001f30a', "publisher": {"name": "Ünï"}},
    ],
)
def test_detail_is_exactly_the_documented_model(
    client: TestClient, ingest_headers: dict[str, str], overrides: dict[str, object]
) -> None:
    """The detail reads encode the stored values without building ArticlePublic (for speed):
    the bytes must be the model's own JSON, field for field and in its order."""
    article = ingest(client, ingest_headers, **overrides)
    for path in (f"/v1/articles/{article['id']}", f"/v1/articles/by-slug/{article['slug']}"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        model = ArticlePublic.model_validate_json(response.content)
        assert response.content == model.model_dump_json().encode()
        assert model == ArticlePublic.model_validate(article)


def test_etag_changes_when_the_article_changes(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    article = ingest(client, ingest_headers)
    before = client.get(f"/v1/articles/{article['id']}").headers["etag"]
    ingest(client, ingest_headers, title="New title")
    response = client.get(f"/v1/articles/{article['id']}", headers={"If-None-Match": before})
    assert response.status_code == 200
    assert response.headers["etag"] != before


@pytest.mark.parametrize("path", ["/v1/articles/999999", "/v1/articles/by-slug/no-such-slug"])
def test_unknown_article_is_problem_404(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=101",
        "limit=abc",
        "published_after=yesterday",
        "language=english!",
        "cursor=" + "x" * 300,
    ],
)
def test_bad_list_parameters_are_422_naming_the_field(client: TestClient, query: str) -> None:
    response = client.get(f"/v1/articles?{query}")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == query.split("=")[0]


@pytest.mark.parametrize(
    "cursor",
    ["abc", "!!!", "MTIzOjQ1Ng", encode_cursor(Position(datetime(2024, 1, 1, tzinfo=UTC), 5))[:-2]],
)
def test_tampered_cursor_is_400(client: TestClient, cursor: str) -> None:
    response = client.get("/v1/articles", params={"cursor": cursor})
    assert response.status_code == 400
    assert response.json()["type"].endswith("/bad-cursor")


def test_publishers_with_counts(client: TestClient, ingest_headers: dict[str, str]) -> None:
    ingest(client, ingest_headers, 1)
    ingest(client, ingest_headers, 2)
    ingest(client, ingest_headers, 3, publisher={"name": "Other Paper"})
    items = client.get("/v1/publishers").json()["items"]
    assert [(p["name"], p["article_count"]) for p in items] == [
        ("Example News", 2),
        ("Other Paper", 1),
    ]


def test_cors_allows_get_from_configured_origin_only(client: TestClient) -> None:
    allowed = client.get("/v1/articles", headers={"Origin": "https://front.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://front.example"
    other = client.get("/v1/articles", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    preflight = client.options(
        "/v1/articles",
        headers={"Origin": "https://front.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 400


_moments = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@given(
    _moments,
    st.integers(min_value=1, max_value=2**62),
    st.none() | st.floats(allow_nan=False, allow_infinity=False),
    st.none() | _moments | st.just(search.EARLIEST),
    st.none() | _moments,
)
def test_cursor_round_trips(
    moment: datetime,
    article_id: int,
    rank: float | None,
    window_start: datetime | None,
    window_end: datetime | None,
) -> None:
    position = Position(moment, article_id, rank, window_start, window_end)
    assert decode_cursor(encode_cursor(position)) == position


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(_moments, st.integers(min_value=1, max_value=2**40), st.data())
def test_any_tampered_cursor_is_refused(
    moment: datetime, article_id: int, data: st.DataObject
) -> None:
    cursor = encode_cursor(Position(moment, article_id))
    index = data.draw(st.integers(min_value=0, max_value=len(cursor) - 1))
    replacement = data.draw(
        st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    )
    tampered = cursor[:index] + replacement + cursor[index + 1 :]
    if tampered == cursor:
        return
    try:
        decoded = decode_cursor(tampered)
    except BadCursor:
        return
    # Base64 has spare bits in its last character: a change there decodes to the same bytes.
    assert decoded == Position(moment, article_id)
