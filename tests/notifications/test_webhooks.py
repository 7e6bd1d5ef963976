"""Operators register webhook endpoints; frontends and caches get signed events through a real
HTTP receiver on 127.0.0.1: retried with backoff, in order per article, delivered once when
nothing crashes (and at least once when something does), never with claimant data."""

import json
import threading
from collections import Counter
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.clock import FrozenClock
from app.config import Settings
from app.db import new_session, writer
from app.notifications.deliveries import WebhookHandler
from app.notifications.webhooks import signature
from tests.articles.factories import article_payload
from tests.notifications.conftest import MakeNotifier, Receiver
from tests.notifications.factories import (
    deliveries,
    endpoint,
    events,
    register,
    signed_by,
)
from tests.takedowns.factories import (
    CLAIMANT_EMAIL,
    CLAIMANT_NAME,
    EXPLANATION,
    assert_problem,
    file_confirmed,
    filing,
    ingest,
)
from tests.workers import run_removals

LEASE = timedelta(seconds=60)


def update_article(client: TestClient, headers: dict[str, str], n: int, title: str) -> None:
    payload = article_payload(
        n,
        title=title,
        source_url=f"https://www.reuters.com/world/story-{n}",
        publisher={"name": "reuters.com", "url": "https://www.reuters.com"},
    )
    response = client.post("/v1/articles", json=payload, headers=headers)
    assert response.status_code == 200, response.text


def kinds_by_article(bodies: list[dict[str, Any]]) -> dict[int, list[str]]:
    seen: dict[int, list[str]] = {}
    for body in bodies:
        if body["type"].startswith("article."):
            seen.setdefault(body["data"]["id"], []).append(body["type"])
    return seen


# Registering -----------------------------------------------------------------------------


def test_registering_shows_the_secret_once_and_lists_the_endpoint(
    client: TestClient, admin_headers: dict[str, str], receiver: Receiver
) -> None:
    created = register(client, admin_headers, receiver.url, ["article.removed"])
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 40
    assert created["secret_hint"] == created["secret"][:10]
    assert (created["state"], created["events"], created["created_by"]) == (
        "active",
        ["article.removed"],
        "operator",
    )

    listed = client.get("/v1/admin/webhooks", headers=admin_headers).json()["items"]
    assert [item["id"] for item in listed] == [created["id"]]
    assert "secret" not in listed[0] and created["secret"] not in json.dumps(listed)
    one = client.get(f"/v1/admin/webhooks/{created['id']}", headers=admin_headers)
    assert one.json()["url"] == receiver.url

    assert (
        client.delete(f"/v1/admin/webhooks/{created['id']}", headers=admin_headers).status_code
        == 204
    )
    assert_problem(client.get(f"/v1/admin/webhooks/{created['id']}", headers=admin_headers), 404)
    assert_problem(client.delete(f"/v1/admin/webhooks/{created['id']}", headers=admin_headers), 404)


BAD_ENDPOINTS = [
    ({"url": "ftp://hooks.example/x", "events": ["article.removed"]}, "url"),
    ({"url": "javascript:alert(1)", "events": ["article.removed"]}, "url"),
    ({"url": "https://user:pw@hooks.example/x", "events": ["article.removed"]}, "url"),
    ({"url": "/relative", "events": ["article.removed"]}, "url"),
    ({"url": "https://hooks.example/x", "events": []}, "events"),
    ({"url": "https://hooks.example/x", "events": ["article.deleted"]}, "events.0"),
    ({"url": "https://hooks.example/x"}, "events"),
    ({"url": "https://hooks.example/x", "events": ["article.removed"], "x": 1}, "x"),
]


def test_bad_endpoints_are_refused_naming_the_field(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    for body, field in BAD_ENDPOINTS:
        response = client.post("/v1/admin/webhooks", json=body, headers=admin_headers)
        problem = assert_problem(response, 422)
        assert field in [error["field"] for error in problem["errors"]], (body, problem)
    assert client.get("/v1/admin/webhooks", headers=admin_headers).json()["items"] == []


def test_webhook_admin_needs_an_admin_key(
    client: TestClient, ingest_headers: dict[str, str]
) -> None:
    for method, path in [
        ("GET", "/v1/admin/webhooks"),
        ("POST", "/v1/admin/webhooks"),
        ("GET", "/v1/admin/webhooks/1"),
        ("DELETE", "/v1/admin/webhooks/1"),
        ("POST", "/v1/admin/webhooks/1/enable"),
        ("GET", "/v1/admin/webhooks/1/deliveries"),
    ]:
        assert_problem(client.request(method, path), 401)
        assert_problem(client.request(method, path, headers=ingest_headers), 403)


def test_without_an_endpoint_ingest_writes_no_event(
    client: TestClient, ingest_headers: dict[str, str], engine: Engine
) -> None:
    items = [article_payload(n) for n in range(20)]
    response = client.post("/v1/articles/batch", json={"items": items}, headers=ingest_headers)
    assert response.status_code == 200
    assert events(engine) == [] and deliveries(engine) == []


def test_a_batch_writes_one_event_per_article_and_one_delivery_per_endpoint(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
    receiver: Receiver,
) -> None:
    register(client, admin_headers, receiver.url)
    register(client, admin_headers, receiver.url + "/second", ["article.created"])
    register(client, admin_headers, receiver.url + "/third", ["article.removed"])
    items = [article_payload(n) for n in range(500)]
    response = client.post("/v1/articles/batch", json={"items": items}, headers=ingest_headers)
    assert response.status_code == 200

    assert len(events(engine)) == 500
    assert len(deliveries(engine)) == 1000
    assert {event.kind for event in events(engine)} == {"article.created"}


# Delivering ------------------------------------------------------------------------------


def test_article_events_are_signed_and_carry_the_urls_a_cache_needs(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    receiver: Receiver,
    make_notifier: MakeNotifier,
) -> None:
    secret = register(client, admin_headers, receiver.url)["secret"]
    article = ingest(client, ingest_headers, 1)
    update_article(client, ingest_headers, 1, "A new title")
    filed = file_confirmed(client, engine, filing([article["id"]]))
    assert run_removals(engine, settings, clock).of("removal")["removed"] == 1

    result = make_notifier().run_once()

    assert result.of("webhook")["delivered"] == 4
    now = clock.now().timestamp()
    for received in receiver.requests:
        assert signed_by(received, secret, now)
        assert not signed_by(received, "whsec_wrong", now)
        assert not signed_by(received, secret, now + 3600)  # too old: a replay
        assert received.headers["content-type"] == "application/json"
        assert received.headers["x-byline-event-id"] == received.json()["id"]
        assert received.headers["x-byline-event"] == received.json()["type"]
        header = received.headers["x-byline-signature"]
        assert header == signature(secret, int(now), received.body)
        assert header.startswith(f"t={int(now)},v1=")
    # In order per article; `takedown.completed` concerns no one article, so it need not wait.
    by_type = {r.json()["type"]: r.json() for r in receiver.requests}
    assert kinds_by_article(list(by_type.values())) == {
        article["id"]: ["article.created", "article.updated", "article.removed"]
    }
    created, removed = by_type["article.created"], by_type["article.removed"]
    completed = by_type["takedown.completed"]
    our_url = f"https://news.example/v1/articles/{article['id']}"
    canonical = "https://www.reuters.com/world/story-1"
    assert created["data"] == {
        "id": article["id"],
        "url": our_url,
        "canonical_url": canonical,
        "updated_at": "2026-01-05T09:00:00+00:00",
    }
    assert removed["data"] == {
        "id": article["id"],
        "url": our_url,
        "canonical_url": canonical,
        "removed_at": "2026-01-05T09:00:00+00:00",
        "takedown_id": filed["id"],
    }
    assert completed["data"] == {
        "id": filed["id"],
        "completed_at": "2026-01-05T09:00:00+00:00",
        "article_ids": [article["id"]],
    }
    assert len({r.json()["id"] for r in receiver.requests}) == 4
    # No claimant data, ever.
    everything = b"".join(r.body for r in receiver.requests).decode()
    for secret_value in (CLAIMANT_EMAIL, CLAIMANT_NAME, EXPLANATION, "P. Claimant"):
        assert secret_value not in everything
    assert {d.status for d in deliveries(engine)} == {"done"}


def test_an_endpoint_gets_only_the_kinds_it_subscribed_to(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    receiver: Receiver,
    make_notifier: MakeNotifier,
) -> None:
    register(client, admin_headers, receiver.url, ["article.removed"])
    article = ingest(client, ingest_headers, 1)
    ingest(client, ingest_headers, 2)
    file_confirmed(client, engine, filing([article["id"]]))
    run_removals(engine, settings, clock)

    make_notifier().run_once()

    assert [r.json()["type"] for r in receiver.requests] == ["article.removed"]
    assert [e.kind for e in events(engine)] == ["article.removed"]


def test_article_removed_is_due_at_the_removal_and_goes_out_at_the_next_tick(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    receiver: Receiver,
    make_notifier: MakeNotifier,
) -> None:
    article = ingest(client, ingest_headers, 1)
    body = filing([article["id"]], claimant={"email": "agent@rights.example.org"})
    filed = file_confirmed(client, engine, body)
    register(client, admin_headers, receiver.url, ["article.removed"])
    clock.advance(timedelta(hours=4))  # the review window
    assert run_removals(engine, settings, clock).of("removal")["removed"] == 1
    [delivery] = deliveries(engine)
    assert delivery.run_at == clock.now()

    clock.advance(timedelta(seconds=settings.scheduler_interval_seconds))
    assert make_notifier().run_once().of("webhook")["delivered"] == 1
    [received] = receiver.requests
    assert received.json()["data"]["takedown_id"] == filed["id"]


def test_a_500_is_retried_with_backoff_and_the_event_delivered_once(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    receiver: Receiver,
    make_notifier: MakeNotifier,
) -> None:
    created = register(client, admin_headers, receiver.url)
    ingest(client, ingest_headers, 1)
    receiver.answers = [500, 503]
    runner = make_notifier()

    assert runner.run_once().of("webhook")["retried"] == 1
    [delivery] = deliveries(engine)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("queued", 1, 500)
    assert delivery.run_at == clock.now() + timedelta(seconds=30)
    health = endpoint(engine, created["id"])
    assert (health.consecutive_failures, health.failing_since) == (1, clock.now())
    assert runner.run_once().claimed.total() == 0  # not before the backoff

    clock.advance(timedelta(seconds=30))
    assert runner.run_once().of("webhook")["retried"] == 1
    clock.advance(timedelta(seconds=59))
    assert runner.run_once().claimed.total() == 0
    clock.advance(timedelta(seconds=1))
    assert runner.run_once().of("webhook")["delivered"] == 1

    assert [r.headers["x-test-answer"] for r in receiver.requests] == ["500", "503", "204"]
    assert len({r.json()["id"] for r in receiver.requests}) == 1  # one event, three tries
    [delivery] = deliveries(engine)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("done", 3, 204)
    health = endpoint(engine, created["id"])
    assert (health.consecutive_failures, health.failing_since) == (0, None)
    assert health.last_success_at == clock.now()

    log = client.get(f"/v1/admin/webhooks/{created['id']}/deliveries", headers=admin_headers)
    [entry] = log.json()["items"]
    assert (entry["status"], entry["attempts"], entry["event_type"]) == (
        "done",
        3,
        "article.created",
    )
    assert entry["event_id"] == receiver.requests[0].json()["id"]


def test_receiver_down_for_a_while_then_back_gets_everything_exactly_once_in_order(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    receiver: Receiver,
    make_notifier: MakeNotifier,
) -> None:
    created = register(client, admin_headers, receiver.url)
    receiver.stop()
    runner = make_notifier()
    ids = [ingest(client, ingest_headers, n)["id"] for n in range(1, 6)]
    for n in (1, 2, 3):
        update_article(client, ingest_headers, n, f"Corrected headline {n}")
    file_confirmed(client, engine, filing([ids[0], ids[1]]))
    run_removals(engine, settings, clock)

    # Down for three hours: every tick fails fast (connection refused); backoff grows.
    for _ in range(4):
        runner.run_once()
        clock.advance(timedelta(minutes=45))
    listed = client.get("/v1/admin/webhooks", headers=admin_headers).json()["items"]
    assert (listed[0]["state"], listed[0]["pending_deliveries"]) == ("failing", 11)
    assert "ConnectError" in listed[0]["last_error"]

    receiver.start()
    clock.advance(timedelta(minutes=15))
    result = runner.run_once()
    assert result.of("webhook")["delivered"] == 11

    bodies = receiver.accepted()
    assert len(bodies) == len({body["id"] for body in bodies}) == 11
    assert kinds_by_article(bodies) == {
        ids[0]: ["article.created", "article.updated", "article.removed"],
        ids[1]: ["article.created", "article.updated", "article.removed"],
        ids[2]: ["article.created", "article.updated"],
        ids[3]: ["article.created"],
        ids[4]: ["article.created"],
    }
    assert make_notifier("another").run_once().claimed.total() == 0
    assert endpoint(engine, created["id"]).failing_since is None


def test_an_articles_next_event_waits_while_the_earlier_one_is_retried(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    receiver: Receiver,
    make_notifier: MakeNotifier,
) -> None:
    register(client, admin_headers, receiver.url)
    first = ingest(client, ingest_headers, 1)
    update_article(client, ingest_headers, 1, "Second version")
    update_article(client, ingest_headers, 1, "Third version")
    receiver.answers = [500]
    runner = make_notifier()

    result = runner.run_once()
    assert (result.of("webhook")["retried"], result.of("webhook")["delivered"]) == (1, 0)
    assert [d.status for d in deliveries(engine)] == ["queued"] * 3

    clock.advance(timedelta(seconds=30))
    assert runner.run_once().of("webhook")["delivered"] == 3
    accepted = receiver.accepted()
    assert [body["type"] for body in accepted] == [
        "article.created",
        "article.updated",
        "article.updated",
    ]
    assert {body["data"]["id"] for body in accepted} == {first["id"]}
    created_at = [body["created_at"] for body in accepted]
    assert created_at == sorted(created_at)
    order = [d.event_id for d in deliveries(engine)]
    assert [body["id"] for body in accepted] == [
        next(e.uid for e in events(engine) if e.id == event_id) for event_id in order
    ]


def test_an_endpoint_failing_for_the_whole_window_is_disabled_and_shown(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    receiver: Receiver,
    make_notifier: MakeNotifier,
) -> None:
    created = register(client, admin_headers, receiver.url)
    other = register(client, admin_headers, receiver.url + "/other", ["article.created"])
    ingest(client, ingest_headers, 1)
    receiver.answers = [500] * 10
    runner = make_notifier()
    assert runner.run_once().of("webhook")["endpoints_disabled"] == 0
    clock.advance(timedelta(hours=23, minutes=59))
    assert runner.run_once().of("webhook")["endpoints_disabled"] == 0
    clock.advance(timedelta(minutes=1))
    # Both fail: the scripted answers do not care about the path.
    assert runner.run_once().of("webhook")["endpoints_disabled"] == 2

    listed = {
        e["id"]: e for e in client.get("/v1/admin/webhooks", headers=admin_headers).json()["items"]
    }
    shown = listed[created["id"]]
    assert shown["state"] == "disabled"
    assert shown["disabled_reason"].startswith("no delivery succeeded for 1 day")
    assert "HTTP 500" in shown["disabled_reason"]
    assert listed[other["id"]]["state"] == "disabled"
    [first, second] = deliveries(engine)
    assert {first.status, second.status} == {"failed"}  # older than the retry window
    metrics = client.get("/metrics").text
    assert 'byline_webhook_endpoints{state="disabled"} 2.0' in metrics
    assert 'byline_webhook_deliveries{status="failed"} 2.0' in metrics

    # Disabled: new events are not queued for it, and nothing is sent.
    ingest(client, ingest_headers, 2)
    assert len(deliveries(engine)) == 2
    sent = len(receiver.requests)
    runner.run_once()
    assert len(receiver.requests) == sent

    # Enabled again: it gets new events.
    receiver.answers = []
    enabled = client.post(f"/v1/admin/webhooks/{created['id']}/enable", headers=admin_headers)
    assert enabled.json()["state"] == "active"
    ingest(client, ingest_headers, 3)
    assert runner.run_once().of("webhook")["delivered"] == 1


def test_delivery_log_pages_newest_first_and_filters_by_status(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    receiver: Receiver,
    make_notifier: MakeNotifier,
) -> None:
    created = register(client, admin_headers, receiver.url)
    for n in range(1, 6):
        ingest(client, ingest_headers, n)
    make_notifier().run_once()
    path = f"/v1/admin/webhooks/{created['id']}/deliveries"

    page = client.get(f"{path}?limit=3", headers=admin_headers)
    first = page.json()
    assert [item["id"] for item in first["items"]] == [5, 4, 3]
    assert 'rel="next"' in page.headers["Link"]
    rest = client.get(f"{path}?limit=3&cursor={first['next_cursor']}", headers=admin_headers)
    assert [item["id"] for item in rest.json()["items"]] == [2, 1]
    assert rest.json()["next_cursor"] is None
    none_queued = client.get(f"{path}?status=queued", headers=admin_headers).json()
    assert none_queued["items"] == []
    assert_problem(client.get(f"{path}?cursor=forged", headers=admin_headers), 400)
    assert_problem(client.get("/v1/admin/webhooks/999/deliveries", headers=admin_headers), 404)


# Crashes ---------------------------------------------------------------------------------


def test_an_event_committed_before_a_crash_is_delivered_by_a_fresh_runner(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
    receiver: Receiver,
    make_notifier: MakeNotifier,
) -> None:
    register(client, admin_headers, receiver.url)
    # The process that wrote the event died before any runner saw it: only the database
    # remembers. A runner started afterwards (another owner, nothing in memory) sends it.
    ingest(client, ingest_headers, 1)

    assert make_notifier("started-after-the-crash").run_once().of("webhook")["delivered"] == 1
    assert len(receiver.requests) == 1


def test_a_delivery_whose_runner_died_mid_attempt_is_sent_again_with_the_same_event_id(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    receiver: Receiver,
    make_notifier: MakeNotifier,
) -> None:
    register(client, admin_headers, receiver.url)
    ingest(client, ingest_headers, 1)
    with new_session(writer(engine)) as session, session.begin():
        # Claimed (a try counted) by a worker that died before it recorded an answer.
        [claimed] = WebhookHandler(settings=settings).claim(
            session=session, owner="dead", now=clock.now(), limit=10, lease=LEASE
        )
    runner = make_notifier()
    assert runner.run_once().claimed.total() == 0  # leased to the dead runner

    clock.advance(LEASE + timedelta(seconds=1))
    result = runner.run_once()

    assert (result.recovered["webhook"], result.of("webhook")["delivered"]) == (1, 1)
    [received] = receiver.requests
    assert received.json()["id"] == claimed.event_uid
    [delivery] = deliveries(engine)
    assert (delivery.status, delivery.attempts) == ("done", 2)


def test_deleting_an_endpoint_stops_its_deliveries(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
    receiver: Receiver,
    make_notifier: MakeNotifier,
) -> None:
    created = register(client, admin_headers, receiver.url)
    ingest(client, ingest_headers, 1)
    client.delete(f"/v1/admin/webhooks/{created['id']}", headers=admin_headers)

    assert make_notifier().run_once().claimed.total() == 0
    assert receiver.requests == [] and deliveries(engine) == []


def test_two_runners_at_once_deliver_each_event_exactly_once(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
    settings: Settings,
    receiver: Receiver,
    make_notifier: MakeNotifier,
) -> None:
    register(client, admin_headers, receiver.url)
    register(client, admin_headers, receiver.url + "/second")
    items = [article_payload(n) for n in range(60)]
    response = client.post("/v1/articles/batch", json={"items": items}, headers=ingest_headers)
    assert response.status_code == 200
    small_batches = settings.model_copy(update={"scheduler_batch_size": 7})
    runners = [make_notifier(f"runner-{n}", settings=small_batches) for n in range(2)]
    threads = [threading.Thread(target=runner.run_once) for runner in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    received = Counter((r.path, r.json()["id"]) for r in receiver.accepted_requests())
    assert len(received) == 120 and set(received.values()) == {1}
    assert {(d.status, d.attempts) for d in deliveries(engine)} == {("done", 1)}
