"""The one guard for every URL byline fetches or calls (webhook deliveries, publishers' feeds):
nobody who can register a URL may make byline reach into its own network (SSRF).

A URL whose host is, or resolves to, an address that is not public (loopback, private,
link-local, shared, multicast, unspecified, reserved, documentation...) is refused twice:

- when it is registered (`check_url`): a 422 for the operator. A name that does not resolve
  then is accepted: a receiver or feed that is not set up yet, or a DNS hiccup, must not
  block registration, and the second check below is the one that protects.
- at every connection (`guarded_transport`, `guarded_async_transport`), on the address
  actually connected to: the host is resolved once, every address it has is checked, and
  the socket is opened to a checked address, never to the name again. A name that answers
  a public address at registration and 127.0.0.1 later (DNS rebinding) is refused there.
  TLS still verifies the certificate against the URL's host name (httpcore hands
  `server_hostname` to `start_tls` apart from the address it connected to).

A refusal always says `REFUSED`, raised before any connection is tried: the same words and
the same speed whether something listens at that address or not, so operators' error logs
cannot be used to scan ports. `Settings.allow_private_networks` lifts the rule (intranet
feeds, tests).

The transports connect directly. They take no proxy (a proxy would connect in our place,
past the check), and httpx reads no proxy from the environment for a client given a
transport; clients built on them set `trust_env=False` all the same.
"""

import asyncio
import ipaddress
import re
import socket
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpcore
import httpx

from app.errors import FieldError, InvalidInput

REFUSED = "refused: not a public address"

Resolver = Callable[[str, int], list[str]]
"""host, port -> the host's IP addresses as strings, in the order to try them."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# Special-purpose ranges that Pythons before 3.11.10 / 3.12.4 count as global (gh-113171
# widened the table behind is_global; 3fff::/20 came later): refused on every version alike.
_NOT_GLOBAL_ON_EVERY_PYTHON = (
    ipaddress.ip_network("192.0.0.0/24"),  # IETF protocol assignments
    ipaddress.ip_network("2002::/16"),  # 6to4, deprecated, carries any IPv4 address
    ipaddress.ip_network("3fff::/20"),  # documentation
)
# What inet_aton may read as an IPv4 address ("127.1", "2130706433", "0x7f000001",
# "0177.0.0.1"), as the system's resolver does; anything else is a name.
_NUMERIC_IPV4 = re.compile(r"^[0-9a-fA-FxX.]+$")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# httpx's own defaults (httpx.Limits() has none).
_DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


class AddressRefused(Exception):
    """The host is, or resolves to, an address that is not public. Its message is always
    `REFUSED`, whatever the address and whether anything listens there."""

    def __init__(self) -> None:
        super().__init__(REFUSED)


def resolve_with_system(host: str, port: int) -> list[str]:
    """The default Resolver: the system's getaddrinfo, its order kept, duplicates dropped."""
    answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(answer[4][0]) for answer in answers))


def is_public_address(address: str) -> bool:
    """True for a globally routable unicast IP address; False for any other address and for
    a string that is not an IP address. IPv6 forms that carry an IPv4 address (mapped,
    NAT64) are judged by the IPv4 address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        carried = ip.ipv4_mapped or _nat64_ipv4(ip)
        if carried is not None:
            return _is_public(carried)
    return _is_public(ip)


def _is_public(ip: IPAddress) -> bool:
    # is_global alone lets multicast through, and IPv6 ranges that Python files as reserved
    # or site-local rather than private (IPv4-compatible ::a.b.c.d, unassigned space).
    if any(ip in network for network in _NOT_GLOBAL_ON_EVERY_PYTHON):
        return False
    site_local = isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or site_local)


def _nat64_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip not in _NAT64:
        return None
    return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)


def check_url(url: str, *, allow_private: bool, resolve: Resolver | None = None) -> None:
    """Refuse a URL being registered whose host is or resolves to a non-public address
    (AddressRefused). A name that does not resolve passes: every connection is checked
    again. ValueError when the URL has no host."""
    if allow_private:
        return
    host, port = _host_and_port(url)
    try:
        addresses = _addresses(host, port, resolve or resolve_with_system)
    except OSError:
        return
    _refuse_unless_public(addresses)


def refuse_internal_url(url: str, *, allow_private: bool) -> None:
    """`check_url` for a URL being registered: a refusal is a 422 naming `url`. Call it
    before the first query of a write (a slow DNS answer must not hold SQLite's write turn)."""
    try:
        check_url(url, allow_private=allow_private)
    except (AddressRefused, ValueError) as exc:
        raise InvalidInput([FieldError(field="url", message=str(exc))]) from None


def _host_and_port(url: str) -> tuple[str, int]:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if not parts.hostname:
        raise ValueError("has no host")
    return parts.hostname, port or _DEFAULT_PORTS.get(parts.scheme.lower(), 80)


def _addresses(host: str, port: int, resolve: Resolver) -> list[str]:
    """An IP literal as the address it names (the resolver is not asked), a name resolved."""
    literal = _ip_literal(host)
    return [literal] if literal is not None else resolve(host, port)


def _ip_literal(host: str) -> str | None:
    host = host.removeprefix("[").removesuffix("]")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if _NUMERIC_IPV4.match(host):
        try:
            return socket.inet_ntoa(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _refuse_unless_public(addresses: list[str]) -> None:
    # Every address, not just the first: a name that answers a public and a private
    # address would otherwise reach the private one whenever the public one fails.
    if not all(is_public_address(address) for address in addresses):
        raise AddressRefused()


def _addresses_to_connect(
    host: str, port: int, *, allow_private: bool, resolve: Resolver
) -> list[str]:
    """The host's addresses, resolved once and each checked, for connect_tcp."""
    try:
        addresses = _addresses(host, port, resolve)
    except OSError as exc:
        raise httpcore.ConnectError(f"{host} did not resolve: {exc}") from exc
    if not addresses:
        raise httpcore.ConnectError(f"{host} has no address")
    if not allow_private:
        _refuse_unless_public(addresses)
    return addresses


# Connect-time check: httpcore network backends --------------------------------------------

Stream = TypeVar("Stream")


def _first_connected(addresses: list[str], connect: Callable[[str], Stream]) -> Stream:
    """Try each address in turn, as socket.create_connection does with a name."""
    failure: Exception | None = None
    for address in addresses:
        try:
            return connect(address)
        except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
            failure = exc
    assert failure is not None
    raise failure


class _GuardedBackend(httpcore.NetworkBackend):
    """httpcore's SyncBackend, connecting only to checked addresses."""

    def __init__(self, *, allow_private: bool, resolve: Resolver) -> None:
        self._direct = httpcore.SyncBackend()
        self._allow_private = allow_private
        self._resolve = resolve

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = _addresses_to_connect(
            host, port, allow_private=self._allow_private, resolve=self._resolve
        )
        return _first_connected(
            addresses,
            lambda address: self._direct.connect_tcp(
                address, port, timeout, local_address, socket_options
            ),
        )

    def sleep(self, seconds: float) -> None:
        self._direct.sleep(seconds)


class _GuardedAsyncBackend(httpcore.AsyncNetworkBackend):
    """httpcore's AnyIOBackend, connecting only to checked addresses; names are resolved in
    a worker thread, never on the event loop (asyncio, as byline runs)."""

    def __init__(self, *, allow_private: bool, resolve: Resolver) -> None:
        self._direct = httpcore.AnyIOBackend()
        self._allow_private = allow_private
        self._resolve = resolve

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses_to_connect = partial(
            _addresses_to_connect,
            host,
            port,
            allow_private=self._allow_private,
            resolve=self._resolve,
        )
        try:
            # On timeout the lookup's thread is left to finish on its own; we stop waiting.
            async with asyncio.timeout(timeout):
                addresses = await asyncio.to_thread(addresses_to_connect)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"{host} did not resolve in time") from None
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._direct.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def sleep(self, seconds: float) -> None:
        await self._direct.sleep(seconds)


# httpx transports around httpcore's pools ---------------------------------------------------

# Most specific first: the first match is raised. AddressRefused is not an httpcore error and
# passes through as it is.
_HTTPX_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextmanager
def _as_httpx_errors() -> Iterator[None]:
    """httpcore's errors as the httpx errors that callers of an httpx client catch."""
    try:
        yield
    except Exception as exc:
        for core_error, httpx_error in _HTTPX_ERRORS:
            if isinstance(exc, core_error):
                raise httpx_error(str(exc)) from exc
        raise


def _core_request(request: httpx.Request) -> httpcore.Request:
    return httpcore.Request(
        method=request.method,
        url=httpcore.URL(
            scheme=request.url.raw_scheme,
            host=request.url.raw_host,
            port=request.url.port,
            target=request.url.raw_path,
        ),
        headers=request.headers.raw,
        content=request.stream,
        extensions=request.extensions,
    )


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _as_httpx_errors():
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


class _AsyncResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            await aclose()


class _GuardedTransport(httpx.BaseTransport):
    def __init__(self, pool: httpcore.ConnectionPool) -> None:
        self._pool = pool

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with _as_httpx_errors():
            response = self._pool.handle_request(_core_request(request))
        assert isinstance(response.stream, Iterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


class _GuardedAsyncTransport(httpx.AsyncBaseTransport):
    def __init__(self, pool: httpcore.AsyncConnectionPool) -> None:
        self._pool = pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with _as_httpx_errors():
            response = await self._pool.handle_async_request(_core_request(request))
        assert isinstance(response.stream, AsyncIterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_AsyncResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


def _pool_options(
    *,
    verify: Any = True,
    cert: Any = None,
    trust_env: bool = True,
    http1: bool = True,
    http2: bool = False,
    limits: httpx.Limits = _DEFAULT_LIMITS,
    retries: int = 0,
    local_address: str | None = None,
    socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
) -> dict[str, Any]:
    """httpx.HTTPTransport's options, as httpcore's pools take them. No `proxy` and no
    `uds`: either would connect in our place, past the check."""
    return {
        # trust_env here reads only SSL_CERT_FILE / SSL_CERT_DIR, never a proxy.
        "ssl_context": httpx.create_ssl_context(verify=verify, cert=cert, trust_env=trust_env),
        "max_connections": limits.max_connections,
        "max_keepalive_connections": limits.max_keepalive_connections,
        "keepalive_expiry": limits.keepalive_expiry,
        "http1": http1,
        "http2": http2,
        "retries": retries,
        "local_address": local_address,
        "socket_options": socket_options,
    }


def guarded_transport(
    *, allow_private: bool, resolve: Resolver | None = None, **httpx_transport_options: Any
) -> httpx.BaseTransport:
    """An httpx transport that connects only to public addresses (any, with allow_private),
    each checked at connect time; a refusal raises AddressRefused. Takes httpx.HTTPTransport's
    options but `proxy` and `uds`."""
    backend = _GuardedBackend(allow_private=allow_private, resolve=resolve or resolve_with_system)
    pool = httpcore.ConnectionPool(
        network_backend=backend, **_pool_options(**httpx_transport_options)
    )
    return _GuardedTransport(pool)


def guarded_async_transport(
    *, allow_private: bool, resolve: Resolver | None = None, **httpx_transport_options: Any
) -> httpx.AsyncBaseTransport:
    """guarded_transport for httpx.AsyncClient; names are resolved off the event loop."""
    backend = _GuardedAsyncBackend(
        allow_private=allow_private, resolve=resolve or resolve_with_system
    )
    pool = httpcore.AsyncConnectionPool(
        network_backend=backend, **_pool_options(**httpx_transport_options)
    )
    return _GuardedAsyncTransport(pool)
