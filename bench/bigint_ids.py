"""How long revision 0016_bigint_ids takes on PostgreSQL at N articles.

    python -m bench.bigint_ids --rows 1000000

A fresh database (next to BENCH_POSTGRES_URL's) is migrated to 0014_console and filled in SQL
with `INSERT ... SELECT generate_series`: N articles with bodies of about 3 KB (drawn from a
pool of 1,000 bodies of a skewed 5,000-word vocabulary, so the search index has the shape of
real text), two tags, a matching key and a search row each, N webhook events and deliveries,
and a tenth of N takedown targets, removal jobs, audit events and e-mails. Then the upgrade
to 0016_bigint_ids is timed, with each table's size before and after, and the database is
dropped.
"""

import argparse
import sys
import threading
import time

import psycopg
from alembic import command
from sqlalchemy import make_url

from app.migrate import alembic_config
from bench.targets import POSTGRES_SERVER_URL, postgres_admin_dsn

DATABASE = "byline_bench_bigint_ids"
TABLES = (
    "articles",
    "article_tags",
    "article_match_keys",
    "article_search",
    "takedown_targets",
    "removal_jobs",
    "claimant_emails",
    "webhook_events",
    "webhook_deliveries",
    "audit_events",
)


def fill_statements(rows: int) -> list[str]:
    tenth = max(rows // 10, 1)
    return [
        # Triggers (article_search) and foreign key checks off for the load; the search rows
        # are written directly below.
        "SET session_replication_role = replica",
        "SET maintenance_work_mem = '1GB'",
        "SELECT setseed(0.21)",
        """CREATE TEMP TABLE vocabulary AS
            SELECT n, translate(substr(md5(n::text), 1, 4 + n % 7), '0123456789', 'ghijklmnop')
                AS word
            FROM generate_series(0, 4999) AS n""",
        # Each body ~450 words (~3 KB), common words far more often than rare ones.
        """CREATE TEMP TABLE bodies AS
            SELECT b AS n, string_agg(v.word, ' ') AS body
            FROM generate_series(0, 999) AS b
            CROSS JOIN LATERAL (
                SELECT floor(5000 * power(random(), 3))::int AS w
                FROM generate_series(1, 450) WHERE b >= 0) AS pick
            JOIN vocabulary v ON v.n = pick.w
            GROUP BY b""",
        "ALTER TABLE bodies ADD COLUMN vector tsvector",
        """UPDATE bodies SET vector = setweight(to_tsvector('english', 'Story ' || n), 'A')
            || setweight(to_tsvector('english', body), 'B')""",
        """INSERT INTO publishers (id, name, url, article_count, created_at)
            SELECT p, 'Publisher ' || p, 'https://publisher' || p || '.example', 0, now()
            FROM generate_series(1, 1000) AS p""",
        f"""INSERT INTO articles (id, canonical_url, source_url, source_domain, slug,
                publisher_id, published_at, first_seen_at, updated_at, content_hash, title,
                excerpt, body_html, body_text, language, license, authors, tags,
                publisher_url, published_at_known)
            SELECT i, 'https://publisher' || i % 1000 || '.example/news/' || lpad(i::text, 9, '0'),
                'https://publisher' || i % 1000 || '.example/news/' || lpad(i::text, 9, '0')
                    || '?utm_source=feed',
                'publisher' || i % 1000 || '.example', 'story-' || i, 1 + i % 1000,
                timestamptz '2026-01-01' + i * interval '30 seconds',
                timestamptz '2026-01-01' + i * interval '30 seconds' + interval '5 minutes',
                timestamptz '2026-01-01' + i * interval '30 seconds' + interval '5 minutes',
                md5(i::text) || md5(i::text), 'Story ' || i, left(b.body, 200),
                '<p>' || b.body || '</p>', b.body, 'en', 'CC-BY 4.0',
                ('[{{"name": "Reporter ' || i % 5000 || '"}}]')::json, '["world", "politics"]',
                'https://publisher' || i % 1000 || '.example', true
            FROM generate_series(1, {rows}) AS i JOIN bodies b ON b.n = i % 1000""",
        f"SELECT setval('articles_id_seq', {rows})",
        f"""INSERT INTO article_tags (article_id, tag)
            SELECT i, tag FROM generate_series(1, {rows}) AS i,
                unnest(ARRAY['world', 'politics']) AS tag""",
        f"""INSERT INTO article_match_keys (article_id, match_key)
            SELECT i, 'publisher' || i % 1000 || '.example/news/' || lpad(i::text, 9, '0')
            FROM generate_series(1, {rows}) AS i""",
        # The GIN index is built after the rows, in one pass, as 0008 built it.
        "DROP INDEX ix_article_search_search_vector",
        f"""INSERT INTO article_search (article_id, published_at, search_vector)
            SELECT i, timestamptz '2026-01-01' + i * interval '30 seconds', b.vector
            FROM generate_series(1, {rows}) AS i JOIN bodies b ON b.n = i % 1000""",
        """CREATE INDEX ix_article_search_search_vector ON article_search
            USING gin (search_vector)""",
        f"""INSERT INTO takedowns (id, status, reason, claimant_name, claimant_email,
                claimant_role, explanation, signature, token_hash, fingerprint, received_at,
                due_at)
            SELECT 'td-' || t, 'completed', 'copyright', 'Claimant', 'legal@publisher.example',
                'owner', 'This is our article.', 'Claimant', md5(t::text), md5(t::text),
                now(), now() + interval '24 hours'
            FROM generate_series(1, {tenth}) AS t""",
        f"""INSERT INTO takedown_targets (takedown_id, position, input, kind, canonical_url,
                match_key, article_id, state)
            SELECT 'td-' || t, 0, 'https://publisher' || t % 1000 || '.example/news/' || t,
                'url', 'https://publisher' || t % 1000 || '.example/news/' || t,
                'publisher' || t % 1000 || '.example/news/' || t, t, 'removed'
            FROM generate_series(1, {tenth}) AS t""",
        f"""INSERT INTO removal_jobs (takedown_id, article_id, status, deadline_at, attempts,
                created_at, finished_at)
            SELECT 'td-' || t, t, 'done', now(), 1, now(), now()
            FROM generate_series(1, {tenth}) AS t""",
        f"""INSERT INTO claimant_emails (uid, takedown_id, kind, recipient, context, status,
                attempts, created_at)
            SELECT md5(t::text), 'td-' || t, 'received', 'legal@publisher.example',
                '{{"title": "Your request"}}', 'done', 1, now()
            FROM generate_series(1, {tenth}) AS t""",
        f"""INSERT INTO audit_events (at, actor, action, takedown_id, article_id, from_status,
                to_status, reason)
            SELECT now(), 'scheduler', 'removed', 'td-' || t, t, 'queued', 'completed',
                'removed within 24 hours'
            FROM generate_series(1, {tenth}) AS t""",
        """INSERT INTO webhook_endpoints (url, events, secret, secret_hint, created_at,
                created_by, consecutive_failures)
            VALUES ('https://front.example/hooks', '["article.created"]', 'whsec', 'whsec',
                now(), 'admin', 0)""",
        f"""INSERT INTO webhook_events (uid, kind, article_id, payload, created_at)
            SELECT md5(i::text), 'article.created', i,
                json_build_object('id', i, 'canonical_url',
                    'https://publisher' || i % 1000 || '.example/news/' || i,
                    'url', 'https://news.example/v1/articles/' || i,
                    'updated_at', '2026-01-01T00:00:00+00:00'),
                now()
            FROM generate_series(1, {rows}) AS i""",
        f"""INSERT INTO webhook_deliveries (endpoint_id, event_id, article_id, status,
                attempts, created_at, last_status_code)
            SELECT 1, i, i, 'done', 1, now(), 204 FROM generate_series(1, {rows}) AS i""",
    ]


def log(message: str) -> None:
    print(f"[bigint_ids {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def table_sizes(dsn: str) -> dict[str, str]:
    """Each table's total size (heap, TOAST and indexes)."""
    with psycopg.connect(dsn) as connection:
        return {
            table: str(
                connection.execute(
                    "SELECT pg_size_pretty(pg_total_relation_size(%s::regclass))", (table,)
                ).fetchone()[0]  # type: ignore[index]
            )
            for table in TABLES
        }


def watch_statements(dsn: str, stop: threading.Event) -> list[tuple[float, str]]:
    """When each ALTER of the upgrade began (polled from pg_stat_activity every 0.2 s), so
    that the run can say what each table cost."""
    started: list[tuple[float, str]] = []

    def poll() -> None:
        with psycopg.connect(dsn, autocommit=True) as connection:
            while not stop.wait(0.2):
                for (query,) in connection.execute(
                    "SELECT query FROM pg_stat_activity WHERE datname = current_database()"
                    " AND state = 'active' AND query LIKE 'ALTER %'"
                ):
                    if not started or started[-1][1] != query:
                        started.append((time.perf_counter(), query))

    threading.Thread(target=poll, daemon=True).start()
    return started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="Do not drop the database.")
    rows = parser.parse_args().rows
    keep = parser.parse_args().keep
    url = make_url(POSTGRES_SERVER_URL).set(database=DATABASE)
    database_url = url.render_as_string(hide_password=False)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(postgres_admin_dsn(), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {DATABASE}")
    try:
        command.upgrade(alembic_config(database_url), "0014_console")
        started = time.perf_counter()
        with psycopg.connect(dsn) as connection:
            for statement in fill_statements(rows):
                step = time.perf_counter()
                connection.execute(statement)  # type: ignore[call-overload]
                log(f"{time.perf_counter() - step:7.1f} s  {' '.join(statement.split())[:70]}")
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute("VACUUM ANALYZE")
        log(f"filled {rows:,} articles in {time.perf_counter() - started:.0f} s")
        before = table_sizes(dsn)
        stop = threading.Event()
        statements = watch_statements(dsn, stop)
        started = time.perf_counter()
        command.upgrade(alembic_config(database_url), "0016_bigint_ids")
        finished = time.perf_counter()
        elapsed = finished - started
        stop.set()
        ends = [at for at, _ in statements[1:]] + [finished]
        for (at, query), end in zip(statements, ends, strict=True):
            print(f"{end - at:7.1f} s  {' '.join(query.split())[:90]}")
        after = table_sizes(dsn)
        for table in TABLES:
            print(f"{table:20} {before[table]:>10} -> {after[table]:>10}")
        print(f"0014_console -> 0016_bigint_ids at {rows:,} articles: {elapsed:.1f} s")
    finally:
        if not keep:
            with psycopg.connect(postgres_admin_dsn(), autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


if __name__ == "__main__":
    main()
