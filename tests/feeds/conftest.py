"""A real HTTP server on 127.0.0.1 that publishes feeds (and robots.txt, tdmrep.json) as each
test scripts them, and records what byline asked."""

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Asked:
    path: str
    headers: dict[str, str]
    client_port: int = 0  # which connection asked


Route = Answer | Callable[[Asked], Answer]


@dataclass
class FeedServer:
    """`routes` maps a path to its answer (or a function of the request); a path it does not
    know answers 404. `hold`, when set, keeps every request of `held_paths` waiting until it
    is released (a slow server)."""

    routes: dict[str, Route] = field(default_factory=dict)
    asked: list[Asked] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    held_paths: set[str] = field(default_factory=set)
    server: ThreadingHTTPServer | None = None

    @property
    def base(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def requests_to(self, path: str) -> list[Asked]:
        return [asked for asked in self.asked if asked.path == path]

    def start(self) -> None:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                asked = Asked(self.path, headers, self.client_address[1])
                peer.asked.append(asked)
                peer.arrived.set()
                if self.path in peer.held_paths:
                    peer.release.wait(30)
                route = peer.routes.get(self.path, Answer(404, b"not here"))
                answer = route(asked) if callable(route) else route
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                # A 304 has no body, and says nothing of its length (as most servers do).
                if "Content-Length" not in answer.headers and answer.status not in (204, 304):
                    self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                # byline may stop reading (a body over the limit)
                with contextlib.suppress(OSError):
                    self.wfile.write(answer.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer()
    server.start()
    yield server
    server.stop()


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def _names_never_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    """No feed test may reach beyond this machine: byline's guard resolves no name but
    `localhost` here (entries on other hosts find their robots.txt unreachable)."""

    def resolve(host: str, port: int) -> list[str]:
        if host == "localhost":
            return ["127.0.0.1"]
        raise socket.gaierror(socket.EAI_NONAME, f"{host} does not resolve in tests")

    monkeypatch.setattr("app.outbound.resolve_with_system", resolve)
