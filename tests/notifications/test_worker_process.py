"""`byline worker` delivers webhooks as a real process, and one killed mid-delivery loses
nothing: another worker sends the event again, with the same id, once the lease expires.
The worker uses the system clock, so rows here are due relative to the real now; the test
waits on its peers (with timeouts), never on a fixed sleep."""

import signal
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.clock import FrozenClock
from tests.notifications.conftest import MakeNotifier, Receiver
from tests.notifications.factories import deliveries, register
from tests.scheduler.test_worker_process import TIMEOUT, Worker
from tests.takedowns.factories import file, filing, ingest


@pytest.fixture
def start_worker(database_url: str, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def start(*args: str, **env: str) -> Worker:
        # No SMTP here: e-mails go to files in the test's directory, not the repository; the
        # receiver listens on 127.0.0.1.
        env = {
            "BYLINE_MAIL_DIR": str(tmp_path / "mail"),
            "BYLINE_ALLOW_PRIVATE_NETWORKS": "true",
            **env,
        }
        worker = Worker(database_url, tmp_path / f"worker-{len(started)}.log", *args, **env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def test_worker_killed_mid_delivery_is_replaced_and_the_event_still_delivered(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    receiver: Receiver,
    make_notifier: MakeNotifier,
    start_worker: Callable[..., Worker],
) -> None:
    clock.set(datetime.now(UTC))
    register(client, admin_headers, receiver.url, ["article.created"])
    ingest(client, ingest_headers, 1)
    # The receiver takes the request and holds its answer: the worker is mid-delivery.
    receiver.hold = threading.Event()
    worker = start_worker(
        BYLINE_WEBHOOK_TIMEOUT_SECONDS="30", BYLINE_PUBLIC_BASE_URL="https://news.example"
    )
    if not receiver.arrived.wait(TIMEOUT):
        pytest.fail(f"the worker sent nothing:\n{worker.output()}")
    [delivery] = deliveries(engine)
    assert (delivery.status, delivery.attempts) == ("running", 1)

    worker.process.send_signal(signal.SIGKILL)
    assert worker.wait() == -signal.SIGKILL
    receiver.hold.set()
    receiver.hold = None

    survivor = make_notifier("survivor")
    assert delivery.lease_expires_at is not None
    early = survivor.run_once(delivery.lease_expires_at - timedelta(seconds=1))
    assert early.claimed.total() == 0
    clock.set(delivery.lease_expires_at + timedelta(seconds=1))
    result = survivor.run_once()

    assert (result.recovered["webhook"], result.of("webhook")["delivered"]) == (1, 1)
    first, second = receiver.requests
    assert first.json()["id"] == second.json()["id"]  # the receiver dedupes on it
    assert first.body == second.body
    [delivery] = deliveries(engine)
    assert (delivery.status, delivery.attempts, delivery.lease_owner) == ("done", 2, survivor.owner)


def test_worker_once_delivers_due_events_and_says_so(
    client: TestClient,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
    engine: Engine,
    clock: FrozenClock,
    receiver: Receiver,
    start_worker: Callable[..., Worker],
    tmp_path: Path,
) -> None:
    clock.set(datetime.now(UTC))
    register(client, admin_headers, receiver.url)
    for n in (1, 2, 3):
        ingest(client, ingest_headers, n)
    file(client, filing([1]))  # its receipt: without SMTP, written to a file

    worker = start_worker("--once")

    assert worker.wait() == 0, worker.output()
    assert "webhooks delivered 3, e-mails sent 1" in worker.output()
    assert len(receiver.accepted()) == 3
    assert {d.status for d in deliveries(engine)} == {"done"}
    assert len(list((tmp_path / "mail").glob("*.eml"))) == 1
