"""Removal throughput and confirm-to-451 latency on the benchmark databases.

    python -m bench.removals                      # both engines, 100,000 removals
    python -m bench.removals --engine postgres --workers 1,2,4 --count 100000
    BENCH_ROWS=100000 python -m bench.removals --count 20000 --workers 1,4 --one-copy

For each engine, on a *copy* of the benchmark database (the originals are never written):

1. drain: 100,000 removals queued as confirmed, proven claimants leave them (requests of
   up to 20 articles of one publisher, confirmed by a mailbox at its domain, due now;
   bench/removals_queue.py), then drained by 1, 2 and 4 `byline worker` processes on
   PostgreSQL (a fresh copy for each), and by `byline serve`'s embedded scheduler on SQLite.
   Default settings (batch 50, interval 5 s); the completion e-mails go to a temporary mail
   directory. Afterwards: every row done, one `removed` audit row per article, every
   article removed (with its tombstone), every request completed once.
2. latency: against `byline serve` with its embedded scheduler (default interval 5 s) and
   BYLINE_MAIL_DIR a temporary directory, proven claimants (rights@ the article's domain)
   file for one article each, 8 at a time, at random moments; each reads the code from the
   .eml file the notification runner writes, waits a random part of an interval (reading
   the e-mail) and confirms. Timed: confirmation sent -> the article answers 451 (polled
   every 20 ms), the headline; also filing -> e-mail and filing -> 451.

Timed parts hold /tmp/byline-bench.lock (flock), as every benchmark here does. Results go to
bench/out/removals.json and a Markdown table to stdout."""

import argparse
import fcntl
import json
import math
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import tempfile
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
from bench.mailbox import Inbox
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
    tombstones_missing: int
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
        tombstones_missing = connection.execute(
            text(
                f"SELECT count(*) FROM removal_jobs j{of_run} WHERE NOT EXISTS (SELECT 1 FROM"
                " article_tombstones s WHERE s.article_id = j.article_id AND s.takedown_id ="
                " j.takedown_id)"
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
        "tombstones_missing": int(tombstones_missing),
        "takedowns_not_completed": int(not_completed),
        "drain_seconds": (last - first).total_seconds(),
    }


def runner_env(url: str, mail_dir: Path) -> dict[str, str]:
    """A runner's environment: no SMTP, so e-mails are .eml files under `mail_dir`."""
    env = {key: value for key, value in os.environ.items() if key != "BYLINE_SMTP_URL"}
    return {
        **env,
        "BYLINE_DATABASE_URL": url,
        "BYLINE_LOG_LEVEL": "INFO",
        "BYLINE_PUBLIC_BASE_URL": "https://news.example",
        "BYLINE_SCHEDULER": "embedded",
        "BYLINE_MAIL_DIR": str(mail_dir),
        # Latency filings come from one address, far above the per-address limit.
        "BYLINE_TAKEDOWN_RATE_PER_ADDRESS": "1000000/hour",
        "BYLINE_TAKEDOWN_RATE_PER_DOMAIN": "1000000/hour",
        "BYLINE_TAKEDOWN_RATE_PER_EMAIL": "1000000/hour",
    }


def drain(url: str, engine_name: str, workers: int, count: int, claimant: str) -> Drain:
    """Start the runners, wait until no row is open, stop them, check the outcome."""
    engine = create_db_engine(url)
    OUT_DIR.mkdir(exist_ok=True)
    label = f"{workers} worker{'s' if workers > 1 else ''}" if workers else "embedded"
    processes: list[subprocess.Popen[bytes]] = []
    # The completion e-mails (one per request) are written here, and thrown away.
    mail_dir = Path(tempfile.mkdtemp(prefix=f"byline-bench-mail-{engine_name}-"))
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
                        env=runner_env(url, mail_dir),
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
        shutil.rmtree(mail_dir, ignore_errors=True)
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
        tombstones_missing=checked["tombstones_missing"],
        takedowns_not_completed=checked["takedowns_not_completed"],
    )
    log(f"drain {engine_name} {label}: {result}")
    if (
        result.statuses != {"done": count}
        or result.duplicate_removals
        or result.articles_left
        or result.tombstones_missing
        or result.takedowns_not_completed
    ):
        raise RuntimeError(f"drain {engine_name} {label} is wrong: {result}")
    return result


# Latency ------------------------------------------------------------------------------------


@dataclass
class Latency:
    """Proven claimants (a mailbox at the article's domain), one article each. The headline
    is confirm -> 451: from sending `POST /v1/takedowns/{id}/confirm` until the article
    answers 451. Filing -> e-mail is the wait for the receipt (written on the notification
    runner's tick); filing -> 451 adds to both the claimant's reading delay, drawn uniformly
    over one interval."""

    engine: str
    claimants: int
    interval_seconds: float
    confirm_p50_seconds: float
    confirm_p99_seconds: float
    confirm_max_seconds: float
    email_p50_seconds: float
    email_p99_seconds: float
    filing_p50_seconds: float
    filing_p99_seconds: float


@dataclass(frozen=True)
class ClaimantTimes:
    email_seconds: float  # filing sent -> receipt e-mail read from the mail directory
    confirm_seconds: float  # confirmation sent -> the article answers 451
    filing_seconds: float  # filing sent -> the article answers 451


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
    matches a claimant's mailbox against the Public Suffix List, and the corpus's `.example`
    hosts have no registrable domain): (id, host) pairs."""
    run = int(time.time())
    items = [
        {
            "title": f"Latency probe {n}",
            "body_html": f"<p>Probe article {n} for the confirm-to-451 benchmark.</p>",
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


def _request(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """The status and the decoded JSON answer (None when there is none)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            status = int(response.status)
    except urllib.error.HTTPError as error:
        raw = error.read()
        status = int(error.code)
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, None


def _wait_for_451(base: str, article_id: int, since: float) -> float:
    """Poll the article every 20 ms; seconds from `since` until it answers 451."""
    while True:
        status, _ = _request("GET", f"{base}/v1/articles/{article_id}")
        if status == 451:
            return time.perf_counter() - since
        if status != 200:
            raise RuntimeError(f"article {article_id} answered {status}")
        if time.perf_counter() - since > 120:
            raise RuntimeError(f"article {article_id} not removed within 120 s")
        time.sleep(0.02)


def claim_and_confirm(
    base: str, inbox: Inbox, article_id: int, domain: str, interval: float, rng: random.Random
) -> ClaimantTimes:
    """A proven claimant (rights@ the article's domain) files for one article, reads the
    code from the e-mail and confirms; the seconds of each step."""
    time.sleep(rng.uniform(0, interval))  # filings arrive at random moments of the interval
    filing = {
        "claimant": {"name": "Rights Desk", "email": f"rights@{domain}", "role": "owner"},
        "reason": "copyright",
        "targets": [article_id],
        "explanation": "Republished without a licence.",
        "good_faith": True,
        "accurate": True,
        "signature": "Rights Desk",
    }
    filed_at = time.perf_counter()
    status, answer = _request("POST", f"{base}/v1/takedowns", filing)
    if status != 202 or answer["status"] != "received" or answer["confirmation"] != "emailed":
        raise RuntimeError(f"filing for article {article_id} answered {status}: {answer}")
    email = inbox.wait_for(answer["id"], timeout=max(60.0, 10 * interval))
    if email.recipient != filing["claimant"]["email"]:  # type: ignore[index]
        raise RuntimeError(f"the code of {answer['id']} went to {email.recipient}")
    status, _ = _request("GET", f"{base}/v1/articles/{article_id}")
    if status != 200:
        raise RuntimeError(f"article {article_id} answered {status} before its confirmation")
    # The claimant opens the e-mail at some moment, not in step with the runners' ticks (the
    # notification runner that wrote it ticks beside the removal runner).
    time.sleep(rng.uniform(0, interval))
    confirmed_at = time.perf_counter()
    status, view = _request(
        "POST", f"{base}/v1/takedowns/{answer['id']}/confirm", {"code": email.code}
    )
    if status != 200 or view["status"] != "queued" or view["proof"] != "confirmed_mailbox":
        raise RuntimeError(f"confirmation of {answer['id']} answered {status}: {view}")
    if datetime.fromisoformat(view["run_at"]) > datetime.fromisoformat(view["email_confirmed_at"]):
        raise RuntimeError(f"{answer['id']} is not due at once: run_at {view['run_at']}")
    confirm_seconds = _wait_for_451(base, article_id, confirmed_at)
    return ClaimantTimes(
        email_seconds=email.seen_at - filed_at,
        confirm_seconds=confirm_seconds,
        filing_seconds=confirmed_at + confirm_seconds - filed_at,
    )


def nearest_rank(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(fraction * len(ordered)), 1) - 1]


def latency(url: str, engine_name: str, claimants: int, interval: float) -> Latency:
    key = ingest_key(url)
    base = f"http://127.0.0.1:{PORT}"
    mail_dir = Path(tempfile.mkdtemp(prefix=f"byline-bench-mail-{engine_name}-"))
    env = {**runner_env(url, mail_dir), "BYLINE_SCHEDULER_INTERVAL_SECONDS": str(interval)}
    inbox = Inbox(mail_dir)
    command: list[str | Path] = [BYLINE, "serve", "--no-migrate", "--port", str(PORT)]
    try:
        with serving(
            f"removals-latency-{engine_name}", command, ready_url=f"{base}/healthz", env=env
        ):
            articles = ingest_latency_articles(base, key, claimants)
            rngs = [random.Random(i) for i in range(len(articles))]
            with ThreadPoolExecutor(8) as pool:
                times = list(
                    pool.map(
                        lambda a: claim_and_confirm(
                            base, inbox, a[1][0], a[1][1], interval, rngs[a[0]]
                        ),
                        enumerate(articles),
                    )
                )
    finally:
        shutil.rmtree(mail_dir, ignore_errors=True)
    confirm = [t.confirm_seconds for t in times]
    email = [t.email_seconds for t in times]
    filing = [t.filing_seconds for t in times]
    result = Latency(
        engine=engine_name,
        claimants=len(times),
        interval_seconds=interval,
        confirm_p50_seconds=round(statistics.median(confirm), 2),
        confirm_p99_seconds=round(nearest_rank(confirm, 0.99), 2),
        confirm_max_seconds=round(max(confirm), 2),
        email_p50_seconds=round(statistics.median(email), 2),
        email_p99_seconds=round(nearest_rank(email, 0.99), 2),
        filing_p50_seconds=round(statistics.median(filing), 2),
        filing_p99_seconds=round(nearest_rank(filing, 0.99), 2),
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
            "machine": machine(),
            "drains": [asdict(d) for d in self.drains],
            "latencies": [asdict(x) for x in self.latencies],
        }
        (OUT_DIR / "removals.json").write_text(json.dumps(saved, indent=2) + "\n")
        (OUT_DIR / "removals.md").write_text(markdown(self.drains, self.latencies) + "\n")


def machine() -> dict[str, Any]:
    """What ran the measurement: a figure means little without it."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "commit": commit,
    }


def run_postgres(
    source: str,
    workers: list[int],
    count: int,
    per_takedown: int,
    filings: int,
    interval: float,
    results: Results,
    *,
    one_copy: bool,
) -> None:
    # Each worker count gets a fresh copy of one base copy; with `one_copy`, the runs share
    # one copy and each removes `count` other articles (quicker: copies take minutes).
    base = source if one_copy else PG_BASE
    if not one_copy:
        log(f"copying {source} to {PG_BASE}")
        pg_clone(source, PG_BASE)
    try:
        for index, n in enumerate(workers):
            if index == 0 or not one_copy:
                log(f"copying {base} to {PG_RUN}")
                pg_clone(base, PG_RUN)
            claimant = prepare_queue(pg_url(PG_RUN), count, per_takedown) if count else ""
            with bench_lock():
                if count:
                    results.add(drain(pg_url(PG_RUN), "postgres", n, count, claimant))
                if filings and index == len(workers) - 1:
                    results.add(latency(pg_url(PG_RUN), "postgres", filings, interval))
            if not one_copy:
                pg_drop(PG_RUN)
    finally:
        pg_drop(PG_RUN)
        if not one_copy:
            pg_drop(PG_BASE)


def run_sqlite(
    source: Path, count: int, per_takedown: int, filings: int, interval: float, results: Results
) -> None:
    log(f"copying {source} to {SQLITE_RUN.name}")
    sqlite_copy(source, SQLITE_RUN)
    url = f"sqlite:///{SQLITE_RUN}"
    try:
        claimant = prepare_queue(url, count, per_takedown) if count else ""
        with bench_lock():
            if count:
                results.add(drain(url, "sqlite", 0, count, claimant))
            if filings:
                results.add(latency(url, "sqlite", filings, interval))
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
            "| engine | proven claimants | interval | confirm -> 451 p50 / p99 / max "
            "| filing -> e-mail p50 / p99 | filing -> 451 p50 / p99 |",
            "|---|---|---|---|---|---|",
        ]
        for x in latencies:
            lines.append(
                f"| {x.engine} | {x.claimants} | {x.interval_seconds:g} s "
                f"| {x.confirm_p50_seconds:.2f} / {x.confirm_p99_seconds:.2f} / "
                f"{x.confirm_max_seconds:.2f} s "
                f"| {x.email_p50_seconds:.2f} / {x.email_p99_seconds:.2f} s "
                f"| {x.filing_p50_seconds:.2f} / {x.filing_p99_seconds:.2f} s |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--count", type=int, default=100_000, help="removals; 0: no drain")
    parser.add_argument("--workers", default="1,2,4", help="PostgreSQL worker processes")
    parser.add_argument("--per-takedown", type=int, default=20)
    parser.add_argument(
        "--filings", type=int, default=100, help="proven claimants of the latency run; 0: none"
    )
    parser.add_argument(
        "--interval", type=float, default=5.0, help="scheduler interval of the latency run (s)"
    )
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
                args.interval,
                results,
                one_copy=args.one_copy,
            )
        else:
            path = args.source_sqlite or sqlite_path(rows)
            if not args.source_sqlite:
                wait_for_source(name, rows, args.wait)
            log(f"{name}: source file {path}")
            run_sqlite(path, args.count, args.per_takedown, args.filings, args.interval, results)
    print(markdown(results.drains, results.latencies))


if __name__ == "__main__":
    main()
