"""Webhooks reach public addresses only, unless BYLINE_ALLOW_PRIVATE_NETWORKS: a URL at a
non-public address is refused when registered, and a delivery whose host resolves to one
when it is sent is refused at connect and recorded with the one fixed message.

The setting is off in this module. The receiver still listens on 127.0.0.1: nothing may
reach it. The only public address here is answered to the registration's check, which
opens no connection."""

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app import outbound
from app.clock import FrozenClock
from app.config import Settings
from app.db import new_session, writer
from app.notifications import webhooks
from app.notifications.models import EventKind
from app.outbound import REFUSED
from tests.hardening.servers import free_port
from tests.notifications.conftest import MakeNotifier, Receiver
from tests.notifications.factories import deliveries, endpoint, register
from tests.takedowns.factories import assert_problem, ingest


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"allow_private_networks": False})


def registered_while_allowed(engine: Engine, clock: FrozenClock, url: str) -> int:
    """An endpoint registered while private networks were allowed (or before the guard)."""
    with new_session(writer(engine)) as session, session.begin():
        created, _ = webhooks.create_endpoint(
            session=session,
            url=url,
            events=[EventKind.article_created],
            actor="operator",
            now=clock.now(),
            allow_private=True,
        )
    assert created.id is not None
    return created.id


@pytest.mark.parametrize(
    "url",
    [
        "http://127.1/hook",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0177.0.0.1/",
        "http://0.0.0.0/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/hook",
        "http://localhost:8080/hook",
    ],
)
def test_registering_a_url_at_a_non_public_address_is_refused_naming_url(
    client: TestClient, admin_headers: dict[str, str], url: str
) -> None:
    response = client.post(
        "/v1/admin/webhooks",
        json={"url": url, "events": ["article.removed"]},
        headers=admin_headers,
    )
    problem = assert_problem(response, 422)
    assert problem["errors"] == [{"field": "url", "message": REFUSED}]
    assert client.get("/v1/admin/webhooks", headers=admin_headers).json()["items"] == []


def test_registering_an_ipv6_loopback_url_is_refused_naming_url(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    # The URL rule of the schema refuses IPv6 literals before the address guard sees them.
    for url in ["http://[::1]/", "http://[::ffff:127.0.0.1]/"]:
        response = client.post(
            "/v1/admin/webhooks",
            json={"url": url, "events": ["article.removed"]},
            headers=admin_headers,
        )
        problem = assert_problem(response, 422)
        assert [error["field"] for error in problem["errors"]] == ["url"]


def test_a_delivery_to_a_name_that_now_resolves_to_loopback_is_refused_and_recorded(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    receiver: Receiver,
    make_notifier: MakeNotifier,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DNS rebinding: a public address when registered, 127.0.0.1 when delivered to."""
    answered = iter([["93.184.216.34"]])

    def rebinding(host: str, port: int) -> list[str]:
        assert host == "hooks.example.invalid"
        return next(answered, ["127.0.0.1"])

    monkeypatch.setattr(outbound, "resolve_with_system", rebinding)
    url = f"http://hooks.example.invalid:{receiver.port}/hooks/byline"
    created = register(client, admin_headers, url, ["article.created"])
    ingest(client, ingest_headers, 1)
    runner = make_notifier()

    assert runner.run_once().of("webhook")["retried"] == 1
    assert receiver.requests == []
    [delivery] = deliveries(engine)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("queued", 1, None)
    assert delivery.last_error == REFUSED
    assert delivery.run_at == clock.now() + timedelta(seconds=30)
    health = endpoint(engine, created["id"])
    assert (health.consecutive_failures, health.last_error) == (1, REFUSED)
    log = client.get(f"/v1/admin/webhooks/{created['id']}/deliveries", headers=admin_headers)
    assert [entry["last_error"] for entry in log.json()["items"]] == [REFUSED]

    # The usual policy: retried with backoff, given up and the endpoint disabled after the
    # retry window.
    clock.advance(timedelta(seconds=30))
    assert runner.run_once().of("webhook")["retried"] == 1
    clock.advance(timedelta(hours=24))
    result = runner.run_once().of("webhook")
    assert (result["failed"], result["endpoints_disabled"]) == (1, 1)
    [delivery] = deliveries(engine)
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("failed", 3, REFUSED)
    shown = client.get(f"/v1/admin/webhooks/{created['id']}", headers=admin_headers).json()
    assert shown["state"] == "disabled" and shown["disabled_reason"].endswith(REFUSED)
    assert receiver.requests == []


def test_a_refused_delivery_reads_the_same_whether_anything_listens_there_or_not(
    ingest_headers: dict[str, str],
    client: TestClient,
    engine: Engine,
    clock: FrozenClock,
    receiver: Receiver,
    make_notifier: MakeNotifier,
) -> None:
    listening = registered_while_allowed(
        engine, clock, f"http://localhost:{receiver.port}/hooks/byline"
    )
    nobody = registered_while_allowed(engine, clock, f"http://localhost:{free_port()}/hooks")
    ingest(client, ingest_headers, 1)

    assert make_notifier().run_once().of("webhook")["retried"] == 2
    assert receiver.requests == []
    assert {d.endpoint_id: d.last_error for d in deliveries(engine)} == {
        listening: REFUSED,
        nobody: REFUSED,
    }
    assert endpoint(engine, listening).last_error == endpoint(engine, nobody).last_error
