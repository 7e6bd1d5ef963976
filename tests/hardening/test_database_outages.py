"""The database goes away under a running server and comes back: PostgreSQL restarted under
load, a SQLite file whose disk fills up or turns read-only. The server answers 503 problems
meanwhile, recovers by itself, loses no acknowledged write and corrupts nothing.

The PostgreSQL restart stops the real cluster (`pg_ctlcluster ... stop -m fast`, then
`start`), which every other user of that server feels; it runs only when asked, where the
suite has the server to itself:

    flock /tmp/byline-bench.lock env BYLINE_TEST_RESTART_POSTGRES=1 BYLINE_TEST_ENGINE=postgres \
        BYLINE_TEST_POSTGRES_URL=... .venv/bin/pytest tests/hardening -k postgres_restart

The cluster is started again whatever happens in the test (a failure, Ctrl-C, SIGTERM).
"""

import contextlib
import errno
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from app.articles.models import Article
from app.auth import Scope
from app.db import create_db_engine, new_session
from app.migrate import upgrade_to_head
from tests.articles.factories import article_payload
from tests.factories import make_key
from tests.hardening.servers import Server, wait_until

PG_VERSION_DIR = Path("/etc/postgresql")
# Restarting PostgreSQL cuts every other session on the server, other test runs included, so
# that test runs only where the server is the suite's alone (CI) and someone asked for it.
RESTART_POSTGRES = os.environ.get("BYLINE_TEST_RESTART_POSTGRES") == "1"


def _cluster() -> list[str]:
    version = sorted(path.name for path in PG_VERSION_DIR.iterdir())[0]
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]


def _pg_ready() -> bool:
    return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"], check=False).returncode == 0


@contextlib.contextmanager
def postgres_stopped() -> Iterator[None]:
    """PostgreSQL stopped (fast: open sessions are cut, as a crash or failover would) for the
    body of the block, and started again whatever happens. Other test runs on this machine
    share the server: keep the block short. A SIGTERM (a CI timeout) meanwhile still starts
    it again."""

    def terminated(signum: int, frame: object) -> None:
        raise SystemExit(f"signal {signum} while PostgreSQL was stopped")

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        subprocess.run([*_cluster(), "stop", "-m", "fast"], check=True, timeout=60)
        yield
    finally:
        start_postgres()
        signal.signal(signal.SIGTERM, previous)


def start_postgres() -> None:
    """Start the cluster (a no-op when it runs) until it accepts connections; a few tries, so
    that a slow start or a stop still finishing never leaves the shared server down."""
    for _ in range(3):
        subprocess.run([*_cluster(), "start"], check=False, timeout=120, capture_output=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if _pg_ready():
                return
            time.sleep(0.2)
    pytest.fail("PostgreSQL did not start again: pg_ctlcluster ... main start")


class Load:
    """Writers ingesting fresh articles and a reader listing them, on threads, against a real
    server; records every answer and every acknowledged (200/201) write."""

    def __init__(self, url: str, headers: dict[str, str], writers: int = 2) -> None:
        self.url = url
        self.headers = headers
        self.stop = threading.Event()
        self.statuses: Counter[int] = Counter()
        self.acknowledged: list[str] = []
        self.lock = threading.Lock()
        self._next = 0
        self.threads = [threading.Thread(target=self._write, daemon=True) for _ in range(writers)]
        self.threads.append(threading.Thread(target=self._read, daemon=True))

    def __enter__(self) -> "Load":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def _record(self, status: int) -> None:
        with self.lock:
            self.statuses[status] += 1

    def _write(self) -> None:
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=30) as client:
            while not self.stop.is_set():
                with self.lock:
                    self._next += 1
                    n = self._next
                payload = article_payload(n, source_url=f"https://load.example.org/story-{n}")
                response = client.post("/v1/articles", json=payload)
                self._record(response.status_code)
                if response.status_code in (200, 201):
                    with self.lock:
                        self.acknowledged.append(payload["source_url"])

    def _read(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                self._record(client.get("/v1/articles", params={"limit": 5}).status_code)

    def acknowledged_count(self) -> int:
        with self.lock:
            return len(self.acknowledged)


def stored_source_urls(engine: Engine) -> set[str]:
    with new_session(engine) as session:
        return set(session.scalars(select(Article.source_url)))


def readiness(url: str) -> int:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code
    except httpx.TransportError:
        return 0


def test_postgres_restart_under_load_answers_503_then_recovers_losing_nothing(
    start_server: Callable[..., Server], engine: Engine, ingest_headers: dict[str, str]
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("restarts the PostgreSQL server: PostgreSQL only")
    if not RESTART_POSTGRES:
        pytest.skip(
            "restarts the shared PostgreSQL server: run with BYLINE_TEST_RESTART_POSTGRES=1"
            " where no one else uses it (CI), holding /tmp/byline-bench.lock"
        )
    server = start_server()
    article = httpx.post(
        f"{server.url}/v1/articles", json=article_payload(1), headers=ingest_headers
    ).json()["article"]
    detail = f"{server.url}/v1/articles/{article['id']}"
    with Load(server.url, ingest_headers) as load:
        wait_until(lambda: load.acknowledged_count() >= 20, "writes before the restart")
        # Reads on several pooled connections at once, all of which the restart will kill.
        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(lambda _: httpx.get(detail).status_code, range(32))) == {200}
        stopped = time.monotonic()
        with postgres_stopped():
            # Down: the server says so, and answers 503 problems rather than hanging.
            wait_until(lambda: readiness(server.url) == 503, "/readyz to answer 503", 30)
            problem = httpx.post(
                f"{server.url}/v1/articles", json=article_payload(0), headers=ingest_headers
            )
            assert problem.status_code == 503
            assert problem.headers["content-type"] == "application/problem+json"
            assert problem.headers["retry-after"]
            unavailable = httpx.get(detail)
            assert unavailable.status_code == 503
            assert unavailable.headers["content-type"] == "application/problem+json"
        print(f"PostgreSQL was down for {time.monotonic() - stopped:.1f} s")
        # Up again: the same process recovers by itself.
        wait_until(lambda: readiness(server.url) == 200, "/readyz to answer 200 again", 60)
        print(f"ready again {time.monotonic() - stopped:.1f} s after the stop")
        # Reads recover at once: one after another, each would meet a dead pooled connection
        # if the first failure had not cleared them all.
        assert [httpx.get(detail).status_code for _ in range(10)] == [200] * 10
        recovered_from = load.acknowledged_count()
        wait_until(lambda: load.acknowledged_count() >= recovered_from + 20, "writes after")
    print(f"answers while PostgreSQL restarted: {dict(load.statuses)}")
    assert server.alive()
    assert set(load.statuses) <= {200, 201, 503}, load.statuses
    assert load.statuses[503] > 0
    missing = set(load.acknowledged) - stored_source_urls(engine)
    assert not missing, f"{len(missing)} acknowledged writes lost"


# SQLite: a small file system of its own, filled up or remounted read-only --------------


def _mount(path: Path, *options: str) -> None:
    subprocess.run(["mount", *options, str(path)], check=True, capture_output=True, timeout=30)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 32 MiB tmpfs of our own: the SQLite file lives there, so the test can fill the disk
    or make it read-only without touching anyone else's. Needs root (mount); skipped
    otherwise. chmod would not do: root writes through it."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    try:
        _mount(mount_point, "-t", "tmpfs", "-o", "size=32m", "tmpfs")
    except (subprocess.CalledProcessError, FileNotFoundError, PermissionError) as exc:
        pytest.skip(f"cannot mount a tmpfs here ({exc}); the disk-full test needs root")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False, timeout=30)


def fill(disk: Path) -> Path:
    """Write a file until the disk is full; the file, to delete when space should return."""
    filler = disk / "filler"
    chunk = b"\0" * (1 << 20)
    with filler.open("wb", buffering=0) as out:
        while True:
            try:
                out.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    return filler
                chunk = chunk[: len(chunk) // 2]


def integrity(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
        return str(connection.execute("PRAGMA integrity_check").fetchone()[0])


def assert_unavailable_problem(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"]
    assert response.json()["type"].endswith("/database-unavailable")


def sqlite_on(disk: Path) -> tuple[str, Engine, dict[str, str]]:
    url = f"sqlite:///{disk / 'byline.db'}"
    upgrade_to_head(url)
    engine = create_db_engine(url)
    headers = {"Authorization": f"Bearer {make_key(engine, Scope.ingest)}"}
    return url, engine, headers


def ingest(server: Server, headers: dict[str, str], n: int) -> httpx.Response:
    payload = article_payload(n, body_html="<p>Reporting.</p>" * 200)
    return httpx.post(f"{server.url}/v1/articles", json=payload, headers=headers, timeout=30)


def test_sqlite_disk_full_is_a_503_problem_without_corruption_and_recovers(
    start_server: Callable[..., Server], small_disk: Path, engine: Engine
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("the embedded SQLite file: runs with the SQLite suite")
    url, disk_engine, headers = sqlite_on(small_disk)
    try:
        server = start_server(database=url)
        acknowledged = [n for n in range(1, 4) if ingest(server, headers, n).status_code == 201]
        filler = fill(small_disk)

        # The first writes may still fit in pages SQLite has free; soon none does.
        answers = {n: ingest(server, headers, n) for n in range(100, 140)}
        assert any(response.status_code == 503 for response in answers.values())
        for n, response in answers.items():
            if response.status_code == 201:
                acknowledged.append(n)
            else:
                assert_unavailable_problem(response)
        # Reads need no space: they go on.
        assert httpx.get(f"{server.url}/v1/articles").status_code == 200
        assert integrity(small_disk / "byline.db") == "ok"

        filler.unlink()
        recovered = ingest(server, headers, 200)
        assert recovered.status_code == 201, recovered.text
        acknowledged.append(200)
        assert server.alive()
        assert integrity(small_disk / "byline.db") == "ok"
        titles = {article["title"] for article in _all_articles(server)}
        assert {f"Flood defences hold in river town {n}" for n in acknowledged} <= titles
    finally:
        disk_engine.dispose()


def test_sqlite_read_only_file_is_a_503_problem_for_writes_while_reads_go_on(
    start_server: Callable[..., Server], small_disk: Path, engine: Engine
) -> None:
    """A file SQLite can only open read-only, as the non-root user of our image meets a
    read-only volume or file. Root writes through chmod, and Linux refuses to remount a file
    system read-only while the server holds its files open for writing, so the file is
    opened read-only (`mode=ro`): SQLite answers writes exactly as it would then."""
    if engine.dialect.name != "sqlite":
        pytest.skip("the embedded SQLite file: runs with the SQLite suite")
    url, disk_engine, headers = sqlite_on(small_disk)
    path = small_disk / "byline.db"
    try:
        writable = start_server(database=url)
        assert ingest(writable, headers, 1).status_code == 201
        writable.stop()

        read_only = start_server(database=f"sqlite:///file:{path}?mode=ro&uri=true")
        assert_unavailable_problem(ingest(read_only, headers, 2))
        assert [a["title"] for a in _all_articles(read_only)] == [
            "Flood defences hold in river town 1"
        ]
        read_only.stop()
        assert integrity(path) == "ok"

        writable_again = start_server(database=url)
        assert ingest(writable_again, headers, 3).status_code == 201
        assert len(_all_articles(writable_again)) == 2
    finally:
        disk_engine.dispose()


def _all_articles(server: Server) -> list[dict[str, Any]]:
    response = httpx.get(f"{server.url}/v1/articles", params={"limit": 100})
    assert response.status_code == 200
    return list(response.json()["items"])
