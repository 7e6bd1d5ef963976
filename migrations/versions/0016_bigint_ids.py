"""PostgreSQL: 64-bit ids for the tables that grow without bound.

Articles, the rows made per article (tags, match keys, search rows, tombstones, takedown
targets), removal jobs, the outbox (claimant e-mails, webhook events and deliveries) and
audit events get BIGINT ids, and so does every column that holds one of those ids; their
sequences become `AS bigint`. INTEGER ids end at 2,147,483,647: a busy aggregator's articles
and the webhook deliveries made for each of them would reach it.

`ALTER COLUMN ... TYPE bigint` rewrites each table and rebuilds all its indexes, under an
ACCESS EXCLUSIVE lock held until the revision commits: nothing reads or writes those tables
meanwhile (articles: neither the API nor the workers), and each foreign key to a changed
column is checked again. It needs the tables' size again in free disk space until the
commit. At a million articles (16 GB of these tables) it took 6 minutes, most of it the
articles heap and the search table's GIN index (bench/README.md, "BIGINT ids"): plan a
maintenance window, stop the API and the workers, and run `byline migrate` on its own.

SQLite changes nothing: its INTEGER is 64 bits, and an INTEGER PRIMARY KEY must stay that
(the rowid alias that numbers new rows; BIGINT PRIMARY KEY would not).

The downgrade changes the columns back; it fails if an id above 2,147,483,647 exists.

Revision ID: 0016_bigint_ids
Revises: 0015_appeals
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016_bigint_ids"
down_revision: str | None = "0015_appeals"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each table's columns change in one ALTER TABLE, so each table is rewritten once.
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


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _change_id_type("bigint")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _change_id_type("integer")


def _change_id_type(sql_type: str) -> None:
    for table, columns in BIG_ID_COLUMNS.items():
        changes = ", ".join(f"ALTER COLUMN {column} TYPE {sql_type}" for column in columns)
        op.execute(f"ALTER TABLE {table} {changes}")
        if "id" in columns:
            # SERIAL made the sequence AS integer, which would stop at 2**31 - 1 whatever
            # the column's type; AS bigint raises its maximum with it.
            op.execute(f"ALTER SEQUENCE {_serial_sequence(table)} AS {sql_type}")


def _serial_sequence(table: str) -> str:
    name = (
        op.get_bind()
        .exec_driver_sql(f"SELECT pg_get_serial_sequence('{table}', 'id')")
        .scalar_one()
    )
    if name is None:
        raise RuntimeError(f"{table}.id has no sequence")
    return str(name)
