"""Statements per removal: drain a few thousand queued removals with the runner in this
process, counting every statement SQLAlchemy sends (and the commits).

    python -m bench.removals_profile --url sqlite:///copy.db --count 2000

Runs on a database it may change (a copy: bench/removals.py makes them)."""

import argparse
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, event

from app import background
from app.clock import SystemClock
from app.config import Settings
from app.db import create_db_engine
from bench.removals_queue import queue_verified_takedowns

SECONDS: Counter[str] = Counter()


def count_statements(engine: Engine) -> Counter[str]:
    """Statements by their first words, counted as they are sent."""
    counts: Counter[str] = Counter()

    @event.listens_for(engine, "before_cursor_execute")
    def _count(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        conn.info["byline_started"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _time(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        key = " ".join(statement.split()[:6])[:70].upper()
        counts[key] += 1
        SECONDS[key] += time.perf_counter() - conn.info.pop("byline_started", time.perf_counter())

    @event.listens_for(engine, "commit")
    def _commit(_conn: Any) -> None:
        counts["COMMIT"] += 1

    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, default=2_000)
    parser.add_argument("--per-takedown", type=int, default=20)
    args = parser.parse_args()
    engine = create_db_engine(args.url)
    queue_verified_takedowns(
        engine, count=args.count, per_takedown=args.per_takedown, now=datetime.now(UTC)
    )
    counts = count_statements(engine)
    settings = Settings(database_url=args.url)
    worker = background.worker(
        engine=engine,
        settings=settings,
        clock=SystemClock(),
        handlers=[background.removal_handler(settings)],
        name="profile",
    )
    started = time.perf_counter()
    removed = worker.run_once().of("removal")["removed"]
    elapsed = time.perf_counter() - started
    print(f"{removed:,} removed in {elapsed:.2f} s ({removed / elapsed:,.0f}/s)")
    total = sum(counts.values())
    print(f"{total:,} statements, {total / max(removed, 1):.2f} per removal")
    for key, n in counts.most_common():
        print(
            f"  {n / max(removed, 1):6.2f} {SECONDS[key] * 1000 / max(removed, 1):7.3f} ms  {key}"
        )


if __name__ == "__main__":
    main()
