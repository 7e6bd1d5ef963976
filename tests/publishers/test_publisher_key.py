"""What the publisher key earned by DNS does: takedowns of its domain that run at once, a
403 for anything outside it, the listing of its domain's articles; and nothing else."""

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.clock import FrozenClock
from app.config import Settings
from app.takedowns.models import Takedown
from tests.articles.factories import article_payload
from tests.factories import row_count
from tests.publishers.conftest import DnsServer
from tests.publishers.factories import verify
from tests.takedowns.factories import assert_problem, bearer, filing, ingest, load
from tests.workers import run_removals

ARTICLES = "/v1/publisher/articles"
NEXT = re.compile(r'<https://news\.example(/v1/publisher/articles\?[^>]+)>; rel="next"')


@pytest.fixture
def publisher_key(client: TestClient, dns_server: DnsServer) -> str:
    """The key of reuters.com, proven by its TXT record."""
    _, key = verify(client, dns_server, "reuters.com")
    return key


# Filing takedowns --------------------------------------------------------------------------


def test_a_takedown_filed_with_the_key_needs_no_confirmation_and_removes_at_the_next_tick(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    ingest_headers: dict[str, str],
    publisher_key: str,
) -> None:
    """The key is the proof: 202 `not_needed`, no e-mail to confirm, and the scheduler's
    next tick removes the article (451)."""
    article = ingest(client, ingest_headers, host="www.reuters.com")
    assert client.get(f"/v1/articles/{article['id']}").status_code == 200
    filed = client.post(
        "/v1/takedowns", json=filing([article["url"]]), headers=bearer(publisher_key)
    )
    assert filed.status_code == 202, filed.text
    body = filed.json()
    assert body["confirmation"] == "not_needed"
    assert body["targets"][0]["article_ids"] == [article["id"]]
    takedown = load(engine, body["id"])
    assert takedown.publisher_key_id is not None
    assert takedown.confirmation_hash is None  # nothing was e-mailed to confirm

    clock.advance(timedelta(seconds=1))
    assert run_removals(engine, settings, clock).of("removal")["removed"] == 1
    gone = client.get(f"/v1/articles/{article['id']}")
    assert gone.status_code == 451, gone.text


def test_a_subdomain_of_the_keys_domain_is_within_it(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    ingest_headers: dict[str, str],
    publisher_key: str,
) -> None:
    article = ingest(client, ingest_headers, host="uk.reuters.com")
    source_url = "https://uk.reuters.com/world/story-1"
    filed = client.post("/v1/takedowns", json=filing([source_url]), headers=bearer(publisher_key))
    assert filed.status_code == 202, filed.text
    assert filed.json()["targets"][0]["article_ids"] == [article["id"]]
    clock.advance(timedelta(seconds=1))
    assert run_removals(engine, settings, clock).of("removal")["removed"] == 1
    assert client.get(f"/v1/articles/{article['id']}").status_code == 451


@pytest.mark.parametrize(
    "outside",
    [
        "https://www.bbc.co.uk/news/story-1",
        "https://notreuters.com/world/story-1",  # a look-alike, not a subdomain
        "https://reuters.com.evil.example/world/story-1",
    ],
)
def test_a_target_outside_the_keys_domain_is_refused_and_nothing_is_filed(
    client: TestClient,
    engine: Engine,
    ingest_headers: dict[str, str],
    publisher_key: str,
    outside: str,
) -> None:
    """One target outside reuters.com refuses the whole request: 403
    outside-publisher-domain naming that target, no takedown recorded."""
    ours = ingest(client, ingest_headers, host="www.reuters.com")
    refused = client.post(
        "/v1/takedowns", json=filing([ours["url"], outside]), headers=bearer(publisher_key)
    )
    problem = assert_problem(refused, 403)
    assert problem["type"] == "https://byline.dev/problems/outside-publisher-domain"
    assert "reuters.com" in problem["detail"]
    assert [error["field"] for error in problem["errors"]] == ["targets.1"]
    assert row_count(engine, Takedown) == 0
    assert client.get(f"/v1/articles/{ours['id']}").status_code == 200


def test_a_whole_domain_request_for_another_domain_is_refused(
    client: TestClient, engine: Engine, publisher_key: str
) -> None:
    refused = client.post(
        "/v1/takedowns", json=filing(domain="bbc.co.uk"), headers=bearer(publisher_key)
    )
    problem = assert_problem(refused, 403)
    assert problem["type"].endswith("/outside-publisher-domain")
    assert [error["field"] for error in problem["errors"]] == ["domain"]
    assert row_count(engine, Takedown) == 0


def test_an_unknown_key_on_a_filing_is_a_401_not_an_unproven_filing(
    client: TestClient, engine: Engine, ingest_headers: dict[str, str]
) -> None:
    """A filing that carries a key must carry a good one: a wrong key is never quietly
    treated as an anonymous filing."""
    article = ingest(client, ingest_headers, host="www.reuters.com")
    refused = client.post(
        "/v1/takedowns", json=filing([article["url"]]), headers=bearer("byl_not-a-key")
    )
    assert_problem(refused, 401)
    assert row_count(engine, Takedown) == 0


# Listing the domain's articles --------------------------------------------------------------


def test_the_key_lists_its_domains_live_articles_only_keyset_paged(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    ingest_headers: dict[str, str],
    publisher_key: str,
) -> None:
    """Newest first, two a page, with next_cursor and a Link header to the next page; only
    reuters.com and its subdomains; a removed article is not listed."""
    ours = [
        ingest(client, ingest_headers, n, host=host)["id"]
        for n, host in enumerate(
            [
                "www.reuters.com",
                "uk.reuters.com",
                "reuters.com",
                "www.reuters.com",
                "m.reuters.com",
            ],
            start=1,
        )
    ]
    for n, host in ((10, "www.bbc.co.uk"), (11, "notreuters.com")):
        ingest(client, ingest_headers, n, host=host)
    removed = ingest(client, ingest_headers, 12, host="www.reuters.com")["id"]
    filed = client.post("/v1/takedowns", json=filing([removed]), headers=bearer(publisher_key))
    assert filed.status_code == 202, filed.text
    clock.advance(timedelta(seconds=1))
    assert run_removals(engine, settings, clock).of("removal")["removed"] == 1

    seen: list[int] = []
    path: str | None = f"{ARTICLES}?limit=2"
    pages = 0
    while path is not None:
        page = client.get(path, headers=bearer(publisher_key))
        assert page.status_code == 200, page.text
        assert page.headers["cache-control"] == "no-store"
        body = page.json()
        seen += [item["id"] for item in body["items"]]
        pages += 1
        if body["next_cursor"] is None:
            assert "link" not in page.headers
            path = None
            continue
        link = NEXT.fullmatch(page.headers["link"])
        assert link, page.headers["link"]
        assert f"cursor={body['next_cursor']}" in link.group(1) and "limit=2" in link.group(1)
        path = link.group(1)
    # published_at grows with n: newest first is the reverse of ingest order.
    assert seen == list(reversed(ours))
    assert pages == 3  # 2, 2 and 1


def test_the_listing_needs_a_publisher_key(
    client: TestClient, ingest_headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    missing = assert_problem(client.get(ARTICLES), 401)
    assert "API key is required" in missing["detail"]
    assert client.get(ARTICLES).headers["www-authenticate"].startswith("Bearer")
    for headers in (ingest_headers, admin_headers):
        assert_problem(client.get(ARTICLES, headers=headers), 403)
    assert_problem(client.get(ARTICLES, headers=bearer("byl_unknown")), 401)


def test_a_bad_cursor_is_a_400_problem(client: TestClient, publisher_key: str) -> None:
    response = client.get(
        ARTICLES, params={"cursor": "not-a-cursor"}, headers=bearer(publisher_key)
    )
    assert_problem(response, 400)


# Nothing else ----------------------------------------------------------------------------------


def test_a_publisher_key_can_neither_ingest_nor_administer(
    client: TestClient, publisher_key: str
) -> None:
    headers = bearer(publisher_key)
    payload = article_payload(1, source_url="https://www.reuters.com/world/story-1")
    assert_problem(client.post("/v1/articles", json=payload, headers=headers), 403)
    assert_problem(client.get("/v1/admin/keys", headers=headers), 403)
    created = client.post(
        "/v1/admin/keys", json={"name": "mine", "scope": "admin"}, headers=headers
    )
    assert_problem(created, 403)
    assert client.get("/v1/articles").json()["items"] == []  # nothing was ingested
