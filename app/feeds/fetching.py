"""Fetching feeds politely: a batch at a time, concurrently, at most `feeds_per_host` at once
to one host; conditional GET; redirects followed by hand (at most five, each hop through the
address guard); the body cut off past `feeds_max_bytes` as it streams in (decompressed, so a
compression bomb stops there too); one deadline for the whole fetch, redirects included.
"""

import asyncio
import ssl
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

import httpx

from app.config import Settings
from app.outbound import REFUSED, AddressRefused, guarded_async_transport

MAX_REDIRECTS = 5
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


class Fetcher:
    """Fetches many URLs at once within one event loop run (`fetch_all`)."""

    def __init__(self, *, settings: Settings) -> None:
        self.settings = settings
        # Loading the CA bundle costs more than a fetch: once per fetcher, not per client.
        self.ssl_context = ssl.create_default_context()

    def client(self) -> httpx.AsyncClient:
        """A client for one batch (an AsyncClient belongs to the event loop it runs on)."""
        return httpx.AsyncClient(
            transport=guarded_async_transport(
                allow_private=self.settings.allow_private_networks,
                verify=self.ssl_context,
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            ),
            timeout=httpx.Timeout(self.settings.feeds_timeout_seconds),
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": user_agent(self.settings)},
        )

    async def fetch_all(
        self, client: httpx.AsyncClient, requests: Sequence[FetchRequest]
    ) -> list[Fetched]:
        """Fetch each request, at most `feeds_per_host` at a time per host; in order."""
        per_host: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(self.settings.feeds_per_host)
        )

        async def one(request: FetchRequest) -> Fetched:
            async with per_host[urlsplit(request.url).netloc.lower()]:
                return await self.fetch(client, request)

        return list(await asyncio.gather(*(one(request) for request in requests)))

    async def fetch(self, client: httpx.AsyncClient, request: FetchRequest) -> Fetched:
        """One fetch, never raising: its answer or why there is none."""
        try:
            async with asyncio.timeout(self.settings.feeds_timeout_seconds):
                return await self._follow(client, request)
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

    async def _follow(self, client: httpx.AsyncClient, request: FetchRequest) -> Fetched:
        url = request.url
        permanent = True
        headers = {"Accept": request.accept}
        if request.etag:
            headers["If-None-Match"] = request.etag
        if request.last_modified:
            headers["If-Modified-Since"] = request.last_modified
        for _ in range(MAX_REDIRECTS + 1):
            async with client.stream("GET", url, headers=headers) as response:
                location = response.headers.get("location")
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


def describe_http_error(exc: httpx.HTTPError) -> str:
    """The error class and httpx's message: what an operator needs, without our internals."""
    message = str(exc) or type(exc).__name__
    return " ".join(f"{type(exc).__name__}: {message}".split())[:300]
