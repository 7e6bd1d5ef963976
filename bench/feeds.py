"""Feed polling: byline's feeds worker against lemon24's `reader`, side by side in one run.

    python -m bench.feeds                        # 10,000 feeds, every run below
    python -m bench.feeds --feeds 1000           # the quick pass
    python -m bench.feeds --runs byline-postgres-4,reader-4
    python -m bench.feeds --feeds 2000 --profile # py-spy on one byline worker, one per cycle

The corpus (bench/feeds_corpus.py: `--feeds` RSS 2.0 feeds of 20 entries, ~52 KB each, over
`--ports` ports of 127.0.0.1) is served by bench/feeds_server.py in `--server-processes`
processes of their own, started here. Each run gets a fresh database (a migrated SQLite file,
or the PostgreSQL database byline_bench_feeds, created and dropped), subscribes every feed,
and measures two cycles:

1. every feed new: `--feeds` x 20 articles;
2. one feed in ten has 5 new entries, the other nine answer 304 to their conditional GET.

A run is a system and its worker count (`--runs`, in this order by default: byline-postgres-1,
reader-1, byline-sqlite-1, byline-postgres-4, reader-4). byline: that many feeds-worker
processes (bench/feeds_worker.py: `background.worker` with a `FeedHandler`, as `byline worker`
builds it, BYLINE_ALLOW_PRIVATE_NETWORKS=true), kept for both cycles and each told to run one
`run_once` (it claims batches until nothing is due); every feed is made due by setting its
run_at to now before a cycle. reader (bench/feeds_reader.py): `update_feeds(workers=N,
scheduled=False)` on a fresh reader database. A cycle's time runs from telling the processes
to go until the last one has answered; then the database is checked (articles stored, feeds
fetched and not modified) against what the server counted.

Results: bench/out/feeds-<feeds>[-<runs>].json, a Markdown table on stdout. The timed part holds
/tmp/byline-bench.lock, as every benchmark here does.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import psycopg
from sqlalchemy import Engine, func, select, text, update

from app.articles.models import Article
from app.db import create_db_engine, new_session, writer
from app.feeds import service
from app.feeds.service import F
from app.migrate import upgrade_to_head
from bench import feeds_corpus as corpus
from bench.feeds_profile import summarise_cycle
from bench.removals import bench_lock, pg_drop, pg_url, sqlite_drop
from bench.servers import PYTHON, REPO, log
from bench.targets import DATA_DIR, OUT_DIR, postgres_admin_dsn

PG_DATABASE = "byline_bench_feeds"
SQLITE_FILE = DATA_DIR / "feeds-bench.db"
READER_FILE = DATA_DIR / "feeds-reader.sqlite"
PY_SPY = REPO / ".venv" / "bin" / "py-spy"
RUNS = ("byline-postgres-1", "reader-1", "byline-sqlite-1", "byline-postgres-4", "reader-4")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# Processes driven over stdin/stdout -----------------------------------------------------------


class Driven:
    """A child process that answers each line it is sent with one JSON line."""

    def __init__(self, command: Sequence[str | Path], *, env: dict[str, str], log_to: Path):
        self.log_file: TextIO = log_to.open("a")
        self.process = subprocess.Popen(
            [str(part) for part in command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log_file,
            env=env,
            text=True,
            cwd=REPO,
        )
        self.receive()  # {"ready": true}

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                answer: dict[str, Any] = json.loads(line)
                return answer
        raise RuntimeError(f"{self.process.args!r} ended ({self.process.wait()}): see its log")

    def quit(self, timeout: float = 120) -> None:
        if self.process.poll() is None:
            self.send("quit")
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()


@contextmanager
def driven(processes: list[Driven]) -> Iterator[list[Driven]]:
    try:
        yield processes
    finally:
        for each in processes:
            each.quit()


# The publishers' server ---------------------------------------------------------------------


@dataclass(frozen=True)
class Corpus:
    feeds: int
    ports: int
    base_port: int
    shards: int

    def url(self, i: int) -> str:
        return corpus.feed_url(i, base_port=self.base_port, ports=self.ports)

    def control(self, path: str) -> dict[str, Any]:
        """Ask every server process; their counters added up (CPU seconds too)."""
        total: Counter[str] = Counter()
        for shard in range(self.shards):
            url = f"http://127.0.0.1:{self.base_port + shard}/_bench/{path}"
            with urllib.request.urlopen(url, timeout=30) as answer:
                for name, value in json.load(answer).items():
                    if name != "generation":
                        total[name] += value
        return dict(total)


@contextmanager
def publishing(feeds: Corpus) -> Iterator[Corpus]:
    """The corpus served by its own processes until the block ends."""
    log(f"rendering {feeds.feeds:,} feeds in {feeds.shards} server processes")
    started = time.perf_counter()
    servers = []
    try:
        for shard in range(feeds.shards):
            command = [
                PYTHON, "-m", "bench.feeds_server", "--feeds", feeds.feeds, "--ports",
                feeds.ports, "--base-port", feeds.base_port, "--shard", shard, "--shards",
                feeds.shards,
            ]  # fmt: skip
            servers.append(
                subprocess.Popen(
                    [str(part) for part in command],
                    stdout=subprocess.PIPE,
                    stderr=(OUT_DIR / f"feeds-server-{shard}.log").open("w"),
                    text=True,
                    cwd=REPO,
                )
            )
        for server in servers:
            assert server.stdout is not None
            if server.stdout.readline().strip() != "ready":
                raise RuntimeError("a feed server did not start: see bench/out/feeds-server-*.log")
        last_port = feeds.base_port + feeds.ports - 1
        log(
            f"served on ports {feeds.base_port}-{last_port} ({time.perf_counter() - started:.0f} s)"
        )
        yield feeds
    finally:
        for server in servers:
            server.terminate()
            server.wait(30)


# Measurements -------------------------------------------------------------------------------


@dataclass
class Cycle:
    system: str  # byline-postgres, byline-sqlite, reader
    workers: int
    cycle: int
    feeds: int
    seconds: float
    feeds_per_second: float
    articles_created: int
    articles_per_second: float
    client_cpu_seconds: float  # the measured processes (byline workers, or reader)
    database_cpu_seconds: float | None  # PostgreSQL backends of the run
    server_cpu_seconds: float
    requests: dict[str, int]  # what the server answered: feed_200, feed_304, robots_txt...
    outcomes: dict[str, int]  # what the workers reported
    checks: dict[str, Any] = field(default_factory=dict)
    ok: bool = True


def _expected(feeds: int, cycle: int) -> tuple[int, int, int]:
    """(fetched, not modified, articles created) that a cycle must come to."""
    if cycle == 1:
        return feeds, 0, feeds * corpus.ENTRIES
    changed = sum(corpus.changed(i) for i in range(feeds))
    return changed, feeds - changed, changed * corpus.NEW_ENTRIES


def _pg_backend_cpu(engine: Engine, database: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend connected to `database`."""
    with engine.connect() as connection:
        pids = connection.execute(
            text(
                "SELECT pid FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid()"
            ),
            {"db": database},
        ).scalars()
        cpu = {}
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            cpu[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        return cpu


# byline -------------------------------------------------------------------------------------


@contextmanager
def byline_database(engine_name: str, feeds: Corpus) -> Iterator[tuple[str, Engine]]:
    """A fresh migrated database with every feed subscribed (its URL and an engine);
    dropped afterwards."""
    if engine_name == "sqlite":
        sqlite_drop(SQLITE_FILE)
        url = f"sqlite:///{SQLITE_FILE}"
    else:
        pg_drop(PG_DATABASE)
        with psycopg.connect(postgres_admin_dsn(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{PG_DATABASE}"')
        url = pg_url(PG_DATABASE)
    engine = create_db_engine(url)
    try:
        upgrade_to_head(url)
        seconds = subscribe_all(engine, feeds)
        log(f"byline-{engine_name}: {feeds.feeds:,} feeds subscribed in {seconds:.1f} s")
        yield url, engine
    finally:
        engine.dispose()
        if engine_name == "sqlite":
            sqlite_drop(SQLITE_FILE)
        else:
            pg_drop(PG_DATABASE)


def subscribe_all(engine: Engine, feeds: Corpus) -> float:
    """Every feed subscribed through the service (as POST /v1/feeds does); seconds taken."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    for first in range(0, feeds.feeds, 1000):
        with new_session(writer(engine)) as session, session.begin():
            for i in range(first, min(first + 1000, feeds.feeds)):
                port = corpus.feed_port(i, base_port=feeds.base_port, ports=feeds.ports)
                service.subscribe(
                    session=session,
                    url=feeds.url(i),
                    publisher_name=corpus.publisher_name(port),
                    publisher_url=f"http://127.0.0.1:{port}/",
                    language=None,
                    tags=(),
                    actor="bench",
                    now=now,
                    allow_private=True,
                )
    return time.perf_counter() - started


def make_all_due(engine: Engine) -> None:
    with new_session(writer(engine)) as session, session.begin():
        session.execute(update(F).values(run_at=datetime.now(UTC)))


def byline_tallies(engine: Engine) -> dict[str, int]:
    """The feeds' health counters added up, and the articles stored."""
    with new_session(engine) as session:
        row = session.execute(
            select(
                func.sum(F.c.fetches),
                func.sum(F.c.not_modified),
                func.count().filter(F.c.consecutive_errors > 0),
                func.count().filter(F.c.status != "queued"),
                func.count().filter(F.c.entries_reserved > 0),
            )
        ).one()
        articles = session.scalar(select(func.count()).select_from(Article))
    names = ("fetches", "not_modified", "failing", "not_queued", "reserved")
    return {name: int(value or 0) for name, value in zip(names, row, strict=True)} | {
        "articles": int(articles or 0)
    }


def feeds_worker(url: str, name: str, *, profile_to: Path | None = None) -> Driven:
    """A feeds worker process on `url` (under py-spy, recording to `profile_to`)."""
    env = {
        **os.environ,
        "BYLINE_DATABASE_URL": url,
        "BYLINE_ALLOW_PRIVATE_NETWORKS": "true",
        "BYLINE_PUBLIC_BASE_URL": "https://news.example",
    }
    command: list[str | Path] = [PYTHON, "-m", "bench.feeds_worker", "--name", name]
    if profile_to is not None:
        spy: list[str | Path] = [PY_SPY, "record", "--rate", "100", "--format", "raw"]
        spy += ["--output", profile_to]
        command = [*spy, "--", *command]
    return Driven(command, env=env, log_to=OUT_DIR / "feeds-workers.log")


def run_byline(engine_name: str, workers: int, feeds: Corpus) -> list[Cycle]:
    """Both cycles with `workers` worker processes, kept for both (as `byline worker` is)."""
    system = f"byline-{engine_name}"
    with (
        byline_database(engine_name, feeds) as (url, engine),
        driven([feeds_worker(url, f"bench-feeds-{k}") for k in range(workers)]) as processes,
    ):
        return [_byline_cycle(system, workers, cycle, processes, engine, feeds) for cycle in (1, 2)]


def profile_byline(feeds: Corpus) -> list[Cycle]:
    """Both cycles with one worker on PostgreSQL under py-spy, a process (and profile) per
    cycle; each profile summarised next to its samples."""
    system = "byline-postgres"
    cycles = []
    with byline_database("postgres", feeds) as (url, engine):
        for cycle in (1, 2):
            raw = OUT_DIR / f"feeds-profile-cycle{cycle}-{feeds.feeds}.txt"
            with driven([feeds_worker(url, "bench-feeds-0", profile_to=raw)]) as processes:
                cycles.append(_byline_cycle(system, 1, cycle, processes, engine, feeds))
            summary = summarise_cycle(raw)
            raw.with_name(f"{raw.stem}-top.txt").write_text(summary + "\n")
            log(f"profile of cycle {cycle} ({raw.stem}-top.txt):\n{summary}")
    return cycles


def _byline_cycle(
    system: str,
    workers: int,
    cycle: int,
    processes: Sequence[Driven],
    engine: Engine,
    feeds: Corpus,
) -> Cycle:
    _publish(feeds, cycle)
    make_all_due(engine)
    before = byline_tallies(engine)
    postgres = engine.dialect.name == "postgresql"
    backends = _pg_backend_cpu(engine, PG_DATABASE) if postgres else {}
    seconds, answers, served = _go(processes, feeds)
    database_cpu = None
    if postgres:
        after = _pg_backend_cpu(engine, PG_DATABASE)
        database_cpu = sum(cpu - backends.get(pid, 0.0) for pid, cpu in after.items())
    tallies = byline_tallies(engine)
    not_modified = tallies["not_modified"] - before["not_modified"]
    checks = {
        "fetched": tallies["fetches"] - before["fetches"] - not_modified,
        "not_modified": not_modified,
        "errors": tallies["failing"] + tallies["not_queued"],
        "feeds_with_reserved_entries": tallies["reserved"],
        "claimed": sum(a["claimed"] for a in answers),
        "worker_seconds": [round(a["seconds"], 1) for a in answers],
    }
    return _measured(
        system=system,
        workers=workers,
        cycle=cycle,
        feeds=feeds,
        seconds=seconds,
        answers=answers,
        served=served,
        created=tallies["articles"] - before["articles"],
        database_cpu=database_cpu,
        checks=checks,
    )


def _publish(feeds: Corpus, cycle: int) -> None:
    """The server publishes the cycle's generation, its counters at zero."""
    feeds.control(f"generation/{cycle - 1}")
    feeds.control("reset")


def _go(
    processes: Sequence[Driven], feeds: Corpus
) -> tuple[float, list[dict[str, Any]], dict[str, Any]]:
    """One cycle: every process told to go, timed until the last has answered; the answers,
    and what the server counted."""
    started = time.perf_counter()
    for each in processes:
        each.send("cycle")
    answers = [each.receive() for each in processes]
    seconds = time.perf_counter() - started
    return seconds, answers, feeds.control("counts")


def _measured(
    *,
    system: str,
    workers: int,
    cycle: int,
    feeds: Corpus,
    seconds: float,
    answers: Sequence[dict[str, Any]],
    served: dict[str, Any],
    created: int,
    database_cpu: float | None,
    checks: dict[str, Any],
) -> Cycle:
    """The cycle's figures, checked against what the corpus says it must come to (feeds
    fetched and not modified, by the system and by the server; articles stored; no error)."""
    fetched, not_modified, articles = _expected(feeds.feeds, cycle)
    server_cpu = served.pop("cpu_seconds", 0.0)
    requests = {name: int(n) for name, n in served.items()}
    ok = (
        checks["fetched"] == requests.get("feed_200", 0) == fetched
        and checks["not_modified"] == requests.get("feed_304", 0) == not_modified
        and created == articles
        and not checks["errors"]
    )
    result = Cycle(
        system=system,
        workers=workers,
        cycle=cycle,
        feeds=feeds.feeds,
        seconds=round(seconds, 2),
        feeds_per_second=round(feeds.feeds / seconds, 1),
        articles_created=created,
        articles_per_second=round(created / seconds, 1),
        client_cpu_seconds=round(sum(a["cpu_seconds"] for a in answers), 1),
        database_cpu_seconds=None if database_cpu is None else round(database_cpu, 1),
        server_cpu_seconds=round(server_cpu, 1),
        requests=requests,
        outcomes=dict(sum((Counter(a["outcomes"]) for a in answers), Counter[str]())),
        checks=checks,
        ok=ok,
    )
    log(
        f"{system} x{workers} cycle {cycle}: {result.seconds:.1f} s, "
        f"{result.feeds_per_second:,.1f} feeds/s, {result.articles_per_second:,.0f} articles/s"
        f"{'' if ok else ' **CHECKS FAILED**'}; {json.dumps(requests)}; {checks}"
    )
    return result


# reader -------------------------------------------------------------------------------------


def run_reader(workers: int, feeds: Corpus) -> list[Cycle]:
    """Both cycles on a fresh reader database, `update_feeds(workers=...)`."""
    _reader_drop()
    command: list[str | Path] = [PYTHON, "-m", "bench.feeds_reader", "--db", READER_FILE]
    command += ["--workers", str(workers)]
    cycles = []
    try:
        process = Driven(command, env=dict(os.environ), log_to=OUT_DIR / "feeds-reader.log")
        with driven([process]):
            process.send(f"subscribe {feeds.feeds} {feeds.base_port} {feeds.ports}")
            log(f"reader: {feeds.feeds:,} feeds added in {process.receive()['seconds']:.1f} s")
            entries = 0
            for cycle in (1, 2):
                _publish(feeds, cycle)
                seconds, answers, served = _go([process], feeds)
                (answer,) = answers
                outcomes = answer["outcomes"]
                checks = {
                    "fetched": outcomes.get("fetched", 0),
                    "not_modified": outcomes.get("not_modified", 0),
                    "errors": outcomes.get("error", 0),
                    "new_entries_reported": outcomes.get("articles_created", 0),
                }
                cycles.append(
                    _measured(
                        system="reader",
                        workers=workers,
                        cycle=cycle,
                        feeds=feeds,
                        seconds=seconds,
                        answers=answers,
                        served=served,
                        created=answer["entries"] - entries,
                        database_cpu=None,
                        checks=checks,
                    )
                )
                entries = answer["entries"]
    finally:
        _reader_drop()
    return cycles


def _reader_drop() -> None:
    for suffix in ("", "-wal", "-shm", ".search"):
        Path(f"{READER_FILE}{suffix}").unlink(missing_ok=True)


# Report -------------------------------------------------------------------------------------


TABLE_HEAD = (
    "| system | workers | cycle | seconds | feeds/s | articles | articles/s "
    "| CPU s: client / PostgreSQL / server | requests: 200 / 304 / robots.txt / tdmrep.json "
    "| checks |\n|---|---:|---:|---:|---:|---:|---:|---|---|---|"
)


def table(cycles: Sequence[Cycle]) -> str:
    lines = [TABLE_HEAD]
    for c in cycles:
        database = "-" if c.database_cpu_seconds is None else f"{c.database_cpu_seconds:.1f}"
        r = c.requests
        lines.append(
            f"| {c.system} | {c.workers} | {c.cycle} | {c.seconds:,.1f} | "
            f"{c.feeds_per_second:,.1f} | {c.articles_created:,} | {c.articles_per_second:,.0f} | "
            f"{c.client_cpu_seconds:.1f} / {database} / {c.server_cpu_seconds:.1f} | "
            f"{r.get('feed_200', 0):,} / {r.get('feed_304', 0):,} / {r.get('robots_txt', 0)} / "
            f"{r.get('tdmrep_json', 0)} | {'ok' if c.ok else 'FAILED'} |"
        )
    return "\n".join(lines)


def ratios(cycles: Sequence[Cycle]) -> str:
    """byline / reader feeds/s at the same worker count (target: >= 2x)."""
    by = {(c.system, c.workers, c.cycle): c for c in cycles}
    lines = [
        "| byline / reader, feeds/s | workers | cycle 1 | cycle 2 |",
        "|---|---:|---:|---:|",
    ]
    for system in ("byline-postgres", "byline-sqlite"):
        for workers in sorted({c.workers for c in cycles}):
            cells = []
            for cycle in (1, 2):
                ours, theirs = by.get((system, workers, cycle)), by.get(("reader", workers, cycle))
                cells.append(
                    f"{ours.feeds_per_second / theirs.feeds_per_second:.2f}x"
                    if ours and theirs
                    else "-"
                )
            if any(cell != "-" for cell in cells):
                lines.append(f"| {system} | {workers} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=10_000)
    parser.add_argument("--ports", type=int, default=100)
    parser.add_argument("--base-port", type=int, default=18_100)
    parser.add_argument("--server-processes", type=int, default=2)
    parser.add_argument("--runs", default=",".join(RUNS), help=f"of {', '.join(RUNS)}")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead: one byline worker on PostgreSQL under py-spy, a profile per cycle",
    )
    args = parser.parse_args()
    runs = [run.strip() for run in args.runs.split(",") if run.strip()]
    unknown = set(runs) - set(RUNS)
    if unknown:
        parser.error(f"unknown runs: {', '.join(sorted(unknown))}")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    feeds = Corpus(args.feeds, args.ports, args.base_port, args.server_processes)
    cycles: list[Cycle] = []
    with publishing(feeds), bench_lock():
        if args.profile:
            cycles += profile_byline(feeds)
        else:
            for run in runs:
                system, workers = run.rsplit("-", 1)
                if system == "reader":
                    cycles += run_reader(int(workers), feeds)
                else:
                    cycles += run_byline(system.removeprefix("byline-"), int(workers), feeds)
    part = "-profile" if args.profile else "" if runs == list(RUNS) else f"-{'+'.join(runs)}"
    name = f"feeds-{args.feeds}{part}.json"
    (OUT_DIR / name).write_text(
        json.dumps(
            {
                "command": " ".join(sys.argv),
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
                "feeds": args.feeds,
                "ports": args.ports,
                "cycles": [asdict(c) for c in cycles],
            },
            indent=2,
        )
    )
    print(table(cycles))
    print()
    print(ratios(cycles))
    if not all(c.ok for c in cycles):
        raise SystemExit("some cycles did not come to what the corpus says: see the log above")


if __name__ == "__main__":
    main()
