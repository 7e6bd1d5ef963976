"""Fixtures of the hardening tests: real server processes on the test database."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.hardening.servers import Server


@pytest.fixture
def start_server(database_url: str, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start servers on the test database; every one is gone when the test ends."""
    started: list[Server] = []

    def start(*args: str, database: str | None = None, **env: str) -> Server:
        server = Server(database or database_url, tmp_path / "server.log", *args, **env)
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for server in started:
        server.kill()
