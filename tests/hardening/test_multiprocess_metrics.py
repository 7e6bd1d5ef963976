"""`byline serve --workers 2`: /metrics counts every API process's requests, whichever
process answers the scrape, and reads the database's gauges once, not once per process."""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.hardening.servers import Server

BATCH = 20
MAX_REQUESTS = 2000


def processes_that_counted(temporary: Path) -> set[str]:
    """The API processes that have counted a request: each keeps its counters in its own
    file of the run's metrics directory (counter_<pid>.db)."""
    return {path.stem for path in temporary.glob("byline-metrics-*/counter_*.db")}


def samples(server: Server) -> dict[tuple[str, frozenset[tuple[str, str]]], list[float]]:
    """Every sample of one scrape, on a connection of its own (so any process may answer)."""
    response = httpx.get(f"{server.url}/metrics", timeout=10)
    assert response.status_code == 200
    found: dict[tuple[str, frozenset[tuple[str, str]]], list[float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            found.setdefault(key, []).append(sample.value)
    return found


HEALTHZ_OK = (
    "byline_http_requests_total",
    frozenset({("method", "GET"), ("route", "/healthz"), ("status", "200")}),
)
QUEUE_DEPTH = ("byline_removal_queue_depth", frozenset())


def test_metrics_add_up_every_api_process_whichever_answers(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    server = start_server("--workers", "2", TMPDIR=str(temporary))
    sent = 0
    with ThreadPoolExecutor(max_workers=4) as pool:
        # New connections, several at a time, until both processes have served some.
        while len(processes_that_counted(temporary)) < 2 and sent < MAX_REQUESTS:
            answers = pool.map(
                lambda _: httpx.get(f"{server.url}/healthz", timeout=10).status_code,
                range(BATCH),
            )
            assert list(answers) == [200] * BATCH
            sent += BATCH
    assert len(processes_that_counted(temporary)) == 2, "one process served every request"

    for _ in range(8):
        scraped = samples(server)
        assert scraped[HEALTHZ_OK] == [sent]
        # Read from the database by the process that answers: one sample, no pid label.
        assert scraped[QUEUE_DEPTH] == [0.0]

    server.stop()
    assert server.process.returncode == 0, server.output()
    assert list(temporary.glob("byline-metrics-*")) == [], "the metrics directory is removed"
