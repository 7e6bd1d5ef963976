"""Mixed load on a real deployment, then proof that nothing was lost (`make load`).

    python -m bench.load --engine postgres --duration 300   # serve --workers 2 + a worker
    python -m bench.load --engine sqlite --duration 60      # serve with its embedded scheduler

Traffic (bench/load_traffic.py): 90% reads (lists, details, searches, slugs, publishers,
transparency), 8% ingest (single and batches of 20), 2% takedown filings. A filing waits for
its claimant: 8 in 10 claimants read the code from the e-mail (the .eml files under
bench/data/load-mail-<engine>) and confirm; 7 in 10 mailboxes are at the articles' domain
(removal at once once confirmed; the others after a 60-second review window). Afterwards,
once every confirmed request's removals and every review window have come due
(bench/load_verify.py): every acknowledged ingest is stored; the confirmations answered 200
are exactly those recorded; every confirmed request is completed and its articles removed;
no request that was never confirmed removed, blocked or ran anything (and each is with an
operator once its window ended); every removal that came due is done and its article answers
451, as each did the moment the watcher saw it removed during the run; the counts of
/v1/transparency equal the database's.

Everything runs on loopback against a database of its own (PostgreSQL `byline_load`, or
bench/data/load.db), is bounded in time, and every process started is stopped. Figures go to
bench/out/load-<engine>.json and to stdout as the table of bench/README.md ("Mixed load").
"""

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import Engine, func, make_url, select

from app.articles.models import Article
from app.auth import Scope, create_api_key
from app.db import create_db_engine, new_session, writer
from app.migrate import upgrade_to_head
from app.scheduler.models import RemovalJob
from app.takedowns.models import Takedown
from bench.load_traffic import DOMAINS, EXPECTED, SEED_ARTICLES, Known, Traffic, article
from bench.load_verify import (
    Verification,
    acknowledged_ingests_are_stored,
    confirmations_are_recorded,
    confirmed_requests_removed_their_articles,
    count_removed,
    due_removals_are_done,
    removed_articles_answer_451,
    transparency_matches_the_database,
    unconfirmed_requests_removed_nothing,
)
from bench.mailbox import Inbox

A = Article.__table__  # type: ignore[attr-defined]
J = RemovalJob.__table__  # type: ignore[attr-defined]
T = Takedown.__table__  # type: ignore[attr-defined]
BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "out"
SQLITE_FILE = BENCH / "data" / "load.db"
POSTGRES_SERVER = os.environ.get(
    "LOAD_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
POSTGRES_DATABASE = "byline_load"
REVIEW_WINDOW = timedelta(seconds=60)
# Filings come from 60 client addresses (X-Forwarded-For through the trusted loopback proxy);
# confirmations from about 70 mailboxes (counted per mailbox); the 40 domains keep the
# default per-domain limit. Limits a busy but honest stream stays under, mostly; the busiest
# meet 429, as they should.
RATE_PER_ADDRESS = "1000/hour"
RATE_PER_EMAIL = "40/hour"
DRAIN_TIMEOUT = 240.0


def log(message: str) -> None:
    print(f"[load {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# The database -----------------------------------------------------------------------------


def fresh_database(engine_name: str) -> str:
    """An empty, migrated database of the load test's own; its URL."""
    if engine_name == "sqlite":
        SQLITE_FILE.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{SQLITE_FILE}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{SQLITE_FILE}"
    else:
        server = make_url(POSTGRES_SERVER)
        dsn = server.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{POSTGRES_DATABASE}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{POSTGRES_DATABASE}"')
        url = server.set(database=POSTGRES_DATABASE).render_as_string(hide_password=False)
    upgrade_to_head(url)
    return url


def make_key(engine: Engine, scope: Scope) -> str:
    with new_session(writer(engine)) as session, session.begin():
        _, secret = create_api_key(
            session=session, name=f"load-{scope.value}", scope=scope, now=datetime.now(UTC)
        )
    return secret


# The processes ----------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def started(
    name: str, command: list[str], env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """A process in a session of its own (its uvicorn workers go with it), stopped on exit:
    SIGTERM, then SIGKILL if it lingers."""
    OUT.mkdir(exist_ok=True)
    with (OUT / f"load-{name}.log").open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(30)


def wait_ready(base_url: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}; see bench/out")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{base_url} was not ready within {timeout:.0f} s")


# Seeding, draining ------------------------------------------------------------------------


def seed(base_url: str, ingest_key: str, engine: Engine) -> Known:
    """SEED_ARTICLES articles over 40 domains, through the API; what the traffic knows."""
    headers = {"Authorization": f"Bearer {ingest_key}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=120) as client:
        for first in range(0, SEED_ARTICLES, 500):
            items = [article(n, DOMAINS[n % len(DOMAINS)]) for n in range(first, first + 500)]
            response = client.post("/v1/articles/batch", json={"items": items})
            response.raise_for_status()
    known = Known()
    with engine.connect() as connection:
        for row in connection.execute(select(A.c.id, A.c.slug, A.c.source_domain)):
            known.add(row.source_domain.removeprefix("www."), row.id, row.slug)
    return known


def removed_ids_reader(engine: Engine) -> Any:
    def removed_ids() -> dict[int, datetime]:
        with engine.connect() as connection:
            return dict(
                connection.execute(
                    select(A.c.id, A.c.removed_at).where(A.c.removed_at.is_not(None))
                ).all()
            )

    return removed_ids


def settle(engine: Engine) -> datetime:
    """Wait until every review window of the run has ended (so each confirmed request's
    removals have come due, and each unconfirmed one has gone to an operator) and no removal
    with a time is still waiting or running; that moment."""
    deadline = time.monotonic() + DRAIN_TIMEOUT
    with engine.connect() as connection:
        last_filed = connection.scalar(select(func.max(T.c.received_at)))
    windows_end = (last_filed or datetime.now(UTC)) + REVIEW_WINDOW + timedelta(seconds=3)
    while True:
        now = datetime.now(UTC)
        with engine.connect() as connection:
            waiting = connection.scalars(
                select(J.c.id).where(J.c.status.in_(["queued", "running"]), J.c.run_at.is_not(None))
            ).first()
        if now >= windows_end and waiting is None:
            return now
        if time.monotonic() > deadline:
            log(f"removals still waiting after {DRAIN_TIMEOUT:.0f} s")
            return now
        time.sleep(0.5)


# The report -------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def summarise(traffic: Traffic, seconds: float) -> dict[str, Any]:
    record = traffic.record
    routes = {}
    total = 0
    for route in EXPECTED:
        latencies = record.latencies.get(route, [])
        if not latencies:
            continue
        total += len(latencies)
        routes[route] = {
            "requests": len(latencies),
            "p50_ms": round(statistics.median(latencies) * 1000, 1),
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
            "statuses": dict(sorted(record.statuses[route].items())),
        }
    return {
        "seconds": round(seconds, 1),
        "requests": total,
        "throughput_rps": round(total / seconds, 1),
        "routes": routes,
        "errors": record.unexpected,
        "rate_limited_429": record.statuses["POST /v1/takedowns"][429]
        + record.statuses["POST /v1/takedowns/{id}/confirm"][429],
        "acknowledged_ingests": len(record.acknowledged),
        "takedowns_filed": len(record.filed),
        "takedowns_confirmed": sum(status == 200 for status in record.confirmations.values()),
        "takedowns_never_confirmed": len(record.filed)
        - sum(status == 200 for status in record.confirmations.values()),
        "removals_seen_during_run": record.watched,
        "violations_during_run": record.violations,
    }


def server_errors(name: str) -> int:
    """Lines of the process's log that report an unhandled error (a 500)."""
    text = (OUT / f"load-{name}.log").read_text(errors="replace")
    return text.count("unhandled error")


def markdown(engine_name: str, summary: dict[str, Any], verification: Verification) -> str:
    lines = [
        f"{engine_name}: {summary['requests']:,} requests in {summary['seconds']:.0f} s = "
        f"**{summary['throughput_rps']:,.0f} req/s**; errors: {len(summary['errors'])}, "
        f"429s (rate limit, intended): {summary['rate_limited_429']}",
        "",
        "| route | requests | p50 ms | p99 ms | statuses |",
        "|---|---:|---:|---:|---|",
    ]
    for route, figures in summary["routes"].items():
        statuses = ", ".join(f"{status}: {count}" for status, count in figures["statuses"].items())
        lines.append(
            f"| `{route}` | {figures['requests']:,} | {figures['p50_ms']} | {figures['p99_ms']} "
            f"| {statuses} |"
        )
    lines += ["", "| check | checked | problems |", "|---|---:|---:|"]
    for check, count in verification.checked.items():
        lines.append(f"| {check} | {count:,} | {len(verification.problems[check])} |")
    return "\n".join(lines)


# The run ----------------------------------------------------------------------------------


def run(engine_name: str, duration: float, concurrency: int) -> bool:
    url = fresh_database(engine_name)
    engine = create_db_engine(url)
    ingest_key = make_key(engine, Scope.ingest)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    # The claimants' inbox: with no SMTP server, byline writes each e-mail here.
    mail_dir = BENCH / "data" / f"load-mail-{engine_name}"
    shutil.rmtree(mail_dir, ignore_errors=True)
    mail_dir.mkdir(parents=True)
    env = {
        **{key: value for key, value in os.environ.items() if key != "BYLINE_SMTP_URL"},
        "BYLINE_DATABASE_URL": url,
        "BYLINE_PUBLIC_BASE_URL": base_url,
        "BYLINE_LOG_LEVEL": "WARNING",
        "BYLINE_MAIL_DIR": str(mail_dir),
        "BYLINE_SCHEDULER_INTERVAL_SECONDS": "1",
        "BYLINE_TAKEDOWN_REVIEW_WINDOW": f"PT{REVIEW_WINDOW.total_seconds():.0f}S",
        "BYLINE_TAKEDOWN_RATE_PER_ADDRESS": RATE_PER_ADDRESS,
        "BYLINE_TAKEDOWN_RATE_PER_EMAIL": RATE_PER_EMAIL,
    }
    serve = [sys.executable, "-m", "app", "serve", "--port", str(port), "--no-migrate"]
    if engine_name == "postgres":
        serve += ["--workers", "2"]
        env["BYLINE_SCHEDULER"] = "off"
    else:
        env["BYLINE_SCHEDULER"] = "embedded"
    with started(f"{engine_name}-serve", serve, env) as server:
        wait_ready(base_url, server)
        log(f"seeding {SEED_ARTICLES} articles")
        known = seed(base_url, ingest_key, engine)
        worker_command = [sys.executable, "-m", "app", "worker"]
        with (
            started(f"{engine_name}-worker", worker_command, env)
            if engine_name == "postgres"
            else _nothing()
        ):
            log(f"{engine_name}: {duration:.0f} s of mixed traffic from {concurrency} clients")
            traffic = Traffic(
                base_url,
                ingest_key,
                known,
                first_new=SEED_ARTICLES + 10_000,
                removed_ids=removed_ids_reader(engine),
                inbox=Inbox(mail_dir),
            )
            seconds = asyncio.run(traffic.run(duration, concurrency))
            log("traffic stopped; waiting for the review windows and the removals")
            drained_at = settle(engine)
            verification = Verification()
            record = traffic.record
            acknowledged_ingests_are_stored(engine, record.acknowledged, verification)
            confirmed = confirmations_are_recorded(
                engine, record.filed, record.confirmations, verification
            )
            confirmed_requests_removed_their_articles(engine, confirmed, verification)
            unconfirmed_requests_removed_nothing(
                engine,
                record.filed,
                confirmed,
                review_window=REVIEW_WINDOW,
                at=drained_at,
                result=verification,
            )
            due_removals_are_done(engine, drained_at, verification)
            removed_articles_answer_451(base_url, engine, verification)
            report = transparency_matches_the_database(base_url, engine, verification)
            verification.add(
                "no article answered 200 after its removal (during the run)",
                traffic.record.watched,
                traffic.record.violations,
            )
    summary = summarise(traffic, seconds)
    summary["removed_articles"] = count_removed(engine)
    summary["transparency_totals"] = report["totals"]
    summary["server_500s_logged"] = server_errors(f"{engine_name}-serve")
    summary["verification"] = {"checked": verification.checked, "problems": verification.problems}
    engine.dispose()
    OUT.mkdir(exist_ok=True)
    (OUT / f"load-{engine_name}.json").write_text(json.dumps(summary, indent=2, default=str))
    print(markdown(engine_name, summary, verification))
    print(
        f"\nremoved articles: {summary['removed_articles']}, takedowns filed: "
        f"{summary['takedowns_filed']} (confirmed {summary['takedowns_confirmed']}, never "
        f"confirmed {summary['takedowns_never_confirmed']}), acknowledged ingests: "
        f"{summary['acknowledged_ingests']}, 500s in the server log: "
        f"{summary['server_500s_logged']}\n"
    )
    return verification.ok and not summary["errors"] and not summary["server_500s_logged"]


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of traffic")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients")
    options = parser.parse_args()
    ok = run(options.engine, options.duration, options.concurrency)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
