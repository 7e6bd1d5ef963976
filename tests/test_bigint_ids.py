"""Ids past 2**31 (revision 0016_bigint_ids): articles, removal jobs, the outbox and audit
events are BIGINT on PostgreSQL, and an article numbered past INTEGER's end goes through
ingest, reads, search, removal, its audit rows, its e-mails and its webhooks."""

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, inspect, select, text
from sqlmodel import col

from app.articles.models import ArticleTombstone
from app.clock import FrozenClock
from app.config import Settings
from app.db import new_session
from app.takedowns.models import AuditEvent, TakedownTarget
from tests.notifications.conftest import Receiver
from tests.notifications.factories import deliveries, emails, events, register
from tests.scheduler.factories import jobs
from tests.takedowns.factories import file_confirmed, filing, ingest
from tests.workers import run_outside_world, run_removals

PAST_INTEGER = 2**31 + 1000
# Every table whose id is BIGINT on PostgreSQL, and the columns that hold those ids.
BIG_ID_COLUMNS = {
    "articles": ("id",),
    "article_tags": ("article_id",),
    "article_match_keys": ("article_id",),
    "article_search": ("article_id",),
    "article_tombstones": ("id", "article_id"),
    "takedown_targets": ("id", "article_id", "closest_article_id"),
    "removal_jobs": ("id", "article_id"),
    "claimant_emails": ("id",),
    "webhook_events": ("id", "article_id"),
    "webhook_deliveries": ("id", "event_id", "article_id"),
    "audit_events": ("id", "article_id"),
}
TABLES_WITH_SEQUENCES = [table for table, columns in BIG_ID_COLUMNS.items() if "id" in columns]


def test_id_columns_are_bigint_on_postgresql_and_rowid_aliases_on_sqlite(engine: Engine) -> None:
    inspector = inspect(engine)
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            for table, columns in BIG_ID_COLUMNS.items():
                types = {c["name"]: str(c["type"]) for c in inspector.get_columns(table)}
                assert {column: types[column] for column in columns} == dict.fromkeys(
                    columns, "BIGINT"
                ), table
            for table in TABLES_WITH_SEQUENCES:
                data_type = connection.execute(
                    text(
                        "SELECT data_type::text FROM pg_sequences"
                        " WHERE (schemaname || '.' || sequencename)"
                        " = pg_get_serial_sequence(:table, 'id')"
                    ),
                    {"table": table},
                ).scalar_one()
                assert data_type == "bigint", table
        else:
            # INTEGER PRIMARY KEY, the 64-bit rowid that numbers new rows.
            for table in TABLES_WITH_SEQUENCES:
                create = connection.execute(
                    text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :t"),
                    {"t": table},
                ).scalar_one()
                columns = {c["name"]: str(c["type"]) for c in inspector.get_columns(table)}
                assert columns["id"] == "INTEGER", table
                assert inspector.get_pk_constraint(table)["constrained_columns"] == ["id"]
                assert "BIGINT" not in create.upper(), table


def test_an_article_numbered_past_2_to_the_31_is_read_removed_audited_and_announced(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    clock: FrozenClock,
    ingest_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite's INTEGER ids are 64 bits already")
    with engine.begin() as connection:
        for table in TABLES_WITH_SEQUENCES:
            connection.execute(
                text("SELECT setval(pg_get_serial_sequence(:table, 'id'), :value)"),
                {"table": table, "value": PAST_INTEGER},
            )
    receiver = Receiver()
    receiver.start()
    try:
        register(client, admin_headers, receiver.url, ["article.created", "article.removed"])
        article = ingest(client, ingest_headers)
        article_id = article["id"]
        assert article_id > PAST_INTEGER

        assert client.get(f"/v1/articles/{article_id}").json()["id"] == article_id
        assert client.get(f"/v1/articles/by-slug/{article['slug']}").status_code == 200
        listed = client.get("/v1/articles", params={"q": "flood"}).json()
        assert [item["id"] for item in listed["items"]] == [article_id]

        # legal@reuters.com, confirmed, for a reuters.com article: removed at once.
        filed = file_confirmed(client, engine, filing([article_id]))
        assert filed["status"] == "queued"
        assert run_removals(engine, settings, clock).of("removal")["removed"] == 1
        gone = client.get(f"/v1/articles/{article_id}")
        assert gone.status_code == 451

        [job] = jobs(engine, filed["id"])
        assert (job.id > PAST_INTEGER, job.article_id, job.status) == (True, article_id, "done")
        with new_session(engine) as session:
            audited = session.scalars(
                select(AuditEvent).where(col(AuditEvent.article_id) == article_id)
            ).all()
            targets = session.scalars(
                select(TakedownTarget).where(col(TakedownTarget.takedown_id) == filed["id"])
            ).all()
            tombstone = session.scalars(
                select(ArticleTombstone).where(col(ArticleTombstone.article_id) == article_id)
            ).one()
        assert audited and all(event.id > PAST_INTEGER for event in audited)
        assert [(t.id > PAST_INTEGER, t.article_id) for t in targets] == [(True, article_id)]
        assert tombstone.id > PAST_INTEGER

        run_outside_world(engine, settings, clock)
        assert [(e.kind, e.article_id, e.id > PAST_INTEGER) for e in events(engine)] == [
            ("article.created", article_id, True),
            ("article.removed", article_id, True),
        ]
        assert [(d.article_id, d.status, d.id > PAST_INTEGER) for d in deliveries(engine)] == [
            (article_id, "done", True),
            (article_id, "done", True),
        ]
        assert [(body["type"], body["data"]["id"]) for body in receiver.accepted()] == [
            ("article.created", article_id),
            ("article.removed", article_id),
        ]
        assert emails(engine) and all(email.id > PAST_INTEGER for email in emails(engine))
    finally:
        receiver.stop()
