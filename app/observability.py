"""JSON logs (one line per request, no bodies, no query strings) and Prometheus metrics."""

import asyncio
import atexit
import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii as _json_string
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_logger = logging.getLogger("byline.access")

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None)))


class _Timestamps:
    """ISO 8601 UTC with milliseconds, as `datetime.isoformat(timespec="milliseconds")` writes
    it; the date and time up to the second are formatted once per second (a datetime per log
    line was a large part of the access line's cost)."""

    def __init__(self) -> None:
        # One attribute, replaced whole: threads logging at once never pair a second with
        # another second's prefix.
        self._second_and_prefix = (math.nan, "")

    def __call__(self, seconds: float) -> str:
        # Rounded to the microsecond as datetime.fromtimestamp rounds, then truncated.
        fraction, second = math.modf(seconds)
        micros = round(fraction * 1e6)
        if micros >= 1_000_000:
            second += 1
            micros -= 1_000_000
        cached_second, prefix = self._second_and_prefix
        if second != cached_second:
            prefix = datetime.fromtimestamp(second, UTC).isoformat()[:19]
            self._second_and_prefix = (second, prefix)
        return prefix + _MILLISECOND_SUFFIXES[micros // 1000]


# Looked up rather than formatted: formatting them showed in a timestamp's cost.
_MILLISECOND_SUFFIXES = tuple(f".{milliseconds:03d}+00:00" for milliseconds in range(1000))


_timestamp = _Timestamps()


def _milliseconds(seconds: float) -> str:
    """`seconds` in milliseconds as json.dumps writes `round(seconds * 1000, 2)`: the same
    correctly rounded digits from one fixed-point formatting, without the zeros repr drops
    (a rounding and a repr cost twice as much; a test holds the two equal)."""
    text = f"{seconds * 1000:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _RESERVED})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Replaced by byline.access, which logs the route template and never the query string.
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs every request at INFO with its whole URL: a feed's or a webhook's query
    # string may carry its owner's token. Feeds and deliveries record their own outcomes.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


# Set by `byline serve --workers N` (N > 1) before its API processes start: each process
# then keeps its samples in files there (prometheus_client reads the variable when imported),
# and /metrics adds up every process's files, whichever process answers the scrape.
MULTIPROCESS_DIRECTORY = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_directory() -> str | None:
    return os.environ.get(MULTIPROCESS_DIRECTORY) or None


def mark_process_dead_at_exit() -> None:
    """In multiprocess mode: when this API process exits, its samples stop counting as a
    live process's (the counters it made stay in the sums)."""
    directory = multiprocess_directory()
    if directory is not None:
        atexit.register(mark_process_dead, os.getpid(), directory)


def database_gauge(
    name: str, documentation: str, labelnames: Sequence[str] = (), *, registry: CollectorRegistry
) -> Gauge:
    """A gauge read from the database before each scrape. It describes the database, not
    this process: with several API processes the scrape shows the value the answering
    process has just read ("mostrecent"), never one per process or their sum."""
    return Gauge(name, documentation, labelnames, registry=registry, multiprocess_mode="mostrecent")


class Metrics:
    """The app's Prometheus registry; domains add their own metrics to `registry`. In
    multiprocess mode /metrics shows what every process wrote to the directory, so only
    metric objects count there (Counter, Histogram, `database_gauge`), not custom collectors."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        directory = multiprocess_directory()
        if directory is None:
            self._exposed = self.registry
        else:
            self._exposed = CollectorRegistry()
            MultiProcessCollector(self._exposed, path=directory)
        self.requests = Counter(
            "byline_http_requests_total",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "byline_http_request_duration_seconds",
            "HTTP request latency by method and route template.",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        """The Prometheus text format: this process's metrics, or in multiprocess mode every
        API process's."""
        return generate_latest(self._exposed)


KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    # Unmatched paths share one label, so scanners cannot blow up the metric cardinality.
    return path if isinstance(path, str) else "<unmatched>"


class AccessLog:
    """The access log: one JSON line per request (the fields JsonFormatter writes, for logger
    `byline.access`), on stderr, written in batches.

    A LogRecord formatted and flushed per request was a large share of a fast read's CPU
    (bench/README.md). Here a line is one `json.dumps`,
    and lines leave in one write at most FLUSH_SECONDS after the first of them, or at once
    when FLUSH_LINES are waiting, as nginx's `access_log ... buffer= flush=` does. A crash
    loses at most that window of access lines; application log lines are never delayed.
    Lines are written when `byline.access` is enabled for INFO (`BYLINE_LOG_LEVEL`)."""

    FLUSH_SECONDS = 0.5
    FLUSH_LINES = 256

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._flush_timer: asyncio.TimerHandle | None = None

    def record(self, method: str, path: str, route: str, status: int, seconds: float) -> None:
        if not access_logger.isEnabledFor(logging.INFO):
            return
        # The line json.dumps would write for these fields, byte for byte, without building
        # the dict and running the encoder over it (a test holds the two equal).
        self._lines.append(
            f'{{"ts": "{_timestamp(time.time())}", "level": "info", "logger": "byline.access",'
            f' "message": "request", "method": {_json_string(method)},'
            f' "path": {_json_string(path)}, "route": {_json_string(route)},'
            f' "status": {int(status)}, "duration_ms": {_milliseconds(seconds)}}}\n'
        )
        if len(self._lines) >= self.FLUSH_LINES:
            self.flush()
        elif self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(
                self.FLUSH_SECONDS, self.flush
            )

    def flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if self._lines:
            lines, self._lines = self._lines, []
            sys.stderr.write("".join(lines))
            sys.stderr.flush()


class AccessLogAndMetrics:
    """Times every HTTP request, counts it by route template and logs one JSON line."""

    def __init__(self, app: ASGIApp, metrics: Metrics, access_log: AccessLog) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log
        # The labelled children, looked up once per (method, route, status): `labels()` per
        # request was a large part of the metrics' cost.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_capture)
        finally:
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            method = scope["method"]
            if method not in KNOWN_METHODS:
                method = "OTHER"  # the method is the client's to choose: bound the labels
            key = (method, route, status)
            children = self._children.get(key)
            if children is None:
                children = self._children[key] = (
                    self.metrics.requests.labels(method, route, str(status)),
                    self.metrics.latency.labels(method, route),
                )
            children[0].inc()
            children[1].observe(elapsed)
            self.access_log.record(scope["method"], scope["path"], route, status, elapsed)
