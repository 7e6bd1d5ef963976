"""Real peers on 127.0.0.1: an SMTP server (aiosmtpd) and an HTTP receiver, both in threads;
workers for webhooks, e-mails and DNS re-checks (tests/workers.py) on the test database with
the FrozenClock."""

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import Engine

from app import background
from app.clock import FrozenClock
from app.config import Settings
from app.jobs.worker import Worker
from tests.hardening.servers import free_port
from tests.workers import outside_world_worker

MakeNotifier = Callable[..., Worker]


@dataclass
class Arrived:
    """One message as the SMTP server took it."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    def part(self, subtype: str) -> str:
        body = self.message.get_body(preferencelist=(subtype,))
        assert body is not None, f"no text/{subtype} part"
        return str(body.get_content())  # type: ignore[attr-defined]


class Inbox:
    """The aiosmtpd handler: keeps what arrives; `rcpt_answers` and `data_answers` script
    refusals of a recipient and of a message (after its DATA was sent)."""

    def __init__(self) -> None:
        self.messages: list[Arrived] = []
        self.rcpt_answers: list[str] = []
        self.data_answers: list[str] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.rcpt_answers:
            return self.rcpt_answers.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_answers:
            return self.data_answers.pop(0)
        message = message_from_bytes(envelope.content, policy=default)
        self.messages.append(Arrived(envelope.mail_from, list(envelope.rcpt_tos), message))  # type: ignore[arg-type]
        return "250 Message accepted for delivery"


class SmtpServer:
    """A real SMTP server on 127.0.0.1 that can go down and come back on the same port."""

    def __init__(self, **options: Any) -> None:
        self.inbox = Inbox()
        self.port = free_port()
        self.options = options
        self.controller: Controller | None = None

    @property
    def messages(self) -> list[Arrived]:
        return self.inbox.messages

    def start(self) -> None:
        self.controller = Controller(
            self.inbox, hostname="127.0.0.1", port=self.port, **self.options
        )
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]


@dataclass
class Receiver:
    """A real HTTP receiver on 127.0.0.1. `answers` scripts the status codes of the next
    requests (then 204); `hold` keeps a request waiting until released; `stop()` and
    `start()` take it down and bring it back on the same port."""

    port: int = field(default_factory=free_port)
    requests: list[Received] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    hold: threading.Event | None = None
    arrived: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/byline"

    def accepted(self) -> list[dict[str, Any]]:
        """Bodies of the requests answered 2xx, in arrival order."""
        return [r.json() for r in self.accepted_requests()]

    def accepted_requests(self) -> list[Received]:
        return [r for r in self.requests if r.headers["x-test-answer"].startswith("2")]

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = receiver.answers.pop(0) if receiver.answers else 204
                headers = {name.lower(): value for name, value in self.headers.items()}
                headers["x-test-answer"] = str(status)
                receiver.requests.append(Received(self.path, headers, body))
                receiver.arrived.set()
                if receiver.hold is not None:
                    receiver.hold.wait(30)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    peer = Receiver()
    peer.start()
    yield peer
    if peer.hold is not None:
        peer.hold.set()
    peer.stop()


@pytest.fixture
def settings(database_url: str, smtp_server: SmtpServer, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        scheduler="off",
        public_base_url="https://news.example",
        mail_dir=tmp_path / "mail",
        smtp_url=f"smtp://127.0.0.1:{smtp_server.port}?starttls=off",  # type: ignore[arg-type]
        smtp_from="byline <noreply@news.example>",
        webhook_timeout_seconds=5,
        scheduler_batch_size=50,
        allow_private_networks=True,  # the receiver listens on 127.0.0.1
    )


@pytest.fixture
def make_notifier(engine: Engine, settings: Settings, clock: FrozenClock) -> Iterator[MakeNotifier]:
    """`outside_world_worker` on the test database and the FrozenClock (`settings=` another
    settings; `mailer=`, `http=`, `lookup=` as it takes them), closed after the test."""
    made: list[Worker] = []

    def make(owner: str = "test-notifier", **options: Any) -> Worker:
        worker = outside_world_worker(
            engine, options.pop("settings", settings), clock, owner=owner, **options
        )
        made.append(worker)
        return worker

    yield make
    background.close(made)
