"""Load N synthetic articles into SQLite and PostgreSQL, exactly as ingest would store them.

    python -m bench.generate --rows 1000000 --engine both

1. prepare: every corpus item goes through the real ingest code (`ArticleIn` validation,
   `prepare_article`: sanitised body, body_text, content hash; `new_article_row`: canonical
   URL, slug, timestamps) on a process pool; the rows are pickled in chunks under bench/data/.
2. load: a fresh database migrated with `app.migrate.upgrade_to_head`, then the rows through
   SQLAlchemy Core `executemany` on the app's own tables (articles, their tags and their
   matching keys in `article_match_keys`), in large transactions. The search
   rows come from the migrations' triggers: FTS5 on SQLite, article_search on PostgreSQL.
   Plain secondary indexes are dropped for the load and recreated from their own stored DDL
   afterwards: the same indexes, built once instead of row by row.
3. a marker file, so that `make bench` does not reload a complete database.

Each article is "ingested" a few minutes to hours after it was published (`first_seen_at`),
in corpus order, so ids are not in publication order (a crawler backfilling sources).
"""

import argparse
import os
import pickle
import random
import sys
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, bindparam, text, update

from app.articles.schemas import ArticleIn
from app.articles.service import MK, A, P, T, new_article_row, prepare_article
from app.articles.urls import match_key
from app.db import create_db_engine
from app.migrate import upgrade_to_head
from bench import corpus
from bench.targets import (
    DATA_DIR,
    ENGINES,
    bench_rows,
    database_url,
    loaded_marker,
    postgres_admin_dsn,
    postgres_database,
    sqlite_path,
)

CHUNK = 10_000
TABLES_WITH_LOAD_INDEXES = ("articles", "article_tags", "article_match_keys", "article_search")


def log(message: str) -> None:
    print(f"[generate {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# Stage 1: prepare ---------------------------------------------------------------------------


def chunk_path(index: int) -> Path:
    """Chunk `index` holds articles index*CHUNK+1 .. (index+1)*CHUNK, whatever N is."""
    return DATA_DIR / "corpus" / f"chunk-{index:05d}.pickle.z"


def chunk_count(rows: int) -> int:
    return (rows + CHUNK - 1) // CHUNK


def prepared_rows(first: int, last: int) -> list[dict[str, Any]]:
    """Articles first..last as ingest would insert them, with their tags and matching key."""
    publisher_ids = {p["name"]: index + 1 for index, p in enumerate(corpus.publishers())}
    rows = []
    for n in range(first, last + 1):
        prepared = prepare_article(ArticleIn.model_validate(corpus.article_item(n)))
        assert prepared.published_at is not None
        now = prepared.published_at + timedelta(seconds=random.Random(-n).randrange(60, 86_400))
        row = new_article_row(
            prepared, publisher_id=publisher_ids[prepared.publisher_name], now=now
        )
        rows.append({"id": n, **row, "_tags": prepared.tags, "_match_key": prepared.match_key})
    return rows


def _prepare_chunk(index: int) -> int:
    path = chunk_path(index)
    batch = prepared_rows(index * CHUNK + 1, (index + 1) * CHUNK)
    partial = path.with_suffix(".part")
    partial.write_bytes(zlib.compress(pickle.dumps(batch, pickle.HIGHEST_PROTOCOL), 1))
    partial.rename(path)
    return len(batch)


def prepare(rows: int, workers: int) -> None:
    chunk_path(0).parent.mkdir(parents=True, exist_ok=True)
    todo = [index for index in range(chunk_count(rows)) if not chunk_path(index).exists()]
    if not todo:
        log(f"prepare: {rows:,} rows already prepared")
        return
    started = time.perf_counter()
    done = 0
    with ProcessPoolExecutor(workers) as pool:
        for count in pool.map(_prepare_chunk, todo):
            done += count
            elapsed = time.perf_counter() - started
            log(f"prepare: {done:,} rows in {elapsed:.0f} s ({done / elapsed:,.0f}/s)")


def read_chunks(rows: int) -> Iterator[list[dict[str, Any]]]:
    for index in range(chunk_count(rows)):
        chunk = pickle.loads(zlib.decompress(chunk_path(index).read_bytes()))
        yield chunk[: rows - index * CHUNK]


# Stage 2: load ------------------------------------------------------------------------------


def _plain_indexes(connection: Connection) -> list[tuple[str, str]]:
    """(name, DDL) of the non-unique secondary indexes of the bulk-loaded tables."""
    if connection.dialect.name == "sqlite":
        query = text(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            " AND tbl_name IN :tables"
        )
    else:
        query = text(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i"
            " WHERE i.tablename IN :tables AND NOT EXISTS"
            " (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
        )
    query = query.bindparams(bindparam("tables", TABLES_WITH_LOAD_INDEXES, expanding=True))
    return [(row[0], row[1]) for row in connection.execute(query)]


def _create_database(engine_name: str, rows: int) -> None:
    if engine_name == "sqlite":
        path = sqlite_path(rows)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    name = postgres_database(rows)
    with psycopg.connect(postgres_admin_dsn(), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')


def _tune_load_session(connection: Connection) -> None:
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("PRAGMA cache_size=-1000000")  # 1 GB, this connection only
    else:
        connection.exec_driver_sql("SET synchronous_commit = off")
        connection.exec_driver_sql("SET maintenance_work_mem = '1GB'")
        # Most of a PostgreSQL load is the server computing tsvectors; under `nice` (a load
        # in the background of other work) its backend runs at the loader's priority too.
        niceness = os.getpriority(os.PRIO_PROCESS, 0)
        if niceness > 0:
            backend = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            try:
                os.setpriority(os.PRIO_PROCESS, backend, niceness)
            except OSError:
                log("load postgresql: could not renice the server backend (not local?)")
    connection.commit()


def load(engine_name: str, rows: int) -> None:
    marker = loaded_marker(engine_name, rows)
    if marker.exists():
        log(f"load {engine_name}: already loaded ({marker.name})")
        return
    url = database_url(engine_name, rows)
    _create_database(engine_name, rows)
    upgrade_to_head(url)
    engine = create_db_engine(url)
    try:
        _load_into(engine, rows)
    finally:
        engine.dispose()
    marker.write_text(f"{rows}\n")


def _load_into(engine: Engine, rows: int) -> None:
    name = engine.dialect.name
    started = time.perf_counter()
    with engine.connect() as connection:
        _tune_load_session(connection)
        with connection.begin():
            indexes = _plain_indexes(connection)
            for index_name, _ in indexes:
                connection.exec_driver_sql(f"DROP INDEX {index_name}")
            connection.execute(
                P.insert(),
                [
                    {
                        "id": index + 1,
                        "name": p["name"],
                        "url": p["url"],
                        "article_count": 0,
                        "created_at": corpus.FIRST_DAY,
                    }
                    for index, p in enumerate(corpus.publishers())
                ],
            )
        counts: Counter[int] = Counter()
        done = 0
        homepages = {index + 1: p["url"] for index, p in enumerate(corpus.publishers())}
        for chunk in read_chunks(rows):
            tags = [{"article_id": r["id"], "tag": tag} for r in chunk for tag in r["_tags"]]
            # Chunks prepared before article_match_keys existed carry no key: computed here.
            keys = [
                {
                    "article_id": r["id"],
                    "match_key": r.get("_match_key") or match_key(r["canonical_url"]),
                }
                for r in chunk
            ]
            # Chunks prepared before migration 0013 carry no attribution of the article's own:
            # its publisher's homepage, and a date the corpus always gives.
            for r in chunk:
                r.setdefault("publisher_url", homepages[r["publisher_id"]])
                r.setdefault("published_at_known", True)
            with connection.begin():
                connection.execute(
                    A.insert(),
                    [{k: v for k, v in r.items() if not k.startswith("_")} for r in chunk],
                )
                if tags:
                    connection.execute(T.insert(), tags)
                connection.execute(MK.insert(), keys)
            counts.update(r["publisher_id"] for r in chunk)
            done += len(chunk)
            elapsed = time.perf_counter() - started
            log(f"load {name}: {done:,} rows in {elapsed:.0f} s ({done / elapsed:,.0f}/s)")
        with connection.begin():
            connection.execute(
                update(P).where(P.c.id == bindparam("pid")).values(article_count=bindparam("n")),
                [{"pid": pid, "n": count} for pid, count in counts.items()],
            )
            for index_name, ddl in indexes:
                log(f"load {name}: creating {index_name}")
                connection.exec_driver_sql(ddl)
            if name == "postgresql":
                # Rows were loaded with explicit ids: new ingests continue after them.
                for table in ("articles", "publishers"):
                    connection.exec_driver_sql(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id))"
                        f" FROM {table}"
                    )
    if name == "postgresql":
        # What autovacuum would do after a bulk load: statistics and the visibility map.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            for table in (*TABLES_WITH_LOAD_INDEXES, "publishers"):
                connection.exec_driver_sql(f"VACUUM (ANALYZE) {table}")
    log(f"load {name}: {rows:,} rows done in {time.perf_counter() - started:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=bench_rows())
    parser.add_argument("--engine", choices=[*ENGINES, "both"], default="both")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("BENCH_WORKERS", 2)))
    parser.add_argument("--reload", action="store_true", help="load even if already loaded")
    args = parser.parse_args()
    DATA_DIR.mkdir(exist_ok=True)
    prepare(args.rows, args.workers)
    engines = ENGINES if args.engine == "both" else (args.engine,)
    if args.reload:
        for engine_name in engines:
            loaded_marker(engine_name, args.rows).unlink(missing_ok=True)
    # The two loads are independent; on two cores they overlap well (PostgreSQL's work is
    # mostly in its own server process, computing the tsvector column).
    with ProcessPoolExecutor(len(engines)) as pool:
        for _ in pool.map(load, engines, [args.rows] * len(engines)):
            pass


if __name__ == "__main__":
    main()
