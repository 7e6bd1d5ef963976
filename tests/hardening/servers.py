"""Real `byline serve` processes for the crash and limit tests, and the probes that tell a test,
from outside the server, that the server is inside its write transaction."""

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import make_url

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Poll `condition` (every few milliseconds) until it holds; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.002)


class Server:
    """`python -m app serve --no-migrate` on a free port, its output in a file; in a session
    of its own, so that its uvicorn workers (if any) go with it."""

    def __init__(self, database_url: str, log: Path, *args: str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        environment = {
            **os.environ,
            "BYLINE_DATABASE_URL": database_url,
            "BYLINE_SCHEDULER": "off",
            "BYLINE_PUBLIC_BASE_URL": "https://news.example",
            "BYLINE_LOG_LEVEL": "WARNING",
            # Test peers (webhook receivers, feeds) listen on 127.0.0.1.
            "BYLINE_ALLOW_PRIVATE_NETWORKS": "true",
            **env,
        }
        command = [sys.executable, "-m", "app", "serve", "--port", str(self.port)]
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [*command, "--no-migrate", *args],
                cwd=REPO,
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-5000:]

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self, timeout: float = TIMEOUT) -> None:
        """Until /readyz answers 200 (the database is reachable and migrated)."""

        def ready() -> bool:
            if not self.alive():
                pytest.fail(f"server exited ({self.process.returncode}):\n{self.output()}")
            try:
                return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, f"{self.url}/readyz", timeout)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no rollback from the process, nothing flushed."""
        if self.alive():
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(TIMEOUT)

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


class WriteProbe:
    """Sees, from outside, whether another process is inside a write transaction on the
    database: on SQLite, whether the write lock is taken (our `BEGIN IMMEDIATE` would have to
    wait); on PostgreSQL, whether a backend other than ours holds a transaction id, which it
    gets with its first write."""

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url)
        self.sqlite = url.get_backend_name() == "sqlite"
        if self.sqlite:
            self._sqlite = sqlite3.connect(url.database or "", timeout=0, isolation_level=None)
        else:
            dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._postgres = psycopg.connect(dsn, autocommit=True)

    def writing(self) -> bool:
        if self.sqlite:
            try:
                self._sqlite.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc):
                    return True
                raise
            self._sqlite.execute("ROLLBACK")
            return False
        return self._writers() > 0

    def writing_while_frozen(self) -> bool:
        """`writing()`, asked while the writer is frozen. On PostgreSQL a statement the client
        sent before it froze (its COMMIT, perhaps) still runs: wait until its backend is idle,
        then look, so that a commit in flight is never taken for a transaction still open. A
        statement waiting for a lock is not waited for: the lock may be held by a transaction
        of the frozen process itself, and then it never ends (and its own transaction is open)."""
        if not self.sqlite:
            wait_until(
                lambda: self._writers("active", running_only=True) == 0,
                "the frozen client's last statement",
            )
        return self.writing()

    def _writers(self, state: str | None = None, *, running_only: bool = False) -> int:
        row = self._postgres.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL"
            " AND (%(state)s::text IS NULL OR state = %(state)s)"
            " AND (NOT %(running_only)s OR wait_event_type IS DISTINCT FROM 'Lock')",
            {"state": state, "running_only": running_only},
        ).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        (self._sqlite if self.sqlite else self._postgres).close()


@contextmanager
def write_probe(database_url: str) -> Iterator[WriteProbe]:
    probe = WriteProbe(database_url)
    try:
        yield probe
    finally:
        probe.close()


def kill_inside_write_transaction(server: Server, probe: WriteProbe, timeout: float) -> bool:
    """SIGKILL the server while it is inside a write transaction: wait until the probe sees
    one, freeze the server (SIGSTOP) and look again. True when the frozen server still held
    its transaction (it cannot commit while frozen, so the kill lands before the commit);
    False when the transaction had ended before the freeze (the server is killed anyway)."""
    wait_until(probe.writing, "the server's write transaction", timeout)
    os.killpg(server.process.pid, signal.SIGSTOP)
    inside = probe.writing_while_frozen()
    server.kill()
    # The frozen transaction dies with the process: SQLite's lock with its file handle, a
    # PostgreSQL backend when it finds its client gone.
    wait_until(lambda: not probe.writing(), "the killed server's transaction to end")
    return inside
