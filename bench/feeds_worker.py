"""One byline feeds worker as a process of its own, as `byline worker` runs it (settings and
logging from the environment, `background.worker` with a `FeedHandler`), driven by the feed
benchmark over stdin/stdout.

    BYLINE_DATABASE_URL=... python -m bench.feeds_worker --name w0

Each `cycle` line on stdin runs the worker's `run_once` (it claims batches until nothing is
due) and answers one JSON line: seconds, CPU seconds, rows claimed and outcomes. The handler
(and its cache of hosts' robots.txt and tdmrep.json) lives as long as the process, as in a
long-running `byline worker`. `quit` ends the process.
"""

import argparse
import json
import sys
import time

from app import background
from app.clock import SystemClock
from app.config import settings_or_exit
from app.db import create_db_engine
from app.feeds.polls import FeedHandler
from app.observability import configure_logging


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="bench-feeds")
    args = parser.parse_args()
    settings = settings_or_exit()
    configure_logging(settings.log_level)
    engine = create_db_engine(settings.database_url)
    handler = FeedHandler(settings=settings)
    worker = background.worker(
        engine=engine,
        settings=settings,
        clock=SystemClock(),
        handlers=[handler],
        name=args.name,
    )
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() != "cycle":
            break
        started, cpu = time.perf_counter(), time.process_time()
        result = worker.run_once()
        print(
            json.dumps(
                {
                    "seconds": time.perf_counter() - started,
                    "cpu_seconds": time.process_time() - cpu,
                    "finished_at": time.time(),
                    "claimed": result.claimed.total(),
                    "outcomes": dict(result.of(handler.kind)),
                }
            ),
            flush=True,
        )
    engine.dispose()


if __name__ == "__main__":
    main()
