"""Policy: when removals run. Pure rules first, then the same rules seen through the API."""

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.articles.service import ArticleFacts
from app.clock import FrozenClock
from app.config import Settings
from app.takedowns.policy import decide, registrable_domain, same_registrable_domain
from tests.takedowns.factories import file, filing, ingest, ingest_many, load, tick

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SETTINGS = Settings(takedown_review_window=timedelta(hours=4), takedown_max_auto_targets=3)


def facts(host: str, n: int = 1, first_seen: datetime = NOW - timedelta(days=30)) -> ArticleFacts:
    return ArticleFacts(
        id=n,
        canonical_url=f"https://{host}/story-{n}",
        source_domain=host,
        first_seen_at=first_seen,
        removed_at=None,
    )


@pytest.mark.parametrize(
    ("email_host", "article_host", "match"),
    [
        ("reuters.com", "www.reuters.com", True),
        ("reuters.com", "uk.reuters.com", True),
        ("legal.reuters.com", "reuters.com", True),
        ("bbc.co.uk", "www.bbc.co.uk", True),
        ("bbc.co.uk", "evil.co.uk", False),
        ("reuters.com", "reuters.co.uk", False),
        ("reuters.com", "notreuters.com", False),
        ("alice.github.io", "bob.github.io", False),  # private suffixes count
        ("co.uk", "evil.co.uk", False),
        ("localhost", "localhost", False),
    ],
)
def test_same_registrable_domain_follows_the_public_suffix_list(
    email_host: str, article_host: str, match: bool
) -> None:
    assert same_registrable_domain(email_host, article_host) is match


def test_a_bare_public_suffix_has_no_registrable_domain() -> None:
    assert registrable_domain("co.uk") is None
    assert registrable_domain("www.bbc.co.uk") == "bbc.co.uk"


def decision(email: str, articles: list[ArticleFacts], **kwargs: object):  # type: ignore[no-untyped-def]
    return decide(
        claimant_email=email,
        articles=articles,
        domain=kwargs.get("domain"),  # type: ignore[arg-type]
        original_published_at=kwargs.get("original_published_at"),  # type: ignore[arg-type]
        received_at=NOW,
        settings=SETTINGS,
    )


def test_matching_claimant_runs_at_once() -> None:
    result = decision("legal@reuters.com", [facts("www.reuters.com"), facts("uk.reuters.com", 2)])
    assert (result.verified, result.run_at, result.escalation) == (True, NOW, None)


def test_other_claimant_waits_for_the_review_window() -> None:
    result = decision("someone@gmail.com", [facts("www.reuters.com")])
    assert (result.verified, result.run_at) == (False, NOW + timedelta(hours=4))


def test_mixed_targets_are_verified_only_if_every_article_matches() -> None:
    result = decision("legal@reuters.com", [facts("reuters.com"), facts("apnews.com", 2)])
    assert result.verified is False
    assert result.run_at == NOW + timedelta(hours=4)


def test_more_articles_than_the_limit_are_escalated_even_for_a_matching_claimant() -> None:
    articles = [facts("reuters.com", n) for n in range(4)]
    result = decision("legal@reuters.com", articles)
    assert result.run_at is None and result.escalation and "4 articles" in result.escalation
    assert decision("legal@reuters.com", articles[:3]).escalation is None


def test_whole_domain_from_an_unmatched_claimant_is_escalated() -> None:
    result = decision("x@evil.co.uk", [], domain="bbc.co.uk")
    assert result.run_at is None and "bbc.co.uk" in (result.escalation or "")
    assert decision("legal@bbc.co.uk", [], domain="bbc.co.uk").escalation is None


def test_original_dated_after_our_first_seen_is_escalated() -> None:
    seen = NOW - timedelta(days=3)
    later = seen + timedelta(days=2)
    articles = [facts("reuters.com", 1, first_seen=later), facts("reuters.com", 2, first_seen=seen)]
    # Compared with the earliest first sighting: we had one of them before the claimed date.
    late = decision("legal@reuters.com", articles, original_published_at=seen + timedelta(1))
    assert late.run_at is None and "after we first saw" in (late.escalation or "")
    early = decision("legal@reuters.com", articles, original_published_at=seen - timedelta(1))
    assert early.escalation is None and early.run_at == NOW


# Through the API ---------------------------------------------------------------------------


def test_verified_claimant_is_removed_at_the_next_tick(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
) -> None:
    article = ingest(client, ingest_headers, host="uk.reuters.com")
    body = file(client, filing([article["id"]]))
    assert load(engine, body["id"]).run_at == clock.now()
    assert tick(engine, settings, clock).removed == 1
    assert client.get(f"/v1/articles/{article['id']}").status_code == 451
    assert load(engine, body["id"]).status == "completed"


def test_unverified_claimant_is_removed_only_after_the_review_window(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
) -> None:
    article = ingest(client, ingest_headers)
    body = file(client, filing([article["id"]], claimant={"email": "agent@rights-firm.com"}))
    assert body["status"] == "queued"
    clock.advance(settings.takedown_review_window - timedelta(seconds=1))
    assert tick(engine, settings, clock).removed == 0
    assert client.get(f"/v1/articles/{article['id']}").status_code == 200
    clock.advance(timedelta(seconds=1))
    assert tick(engine, settings, clock).removed == 1
    assert client.get(f"/v1/articles/{article['id']}").status_code == 451


def test_mass_target_request_is_escalated_and_never_removed_automatically(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
) -> None:
    limit = settings.takedown_max_auto_targets
    ids = ingest_many(client, ingest_headers, limit + 1)
    body = file(client, filing(ids))
    assert body["status"] == "escalated"
    assert all(t["state"] == "pending" for t in body["targets"])
    clock.advance(timedelta(hours=25))
    assert tick(engine, settings, clock).removed == 0
    assert all(client.get(f"/v1/articles/{i}").status_code == 200 for i in ids)
    assert load(engine, body["id"]).status == "escalated"


def test_domain_request_from_unmatched_claimant_is_escalated_without_blocking(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
) -> None:
    article = ingest(client, ingest_headers, host="www.bbc.co.uk")
    body = file(client, filing(domain="bbc.co.uk", claimant={"email": "x@evil.co.uk"}, targets=[]))
    assert body["status"] == "escalated"
    assert body["targets"] == [
        {"input": "bbc.co.uk", "article_ids": [article["id"]], "state": "pending"}
    ]
    clock.advance(timedelta(hours=25))
    tick(engine, settings, clock)
    assert client.get(f"/v1/articles/{article['id']}").status_code == 200
    # Not blocked either: an escalated request has no effect until an operator approves it.
    assert ingest(client, ingest_headers, 2, host="news.bbc.co.uk")["id"]


def test_domain_request_from_matching_claimant_removes_and_blocks_the_domain(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
) -> None:
    ours = [ingest(client, ingest_headers, n, host="www.bbc.co.uk")["id"] for n in (1, 2)]
    theirs = ingest(client, ingest_headers, 3, host="www.evil.co.uk")["id"]
    body = file(client, filing(domain="bbc.co.uk", claimant={"email": "legal@bbc.co.uk"}))
    assert body["targets"][0]["article_ids"] == ours
    assert tick(engine, settings, clock).removed == 2
    assert client.get(f"/v1/articles/{theirs}").status_code == 200
    blocked = client.post(
        "/v1/articles",
        json=filing_article("https://sport.bbc.co.uk/new-story"),
        headers=ingest_headers,
    )
    assert blocked.status_code == 451


def filing_article(url: str) -> dict[str, object]:
    from tests.articles.factories import article_payload

    return article_payload(9, source_url=url)


def test_backdated_original_is_escalated(
    client: TestClient, ingest_headers: dict[str, str], clock: FrozenClock
) -> None:
    article = ingest(client, ingest_headers)  # first seen now
    clock.advance(timedelta(days=2))
    claimed = (clock.now() - timedelta(days=1)).isoformat()  # after our first_seen_at
    body = file(
        client,
        filing(
            [article["id"]],
            original_url="https://claimant-blog.example.com/my-story",
            original_published_at=claimed,
        ),
    )
    assert body["status"] == "escalated"
    honest = (clock.now() - timedelta(days=3)).isoformat()
    body = file(
        client,
        filing(
            [article["id"]],
            claimant={"email": "desk@reuters.com"},
            original_url="https://claimant-blog.example.com/my-story",
            original_published_at=honest,
        ),
    )
    assert body["status"] == "queued"
