"""The guard on every URL byline fetches or calls (app/outbound.py): which addresses are
public, what registration refuses, and transports that check the address they connect to.

Real listeners run on 127.0.0.1 in threads. Stub resolvers stand in for DNS, and the public
addresses they answer are only ever given to checks that open no connection; the autouse
fixture below fails any test whose socket would connect beyond this machine all the same.
"""

import asyncio
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import trustme

from app.outbound import (
    REFUSED,
    AddressRefused,
    Resolver,
    check_url,
    guarded_async_transport,
    guarded_transport,
    is_public_address,
)

PUBLIC = "93.184.216.34"  # answered by stub resolvers to checks only, never connected to


@pytest.fixture(autouse=True)
def connections_stay_on_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    connect = socket.socket.connect

    def loopback_only(sock: socket.socket, address: Any) -> None:
        host = address[0] if isinstance(address, tuple) else ""
        try:
            loopback = ipaddress.ip_address(host.split("%")[0]).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            pytest.fail(f"a test tried to connect to {address!r}, beyond this machine")
        connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)


class Listener:
    """A real HTTP server on a loopback address (TLS with `tls`): answers 200 `ok`, counts
    the connections it accepted and keeps each request's Host header."""

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self.hosts: list[str] = []
        self.connections = 0
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                listener.hosts.append(self.headers.get("Host", ""))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> tuple[socket.socket, Any]:
                request = super().get_request()
                listener.connections += 1
                return request

        self.server: Server | None = Server((host, 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])
        self.url = f"http://{host}:{self.port}/"
        threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def listener() -> Iterator[Listener]:
    peer = Listener()
    yield peer
    peer.stop()


def fetch(kind: str, url: str, *, trust_env: bool = False, **options: Any) -> httpx.Response:
    """GET `url` through a guarded transport, with httpx's sync or async client."""
    if kind == "sync":
        with httpx.Client(transport=guarded_transport(**options), trust_env=trust_env) as client:
            return client.get(url)

    async def get() -> httpx.Response:
        transport = guarded_async_transport(**options)
        async with httpx.AsyncClient(transport=transport, trust_env=trust_env) as client:
            return await client.get(url)

    return asyncio.run(get())


def refusal(kind: str, url: str, **options: Any) -> str:
    """The error a guarded transport raises for `url`, as callers see it."""
    with pytest.raises(AddressRefused) as refused:
        fetch(kind, url, **options)
    assert not isinstance(refused.value, httpx.HTTPError)
    return str(refused.value)


def answers(*addresses: str) -> Resolver:
    def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


def never_asked(host: str, port: int) -> list[str]:
    raise AssertionError(f"the resolver was asked for {host}")


TRANSPORTS = pytest.mark.parametrize("kind", ["sync", "async"])


# Which addresses are public -------------------------------------------------------------------

PUBLIC_ADDRESSES = [
    "8.8.8.8",
    "1.1.1.1",
    PUBLIC,
    "2001:4860:4860::8888",
    "2606:4700:4700::1111",
    "::ffff:8.8.8.8",  # IPv4-mapped: judged by the IPv4 address
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
]

NOT_PUBLIC_ADDRESSES = [
    # IPv4
    "127.0.0.1",  # loopback
    "127.255.255.254",
    "10.0.0.1",  # private
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",  # link-local (cloud metadata)
    "100.64.0.1",  # shared address space (carrier-grade NAT)
    "0.0.0.0",  # unspecified
    "0.1.2.3",  # "this network"
    "224.0.0.1",  # multicast, local
    "233.252.0.1",  # multicast, documentation
    "239.255.255.250",  # multicast, organisation-local
    "240.0.0.1",  # reserved
    "255.255.255.255",  # broadcast
    "192.0.0.8",  # IETF protocol assignments (global on Python < 3.11.10)
    "192.0.2.1",  # documentation
    "198.51.100.1",
    "203.0.113.1",
    "198.18.0.1",  # benchmarking
    # IPv6
    "::",  # unspecified
    "::1",  # loopback
    "fe80::1",  # link-local
    "fe80::1%eth0",
    "fec0::1",  # site-local (deprecated)
    "fc00::1",  # unique local
    "fd12:3456::1",
    "ff02::1",  # multicast, link-local
    "ff0e::1",  # multicast, global scope
    "2001:db8::1",  # documentation
    "3fff::1",
    "2001::1",  # Teredo
    "100::1",  # discard
    "4000::1",  # reserved, unassigned
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::7f00:1",  # IPv4-compatible loopback
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b:1::1",  # local-use NAT64
    "2002:7f00:1::1",  # 6to4, deprecated, whatever it carries
    "2002:808:808::1",
    # Not IP addresses at all
    "localhost",
    "example.com",
    "127.1",
    "",
]


@pytest.mark.parametrize("address", PUBLIC_ADDRESSES)
def test_globally_routable_unicast_addresses_are_public(address: str) -> None:
    assert is_public_address(address)


@pytest.mark.parametrize("address", NOT_PUBLIC_ADDRESSES)
def test_every_other_address_range_is_not_public(address: str) -> None:
    assert not is_public_address(address)


# Registration: check_url ----------------------------------------------------------------------

NUMERIC_LOOPBACK_URLS = [
    "http://127.0.0.1/hook",
    "http://127.1/hook",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0177.0.0.1/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://0.0.0.0/",
    "http://0/",
    "http://169.254.169.254/latest/meta-data/",
    "https://10.1.2.3:8443/feed.xml",
]


@pytest.mark.parametrize("url", NUMERIC_LOOPBACK_URLS)
def test_a_numeric_address_that_is_not_public_is_refused_without_asking_dns(url: str) -> None:
    with pytest.raises(AddressRefused) as refused:
        check_url(url, allow_private=False, resolve=never_asked)
    assert str(refused.value) == REFUSED


def test_a_name_that_resolves_to_loopback_is_refused() -> None:
    with pytest.raises(AddressRefused):
        check_url("http://localhost:8080/hook", allow_private=False)


@pytest.mark.parametrize(
    "addresses",
    [
        ["10.1.2.3"],
        ["192.168.0.10"],
        ["169.254.169.254"],
        ["fc00::1"],
        ["100.64.0.1"],
        [PUBLIC, "10.0.0.1"],  # every address is checked, not just the first
    ],
)
def test_a_name_that_resolves_to_a_non_public_address_is_refused(addresses: list[str]) -> None:
    asked: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return addresses

    with pytest.raises(AddressRefused):
        check_url("https://Feeds.Example.invalid/rss", allow_private=False, resolve=resolve)
    assert asked == [("feeds.example.invalid", 443)]


def test_a_name_at_public_addresses_passes() -> None:
    check_url(
        "https://hooks.example.invalid/x",
        allow_private=False,
        resolve=answers(PUBLIC, "2001:4860:4860::8888"),
    )


def test_a_name_that_does_not_resolve_passes_since_every_connection_is_checked() -> None:
    def resolve(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    check_url("https://not-yet.example.invalid/hook", allow_private=False, resolve=resolve)
    check_url("https://empty.example.invalid/hook", allow_private=False, resolve=answers())


def test_with_private_networks_allowed_nothing_is_refused_or_resolved() -> None:
    for url in [*NUMERIC_LOOPBACK_URLS, "http://localhost/"]:
        check_url(url, allow_private=True, resolve=never_asked)


def test_a_url_without_a_host_is_a_value_error() -> None:
    for url in ["http:///path", "not a url", "http://host:99999/"]:
        with pytest.raises(ValueError):
            check_url(url, allow_private=False, resolve=never_asked)


# At connect time: the transports ------------------------------------------------------------


@TRANSPORTS
def test_a_listener_on_loopback_is_refused_before_any_connection(
    kind: str, listener: Listener
) -> None:
    assert refusal(kind, listener.url, allow_private=False) == REFUSED
    assert listener.connections == 0


@TRANSPORTS
def test_with_private_networks_allowed_the_listener_is_reached(
    kind: str, listener: Listener
) -> None:
    response = fetch(kind, listener.url, allow_private=True)
    assert (response.status_code, response.text) == (200, "ok")
    assert listener.connections == 1


@TRANSPORTS
def test_a_refusal_reads_the_same_whether_anything_listens_or_not(
    kind: str, listener: Listener
) -> None:
    while_listening = refusal(kind, listener.url, allow_private=False)
    listener.stop()
    nobody_there = refusal(kind, listener.url, allow_private=False)
    assert while_listening == nobody_there == REFUSED


@TRANSPORTS
def test_numeric_forms_of_loopback_are_refused_at_connect(kind: str, listener: Listener) -> None:
    for host in ["127.1", "2130706433", "0x7f000001", "0.0.0.0", "[::ffff:127.0.0.1]"]:
        url = f"http://{host}:{listener.port}/"
        assert refusal(kind, url, allow_private=False, resolve=never_asked) == REFUSED
    assert listener.connections == 0


@TRANSPORTS
def test_a_name_resolved_once_is_connected_to_at_the_address_it_resolved_to(
    kind: str, listener: Listener
) -> None:
    asked: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return ["127.0.0.1"]

    url = f"http://peer.example.invalid:{listener.port}/"
    response = fetch(kind, url, allow_private=True, resolve=resolve)
    assert response.status_code == 200
    assert asked == [("peer.example.invalid", listener.port)]
    assert listener.hosts == [f"peer.example.invalid:{listener.port}"]


@TRANSPORTS
def test_dns_rebinding_is_refused_at_connect(kind: str, listener: Listener) -> None:
    """The name answers a public address when registered, and loopback when connected to."""
    answered = iter([[PUBLIC], ["127.0.0.1"]])

    def rebinding(host: str, port: int) -> list[str]:
        return next(answered)

    url = f"http://rebind.example.invalid:{listener.port}/hook"
    check_url(url, allow_private=False, resolve=rebinding)
    assert refusal(kind, url, allow_private=False, resolve=rebinding) == REFUSED
    assert listener.connections == 0


@TRANSPORTS
def test_a_name_with_one_non_public_address_among_public_ones_is_refused_at_connect(
    kind: str, listener: Listener
) -> None:
    url = f"http://mixed.example.invalid:{listener.port}/"
    resolve = answers(PUBLIC, "127.0.0.1")
    assert refusal(kind, url, allow_private=False, resolve=resolve) == REFUSED
    assert listener.connections == 0


@TRANSPORTS
def test_the_next_checked_address_is_tried_when_one_does_not_answer(kind: str) -> None:
    second = Listener("127.0.0.2")
    try:
        url = f"http://two.example.invalid:{second.port}/"
        response = fetch(kind, url, allow_private=True, resolve=answers("127.0.0.1", "127.0.0.2"))
        assert response.status_code == 200 and second.connections == 1
    finally:
        second.stop()


@TRANSPORTS
def test_a_name_that_does_not_resolve_at_connect_is_an_httpx_connect_error(kind: str) -> None:
    def resolve(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    for resolver in [resolve, answers()]:
        with pytest.raises(httpx.ConnectError):
            fetch(kind, "http://gone.example.invalid/", allow_private=True, resolve=resolver)


@TRANSPORTS
def test_nothing_listening_is_an_httpx_connect_error(kind: str, listener: Listener) -> None:
    listener.stop()
    with pytest.raises(httpx.ConnectError):
        fetch(kind, listener.url, allow_private=True)


@TRANSPORTS
def test_an_environment_proxy_never_carries_a_request_past_the_guard(
    kind: str, listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{closed.getsockname()[1]}"
    for name in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"]:
        monkeypatch.setenv(name, proxy)
    for name in ["NO_PROXY", "no_proxy"]:
        monkeypatch.delenv(name, raising=False)

    assert refusal(kind, listener.url, allow_private=False, trust_env=True) == REFUSED
    # Allowed, the request goes straight to the listener, not to the (dead) proxy.
    assert fetch(kind, listener.url, allow_private=True, trust_env=True).status_code == 200


@TRANSPORTS
def test_tls_is_verified_against_the_host_name_while_connecting_to_its_address(
    kind: str,
) -> None:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("peer.example.invalid").configure_cert(server_context)
    names: list[str | None] = []

    def record_server_name(sock: Any, name: str | None, context: Any) -> None:
        names.append(name)

    server_context.sni_callback = record_server_name
    secure = Listener(tls=server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    try:
        url = f"https://peer.example.invalid:{secure.port}/"
        options: dict[str, Any] = {"verify": client_context, "resolve": answers("127.0.0.1")}
        assert fetch(kind, url, allow_private=True, **options).text == "ok"
        assert names == ["peer.example.invalid"]
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            fetch(
                kind, f"https://other.example.invalid:{secure.port}/", allow_private=True, **options
            )
    finally:
        secure.stop()


def test_a_transport_takes_no_proxy_and_no_unix_socket() -> None:
    make: Callable[..., Any]
    for make in [guarded_transport, guarded_async_transport]:
        with pytest.raises(TypeError):
            make(allow_private=False, proxy="http://proxy.example.invalid:3128")
        with pytest.raises(TypeError):
            make(allow_private=False, uds="/tmp/socket")


def test_the_async_transport_resolves_names_off_the_event_loop(listener: Listener) -> None:
    started, released = threading.Event(), threading.Event()

    def resolve_once_the_loop_has_run(host: str, port: int) -> list[str]:
        started.set()
        return ["127.0.0.1"] if released.wait(5) else []

    async def release_once_the_lookup_started() -> None:
        await asyncio.to_thread(started.wait, 5)
        released.set()  # on the event loop: it runs only if the lookup is not blocking it

    async def get() -> httpx.Response:
        transport = guarded_async_transport(
            allow_private=True, resolve=resolve_once_the_loop_has_run
        )
        async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
            release = asyncio.create_task(release_once_the_lookup_started())
            response = await client.get(f"http://peer.example.invalid:{listener.port}/")
            await release
            return response

    assert asyncio.run(get()).status_code == 200


def test_an_async_lookup_that_hangs_is_a_connect_timeout() -> None:
    hung = threading.Event()

    def hanging(host: str, port: int) -> list[str]:
        hung.wait(5)
        return ["127.0.0.1"]

    async def get() -> None:
        transport = guarded_async_transport(allow_private=True, resolve=hanging)
        async with httpx.AsyncClient(transport=transport, timeout=0.05) as client:
            try:
                with pytest.raises(httpx.ConnectTimeout):
                    await client.get("http://slow.example.invalid/")
            finally:
                hung.set()  # before asyncio.run waits for the lookup's thread

    asyncio.run(get())
