"""Removal throughput and filing-to-451 latency on the 1M-article benchmark databases.

    python -m bench.removals                      # both engines, 100,000 removals
    python -m bench.removals --engine postgres --workers 1,2,4 --count 100000

For each engine, on a *copy* of the benchmark database (the originals are never written):

1. drain: 100,000 removals queued as verified claimants' filings leave them (requests of up
   to 20 articles of one publisher, due now; bench/removals_queue.py), then drained by
   1, 2 and 4 `byline worker` processes on PostgreSQL (a fresh copy for each), and by
   `byline serve`'s embedded scheduler on SQLite. Default settings (batch 50, interval 5 s).
   Afterwards: every row done, one `removed` audit row per article, every article removed,
   every request completed once.
2. latency: against `byline serve` with its embedded scheduler at the default interval,
   verified filings of one article each (8 claimants at a time, at random moments); the
   time from sending the filing until the article's URL answers 451, polled every 20 ms.

Timed parts hold /tmp/byline-bench.lock (flock), as every benchmark here does. Results go to
bench/out/removals.json and a Markdown table to stdout."""

import argparse
import fcntl
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine, make_url, text

from app.auth import Scope, create_api_key
from app.db import create_db_engine, new_session, writer
from bench.removals_queue import queue_verified_takedowns
from bench.servers import REPO, log, serving
from bench.targets import (
    DATA_DIR,
    OUT_DIR,
    POSTGRES_SERVER_URL,
    bench_rows,
    loaded_marker,
    postgres_admin_dsn,
    postgres_database,
    sqlite_path,
)

LOCK = Path("/tmp/byline-bench.lock")
BYLINE = REPO / ".venv" / "bin" / "byline"
PG_BASE = "byline_removals_base"
PG_RUN = "byline_removals_run"
SQLITE_RUN = DATA_DIR / "removals-run.db"
PORT = 8451
DRAIN_TIMEOUT = 3600.0


@contextmanager
def bench_lock() -> Iterator[None]:
    """The lock every timed benchmark (and the test that restarts PostgreSQL) takes."""
    with LOCK.open("a") as handle:
        started = time.monotonic()
        fcntl.flock(handle, fcntl.LOCK_EX)
        waited = time.monotonic() - started
        if waited > 1:
            log(f"waited {waited:.0f} s for {LOCK}")
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def wait_for_source(engine_name: str, rows: int, wait: bool) -> None:
    marker = loaded_marker(engine_name, rows)
    while not marker.exists():
        if not wait:
            raise SystemExit(f"{marker} is missing: run `make bench-data` first (or --wait)")
        log(f"waiting for {marker.name}")
        time.sleep(30)


# Copies -------------------------------------------------------------------------------------


def _pg_admin() -> psycopg.Connection[Any]:
    return psycopg.connect(postgres_admin_dsn(), autocommit=True)


def pg_clone(source: str, target: str, timeout: float = 1800) -> None:
    """CREATE DATABASE target TEMPLATE source, retried while others use the source (the
    template must have no other connection)."""
    deadline = time.monotonic() + timeout
    with _pg_admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
        while True:
            try:
                # FILE_COPY: a checkpoint and a copy of the files; the default (WAL_LOG)
                # would write the whole multi-GB database through the WAL.
                admin.execute(
                    f'CREATE DATABASE "{target}" TEMPLATE "{source}" STRATEGY = FILE_COPY'
                )
                return
            except (psycopg.errors.ObjectInUse, psycopg.OperationalError) as exc:
                if time.monotonic() > deadline:
                    raise
                log(f"copy of {source} waits: {str(exc).splitlines()[0]}")
                time.sleep(5)


def pg_drop(name: str) -> None:
    with _pg_admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_url(name: str) -> str:
    url = make_url(POSTGRES_SERVER_URL).set(database=name)
    return url.render_as_string(hide_password=False)


def sqlite_copy(source: Path, target: Path) -> None:
    """A consistent copy through SQLite's backup API; the source is opened read-only."""
    sqlite_drop(target)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst, pages=65_536)
    finally:
        dst.close()
        src.close()


def sqlite_drop(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


# Drain --------------------------------------------------------------------------------------


@dataclass
class Drain:
    engine: str
    runners: str
    removals: int
    wall_seconds: float  # from starting the processes until the last row was done
    drain_seconds: float  # first row finished .. last row finished
    rows_per_second: float
    statuses: dict[str, int]
    duplicate_removals: int
    articles_left: int
    takedowns_not_completed: int


def prepare_queue(url: str, count: int, per_takedown: int) -> str:
    """Queue the run's removals; the claimant name that tells its requests apart."""
    engine = create_db_engine(url)
    claimant = f"Rights Desk {time.time_ns()}"
    try:
        started = time.perf_counter()
        takedowns, _ = queue_verified_takedowns(
            engine,
            count=count,
            per_takedown=per_takedown,
            now=datetime.now(UTC),
            claimant=claimant,
        )
        if engine.dialect.name == "postgresql":
            # What autovacuum does soon after a day's filings: statistics for the planner.
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                for table in ("removal_jobs", "takedowns", "takedown_targets", "audit_events"):
                    c.exec_driver_sql(f"VACUUM (ANALYZE) {table}")
        log(
            f"queued {count:,} removals in {len(takedowns):,} requests "
            f"({time.perf_counter() - started:.0f} s)"
        )
    finally:
        engine.dispose()
    return claimant


def open_rows(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                text("SELECT count(*) FROM removal_jobs WHERE status IN ('queued', 'running')")
            ).scalar_one()
        )


def verify(engine: Engine, claimant: str) -> dict[str, Any]:
    """What the database says happened to the run's requests: statuses, doubled removals
    (in the whole audit log), survivors."""
    run = {"claimant": claimant}
    of_run = " JOIN takedowns t ON t.id = j.takedown_id AND t.claimant_name = :claimant"
    with engine.connect() as connection:
        statuses: dict[str, int] = dict(
            connection.execute(
                text(f"SELECT j.status, count(*) FROM removal_jobs j{of_run} GROUP BY j.status"),
                run,
            ).all()
        )
        duplicates = connection.execute(
            text(
                "SELECT count(*) FROM (SELECT article_id FROM audit_events WHERE action ="
                " 'removed' GROUP BY article_id HAVING count(*) > 1) AS doubled"
            )
        ).scalar_one()
        left = connection.execute(
            text(
                f"SELECT count(*) FROM removal_jobs j{of_run} JOIN articles a"
                " ON a.id = j.article_id WHERE a.removed_at IS NULL"
            ),
            run,
        ).scalar_one()
        not_completed = connection.execute(
            text(
                "SELECT count(*) FROM takedowns t WHERE t.claimant_name = :claimant AND"
                " (t.status <> 'completed' OR (SELECT count(*) FROM audit_events e WHERE"
                " e.takedown_id = t.id AND e.action = 'completed') <> 1)"
            ),
            run,
        ).scalar_one()
        first, last = connection.execute(
            text(f"SELECT min(j.finished_at), max(j.finished_at) FROM removal_jobs j{of_run}"),
            run,
        ).one()
    if isinstance(first, str):  # SQLite
        first, last = datetime.fromisoformat(first), datetime.fromisoformat(last)
    return {
        "statuses": statuses,
        "duplicate_removals": int(duplicates),
        "articles_left": int(left),
        "takedowns_not_completed": int(not_completed),
        "drain_seconds": (last - first).total_seconds(),
    }


def runner_env(url: str) -> dict[str, str]:
    return {
        **os.environ,
        "BYLINE_DATABASE_URL": url,
        "BYLINE_LOG_LEVEL": "INFO",
        "BYLINE_PUBLIC_BASE_URL": "https://news.example",
        "BYLINE_SCHEDULER": "embedded",
        # Latency filings come from one address and several claimants, far above the limits.
        "BYLINE_TAKEDOWN_RATE_PER_ADDRESS": "1000000/hour",
        "BYLINE_TAKEDOWN_RATE_PER_EMAIL": "1000000/hour",
    }


def drain(url: str, engine_name: str, workers: int, count: int, claimant: str) -> Drain:
    """Start the runners, wait until no row is open, stop them, check the outcome."""
    engine = create_db_engine(url)
    OUT_DIR.mkdir(exist_ok=True)
    label = f"{workers} worker{'s' if workers > 1 else ''}" if workers else "embedded"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        started = time.monotonic()
        for index in range(max(workers, 1)):
            command = [str(BYLINE), "worker"] if workers else [str(BYLINE), "serve"]
            if not workers:
                command += ["--no-migrate", "--port", str(PORT)]
            log_path = OUT_DIR / f"removals-{engine_name}-{workers}-{index}.log"
            with log_path.open("wb") as output:
                processes.append(
                    subprocess.Popen(
                        command,
                        cwd=REPO,
                        env=runner_env(url),
                        stdout=output,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        remaining = count
        while remaining:
            time.sleep(0.5)
            if time.monotonic() - started > DRAIN_TIMEOUT:
                raise RuntimeError(f"{label}: {remaining:,} rows open after {DRAIN_TIMEOUT} s")
            for process in processes:
                if process.poll() is not None:
                    raise RuntimeError(f"{label}: a runner exited ({process.returncode})")
            remaining = open_rows(engine)
        wall = time.monotonic() - started
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM if workers else signal.SIGINT)
        for process in processes:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    checked = verify(engine, claimant)
    engine.dispose()
    result = Drain(
        engine=engine_name,
        runners=label,
        removals=count,
        wall_seconds=round(wall, 1),
        drain_seconds=round(checked["drain_seconds"], 1),
        rows_per_second=round(count / checked["drain_seconds"], 1),
        statuses=checked["statuses"],
        duplicate_removals=checked["duplicate_removals"],
        articles_left=checked["articles_left"],
        takedowns_not_completed=checked["takedowns_not_completed"],
    )
    log(f"drain {engine_name} {label}: {result}")
    if (
        result.statuses != {"done": count}
        or result.duplicate_removals
        or result.articles_left
        or result.takedowns_not_completed
    ):
        raise RuntimeError(f"drain {engine_name} {label} is wrong: {result}")
    return result


# Latency ------------------------------------------------------------------------------------


@dataclass
class Latency:
    engine: str
    filings: int
    interval_seconds: float
    p50_seconds: float
    p99_seconds: float
    max_seconds: float


def ingest_key(url: str) -> str:
    """An ingest key in the copy, for the latency run's own articles."""
    engine = create_db_engine(url)
    try:
        if engine.dialect.name == "postgresql":
            # bench/generate.py loads publishers with explicit ids and leaves their sequence
            # at 1, so the first new publisher would collide (fixed here, in the copy).
            with engine.begin() as connection:
                connection.exec_driver_sql(
                    "SELECT setval(pg_get_serial_sequence('publishers', 'id'), max(id))"
                    " FROM publishers"
                )
        with new_session(writer(engine)) as session, session.begin():
            _, secret = create_api_key(
                session=session, name="bench-removals", scope=Scope.ingest, now=datetime.now(UTC)
            )
    finally:
        engine.dispose()
    return secret


def ingest_latency_articles(base: str, key: str, count: int) -> list[tuple[int, str]]:
    """`count` new articles, each from its own publisher on a real public suffix (policy
    verifies a claimant against the Public Suffix List, and the corpus's `.example` hosts
    have no registrable domain): (id, host) pairs."""
    run = int(time.time())
    items = [
        {
            "title": f"Latency probe {n}",
            "body_html": f"<p>Probe article {n} for the filing-to-451 benchmark.</p>",
            "source_url": f"https://www.probe{run}-{n}.com/2026/11/27/probe-{n}",
            "publisher": {"name": f"Probe {run}-{n}", "url": f"https://www.probe{run}-{n}.com"},
            "published_at": "2026-11-27T08:00:00Z",
        }
        for n in range(count)
    ]
    request = urllib.request.Request(
        f"{base}/v1/articles/batch",
        data=json.dumps({"items": items}).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        answered = json.load(response)["items"]
    if any(item["status"] != "created" for item in answered):
        raise RuntimeError(f"ingest of the latency articles failed: {answered[:3]}")
    return [(item["id"], f"probe{run}-{n}.com") for n, item in enumerate(answered)]


def _request(method: str, url: str, body: dict[str, Any] | None = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.read()
        return int(error.code)


def file_and_wait(base: str, article_id: int, domain: str, rng: random.Random) -> float:
    """File a verified claimant's request for one article; seconds until its URL is 451."""
    time.sleep(rng.uniform(0, 5.0))  # filings arrive at random moments of the interval
    filing = {
        "claimant": {"name": "Rights Desk", "email": f"rights@{domain}", "role": "owner"},
        "reason": "copyright",
        "targets": [article_id],
        "explanation": "Republished without a licence.",
        "good_faith": True,
        "accurate": True,
        "signature": "Rights Desk",
    }
    started = time.perf_counter()
    status = _request("POST", f"{base}/v1/takedowns", filing)
    if status != 202:
        raise RuntimeError(f"filing for article {article_id} answered {status}")
    while True:
        status = _request("GET", f"{base}/v1/articles/{article_id}")
        if status == 451:
            return time.perf_counter() - started
        if status != 200:
            raise RuntimeError(f"article {article_id} answered {status}")
        if time.perf_counter() - started > 120:
            raise RuntimeError(f"article {article_id} not removed within 120 s")
        time.sleep(0.02)


def latency(url: str, engine_name: str, filings: int) -> Latency:
    key = ingest_key(url)
    base = f"http://127.0.0.1:{PORT}"
    env = runner_env(url)
    command: list[str | Path] = [BYLINE, "serve", "--no-migrate", "--port", str(PORT)]
    with serving(f"removals-latency-{engine_name}", command, ready_url=f"{base}/healthz", env=env):
        articles = ingest_latency_articles(base, key, filings)
        rngs = [random.Random(i) for i in range(len(articles))]
        with ThreadPoolExecutor(8) as pool:
            seconds = sorted(
                pool.map(
                    lambda a: file_and_wait(base, a[1][0], a[1][1], rngs[a[0]]),
                    enumerate(articles),
                )
            )
    result = Latency(
        engine=engine_name,
        filings=len(seconds),
        interval_seconds=5.0,
        p50_seconds=round(statistics.median(seconds), 2),
        p99_seconds=round(seconds[max(0, int(len(seconds) * 0.99) - 1)], 2),
        max_seconds=round(seconds[-1], 2),
    )
    log(f"latency {engine_name}: {result}")
    return result


# Main ---------------------------------------------------------------------------------------


@dataclass
class Results:
    """Everything measured so far, saved after each measurement (a long run that is cut
    short keeps what it measured)."""

    rows: int
    drains: list[Drain]
    latencies: list[Latency]

    def add(self, measured: Drain | Latency) -> None:
        if isinstance(measured, Drain):
            self.drains.append(measured)
        else:
            self.latencies.append(measured)
        OUT_DIR.mkdir(exist_ok=True)
        saved = {
            "rows": self.rows,
            "machine": f"{os.cpu_count()} cores",
            "drains": [asdict(d) for d in self.drains],
            "latencies": [asdict(x) for x in self.latencies],
        }
        (OUT_DIR / "removals.json").write_text(json.dumps(saved, indent=2) + "\n")
        (OUT_DIR / "removals.md").write_text(markdown(self.drains, self.latencies) + "\n")


def run_postgres(
    source: str,
    workers: list[int],
    count: int,
    per_takedown: int,
    filings: int,
    results: Results,
    *,
    one_copy: bool,
) -> None:
    # Each worker count gets a fresh copy of one base copy; with `one_copy`, the runs share
    # one copy and each removes 100,000 other articles (quicker: copies take minutes).
    base = source if one_copy else PG_BASE
    if not one_copy:
        log(f"copying {source} to {PG_BASE}")
        pg_clone(source, PG_BASE)
    try:
        for index, n in enumerate(workers):
            if index == 0 or not one_copy:
                log(f"copying {base} to {PG_RUN}")
                pg_clone(base, PG_RUN)
            claimant = prepare_queue(pg_url(PG_RUN), count, per_takedown)
            with bench_lock():
                results.add(drain(pg_url(PG_RUN), "postgres", n, count, claimant))
                if filings and index == len(workers) - 1:
                    results.add(latency(pg_url(PG_RUN), "postgres", filings))
            if not one_copy:
                pg_drop(PG_RUN)
    finally:
        pg_drop(PG_RUN)
        if not one_copy:
            pg_drop(PG_BASE)


def run_sqlite(source: Path, count: int, per_takedown: int, filings: int, results: Results) -> None:
    log(f"copying {source} to {SQLITE_RUN.name}")
    sqlite_copy(source, SQLITE_RUN)
    url = f"sqlite:///{SQLITE_RUN}"
    try:
        claimant = prepare_queue(url, count, per_takedown)
        with bench_lock():
            results.add(drain(url, "sqlite", 0, count, claimant))
            if filings:
                results.add(latency(url, "sqlite", filings))
    finally:
        sqlite_drop(SQLITE_RUN)


def markdown(drains: list[Drain], latencies: list[Latency]) -> str:
    lines = [
        "| engine | runners | removals | drain (first to last row) | rows/s "
        "| wall incl. start-up |",
        "|---|---|---|---|---|---|",
    ]
    for d in drains:
        lines.append(
            f"| {d.engine} | {d.runners} | {d.removals:,} | {d.drain_seconds:.0f} s "
            f"| {d.rows_per_second:,.0f} | {d.wall_seconds:.0f} s |"
        )
    if latencies:
        lines += [
            "",
            "| engine | filings | interval | p50 | p99 | max |",
            "|---|---|---|---|---|---|",
        ]
        for x in latencies:
            lines.append(
                f"| {x.engine} | {x.filings} | {x.interval_seconds:.0f} s | {x.p50_seconds:.2f} s"
                f" | {x.p99_seconds:.2f} s | {x.max_seconds:.2f} s |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--workers", default="1,2,4", help="PostgreSQL worker processes")
    parser.add_argument("--per-takedown", type=int, default=20)
    parser.add_argument("--filings", type=int, default=100, help="0: no latency run")
    parser.add_argument("--wait", action="store_true", help="wait for `make bench-data`")
    parser.add_argument(
        "--one-copy",
        action="store_true",
        help="PostgreSQL: one copy for all worker counts, each run removing other articles",
    )
    parser.add_argument("--source-postgres", help="another source database (trial runs)")
    parser.add_argument("--source-sqlite", type=Path, help="another source file (trial runs)")
    args = parser.parse_args()
    rows = bench_rows()
    results = Results(rows=rows, drains=[], latencies=[])
    engines = ["sqlite", "postgres"] if args.engine == "both" else [args.engine]
    for name in engines:
        if name == "postgres":
            source = args.source_postgres or postgres_database(rows)
            if not args.source_postgres:
                wait_for_source(name, rows, args.wait)
            log(f"{name}: source database {source}")
            workers = [int(n) for n in args.workers.split(",")]
            run_postgres(
                source,
                workers,
                args.count,
                args.per_takedown,
                args.filings,
                results,
                one_copy=args.one_copy,
            )
        else:
            path = args.source_sqlite or sqlite_path(rows)
            if not args.source_sqlite:
                wait_for_source(name, rows, args.wait)
            log(f"{name}: source file {path}")
            run_sqlite(path, args.count, args.per_takedown, args.filings, results)
    print(markdown(results.drains, results.latencies))


if __name__ == "__main__":
    main()
