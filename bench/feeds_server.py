"""The publishers' side of the feed benchmark: one process serving a shard of the corpus's
ports on 127.0.0.1 (bench/feeds_corpus.py), outside the measured processes' GIL.

    python -m bench.feeds_server --feeds 10000 --ports 100 --base-port 18100 --shard 0 --shards 2

Every feed is rendered once at start (both generations) and served from memory by a minimal
HTTP/1.1 server on uvloop (keep-alive, Content-Length, no compression). A feed answers 200
with its ETag, or 304 when If-None-Match names its current ETag; /robots.txt and
/.well-known/tdmrep.json answer 404 on every port. Prints `ready` once listening.

Control (not counted), on any of its ports: GET /_bench/generation/<g> (what the feeds
publish from now on), /_bench/reset (counters to zero), /_bench/counts (JSON: requests by
kind, connections opened, bytes, and this process's CPU seconds, all since the last reset).
"""

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from typing import Any

import uvloop

from bench import feeds_corpus as corpus

NOT_FOUND = b"not found"


class Publisher:
    """The feeds of a shard, the generation they are at, and what was asked."""

    def __init__(self, feeds: dict[bytes, dict[int, tuple[bytes, bytes]]]) -> None:
        self.feeds = feeds  # path -> generation -> (etag, body)
        self.generation = 0
        self.counts: Counter[str] = Counter()
        self.cpu_at_reset = time.process_time()

    def answer(self, target: bytes, if_none_match: bytes | None) -> bytes:
        versions = self.feeds.get(target)
        if versions is not None:
            etag, body = versions[max(g for g in versions if g <= self.generation)]
            if if_none_match == etag:
                self.counts["feed_304"] += 1
                return b"HTTP/1.1 304 Not Modified\r\nETag: " + etag + b"\r\n\r\n"
            self.counts["feed_200"] += 1
            self.counts["bytes"] += len(body)
            return (
                b"HTTP/1.1 200 OK\r\nContent-Type: "
                + corpus.CONTENT_TYPE.encode()
                + b"\r\nETag: "
                + etag
                + b"\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
        if target.startswith(b"/_bench/"):
            return self.control(target.decode())
        if target == b"/robots.txt":
            self.counts["robots_txt"] += 1
        elif target == b"/.well-known/tdmrep.json":
            self.counts["tdmrep_json"] += 1
        else:
            self.counts["other"] += 1
        return (
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: "
            + str(len(NOT_FOUND)).encode()
            + b"\r\n\r\n"
            + NOT_FOUND
        )

    def control(self, target: str) -> bytes:
        if target.startswith("/_bench/generation/"):
            self.generation = int(target.rsplit("/", 1)[1])
        elif target == "/_bench/reset":
            self.counts.clear()
            self.cpu_at_reset = time.process_time()
        elif target == "/_bench/counts":
            self.counts["connections"] -= 1  # this request's own
        cpu = time.process_time() - self.cpu_at_reset
        body = json.dumps(
            {**self.counts, "cpu_seconds": cpu, "generation": self.generation}
        ).encode()
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )


class Connection(asyncio.Protocol):
    """Requests without bodies (GET), answered in order; keep-alive unless asked to close."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher
        self.buffer = b""
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # uvloop's is not an asyncio.Transport subclass
        self.publisher.counts["connections"] += 1

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            lines = head.split(b"\r\n")
            target = lines[0].split(b" ")[1].split(b"?", 1)[0]
            if_none_match = None
            close = False
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"if-none-match":
                    if_none_match = value.strip()
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            self.transport.write(self.publisher.answer(target, if_none_match))
            if close:
                self.transport.close()
                return


def render(feeds: int, ports: int, base_port: int, shard: int, shards: int) -> Publisher:
    mine = [i for i in range(feeds) if (i % ports) % shards == shard]
    rendered: dict[bytes, dict[int, tuple[bytes, bytes]]] = {}
    for i in mine:
        rendered[corpus.feed_path(i).encode()] = {
            generation: (
                corpus.etag(i, generation).encode(),
                corpus.feed_xml(i, generation, base_port=base_port, ports=ports),
            )
            for generation in corpus.generations_of(i)
        }
    return Publisher(rendered)


async def serve(publisher: Publisher, ports: list[int]) -> None:
    loop = asyncio.get_running_loop()
    for port in ports:
        await loop.create_server(
            lambda: Connection(publisher), "127.0.0.1", port, reuse_address=True, backlog=1024
        )
    print("ready", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, required=True)
    parser.add_argument("--ports", type=int, required=True)
    parser.add_argument("--base-port", type=int, required=True)
    parser.add_argument("--shard", type=int, default=0)
    parser.add_argument("--shards", type=int, default=1)
    args = parser.parse_args()
    started = time.perf_counter()
    publisher = render(args.feeds, args.ports, args.base_port, args.shard, args.shards)
    print(
        f"shard {args.shard}: {len(publisher.feeds)} feeds rendered in "
        f"{time.perf_counter() - started:.0f} s",
        file=sys.stderr,
        flush=True,
    )
    ports = [args.base_port + p for p in range(args.ports) if p % args.shards == args.shard]
    uvloop.run(serve(publisher, ports))


if __name__ == "__main__":
    main()
