"""Time and size bounds on every request, so that slow clients and stuck handlers cannot tie
the server up.

- `SlowClientGuard`, the HTTP protocol `byline serve` runs uvicorn with: a request head (request
  line and headers) must arrive within `BYLINE_HEADER_TIMEOUT_SECONDS` and fit in
  `MAX_HEAD_BYTES`, however it arrives. uvicorn itself waits for a head forever and bounds its
  size only with h11; a slowloris client dripping one header byte at a time would hold its
  connection, and a place under `limit_concurrency`, for as long as it liked. What uvicorn
  answers by itself (a request it cannot parse, connections shed by `limit_concurrency`) is
  answered problem+json, like every other error.
- `RequestTimeout`, ASGI middleware: a request that has not started its response within
  `BYLINE_REQUEST_TIMEOUT_SECONDS` is answered 503 problem+json with Retry-After. A handler on
  a worker thread cannot be stopped; it runs on, its answer is dropped, and a write it
  commits after the deadline stands: every write of the API is safe to retry (ingest is an
  upsert, a repeated filing answers the first one).
"""

import asyncio
import logging
from http import HTTPStatus
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from app.config import get_settings
from app.errors import problem_response

logger = logging.getLogger("byline.timeouts")

# Far above any head a client sends us (a long query string and a bearer key), far below
# what would let a client make us buffer megabytes of headers.
MAX_HEAD_BYTES = 64 * 1024
# After refusing a head, how long input is still read (and dropped) before the connection
# closes: closing with unread input sends a reset, which can destroy the answer in flight.
LINGER_SECONDS = 2.0

# How a refused head is answered: its problem's kind and detail.
_HEAD_PROBLEMS = {
    HTTPStatus.BAD_REQUEST: ("malformed-request", "The request is not valid HTTP/1.1."),
    HTTPStatus.REQUEST_TIMEOUT: (
        "request-timeout",
        "The request headers did not arrive in time.",
    ),
    HTTPStatus.REQUEST_URI_TOO_LONG: (
        "uri-too-long",
        f"The request target is longer than {MAX_HEAD_BYTES} bytes.",
    ),
    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE: (
        "headers-too-large",
        f"The request line and headers are larger than {MAX_HEAD_BYTES} bytes.",
    ),
}


def _problem_bytes(
    status: int, kind: str, detail: str, *, retry_after: int | None = None
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """A problem's headers (with Connection: close, and Retry-After if given) and body."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    response = problem_response(status, kind, detail, headers=headers)
    return [*response.raw_headers, (b"connection", b"close")], bytes(response.body)


async def _overloaded(scope: Scope, receive: Receive, send: Send) -> None:
    headers, body = _problem_bytes(
        503,
        "overloaded",
        "The server is handling too many connections; retry shortly.",
        retry_after=1,
    )
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _HeadRefused(Exception):
    """Raised from a parser callback: the parser stops, and uvicorn calls send_400_response."""


class SlowClientGuard(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a deadline and a size limit on each request head, and
    problem+json for every answer it gives itself.

    The size is counted two ways, because httptools holds what it has not finished parsing:
    the bytes of every chunk that leaves a head incomplete, and, when a chunk completes a head
    and the bytes received could pass the limit, the head as parsed (a head that arrived in one
    piece was never counted otherwise). A request target alone over the limit is a 414, any
    other head over it a 431; a request httptools cannot parse (uvicorn's text/plain "Invalid
    HTTP request received.") a 400."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0
        self._chunk_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._refusal: HTTPStatus | None = None
        self._refused = False
        # uvicorn gives a fresh connection no timeout at all before its first request.
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # the rest of a refused head: read and dropped until the close
        self._chunk_bytes = len(data)
        super().data_received(data)
        # The timer runs while a head is incomplete: a chunk that completed its head is never
        # counted, so the body that came with it does not count against the head.
        if self._head_timer is not None and not self._refused:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
                self._refuse_head(self._oversized())

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:  # the next request on a kept-alive connection
            self._start_head_timer()

    def on_headers_complete(self) -> None:
        self._stop_head_timer()
        if (
            self._head_bytes + self._chunk_bytes > MAX_HEAD_BYTES
            and self._parsed_head_bytes() > MAX_HEAD_BYTES
        ):
            self._refusal = self._oversized()
            raise _HeadRefused
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        # uvicorn's answer to a head the parser rejected, or that on_headers_complete refused.
        self._refuse_head(self._refusal or HTTPStatus.BAD_REQUEST)

    # uvicorn's answer to `limit_concurrency` is a text/plain 503; ours is a problem. uvicorn
    # has no public hook for it: this private method is why pyproject.toml pins uvicorn.
    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        overloaded: Any = _overloaded
        super()._start_asgi_task(cycle, overloaded if app is service_unavailable else app)

    def _parsed_head_bytes(self) -> int:
        """The head's size as parsed: its target, and each header line (name, value, ": " and
        CRLF)."""
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _oversized(self) -> HTTPStatus:
        if len(getattr(self, "url", b"")) > MAX_HEAD_BYTES:
            return HTTPStatus.REQUEST_URI_TOO_LONG
        return HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE

    def _start_head_timer(self) -> None:
        self._head_bytes = 0
        timeout = get_settings().header_timeout_seconds
        self._head_timer = self.loop.call_later(timeout, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_bytes == 0:
            self.transport.close()  # not a byte of a request: nobody to answer
            return
        self._refuse_head(HTTPStatus.REQUEST_TIMEOUT)

    def _refuse_head(self, status: HTTPStatus) -> None:
        self._stop_head_timer()
        kind, detail = _HEAD_PROBLEMS[status]
        retry_after = 1 if status == HTTPStatus.REQUEST_TIMEOUT else None
        headers, body = _problem_bytes(status, kind, detail, retry_after=retry_after)
        head = [f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode()]
        head += [name + b": " + value + b"\r\n" for name, value in headers]
        self.transport.write(b"".join([*head, b"\r\n", body]))
        # Half-close after the answer, keep reading for a moment, then close (a lingering
        # close): the client gets the answer even while it is still sending.
        self._refused = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


class RequestTimeout:
    """Answers 503 problem+json when a request has not started its response in time.

    The handler is not waited for in a task of its own (a task per request costs a fast read
    more than this timer): a timer answers for it, from a task started only when the deadline
    passes."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        answer: asyncio.Task[None] | None = None

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if answer is not None:
                return  # the client was answered by the timeout
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        def deadline_passed() -> None:
            nonlocal answer
            if not started:
                answer = asyncio.ensure_future(self._answer_timeout(scope, send))

        timer = asyncio.get_running_loop().call_later(self.seconds, deadline_passed)
        try:
            await self.app(scope, receive, guarded_send)
        finally:
            timer.cancel()
            if answer is not None:
                await answer

    async def _answer_timeout(self, scope: Scope, send: Send) -> None:
        logger.error(
            "request timed out after %.1f s: %s %s", self.seconds, scope["method"], scope["path"]
        )
        headers, body = _problem_bytes(
            503,
            "request-timeout",
            f"The request did not complete within {self.seconds:g} seconds; retry shortly.",
            retry_after=5,
        )
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})
