"""Read benchmarks: `GET /v1/articles/{id}` throughput as two ratios measured side by side,
and list/search latency (first page, a page 50,000 articles deep, `q`).

    python -m bench.reads --engine both

Throughput: one byline server (the production app plus the bench-only ceiling routes,
bench/ceiling_app.py) and one Datasette server on the same SQLite file, both pinned to core 0;
`wrk` on core 1 (one thread, 32 connections) requests random ids over the whole table. Each
round runs every target once, in a rotating order; ratios are taken per round and the median
round is reported. Latency: `wrk` with one connection, so that a request's latency is its
service time, never time spent queueing behind another request.
"""

import argparse
import http.client
import json
import os
import statistics
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
from sqlalchemy import func, make_url, select

from app.articles.cursor import Position, encode_cursor
from app.articles.service import A
from app.db import create_db_engine
from app.migrate import current_revision, head_revision
from bench import corpus
from bench.servers import CLIENT_CPU, byline_reads_server, datasette_server, log, serving
from bench.targets import (
    ENGINES,
    OUT_DIR,
    bench_rows,
    database_url,
    loaded_marker,
    sqlite_path,
)
from bench.wrk import WrkResult, run_wrk, write_paths

BYLINE_PORT = 8001
DATASETTE_PORT = 8002
THROUGHPUT_CONNECTIONS = 32
DEEP = 50_000
SEARCH_QUERIES = 200


def _byline(path: str) -> str:
    return f"http://127.0.0.1:{BYLINE_PORT}{path}"


def _targets(rows: int) -> dict[str, tuple[str, list[str]]]:
    """name -> (base URL, random_id.lua arguments)."""
    datasette_db = sqlite_path(rows).stem
    return {
        "byline": (_byline(""), ["/v1/articles/", str(rows)]),
        "ceiling": (_byline(""), ["/bench/ceiling/", str(rows)]),
        "ceiling_bytes": (_byline(""), ["/bench/ceiling-bytes/", str(rows)]),
        # Datasette's row page (every column, body_text too) and the canned query `article`
        # (byline's columns): ratio (b) is taken against the faster of the two.
        "datasette_row": (
            f"http://127.0.0.1:{DATASETTE_PORT}",
            [f"/{datasette_db}/articles/", str(rows), ".json?_shape=object"],
        ),
        "datasette_query": (
            f"http://127.0.0.1:{DATASETTE_PORT}",
            [f"/{datasette_db}/article.json?_shape=array&id=", str(rows)],
        ),
    }


def throughput(
    rows: int, rounds: int, seconds: int, pids: dict[str, Callable[[], list[int]]]
) -> dict[str, Any]:
    targets = _targets(rows)
    names = list(targets)
    for name in names:  # warm the page cache and the servers
        base, args = targets[name]
        run_wrk(f"warm-up {name}", base, "random_id.lua", args, connections=8, seconds=5)
    results: dict[str, list[WrkResult]] = {name: [] for name in names}
    for round_ in range(rounds):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            base, args = targets[name]
            results[name].append(
                run_wrk(
                    name,
                    base,
                    "random_id.lua",
                    args,
                    connections=THROUGHPUT_CONNECTIONS,
                    seconds=seconds,
                    server_pids=pids["datasette" if name.startswith("datasette") else "byline"],
                )
            )
    per_round = [
        {
            "vs_ceiling": results["byline"][r].requests_per_second
            / results["ceiling"][r].requests_per_second,
            "vs_ceiling_bytes": results["byline"][r].requests_per_second
            / results["ceiling_bytes"][r].requests_per_second,
            "vs_datasette": results["byline"][r].requests_per_second
            / max(
                results["datasette_row"][r].requests_per_second,
                results["datasette_query"][r].requests_per_second,
            ),
            "cpu_vs_ceiling": _cpu(results["ceiling"][r]) / _cpu(results["byline"][r]),
            "cpu_vs_ceiling_bytes": _cpu(results["ceiling_bytes"][r]) / _cpu(results["byline"][r]),
            "cpu_vs_datasette": min(
                _cpu(results["datasette_row"][r]), _cpu(results["datasette_query"][r])
            )
            / _cpu(results["byline"][r]),
        }
        for r in range(rounds)
    ]
    return {
        "req_per_s": {
            name: statistics.median(r.requests_per_second for r in runs)
            for name, runs in results.items()
        },
        "cpu_us_per_request": {
            name: statistics.median(_cpu(r) for r in runs) for name, runs in results.items()
        },
        "p99_ms": {
            name: statistics.median(r.p99_ms for r in runs) for name, runs in results.items()
        },
        "ratios": {
            key: statistics.median(round_[key] for round_ in per_round) for key in per_round[0]
        },
        "rounds": per_round,
        "runs": {name: [r.as_dict() for r in runs] for name, runs in results.items()},
    }


def _cpu(result: WrkResult) -> float:
    return result.cpu_us_per_request or float("nan")


def _postgres_backends(url: str) -> Callable[[], list[int]]:
    """Pids of the server processes serving the benchmark database (their CPU counts too)."""

    def pids() -> list[int]:
        with psycopg.connect(
            make_url(url).set(drivername="postgresql").render_as_string(False)
        ) as c:
            rows = c.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid()"
            ).fetchall()
        return [row[0] for row in rows]

    return pids


def database_files(engine_name: str, rows: int, *, toast: bool = True) -> list[Path]:
    """The files holding one engine's benchmark database; on PostgreSQL without its TOAST
    tables if `toast` is false."""
    if engine_name == "sqlite":
        paths = [sqlite_path(rows), Path(f"{sqlite_path(rows)}-wal")]
        return [path for path in paths if path.exists()]
    # The relations' files, straight from the data directory (this machine's server):
    # pg_prewarm would need CREATE EXTENSION, a write into a database others copy.
    dsn = make_url(database_url(engine_name, rows)).set(drivername="postgresql")
    with psycopg.connect(dsn.render_as_string(False), autocommit=True) as connection:
        data_dir = Path(connection.execute("SHOW data_directory").fetchone()[0])  # type: ignore[index]
        relations = [
            row[0]
            for row in connection.execute(
                "SELECT pg_relation_filepath(c.oid) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'i', 't')"
                " AND pg_relation_filepath(c.oid) IS NOT NULL",
                [["public", "pg_toast"] if toast else ["public"]],
            )
        ]
    files = []
    for relative in relations:
        first = data_dir / relative
        segments = first.parent.glob(first.name + ".*")  # 1 GB segments: <file>.1, <file>.2
        files += [first, *(path for path in segments if path.suffix[1:].isdigit())]
    return files


def prewarm(engine_name: str, rows: int) -> None:
    """Read the database in, so that random ids over a million articles measure the
    code, not the disk. The machine has the memory to cache either database, not both (at 1M:
    SQLite 15.8 GB, PostgreSQL 17 GB; this VM's page cache tops out near 16-20 GB). So the
    SQLite run first drops PostgreSQL's files from the page cache: no server of that run reads
    them, and left there they take the room the SQLite file needs. (The PostgreSQL run keeps
    the SQLite file: Datasette, its peer, serves from it.)"""
    started = time.perf_counter()
    if engine_name == "sqlite" and loaded_marker("postgres", rows).exists():
        for path in database_files("postgres", rows):
            with path.open("rb") as file:
                os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    # SQLite's file twice: a page read once is on the kernel's inactive list, the first to be
    # evicted. PostgreSQL's relations once, and not its TOAST tables: since 0009 they hold
    # only body_text (4.3 GB at 1M), which no benchmarked read touches, and reading it in
    # evicted part of what the reads do touch.
    for _ in range(2 if engine_name == "sqlite" else 1):
        for path in database_files(engine_name, rows, toast=False):
            with path.open("rb", buffering=0) as file:
                while file.read(16 << 20):
                    pass
    log(
        f"{engine_name}: database read into the page cache in {time.perf_counter() - started:.0f} s"
    )


def require_head(url: str) -> None:
    """Refuse a database that is not at the app's newest revision, rather than migrate it: the
    loaded databases are shared (copied for other benchmarks) and never written to."""
    engine = create_db_engine(url)
    try:
        current, head = current_revision(engine), head_revision()
    finally:
        engine.dispose()
    if current != head:
        raise SystemExit(
            f"{url}: schema at {current}, the app is at {head}; reload with"
            " `python -m bench.generate --reload` (the benchmarks never migrate loaded data)"
        )


def _deep_cursor(url: str) -> str:
    """The cursor a client holds after paging through DEEP articles (newest first)."""
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            row = connection.execute(
                select(A.c.published_at, A.c.id)
                .where(A.c.removed_at.is_(None))
                .order_by(A.c.published_at.desc(), A.c.id.desc())
                .offset(DEEP - 1)
                .limit(1)
            ).one()
            live = connection.scalar(select(func.count()).select_from(A))
    finally:
        engine.dispose()
    assert live and live > DEEP, "the corpus is too small for a page 50,000 deep"
    published_at: datetime = row.published_at
    return encode_cursor(Position(published_at, row.id))


def latency(url: str, engine_name: str, rounds: int, seconds: int) -> dict[str, Any]:
    lists = {
        "first_page": write_paths(OUT_DIR / "paths-first.txt", ["/v1/articles"]),
        "deep_page": write_paths(
            OUT_DIR / f"paths-deep-{engine_name}.txt",
            ["/v1/articles?" + urlencode({"cursor": _deep_cursor(url)})],
        ),
    }
    base = _byline("")
    for name, paths in lists.items():
        run_wrk(f"warm-up {name}", base, "paths.lua", [str(paths)], connections=1, seconds=3)
    runs: dict[str, list[WrkResult]] = {name: [] for name in lists}
    for _ in range(rounds):
        for name, paths in lists.items():
            runs[name].append(
                run_wrk(name, base, "paths.lua", [str(paths)], connections=1, seconds=seconds)
            )
    search = search_latency(corpus.search_terms(SEARCH_QUERIES))
    figures = {
        name: {
            "p50_ms": statistics.median(r.p50_ms for r in results),
            "p99_ms": statistics.median(r.p99_ms for r in results),
        }
        for name, results in runs.items()
    }
    return {
        **figures,
        "search": search,
        "deep_vs_first_p50": figures["deep_page"]["p50_ms"] / figures["first_page"]["p50_ms"],
        "runs": {name: [r.as_dict() for r in results] for name, results in runs.items()},
    }


def search_latency(queries: list[str]) -> dict[str, Any]:
    """Every query of the set once, one at a time, from the client core. (wrk cycling through
    the list for a fixed time would measure the first few queries only, when some are slow.)"""
    os.sched_setaffinity(0, {int(CLIENT_CPU)})
    times: dict[str, float] = {}
    connection = http.client.HTTPConnection("127.0.0.1", BYLINE_PORT, timeout=300)
    try:
        for q in queries:
            path = "/v1/articles?" + urlencode({"q": q})
            started = time.perf_counter()
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            times[q] = (time.perf_counter() - started) * 1000
            if response.status != 200:
                raise RuntimeError(f"search {q!r} answered {response.status}")
    finally:
        connection.close()
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    cuts = statistics.quantiles(times.values(), n=100, method="inclusive")
    result = {
        "p50_ms": statistics.median(times.values()),
        "p90_ms": cuts[89],
        "p99_ms": cuts[98],
        "max_ms": max(times.values()),
        "queries": len(times),
        "ms_by_query": times,
    }
    log(
        f"search: {len(times)} queries, p50 {result['p50_ms']:.1f} ms, p90 {cuts[89]:.1f} ms,"
        f" p99 {cuts[98]:.1f} ms, max {result['max_ms']:.0f} ms"
    )
    return result


def bench_engine(
    engine_name: str, rows: int, rounds: int, seconds: int, parts: set[str]
) -> dict[str, Any]:
    url = database_url(engine_name, rows)
    require_head(url)
    command, env = byline_reads_server(url, BYLINE_PORT)
    with (
        serving(
            f"byline-reads-{engine_name}",
            command,
            env=env,
            ready_url=_byline("/v1/articles/1"),
        ) as byline,
        serving(
            "datasette",
            datasette_server(sqlite_path(rows), DATASETTE_PORT),
            ready_url=f"http://127.0.0.1:{DATASETTE_PORT}/-/versions.json",
        ) as datasette,
    ):
        backends = _postgres_backends(url) if engine_name == "postgres" else list
        pids = {
            "byline": lambda: [byline.pid, *backends()],
            "datasette": lambda: [datasette.pid],
        }
        result: dict[str, Any] = {}
        prewarm(engine_name, rows)
        if "throughput" in parts:
            log(f"{engine_name}: throughput, {rows:,} articles")
            result["throughput"] = throughput(rows, rounds, seconds, pids)
        if "latency" in parts:
            log(f"{engine_name}: list and search latency")
            result["latency"] = latency(url, engine_name, rounds, seconds)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=bench_rows())
    parser.add_argument("--engine", choices=[*ENGINES, "both"], default="both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--part", choices=["throughput", "latency", "all"], default="all")
    args = parser.parse_args()
    parts = {"throughput", "latency"} if args.part == "all" else {args.part}
    OUT_DIR.mkdir(exist_ok=True)
    for engine_name in ENGINES if args.engine == "both" else (args.engine,):
        result = bench_engine(engine_name, args.rows, args.rounds, args.seconds, parts)
        result["rows"] = args.rows
        out = OUT_DIR / f"reads-{engine_name}-{args.rows}.json"
        if parts != {"throughput", "latency"} and out.exists():
            result = {**json.loads(out.read_text()), **result}  # keep the other part's figures
        out.write_text(json.dumps(result, indent=2))
        print(f"{engine_name} ({args.rows:,} articles): {summary(result)} -> {out}")


def summary(result: dict[str, Any]) -> str:
    parts = []
    if "throughput" in result:
        rates, ratios = result["throughput"]["req_per_s"], result["throughput"]["ratios"]
        parts.append(
            f"byline {rates['byline']:,.0f} req/s, ceiling {rates['ceiling']:,.0f},"
            f" ceiling-bytes {rates['ceiling_bytes']:,.0f}, datasette row"
            f" {rates['datasette_row']:,.0f}, datasette query {rates['datasette_query']:,.0f};"
            f" (a) {ratios['vs_ceiling']:.2f} (pre-encoded: {ratios['vs_ceiling_bytes']:.2f}),"
            f" (b) {ratios['vs_datasette']:.2f}x"
            f" [by CPU/request: (a) {ratios['cpu_vs_ceiling']:.2f}"
            f" (pre-encoded: {ratios['cpu_vs_ceiling_bytes']:.2f}),"
            f" (b) {ratios['cpu_vs_datasette']:.2f}x]"
        )
    if "latency" in result:
        lat = result["latency"]
        first, deep, search = lat["first_page"], lat["deep_page"], lat["search"]
        parts.append(
            f"first page p50/p99 {first['p50_ms']:.2f}/{first['p99_ms']:.2f} ms,"
            f" deep {deep['p50_ms']:.2f}/{deep['p99_ms']:.2f} ms"
            f" ({lat['deep_vs_first_p50']:.2f}x), search {search['p50_ms']:.1f}/"
            f"{search['p99_ms']:.1f} ms"
        )
    return "; ".join(parts)


if __name__ == "__main__":
    main()
