"""The daily re-check of verified records, a job run by the worker of webhooks and e-mails
(one re-check row per verified verification): a record kept is left alone, a record gone is
audited and e-mailed, and gone for the grace period (7 days) it lapses the verification and
revokes the publisher key."""

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.clock import FrozenClock
from app.config import Settings
from tests.publishers.conftest import DnsServer
from tests.publishers.factories import (
    PUBLISHER_EMAIL,
    audit_trail,
    get,
    mail_written,
    publish_record,
    queued_emails,
    run_tick,
    verify,
)
from tests.takedowns.factories import assert_problem, bearer, filing, ingest

DAY = timedelta(hours=24)
RECHECK = "publisher-recheck"
ARTICLES = "/v1/publisher/articles"


@pytest.fixture
def verified(client: TestClient, dns_server: DnsServer) -> tuple[dict[str, Any], str]:
    """reuters.com, verified at 2026-01-05 09:00 (its first re-check due 24 hours later),
    and its publisher key."""
    return verify(client, dns_server, "reuters.com")


def key_works(client: TestClient, key: str) -> bool:
    response = client.get(ARTICLES, headers=bearer(key))
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


def test_a_record_kept_is_rechecked_daily_and_nothing_changes(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    dns_server: DnsServer,
    verified: tuple[dict[str, Any], str],
) -> None:
    """Not due: no lookup at all. Due after 24 hours: one lookup, the next in 24 hours, no
    audit row, no e-mail beyond the verified one."""
    verification, key = verified
    queries = len(dns_server.zone.queries)
    clock.advance(DAY - timedelta(seconds=1))
    assert run_tick(engine, settings, clock).claimed[RECHECK] == 0
    assert len(dns_server.zone.queries) == queries

    clock.advance(timedelta(seconds=1))
    assert run_tick(engine, settings, clock).claimed[RECHECK] == 1
    assert dns_server.zone.queries[queries:] == ["_byline-verify.reuters.com"]
    assert run_tick(engine, settings, clock).claimed[RECHECK] == 0  # next one in 24 hours

    shown = get(client, verification["id"])
    assert shown["status"] == "verified"
    assert shown["last_checked_at"] == "2026-01-06T09:00:00Z"
    assert shown["record_missing_since"] is None and shown["last_check_error"] is None
    assert audit_trail(engine, verification["id"]) == [
        ("publisher_verified", "pending", "verified")
    ]
    assert queued_emails(engine, verification["id"]) == [("publisher_verified", PUBLISHER_EMAIL)]
    assert key_works(client, key)


def test_a_record_gone_is_audited_and_emailed_at_its_first_miss_and_the_key_still_works(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    dns_server: DnsServer,
    verified: tuple[dict[str, Any], str],
) -> None:
    verification, key = verified
    dns_server.zone.remove_txt(verification["record_name"])
    clock.advance(DAY)
    assert run_tick(engine, settings, clock).claimed[RECHECK] == 1
    shown = get(client, verification["id"])
    assert shown["status"] == "verified"
    assert shown["record_missing_since"] == "2026-01-06T09:00:00Z"
    assert shown["last_check_error"].startswith("no record: ")
    assert audit_trail(engine, verification["id"])[-1] == ("publisher_record_missing", None, None)
    assert queued_emails(engine, verification["id"])[-1] == (
        "publisher_record_missing",
        PUBLISHER_EMAIL,
    )
    assert key_works(client, key)
    page = client.get(f"/publishers/verify/{verification['id']}")
    assert "Your record is missing" in page.text and 'datetime="2026-01-06T09:00:00Z"' in page.text

    # The next day's miss is not news: no second audit row or e-mail, the same start.
    clock.advance(DAY)
    assert run_tick(engine, settings, clock).claimed[RECHECK] == 1
    assert get(client, verification["id"])["record_missing_since"] == "2026-01-06T09:00:00Z"
    actions = [action for action, _, _ in audit_trail(engine, verification["id"])]
    assert actions == ["publisher_verified", "publisher_record_missing"]
    assert len(queued_emails(engine, verification["id"])) == 2
    # The e-mail queued by a re-check goes out with a later tick, to the publisher.
    subjects = {(str(m["To"]), str(m["Subject"])) for m in mail_written(settings)}
    assert (PUBLISHER_EMAIL, "Your verification record for reuters.com is missing") in subjects
    assert key_works(client, key)


def test_a_record_back_within_the_grace_clears_the_miss(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    dns_server: DnsServer,
    verified: tuple[dict[str, Any], str],
) -> None:
    verification, key = verified
    dns_server.zone.remove_txt(verification["record_name"])
    clock.advance(DAY)
    run_tick(engine, settings, clock)
    publish_record(dns_server, verification)
    clock.advance(DAY)
    assert run_tick(engine, settings, clock).claimed[RECHECK] == 1
    shown = get(client, verification["id"])
    assert shown["status"] == "verified"
    assert shown["record_missing_since"] is None and shown["last_check_error"] is None
    actions = [action for action, _, _ in audit_trail(engine, verification["id"])]
    assert actions == ["publisher_verified", "publisher_record_missing", "publisher_record_seen"]
    assert key_works(client, key)


def test_a_record_gone_for_the_grace_period_lapses_and_revokes_the_key(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    dns_server: DnsServer,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    verified: tuple[dict[str, Any], str],
) -> None:
    """Missed first on day 1, the record is given 7 days from that miss: the key works up
    to day 7 and is revoked on day 8 (filing with it is then a 401), audited and e-mailed;
    a lapsed verification is checked no more."""
    verification, key = verified
    article = ingest(client, ingest_headers, host="www.reuters.com")
    dns_server.zone.remove_txt(verification["record_name"])
    for day in range(1, 8):
        clock.advance(DAY)
        assert run_tick(engine, settings, clock).claimed[RECHECK] == 1, day
        assert get(client, verification["id"])["status"] == "verified", day
        assert key_works(client, key), day

    clock.advance(DAY)
    assert run_tick(engine, settings, clock).claimed[RECHECK] == 1
    shown = get(client, verification["id"])
    assert shown["status"] == "lapsed"
    assert shown["lapsed_at"] == "2026-01-13T09:00:00Z"
    assert shown["record_missing_since"] == "2026-01-06T09:00:00Z"
    page = client.get(f"/publishers/verify/{verification['id']}")
    assert "The publisher key of reuters.com was revoked" in page.text

    refused = client.post("/v1/takedowns", json=filing([article["url"]]), headers=bearer(key))
    assert_problem(refused, 401)
    assert not key_works(client, key)
    keys = client.get("/v1/admin/keys", headers=admin_headers).json()["items"]
    publisher_keys = [k for k in keys if k["scope"] == "publisher"]
    assert [(k["domain"], k["revoked_at"]) for k in publisher_keys] == [
        ("reuters.com", "2026-01-13T09:00:00Z")
    ]
    assert audit_trail(engine, verification["id"])[-1] == (
        "publisher_lapsed",
        "verified",
        "lapsed",
    )
    assert queued_emails(engine, verification["id"])[-1] == ("publisher_lapsed", PUBLISHER_EMAIL)

    # The record coming back does not revive a lapsed verification: it is not checked.
    publish_record(dns_server, verification)
    clock.advance(DAY)
    assert run_tick(engine, settings, clock).claimed[RECHECK] == 0
    assert get(client, verification["id"])["status"] == "lapsed"
    assert not key_works(client, key)


@pytest.mark.parametrize("outage", ["servfail", "down"])
def test_a_dns_that_does_not_answer_counts_as_missing_and_never_fails_the_tick(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    dns_server: DnsServer,
    verified: tuple[dict[str, Any], str],
    outage: str,
) -> None:
    """SERVFAIL, or no server listening at all: the record could not be seen. The tick
    completes, the miss is recorded as a failed lookup, the key still works."""
    verification, key = verified
    if outage == "servfail":
        dns_server.zone.failing = True
    else:
        dns_server.stop()
    clock.advance(DAY)
    # A short timeout for the server that is gone: the tick waits for it, never fails.
    quick = settings.model_copy(update={"dns_timeout_seconds": 0.2})
    tick = run_tick(engine, quick, clock)
    assert tick.claimed[RECHECK] == 1
    shown = get(client, verification["id"])
    assert shown["status"] == "verified"
    assert shown["record_missing_since"] == "2026-01-06T09:00:00Z"
    assert shown["last_check_error"].startswith("lookup failed: ")
    assert audit_trail(engine, verification["id"])[-1][0] == "publisher_record_missing"
    assert key_works(client, key)


def test_each_verified_domain_is_rechecked_on_its_own(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    dns_server: DnsServer,
) -> None:
    """One domain's missing record leaves another's verification untouched."""
    reuters, _ = verify(client, dns_server, "reuters.com")
    bbc, _ = verify(client, dns_server, "bbc.co.uk")
    dns_server.zone.remove_txt(bbc["record_name"])
    clock.advance(DAY)
    assert run_tick(engine, settings, clock).claimed[RECHECK] == 2
    assert get(client, reuters["id"])["record_missing_since"] is None
    assert get(client, bbc["id"])["record_missing_since"] == "2026-01-06T09:00:00Z"


def test_a_second_outage_is_emailed_as_well(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    dns_server: DnsServer,
    verified: tuple[dict[str, Any], str],
) -> None:
    """Missing, back, missing again: each outage is audited, and each must warn the
    publisher of its own lapse date (the page promises an e-mail when we first miss it)."""
    verification, _ = verified
    for present in (False, True, False):
        if present:
            publish_record(dns_server, verification)
        else:
            dns_server.zone.remove_txt(verification["record_name"])
        clock.advance(DAY)
        run_tick(engine, settings, clock)
    actions = [action for action, _, _ in audit_trail(engine, verification["id"])]
    assert actions.count("publisher_record_missing") == 2
    kinds = [kind for kind, _ in queued_emails(engine, verification["id"])]
    assert kinds.count("publisher_record_missing") == 2
