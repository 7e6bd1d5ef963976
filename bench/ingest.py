"""Batch ingest throughput: `POST /v1/articles/batch` (500 articles a batch) against a raw
SQLAlchemy Core `executemany` of the same kind of rows into the same database.

    python -m bench.ingest --engine both

Both paths insert new articles from the corpus generator into the loaded benchmark database,
batch for batch in turn (API, raw, API, raw, ...): the API through `byline serve` pinned to core
0 (the client on core 1 sends pre-encoded JSON over one keep-alive connection); the raw path
in this process, moved to core 0 while it runs, given rows that were already prepared (the
exact column values ingest stores, from `prepare_article` and `new_article_row`) and only
timing their `executemany` into `articles` (with RETURNING ids, as ingest does) and
`article_tags`, committed. Both write into a scratch copy of the loaded database (a file copy
on SQLite, `CREATE DATABASE ... TEMPLATE` on PostgreSQL), dropped afterwards: the loaded
databases are shared with other benchmarks and are never written to.
"""

import argparse
import http.client
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine, make_url, select

from app.articles.schemas import ArticleIn
from app.articles.service import A, P, T, new_article_row, prepare_article
from app.auth import Scope, create_api_key
from app.db import create_db_engine, new_session, writer
from bench import corpus
from bench.reads import require_head
from bench.servers import CLIENT_CPU, SERVER_CPU, byline_server, log, serving
from bench.targets import (
    ENGINES,
    OUT_DIR,
    POSTGRES_SERVER_URL,
    bench_rows,
    database_url,
    postgres_admin_dsn,
    postgres_database,
    sqlite_path,
)

PORT = 8003
BATCH = 500
FRESH = 50_000_000  # corpus numbers far above any loaded article
KEY_NAME = "bench-ingest"
MAX_BODY_BYTES = 16 * 1024 * 1024
# Free space left on the disk after a scratch copy, at the least (and never less than the
# copy's own size): other work on the machine (a database loading, other benchmarks' copies)
# must not run out of disk because of it.
SPARE_DISK_BYTES = 8 * 1024**3


def _check_space(where: Path, needed: int) -> None:
    free = shutil.disk_usage(where).free
    if free < needed + max(needed, SPARE_DISK_BYTES):
        raise SystemExit(
            f"a scratch copy needs {needed / 1e9:.1f} GB and {where} has {free / 1e9:.1f} GB free"
        )


@contextmanager
def scratch_copy(engine_name: str, rows: int) -> Iterator[str]:
    """A copy of the loaded benchmark database to write into (its URL), deleted afterwards."""
    require_head(database_url(engine_name, rows))
    if engine_name == "sqlite":
        source = sqlite_path(rows)
        copy = source.with_name(f"scratch-ingest-{source.name}")
        _check_space(source.parent, source.stat().st_size)
        started = time.perf_counter()
        try:
            for suffix in ("", "-wal"):
                if Path(f"{source}{suffix}").exists():
                    shutil.copyfile(f"{source}{suffix}", f"{copy}{suffix}")
            log(f"sqlite: scratch copy {copy.name} in {time.perf_counter() - started:.0f} s")
            yield f"sqlite:///{copy}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{copy}{suffix}").unlink(missing_ok=True)
        return
    source_name = postgres_database(rows)
    name = f"scratch_ingest_{source_name}"
    with psycopg.connect(postgres_admin_dsn(), autocommit=True) as admin:
        size = admin.execute("SELECT pg_database_size(%s)", (source_name,)).fetchone()[0]  # type: ignore[index]
        data_dir = admin.execute("SHOW data_directory").fetchone()[0]  # type: ignore[index]
        _check_space(Path(data_dir), size)
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        started = time.perf_counter()
        for attempt in range(30):
            try:
                # FILE_COPY: a copy of the files, not of every block through the WAL.
                admin.execute(
                    f'CREATE DATABASE "{name}" TEMPLATE "{source_name}" STRATEGY FILE_COPY'
                )
                break
            except psycopg.errors.ObjectInUse:
                # Someone is connected to the source (copying it too?): wait for them.
                if attempt == 29:
                    raise
                time.sleep(10)
        log(f"postgres: scratch copy {name} in {time.perf_counter() - started:.0f} s")
        try:
            yield make_url(POSTGRES_SERVER_URL).set(database=name).render_as_string(False)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pin(cpu: str) -> None:
    os.sched_setaffinity(0, {int(cpu)})


def _raw_rows(
    items: list[dict[str, Any]], engine: Engine
) -> list[tuple[dict[str, Any], list[str]]]:
    names = {item["publisher"]["name"] for item in items}
    with engine.connect() as connection:
        ids = dict(connection.execute(select(P.c.name, P.c.id).where(P.c.name.in_(names))).all())
    now = datetime.now(UTC)
    result = []
    for item in items:
        prepared = prepare_article(ArticleIn.model_validate(item))
        row = new_article_row(prepared, publisher_id=ids[prepared.publisher_name], now=now)
        result.append((row, prepared.tags))
    return result


def _insert_raw(engine: Engine, rows: list[tuple[dict[str, Any], list[str]]]) -> None:
    with writer(engine).begin() as connection:
        inserted = connection.execute(
            A.insert().returning(A.c.id, sort_by_parameter_order=True), [row for row, _ in rows]
        ).all()
        tags = [
            {"article_id": article.id, "tag": tag}
            for article, (_, article_tags) in zip(inserted, rows, strict=True)
            for tag in article_tags
        ]
        if tags:
            connection.execute(T.insert(), tags)


def _post_batch(body: bytes, key: str) -> None:
    # A connection per batch: preparing the raw path's rows outlasts the keep-alive timeout.
    connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=300)
    connection.request(
        "POST",
        "/v1/articles/batch",
        body=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    response = connection.getresponse()
    answer = response.read()
    connection.close()
    counts = json.loads(answer).get("counts") if response.status == 200 else None
    if counts != {"created": BATCH}:
        raise RuntimeError(f"batch answered {response.status}: {answer[:500]!r}")


def bench_engine(engine_name: str, rows: int, batches: int) -> dict[str, Any]:
    with scratch_copy(engine_name, rows) as url:
        return _bench_copy(engine_name, url, rows, batches)


def _bench_copy(engine_name: str, url: str, rows: int, batches: int) -> dict[str, Any]:
    engine = create_db_engine(url)
    with new_session(writer(engine)) as session, session.begin():
        _, key = create_api_key(
            session=session, name=KEY_NAME, scope=Scope.ingest, now=datetime.now(UTC)
        )
    api_seconds = raw_seconds = 0.0
    api_runs, raw_runs = [], []
    command, env = byline_server(url, PORT)
    # 500 articles of 2-8 KB are 3-4 MB of JSON: more than the default 2 MB body limit.
    env["BYLINE_MAX_BODY_BYTES"] = str(MAX_BODY_BYTES)
    try:
        with serving(
            f"byline-ingest-{engine_name}",
            command,
            env=env,
            ready_url=f"http://127.0.0.1:{PORT}/healthz",
        ):
            for batch in range(batches):
                first = FRESH + 2 * batch * BATCH
                api_items = [corpus.article_item(n) for n in range(first, first + BATCH)]
                raw_items = [
                    corpus.article_item(n) for n in range(first + BATCH, first + 2 * BATCH)
                ]
                body = json.dumps({"items": api_items}).encode()
                raw = _raw_rows(raw_items, engine)

                _pin(CLIENT_CPU)
                started = time.perf_counter()
                _post_batch(body, key)
                api_runs.append(time.perf_counter() - started)

                _pin(SERVER_CPU)
                started = time.perf_counter()
                _insert_raw(engine, raw)
                raw_runs.append(time.perf_counter() - started)
                _pin(CLIENT_CPU)
                log(
                    f"{engine_name} batch {batch + 1}/{batches}: API {BATCH / api_runs[-1]:,.0f}"
                    f" articles/s, raw {BATCH / raw_runs[-1]:,.0f} articles/s"
                )
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        engine.dispose()
    api_seconds, raw_seconds = sum(api_runs), sum(raw_runs)
    api_rate = batches * BATCH / api_seconds
    raw_rate = batches * BATCH / raw_seconds
    return {
        "api_articles_per_s": api_rate,
        "raw_articles_per_s": raw_rate,
        "ratio": api_rate / raw_rate,
        "batches": batches,
        "batch_size": BATCH,
        "api_batch_seconds": api_runs,
        "raw_batch_seconds": raw_runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=bench_rows())
    parser.add_argument("--engine", choices=[*ENGINES, "both"], default="both")
    parser.add_argument("--batches", type=int, default=10)
    args = parser.parse_args()
    OUT_DIR.mkdir(exist_ok=True)
    for engine_name in ENGINES if args.engine == "both" else (args.engine,):
        log(f"{engine_name}: batch ingest into {args.rows:,} articles")
        result = {"rows": args.rows, **bench_engine(engine_name, args.rows, args.batches)}
        out = OUT_DIR / f"ingest-{engine_name}-{args.rows}.json"
        out.write_text(json.dumps(result, indent=2))
        print(
            f"{engine_name} ({args.rows:,} articles): API {result['api_articles_per_s']:,.0f}"
            f" articles/s, raw executemany {result['raw_articles_per_s']:,.0f} articles/s,"
            f" ratio {result['ratio']:.2f} -> {out}"
        )


if __name__ == "__main__":
    main()
