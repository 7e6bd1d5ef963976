"""Limits of the real server: slow clients cannot hold it, stuck requests are answered in
time, body and batch limits hold through uvicorn, and the takedown rate limit holds across
API processes (PostgreSQL: counted in the database, not in a process's memory)."""

import contextlib
import select
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from sqlalchemy import Engine, func, make_url
from sqlalchemy import select as sql_select

from app.articles.models import Article
from app.db import new_session
from app.takedowns.models import Takedown
from app.timeouts import MAX_HEAD_BYTES, SlowClientGuard
from tests.articles.factories import article_payload
from tests.hardening.servers import Server, free_port, wait_until
from tests.takedowns.factories import filing

PROBLEM = "application/problem+json"
SLOW_CLIENTS = 200
HEADER_TIMEOUT = 3.0


class SlowClients:
    """Connections that send a request head one byte at a time, never finishing it."""

    def __init__(self, server: Server, count: int) -> None:
        self.sockets = [
            socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(count)
        ]
        for sock in self.sockets:
            sock.sendall(b"GET /v1/articles HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._drip, daemon=True)
        self.thread.start()

    def _drip(self) -> None:
        while not self.stop.wait(0.1):
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.send(b"X")  # a header name that never ends

    def answered(self) -> list[socket.socket]:
        """The connections on which the server has spoken or hung up."""
        readable, _, _ = select.select(self.sockets, [], [], 0)
        return readable

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def guarded_server(start_server: Callable[..., Server]) -> Server:
    return start_server(BYLINE_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT))


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_normal_clients_are_served_while_200_slow_clients_drip_headers(
    guarded_server: Server, ingest_headers: dict[str, str]
) -> None:
    slow = SlowClients(guarded_server, SLOW_CLIENTS)
    try:
        with httpx.Client(base_url=guarded_server.url, timeout=5) as client:
            started = time.monotonic()
            assert client.get("/healthz").status_code == 200
            assert client.get("/v1/articles").status_code == 200
            created = client.post("/v1/articles", json=article_payload(1), headers=ingest_headers)
            assert created.status_code == 201
            served_in = time.monotonic() - started
        assert slow.answered() == [], "the slow clients were cut off before the test ran"
        assert served_in < HEADER_TIMEOUT

        # Past the head deadline every slow client is answered 408 and disconnected.
        wait_until(
            lambda: len(slow.answered()) == SLOW_CLIENTS,
            "the slow clients to be cut off",
            timeout=HEADER_TIMEOUT + 30,
        )
        slow.stop.set()
        answers = {read_all(sock).split(b"\r\n", 1)[0] for sock in slow.sockets}
        assert answers == {b"HTTP/1.1 408 Request Timeout"}
    finally:
        slow.close()
    assert httpx.get(f"{guarded_server.url}/healthz").status_code == 200


def test_an_idle_connection_that_never_sends_a_request_is_closed(guarded_server: Server) -> None:
    with socket.create_connection(("127.0.0.1", guarded_server.port), timeout=30) as sock:
        opened = time.monotonic()
        assert read_all(sock) == b""  # closed without a word
        assert HEADER_TIMEOUT - 0.5 < time.monotonic() - opened < HEADER_TIMEOUT + 20


def test_an_oversized_request_head_is_refused_with_431(guarded_server: Server) -> None:
    with socket.create_connection(("127.0.0.1", guarded_server.port), timeout=30) as sock:
        sock.sendall(b"GET /v1/articles HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        filler = b"X-Filler: " + b"a" * 1000 + b"\r\n"
        with contextlib.suppress(OSError):  # the server may hang up while we still send
            for _ in range(MAX_HEAD_BYTES // len(filler) + 10):
                sock.sendall(filler)
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert PROBLEM.encode() in answer


@contextlib.contextmanager
def database_write_lock(database_url: str) -> Iterator[None]:
    """Hold what an ingest must wait for: SQLite's write lock; on PostgreSQL, a lock on the
    publishers table that lets reads through and makes writers wait."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        connection = sqlite3.connect(url.database or "", isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            connection.execute("ROLLBACK")
            connection.close()
        return
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as connection:
        connection.execute("LOCK TABLE publishers IN EXCLUSIVE MODE")
        try:
            yield
        finally:
            connection.rollback()


def test_a_request_stuck_on_the_database_is_answered_503_at_the_request_timeout(
    start_server: Callable[..., Server],
    database_url: str,
    engine: Engine,
    ingest_headers: dict[str, str],
) -> None:
    server = start_server(BYLINE_REQUEST_TIMEOUT_SECONDS="1")
    payload = article_payload(7)
    with database_write_lock(database_url):
        started = time.monotonic()
        response = httpx.post(
            f"{server.url}/v1/articles", json=payload, headers=ingest_headers, timeout=30
        )
        waited = time.monotonic() - started
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == PROBLEM
        assert response.headers["retry-after"]
        assert response.json()["type"].endswith("/request-timeout")
        assert waited < 5
        # Reads do not wait for writers.
        assert httpx.get(f"{server.url}/v1/articles", timeout=5).status_code == 200

    # The handler ran on once the lock was gone; its write stands (every write is safe to
    # retry: sending it again answers 200 unchanged).
    def stored() -> bool:
        with new_session(engine) as session:
            return bool(session.scalar(sql_select(func.count()).select_from(Article)))

    wait_until(stored, "the timed-out ingest to finish behind the answer", 30)
    again = httpx.post(f"{server.url}/v1/articles", json=payload, headers=ingest_headers)
    assert again.status_code == 200
    assert again.json()["status"] == "unchanged"


def test_body_and_batch_limits_hold_through_the_real_server(
    start_server: Callable[..., Server], ingest_headers: dict[str, str]
) -> None:
    server = start_server()
    with httpx.Client(base_url=server.url, headers=ingest_headers, timeout=30) as client:
        too_many = client.post(
            "/v1/articles/batch", json={"items": [article_payload(n) for n in range(501)]}
        )
        assert too_many.status_code == 413
        assert too_many.json()["type"].endswith("/batch-too-large")

        big = b'{"items": [' + b" " * (3 * 1024 * 1024) + b"]}"
        declared = client.post(
            "/v1/articles/batch", content=big, headers={"Content-Type": "application/json"}
        )
        assert declared.status_code == 413
        assert declared.headers["content-type"] == PROBLEM

        def chunks() -> Iterator[bytes]:
            for offset in range(0, len(big), 64 * 1024):
                yield big[offset : offset + 64 * 1024]

        streamed = client.post(
            "/v1/articles/batch", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert streamed.status_code == 413
        assert streamed.headers["content-type"] == PROBLEM
        assert client.get("/healthz").status_code == 200


def test_takedown_rate_limit_holds_across_two_api_processes(
    start_server: Callable[..., Server], engine: Engine
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("several API processes share one PostgreSQL database; SQLite has one")
    limits = {
        "BYLINE_TAKEDOWN_RATE_PER_ADDRESS": "4/hour",
        "BYLINE_TAKEDOWN_RATE_PER_EMAIL": "100/hour",
    }
    first, second = start_server(**limits), start_server(**limits)

    def file_on(server: Server, n: int) -> httpx.Response:
        body = filing(
            [f"https://www.reuters.com/world/rate-{n}"], claimant={"email": f"p{n}@reuters.com"}
        )
        return httpx.post(f"{server.url}/v1/takedowns", json=body, timeout=30)

    answers = [file_on(server, n).status_code for n, server in enumerate([first, second] * 3)]

    assert answers == [202, 202, 202, 202, 429, 429]
    with new_session(engine) as session:
        assert session.scalar(sql_select(func.count()).select_from(Takedown)) == 4


@pytest.fixture
def small_server() -> Iterator[int]:
    """uvicorn in this process with byline's protocol and a concurrency limit of 3."""

    async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"hello"})

    port = free_port()
    config = uvicorn.Config(
        hello,
        host="127.0.0.1",
        port=port,
        http=SlowClientGuard,
        limit_concurrency=3,
        lifespan="off",
        log_config=None,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, "uvicorn to start", 30)
    yield port
    server.should_exit = True
    thread.join(30)


def test_past_the_concurrency_limit_the_answer_is_a_503_problem(small_server: int) -> None:
    held = [socket.create_connection(("127.0.0.1", small_server)) for _ in range(3)]
    try:
        response = httpx.get(f"http://127.0.0.1:{small_server}/", timeout=10)
        assert response.status_code == 503
        assert response.headers["content-type"] == PROBLEM
        assert response.headers["retry-after"] == "1"
        assert response.json()["type"].endswith("/overloaded")
    finally:
        for sock in held:
            sock.close()
    wait_until(
        lambda: httpx.get(f"http://127.0.0.1:{small_server}/").status_code == 200,
        "the server to serve again once the connections are gone",
        30,
    )
