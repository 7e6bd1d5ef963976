"""Proving a domain through the API: POST /v1/publishers/verifications gives the TXT record
to publish; a check against the (real, local) DNS server verifies it and shows the
publisher key once."""

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.clock import FrozenClock
from app.config import Settings
from app.publishers.models import PublisherVerification
from tests.factories import row_count
from tests.publishers.conftest import DnsServer
from tests.publishers.factories import (
    PUBLISHER_EMAIL,
    VERIFICATIONS,
    audit_trail,
    check,
    client_with,
    get,
    publish_record,
    queued_emails,
    start,
    verify,
)
from tests.takedowns.factories import assert_problem, bearer

RECORD_VALUE = re.compile(r"byline-verify=[A-Za-z0-9_-]{43}")


# Starting --------------------------------------------------------------------------------


def test_starting_a_verification_answers_the_record_for_the_registrable_domain(
    client: TestClient, clock: FrozenClock
) -> None:
    """A subdomain proves its registrable domain: uk.reuters.com starts reuters.com, with a
    random record value under _byline-verify., pending for seven days, never cached."""
    response = client.post(VERIFICATIONS, json={"domain": "uk.reuters.com", "email": "dns@x.org"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["domain"] == "reuters.com"
    assert body["record_name"] == "_byline-verify.reuters.com"
    assert RECORD_VALUE.fullmatch(body["record_value"])
    assert body["status"] == "pending"
    assert body["created_at"] == "2026-01-05T09:00:00Z"
    assert body["expires_at"] == "2026-01-12T09:00:00Z"
    assert body["verified_at"] is None and body["last_checked_at"] is None
    assert "email" not in body and "publisher_key" not in body
    assert response.headers["cache-control"] == "no-store"
    location = response.headers["location"]
    assert location == f"https://news.example{VERIFICATIONS}/{body['id']}"

    shown = client.get(location.removeprefix("https://news.example"))
    assert shown.status_code == 200
    assert shown.headers["cache-control"] == "no-store"
    assert shown.json() == body


def test_every_verification_has_its_own_record_value(client: TestClient) -> None:
    """The value is the secret of one attempt: another attempt at the same domain (by anyone)
    gets another value, so one cannot ride on someone else's record."""
    first, second = start(client), start(client)
    assert first["id"] != second["id"]
    assert first["record_name"] == second["record_name"]
    assert first["record_value"] != second["record_value"]


def test_a_bad_domain_or_email_is_a_422_problem_naming_each_field(
    client: TestClient, engine: Engine
) -> None:
    for body, fields in (
        ({"domain": "https://reuters.com/world", "email": "nope"}, {"domain", "email"}),
        ({"domain": "co.uk", "email": PUBLISHER_EMAIL}, {"domain"}),  # a public suffix
        ({"domain": "reuters.com"}, {"email"}),
        ({"domain": "reuters.com", "email": PUBLISHER_EMAIL, "admin": True}, {"admin"}),
    ):
        problem = assert_problem(client.post(VERIFICATIONS, json=body), 422)
        assert problem["type"].endswith("/validation-error")
        assert {error["field"] for error in problem["errors"]} == fields, problem
    assert row_count(engine, PublisherVerification) == 0


def test_an_unknown_verification_is_a_404_problem(
    client: TestClient, dns_server: DnsServer
) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    assert_problem(client.get(f"{VERIFICATIONS}/{unknown}"), 404)
    assert_problem(client.post(f"{VERIFICATIONS}/{unknown}/check"), 404)
    assert dns_server.zone.queries == []  # nothing to look up


def test_starting_verifications_is_rate_limited_per_client_address(
    settings: Settings, engine: Engine, clock: FrozenClock
) -> None:
    """Past the limit of the address: 429 with Retry-After, nothing started; the next
    window starts afresh."""
    with client_with(settings, engine, clock, verification_rate_per_address="2/hour") as limited:
        start(limited)
        start(limited)
        refused = limited.post(
            VERIFICATIONS, json={"domain": "bbc.co.uk", "email": "dns@bbc.co.uk"}
        )
        problem = assert_problem(refused, 429)
        retry_after = int(refused.headers["retry-after"])
        assert 0 < retry_after <= 3600
        assert "domain verifications from this address" in problem["detail"]
        assert row_count(engine, PublisherVerification) == 2
        clock.advance(timedelta(seconds=retry_after))
        start(limited)
    assert row_count(engine, PublisherVerification) == 3


# Checking --------------------------------------------------------------------------------


def test_a_check_without_the_record_stays_pending_and_says_no_record(
    client: TestClient, clock: FrozenClock, dns_server: DnsServer
) -> None:
    verification = start(client)
    clock.advance(timedelta(minutes=5))
    checked = check(client, verification["id"])
    assert checked["status"] == "pending"
    assert checked["publisher_key"] is None
    assert checked["last_checked_at"] == "2026-01-05T09:05:00Z"
    assert checked["last_check_error"].startswith("no record: ")
    assert "_byline-verify.reuters.com" in checked["last_check_error"]
    assert dns_server.zone.queries == ["_byline-verify.reuters.com"]  # asked the test DNS


def test_a_check_while_the_dns_fails_says_lookup_failed(
    client: TestClient, dns_server: DnsServer
) -> None:
    """SERVFAIL is not "no record": the publisher is told its DNS did not answer."""
    verification = start(client)
    publish_record(dns_server, verification)
    dns_server.zone.failing = True
    checked = check(client, verification["id"])
    assert checked["status"] == "pending" and checked["publisher_key"] is None
    assert checked["last_check_error"].startswith("lookup failed: ")
    assert "SERVFAIL" in checked["last_check_error"]


def test_a_record_with_another_value_does_not_verify(
    client: TestClient, engine: Engine, dns_server: DnsServer
) -> None:
    """Other TXT records at the name (an older attempt's value, anything else) prove
    nothing: only this verification's value does."""
    older, verification = start(client), start(client)
    publish_record(dns_server, older)
    dns_server.zone.add_txt(verification["record_name"], "v=spf1 -all")
    dns_server.zone.add_txt(verification["record_name"], verification["record_value"] + "x")
    checked = check(client, verification["id"])
    assert checked["status"] == "pending" and checked["publisher_key"] is None
    assert checked["last_check_error"].startswith("no record: ")
    assert "do not hold this verification's value" in checked["last_check_error"]
    assert audit_trail(engine, verification["id"]) == []


def test_the_right_record_verifies_and_the_key_is_shown_in_that_answer_only(
    client: TestClient, engine: Engine, clock: FrozenClock, dns_server: DnsServer
) -> None:
    """Among other TXT records the right value verifies: status verified, the publisher key
    in this answer only (a second check and GET never show it), audited, e-mailed."""
    verification = start(client, "uk.reuters.com")
    dns_server.zone.add_txt(verification["record_name"], "google-site-verification=abc")
    publish_record(dns_server, verification)
    clock.advance(timedelta(hours=1))
    checked = check(client, verification["id"])
    assert checked["status"] == "verified"
    assert checked["verified_at"] == "2026-01-05T10:00:00Z"
    assert checked["last_check_error"] is None
    key = checked["publisher_key"]
    assert key.startswith("byl_") and len(key) > 40

    again = check(client, verification["id"])
    assert again["status"] == "verified" and again["publisher_key"] is None
    shown = client.get(f"{VERIFICATIONS}/{verification['id']}")
    assert key not in shown.text and "publisher_key" not in shown.json()
    assert shown.json()["status"] == "verified"

    assert audit_trail(engine, verification["id"]) == [
        ("publisher_verified", "pending", "verified")
    ]
    assert queued_emails(engine, verification["id"]) == [("publisher_verified", PUBLISHER_EMAIL)]
    # The key is real: it speaks for reuters.com.
    listing = client.get("/v1/publisher/articles", headers=bearer(key))
    assert listing.status_code == 200, listing.text


def test_a_verification_unverified_by_its_expiry_expires_and_no_lookup_revives_it(
    client: TestClient, engine: Engine, clock: FrozenClock, dns_server: DnsServer
) -> None:
    """Seven days on, the verification is expired (GET says so before any check), and a
    check after that asks no DNS: the record appearing late verifies nothing."""
    verification = start(client)
    check(client, verification["id"])  # too early: no record yet
    clock.advance(timedelta(days=7))
    assert get(client, verification["id"])["status"] == "expired"
    publish_record(dns_server, verification)
    queries_before = len(dns_server.zone.queries)
    for _ in range(2):
        checked = check(client, verification["id"])
        assert checked["status"] == "expired" and checked["publisher_key"] is None
    assert len(dns_server.zone.queries) == queries_before
    assert audit_trail(engine, verification["id"]) == [("publisher_expired", "pending", "expired")]
    assert queued_emails(engine, verification["id"]) == []


def test_a_record_seen_just_before_the_expiry_verifies(
    client: TestClient, clock: FrozenClock, dns_server: DnsServer
) -> None:
    verification = start(client)
    publish_record(dns_server, verification)
    clock.advance(timedelta(days=7) - timedelta(seconds=1))
    assert check(client, verification["id"])["status"] == "verified"


def test_checks_are_rate_limited_per_verification(
    settings: Settings, engine: Engine, clock: FrozenClock, dns_server: DnsServer
) -> None:
    """Past the limit of one verification: 429 with Retry-After and no lookup; another
    verification's checks are counted apart."""
    with client_with(settings, engine, clock, verification_check_rate="3/hour") as limited:
        verification, other = start(limited), start(limited)
        for _ in range(3):
            check(limited, verification["id"])
        queries = len(dns_server.zone.queries)
        refused = limited.post(f"{VERIFICATIONS}/{verification['id']}/check")
        problem = assert_problem(refused, 429)
        assert "checks of this verification" in problem["detail"]
        assert int(refused.headers["retry-after"]) > 0
        assert len(dns_server.zone.queries) == queries
        assert check(limited, other["id"])["status"] == "pending"

        clock.advance(timedelta(seconds=int(refused.headers["retry-after"])))
        publish_record(dns_server, verification)
        assert check(limited, verification["id"])["status"] == "verified"


def test_verifying_a_domain_again_issues_a_new_key(
    client: TestClient, dns_server: DnsServer
) -> None:
    """A lost key is replaced by proving the domain again: a new verification, a new key,
    both bound to the domain."""
    _, first = verify(client, dns_server)
    _, second = verify(client, dns_server)
    assert first != second
    for key in (first, second):
        assert client.get("/v1/publisher/articles", headers=bearer(key)).status_code == 200


def test_concurrent_checks_issue_one_key(
    client: TestClient, engine: Engine, admin_headers: dict[str, str], dns_server: DnsServer
) -> None:
    """Checks pressed at once all see the record; exactly one answer holds a key, and one
    key, one audit row and one e-mail exist."""
    verification = start(client)
    publish_record(dns_server, verification)
    barrier = threading.Barrier(6)

    def press() -> dict[str, Any]:
        barrier.wait()
        return check(client, verification["id"])

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: press(), range(6)))
    assert {answer["status"] for answer in answers} == {"verified"}
    keys = [answer["publisher_key"] for answer in answers if answer["publisher_key"]]
    assert len(keys) == 1
    listed = client.get("/v1/admin/keys", headers=admin_headers).json()["items"]
    assert [key["scope"] for key in listed].count("publisher") == 1
    assert audit_trail(engine, verification["id"]) == [
        ("publisher_verified", "pending", "verified")
    ]
    assert len(queued_emails(engine, verification["id"])) == 1
