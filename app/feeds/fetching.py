"""Fetching feeds politely: a batch at a time, concurrently, at most `feeds_per_host` at once
to one host (`host:port`); conditional GET; redirects followed by hand (at most five, each hop
through the address guard); the body cut off past `feeds_max_bytes` as it streams in
(decompressed, so a compression bomb stops there too); one deadline for the whole fetch,
redirects included.

A fetcher keeps one event loop and one client for its worker's life: connections to a host
are kept alive from one batch to the next (no new TCP and TLS handshake per poll), and the
per-host limit holds across batches and for everything fetched (robots.txt too).
"""

import asyncio
import ssl
from collections import OrderedDict, defaultdict
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import httpx

from app.config import Settings
from app.outbound import REFUSED, AddressRefused, guarded_async_transport

T = TypeVar("T")
MAX_REDIRECTS = 5
DRAIN_MAX_BYTES = 64 * 1024
REDIRECTS = {301, 302, 303, 307, 308}
PERMANENT_REDIRECTS = {301, 308}
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/json;q=0.9, "
    "application/rdf+xml;q=0.9, application/xml;q=0.8, text/xml;q=0.8, */*;q=0.5"
)


def user_agent(settings: Settings) -> str:
    return f"byline/1 (+{settings.public_base_url})"


@dataclass(frozen=True)
class FetchRequest:
    url: str
    etag: str | None = None
    last_modified: str | None = None
    accept: str = ACCEPT


@dataclass(frozen=True)
class Fetched:
    """What one fetch came to: an answer (`status`, `headers`, `body`) or an `error`."""

    url: str  # the URL that answered (after redirects)
    status: int | None = None
    headers: httpx.Headers | None = None
    body: bytes | None = None
    error: str | None = None
    # Where every redirect on the way was permanent: the feed's new address.
    moved_to: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.body is not None

    def retry_after(self, now: datetime) -> timedelta | None:
        """The answer's Retry-After (seconds or an HTTP date), if any and in the future."""
        value = self.headers.get("retry-after") if self.headers is not None else None
        if not value:
            return None
        value = value.strip()
        if value.isdigit():
            return timedelta(seconds=int(value))
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        wait = moment - now
        return wait if wait > timedelta(0) else None


class BodyTooLarge(Exception):
    pass


# Connections are pooled per origin, each pool as small as the per-host limit: httpx's pool
# looks over every idle connection it holds at each request, so one pool of a hundred hosts'
# connections cost more than the requests. At most this many origins keep theirs.
KEPT_ORIGINS = 100
KEEP_ALIVE_SECONDS = 30.0


class Fetcher:
    """Fetches many URLs at once on its own event loop (`run`), from one worker thread."""

    def __init__(self, *, settings: Settings) -> None:
        self.settings = settings
        # Loading the CA bundle costs more than a fetch: once per fetcher.
        self.ssl_context = ssl.create_default_context()
        self._loop = asyncio.new_event_loop()
        self._clients: OrderedDict[str, httpx.AsyncClient] = OrderedDict()
        self._per_host: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(settings.feeds_per_host)
        )

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` to its end on the fetcher's loop (one call at a time); then the least
        recently used origins beyond KEPT_ORIGINS close their connections."""
        try:
            return self._loop.run_until_complete(work)
        finally:
            while len(self._clients) > KEPT_ORIGINS:
                _, oldest = self._clients.popitem(last=False)
                self._loop.run_until_complete(oldest.aclose())

    def close(self) -> None:
        for client in self._clients.values():
            self._loop.run_until_complete(client.aclose())
        self._clients.clear()
        self._loop.close()

    def client(self, url: str) -> httpx.AsyncClient:
        """The client of `url`'s origin, with its own pool of connections."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}".lower()
        client = self._clients.get(origin)
        if client is None:
            client = self._clients[origin] = self._new_client()
        self._clients.move_to_end(origin)
        return client

    def _new_client(self) -> httpx.AsyncClient:
        per_host = self.settings.feeds_per_host
        return httpx.AsyncClient(
            transport=guarded_async_transport(
                allow_private=self.settings.allow_private_networks,
                verify=self.ssl_context,
                limits=httpx.Limits(
                    max_connections=per_host,
                    max_keepalive_connections=per_host,
                    keepalive_expiry=KEEP_ALIVE_SECONDS,
                ),
            ),
            timeout=httpx.Timeout(self.settings.feeds_timeout_seconds),
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": user_agent(self.settings)},
        )

    async def fetch_all(self, requests: Sequence[FetchRequest]) -> list[Fetched]:
        """Fetch each request (see `fetch`); the answers in order."""
        return list(await asyncio.gather(*(self.fetch(request) for request in requests)))

    async def fetch(self, request: FetchRequest) -> Fetched:
        """One fetch once its host has a free slot, never raising: its answer or why there
        is none. Waiting for the slot is not counted against the fetch's deadline."""
        async with self._per_host[urlsplit(request.url).netloc.lower()]:
            return await self._fetch(request)

    async def _fetch(self, request: FetchRequest) -> Fetched:
        try:
            async with asyncio.timeout(self.settings.feeds_timeout_seconds):
                return await self._follow(request)
        except TimeoutError:
            seconds = self.settings.feeds_timeout_seconds
            return Fetched(
                url=request.url, error=f"timeout: no complete answer within {seconds:g} s"
            )
        except AddressRefused:
            return Fetched(url=request.url, error=REFUSED)
        except BodyTooLarge:
            return Fetched(
                url=request.url,
                error=f"body over the limit of {self.settings.feeds_max_bytes} bytes",
            )
        except httpx.HTTPError as exc:
            return Fetched(url=request.url, error=describe_http_error(exc))

    async def _follow(self, request: FetchRequest) -> Fetched:
        url = request.url
        permanent = True
        headers = {"Accept": request.accept}
        if request.etag:
            headers["If-None-Match"] = request.etag
        if request.last_modified:
            headers["If-Modified-Since"] = request.last_modified
        for _ in range(MAX_REDIRECTS + 1):
            async with self.client(url).stream("GET", url, headers=headers) as response:
                location = response.headers.get("location")
                if response.status_code != 200:
                    await _drain(response)
                if response.status_code in REDIRECTS and location:
                    target = urljoin(url, location.strip())
                    if urlsplit(target).scheme not in ("http", "https"):
                        return Fetched(url=url, error=f"redirect to a non-HTTP URL: {target[:200]}")
                    permanent = permanent and response.status_code in PERMANENT_REDIRECTS
                    url = target
                    continue
                body = await self._body(response) if response.status_code == 200 else None
                return Fetched(
                    url=url,
                    status=response.status_code,
                    headers=response.headers,
                    body=body,
                    moved_to=url if permanent and url != request.url else None,
                )
        return Fetched(url=url, error=f"more than {MAX_REDIRECTS} redirects")

    async def _body(self, response: httpx.Response) -> bytes:
        limit = self.settings.feeds_max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge()
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge()
            chunks.append(chunk)
        return b"".join(chunks)


async def _drain(response: httpx.Response) -> None:
    """Read a short answer's body we do not use (a 404's page, a redirect's note; a 304 has
    none, but its end must still be read), so that its connection can carry the next request;
    a long one is left to close its connection."""
    declared = response.headers.get("content-length", "")
    bodiless = response.status_code in (204, 304)
    if bodiless or (declared.isdigit() and int(declared) <= DRAIN_MAX_BYTES):
        await response.aread()


def describe_http_error(exc: httpx.HTTPError) -> str:
    """The error class and httpx's message: what an operator needs, without our internals."""
    message = str(exc) or type(exc).__name__
    return " ".join(f"{type(exc).__name__}: {message}".split())[:300]
