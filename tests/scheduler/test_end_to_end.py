"""From filing to 451 through the real API: the confirmed address, the review window, a claimant
at the targets' domain, withdrawal, rejection, escalation, and the scheduler embedded in the
API process."""

import threading
import time
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.clock import FrozenClock
from app.config import Settings
from app.main import create_app
from tests.scheduler.factories import (
    claim_removals,
    jobs,
    removal_audit_counts,
    removed_article_ids,
    run_claimed,
)
from tests.takedowns.factories import file, file_confirmed, filing, ingest, load
from tests.workers import removal_worker

UNVERIFIED = {"email": "someone@mail.example"}


def test_an_unconfirmed_filing_is_never_removed_and_goes_to_an_operator_after_the_window(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    """The attack: anyone could type an address and have the article gone when the review
    window ended. Now an address nobody confirmed removes nothing, ever."""
    article = ingest(client, ingest_headers)
    filed_at = clock.now()
    filed = file(client, filing([article["id"]], claimant=UNVERIFIED))
    assert (filed["status"], filed["confirmation"]) == ("received", "emailed")
    worker = removal_worker(engine, settings, clock)

    clock.set(filed_at + settings.takedown_review_window)
    result = worker.run_once(clock.now())

    assert (
        result.claimed["removal"],
        result.of("removal")["removed"],
        result.swept["requests_advanced"],
    ) == (0, 0, 1)
    assert load(engine, filed["id"]).status == "escalated"
    assert worker.run_once(clock.advance(timedelta(hours=19))).claimed["removal"] == 0
    assert client.get(f"/v1/articles/{article['id']}").status_code == 200
    assert removed_article_ids(engine) == set()


def test_a_confirmed_filing_waits_out_the_review_window_then_the_next_tick_removes_it(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    article = ingest(client, ingest_headers)
    filed_at = clock.now()
    filed = file_confirmed(client, engine, filing([article["id"]], claimant=UNVERIFIED))
    assert filed["status"] == "queued"
    window = settings.takedown_review_window
    worker = removal_worker(engine, settings, clock)

    clock.set(filed_at + window - timedelta(seconds=1))
    assert worker.run_once(clock.now()).claimed["removal"] == 0
    assert client.get(f"/v1/articles/{article['id']}").status_code == 200

    clock.set(filed_at + window)
    assert worker.run_once(clock.now()).of("removal")["removed"] == 1
    assert client.get(f"/v1/articles/{article['id']}").status_code == 451
    status = client.get(f"/v1/takedowns/{filed['id']}?token={filed['status_token']}").json()
    assert (status["status"], status["completed_at"]) == ("completed", "2026-01-05T13:00:00Z")


def test_a_confirmed_claimant_at_the_targets_domain_is_removed_at_the_next_tick(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    articles = [ingest(client, ingest_headers, n) for n in (1, 2)]
    # legal@reuters.com, reuters.com articles
    file_confirmed(client, engine, filing([a["id"] for a in articles]))

    worker = removal_worker(engine, settings, clock)
    removals = worker.run_once(clock.advance(timedelta(seconds=5))).of("removal")

    assert (removals["removed"], removals["completed_takedowns"]) == (2, 1)
    assert removal_audit_counts(engine) == {a["id"]: 1 for a in articles}
    assert client.get("/v1/transparency").json()["time_to_removal"]["median_seconds"] == 5.0


def test_withdrawn_and_rejected_filings_remove_nothing(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    admin_headers: dict[str, str],
    settings: Settings,
) -> None:
    first, second = ingest(client, ingest_headers, 1), ingest(client, ingest_headers, 2)
    withdrawn = file_confirmed(client, engine, filing([first["id"]], claimant=UNVERIFIED))
    rejected = file_confirmed(client, engine, filing([second["id"]], claimant=UNVERIFIED))
    clock.advance(timedelta(hours=1))

    response = client.post(
        f"/v1/takedowns/{withdrawn['id']}/withdraw?token={withdrawn['status_token']}"
    )
    assert response.status_code == 200, response.text
    response = client.post(
        f"/v1/admin/takedowns/{rejected['id']}/reject",
        json={"reason": "The claimant does not hold the rights."},
        headers=admin_headers,
    )
    assert response.status_code == 200, response.text

    worker = removal_worker(engine, settings, clock)
    result = worker.run_once(clock.advance(settings.takedown_review_window))

    assert result.claimed["removal"] == 0
    assert removed_article_ids(engine) == set()
    assert {job.status for job in jobs(engine)} == {"cancelled"}
    for article in (first, second):
        assert client.get(f"/v1/articles/{article['id']}").status_code == 200
    totals = client.get("/v1/transparency").json()["totals"]
    assert (totals["withdrawn"], totals["rejected"], totals["completed"]) == (1, 1, 0)


def test_a_request_escalated_while_its_row_ran_is_removed_once_approved(
    client: TestClient,
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
    admin_headers: dict[str, str],
) -> None:
    article = ingest(client, ingest_headers)
    filed = file_confirmed(client, engine, filing([article["id"]]))
    worker = removal_worker(engine, settings, clock)
    [job] = claim_removals(engine, owner=worker.owner, now=clock.now())
    escalate = f"/v1/admin/takedowns/{filed['id']}/escalate"
    assert client.post(escalate, json={}, headers=admin_headers).status_code == 200

    assert run_claimed(worker, [job], clock.now()).of("removal") == {"cancelled": 1}
    assert client.get(f"/v1/articles/{article['id']}").status_code == 200

    approve = f"/v1/admin/takedowns/{filed['id']}/approve"
    assert client.post(approve, headers=admin_headers).status_code == 200
    assert worker.run_once(clock.advance(timedelta(seconds=5))).of("removal")["removed"] == 1
    assert client.get(f"/v1/articles/{article['id']}").status_code == 451
    assert removal_audit_counts(engine) == {article["id"]: 1}


def test_the_embedded_scheduler_removes_due_rows_and_stops_with_the_app(
    ingest_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    embedded = settings.model_copy(
        update={"scheduler": "embedded", "scheduler_interval_seconds": 0.05}
    )
    app = create_app(embedded, engine=engine, clock=clock)
    with TestClient(app) as client:
        article = ingest(client, ingest_headers)
        file_confirmed(client, engine, filing([article["id"]]))
        # The worker threads tick on their own; wait for them (bounded), never for a fixed
        # time.
        deadline = time.monotonic() + 20
        while not removed_article_ids(engine) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert removed_article_ids(engine) == {article["id"]}
        assert any(t.name.startswith("byline-worker-") for t in threading.enumerate())
    assert not any(t.name.startswith("byline-worker-") for t in threading.enumerate())
