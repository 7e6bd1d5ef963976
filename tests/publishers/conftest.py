"""A real DNS server on 127.0.0.1 (dnslib, UDP on a free port) whose TXT records a test adds
and removes, and settings that make byline ask it and nothing else."""

import threading
from collections.abc import Iterator

import pytest
from dnslib import QTYPE, RCODE, RR, TXT, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

from app.config import Settings


class Zone(BaseResolver):
    """What the server answers: the TXT records of each name (any other name does not
    exist), or SERVFAIL to everything while `failing`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._txt: dict[str, list[str]] = {}
        self.failing = False
        self.queries: list[str] = []

    def add_txt(self, name: str, value: str) -> None:
        with self._lock:
            self._txt.setdefault(name.lower(), []).append(value)

    def remove_txt(self, name: str) -> None:
        with self._lock:
            self._txt.pop(name.lower(), None)

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        with self._lock:
            self.queries.append(name)
            values = list(self._txt.get(name, []))
        if self.failing:
            reply.header.rcode = RCODE.SERVFAIL
        elif name not in self._txt:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.TXT:
            for value in values:
                reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(value), ttl=60))
        return reply


class DnsServer:
    """The DNS server on its own thread. `stop()` closes its socket: queries then go
    unanswered, as when a publisher's DNS is down."""

    def __init__(self) -> None:
        self.zone = Zone()
        # Bound here, before the thread starts: a query sent at once waits in the socket.
        self._server = DNSServer(
            self.zone, address="127.0.0.1", port=0, logger=DNSLogger(logf=lambda _line: None)
        )
        self.port: int = self._server.server.server_address[1]
        self._running = False

    def start(self) -> None:
        # serve_forever itself rather than dnslib's start_thread: a short poll interval, so
        # that stopping the server (each test's teardown) waits 20 ms, not half a second.
        thread = threading.Thread(
            target=self._server.server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="test-dns-server",
            daemon=True,
        )
        thread.start()
        self._running = True

    def stop(self) -> None:
        if self._running:
            self._server.stop()
            self._server.server.server_close()
            self._running = False


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    server = DnsServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(settings: Settings, dns_server: DnsServer) -> Settings:
    return settings.model_copy(
        update={"dns_nameservers": f"127.0.0.1:{dns_server.port}", "dns_timeout_seconds": 2.0}
    )
