"""Batch ingest throughput: `POST /v1/articles/batch` (500 articles a batch) against a raw
SQLAlchemy Core `executemany` of the same kind of rows into the same database.

    python -m bench.ingest --engine both

Both paths insert new articles from the corpus generator into the loaded benchmark database,
batch for batch in turn (API, raw, API, raw, ...): the API through `byline serve` pinned to core
0 (the client on core 1 sends pre-encoded JSON over one keep-alive connection); the raw path
in this process, moved to core 0 while it runs, given rows that were already prepared (the
exact column values ingest stores, from `prepare_article` and `new_article_row`) and only
timing their `executemany` into `articles` (with RETURNING ids, as ingest does) and
`article_tags`, committed. The articles added are deleted afterwards, so the database stays
at N rows.
"""

import argparse
import http.client
import json
import os
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, func, select, update

from app.articles.schemas import ArticleIn
from app.articles.service import A, P, T, new_article_row, prepare_article
from app.auth import ApiKey, Scope, create_api_key
from app.db import create_db_engine, new_session, writer
from app.migrate import upgrade_to_head
from bench import corpus
from bench.servers import CLIENT_CPU, SERVER_CPU, byline_server, log, serving
from bench.targets import ENGINES, OUT_DIR, bench_rows, database_url

PORT = 8003
BATCH = 500
FRESH = 50_000_000  # corpus numbers far above any loaded article
KEY_NAME = "bench-ingest"
MAX_BODY_BYTES = 16 * 1024 * 1024


def _pin(cpu: str) -> None:
    os.sched_setaffinity(0, {int(cpu)})


def _clean_up(engine: Engine, rows: int) -> None:
    """Back to the loaded state: N articles, their publishers' counts, no bench key."""
    with new_session(writer(engine)) as session, session.begin():
        session.execute(delete(T).where(T.c.article_id > rows))
        session.execute(delete(A).where(A.c.id > rows))
        live = (
            select(func.count())
            .where(A.c.publisher_id == P.c.id, A.c.removed_at.is_(None))
            .scalar_subquery()
        )
        session.execute(update(P).values(article_count=live))
        session.execute(delete(ApiKey).where(ApiKey.name == KEY_NAME))  # type: ignore[arg-type]


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
    url = database_url(engine_name, rows)
    upgrade_to_head(url)  # the app's newest schema; a no-op when it is there
    engine = create_db_engine(url)
    _clean_up(engine, rows)
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
        _clean_up(engine, rows)
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
