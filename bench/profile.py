"""Where each benchmarked path spends its time: py-spy samples the pinned server under load.

    python -m bench.profile --engine sqlite --path read

For each path a flame graph (bench/out/profile-<path>-<engine>.svg) and a text summary of
the functions seen in the most samples, inclusive and self (…-top.txt).
"""

import argparse
import http.client
import json
import re
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

from app.auth import Scope, create_api_key
from app.db import create_db_engine, new_session, writer
from bench import corpus
from bench.ingest import BATCH, FRESH, KEY_NAME, MAX_BODY_BYTES, PORT, scratch_copy
from bench.reads import BYLINE_PORT, require_head
from bench.servers import REPO, byline_reads_server, byline_server, log, serving
from bench.targets import ENGINES, OUT_DIR, bench_rows, database_url
from bench.wrk import run_wrk, write_paths

PATHS = ("read", "ceiling", "list", "search", "ingest")
PY_SPY = REPO / ".venv" / "bin" / "py-spy"
# Leaf frames of threads that wait: py-spy does not always see them as idle.
IDLE_LEAVES = ("Condition.wait (", "Runner.run (", "select (", "_worker (")


def _record(pid: int, seconds: int, out: Path, fmt: str) -> subprocess.Popen[bytes]:
    command = [
        str(PY_SPY), "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "250",
        "--nonblocking", "--format", fmt, "--output", str(out),
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# Where a sample's time goes: the innermost frame that matches decides (first rule wins).
CATEGORIES = (
    (
        "database: driver executing and fetching",
        r"^(\w+\.)?(_fetch_one|do_execute\w*|do_commit|do_rollback|fetch\w*) \(",
    ),
    ("database: driver executing and fetching", r"\((psycopg\w*|sqlite3)/"),
    ("HTML sanitising, text, URL rules", r"\((app/articles/(sanitise|urls)\.py|nh3)"),
    ("SQLAlchemy: statements, results, pool", r"\(sqlalchemy/"),
    ("pydantic: validation and JSON", r"\(pydantic"),
    ("access log and metrics", r"\((app/observability\.py|logging/|prometheus_client/)"),
    ("uvicorn: HTTP", r"\((uvicorn|httptools)/"),
    ("FastAPI/Starlette: routing, params, middleware", r"\((fastapi|starlette|anyio)/"),
    ("byline code (routes, service, db)", r"\(app/"),
)


def summarise(raw: Path, top: int = 30) -> str:
    """Sample shares by category, and per function (inclusive and self), from py-spy's
    collapsed stacks."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        paths = stack.split(";")
        frames = [re.sub(r" \((.*/)?(site-packages/)?", " (", f) for f in paths]
        if frames[-1].startswith(IDLE_LEAVES):
            continue  # a thread waiting for work, or the event loop waiting for sockets
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
        categories[_category(frames[-1], paths)] += count
    lines = [f"{total} samples (threads waiting for work left out)", "", "by category:"]
    lines += [f"{100 * n / total:5.1f}%  {name}" for name, n in categories.most_common()]
    lines += ["", "inclusive:"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    lines += ["", "self:"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    return "\n".join(lines)


def _category(leaf: str, paths: list[str]) -> str:
    if re.search(CATEGORIES[0][1], leaf):
        return CATEGORIES[0][0]
    for path in reversed(paths):
        for name, pattern in CATEGORIES[1:]:
            if re.search(pattern, path):
                return name
    return "other (interpreter, event loop)"


def _profile(name: str, pid: int, seconds: int, load: threading.Thread) -> None:
    raw, svg = OUT_DIR / f"profile-{name}.txt", OUT_DIR / f"profile-{name}.svg"
    recorders = [_record(pid, seconds, raw, "raw"), _record(pid, seconds, svg, "flamegraph")]
    time.sleep(1)
    load.start()
    for recorder in recorders:
        recorder.wait()
    load.join()
    (OUT_DIR / f"profile-{name}-top.txt").write_text(summarise(raw))
    log(f"profile {name}: {svg}, {OUT_DIR / f'profile-{name}-top.txt'}")


def _wrk_load(target: str, script: str, args: list[str], seconds: int) -> threading.Thread:
    base = f"http://127.0.0.1:{BYLINE_PORT}"
    return threading.Thread(
        target=run_wrk,
        args=(target, base, script, args),
        kwargs={"connections": 8, "seconds": seconds},
    )


def profile_reads(engine_name: str, rows: int, paths: list[str], seconds: int) -> None:
    url = database_url(engine_name, rows)
    require_head(url)
    command, env = byline_reads_server(url, BYLINE_PORT)
    ready = f"http://127.0.0.1:{BYLINE_PORT}/v1/articles/1"
    with serving(f"byline-profile-{engine_name}", command, env=env, ready_url=ready) as server:
        loads = {
            "read": ("random_id.lua", ["/v1/articles/", str(rows)]),
            "ceiling": ("random_id.lua", ["/bench/ceiling/", str(rows)]),
            "list": (
                "paths.lua",
                [str(write_paths(OUT_DIR / "paths-first.txt", ["/v1/articles"]))],
            ),
            "search": (
                "paths.lua",
                [
                    str(
                        write_paths(
                            OUT_DIR / "paths-search.txt",
                            [
                                "/v1/articles?" + urlencode({"q": q})
                                for q in corpus.search_terms(200)
                            ],
                        )
                    )
                ],
            ),
        }
        for path in paths:
            if path in loads:
                script, args = loads[path]
                load = _wrk_load(path, script, args, seconds)
                _profile(f"{path}-{engine_name}", server.pid, seconds, load)


def profile_ingest(engine_name: str, rows: int, seconds: int) -> None:
    with scratch_copy(engine_name, rows) as url:
        _profile_ingest_into(engine_name, url, seconds)


def _profile_ingest_into(engine_name: str, url: str, seconds: int) -> None:
    engine = create_db_engine(url)
    with new_session(writer(engine)) as session, session.begin():
        _, key = create_api_key(
            session=session, name=KEY_NAME, scope=Scope.ingest, now=corpus.FIRST_DAY
        )
    bodies = [
        json.dumps(
            {
                "items": [
                    corpus.article_item(n)
                    for n in range(FRESH + b * BATCH, FRESH + (b + 1) * BATCH)
                ]
            }
        ).encode()
        for b in range(6)
    ]

    def post_batches() -> None:
        client = http.client.HTTPConnection("127.0.0.1", PORT, timeout=300)
        deadline = time.monotonic() + seconds
        for body in bodies:
            if time.monotonic() > deadline:
                break
            client.request(
                "POST",
                "/v1/articles/batch",
                body=body,
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            )
            client.getresponse().read()
        client.close()

    command, env = byline_server(url, PORT)
    env["BYLINE_MAX_BODY_BYTES"] = str(MAX_BODY_BYTES)
    try:
        with serving(
            f"byline-profile-ingest-{engine_name}",
            command,
            env=env,
            ready_url=f"http://127.0.0.1:{PORT}/healthz",
        ) as server:
            _profile(
                f"ingest-{engine_name}", server.pid, seconds, threading.Thread(target=post_batches)
            )
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=bench_rows())
    parser.add_argument("--engine", choices=[*ENGINES, "both"], default="both")
    parser.add_argument("--path", choices=[*PATHS, "all"], default=["all"], nargs="+")
    parser.add_argument("--seconds", type=int, default=15)
    args = parser.parse_args()
    OUT_DIR.mkdir(exist_ok=True)
    paths = list(PATHS) if "all" in args.path else args.path
    for engine_name in ENGINES if args.engine == "both" else (args.engine,):
        profile_reads(engine_name, args.rows, paths, args.seconds)
        if "ingest" in paths:
            profile_ingest(engine_name, args.rows, args.seconds)


if __name__ == "__main__":
    main()
