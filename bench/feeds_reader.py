"""lemon24's `reader` on the feed benchmark's corpus, as a process of its own, driven over
stdin/stdout like bench/feeds_worker.py.

    python -m bench.feeds_reader --db bench/data/feeds-reader.sqlite --workers 4

`subscribe <feeds> <base_port> <ports>` adds the corpus's feeds (`add_feed`); each `cycle`
runs `update_feeds_iter(scheduled=False, workers=N)` (every feed, as byline's cycle makes
every feed due) and answers one JSON line: seconds, CPU seconds, feeds updated /
not modified / failed, entries new and modified. `quit` ends it.
"""

import argparse
import json
import sys
import time
from collections import Counter

from reader import make_reader

from bench import feeds_corpus as corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    reader = make_reader(args.db)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command, *rest = line.split()
        started, cpu = time.perf_counter(), time.process_time()
        if command == "subscribe":
            feeds, base_port, ports = map(int, rest)
            for i in range(feeds):
                reader.add_feed(corpus.feed_url(i, base_port=base_port, ports=ports))
            answer: dict[str, object] = {}
        elif command == "cycle":
            counts: Counter[str] = Counter()
            for result in reader.update_feeds_iter(scheduled=False, workers=args.workers):
                if isinstance(result.value, Exception):
                    counts["error"] += 1
                elif result.value is None:
                    counts["not_modified"] += 1
                else:
                    counts["fetched"] += 1
                    counts["articles_created"] += result.value.new
                    counts["articles_updated"] += result.value.modified
            answer = {"outcomes": dict(counts), "entries": reader.get_entry_counts().total}
        else:
            break
        answer |= {
            "seconds": time.perf_counter() - started,
            "cpu_seconds": time.process_time() - cpu,
            "finished_at": time.time(),
        }
        print(json.dumps(answer), flush=True)
    reader.close()


if __name__ == "__main__":
    main()
