"""PostgreSQL: keep articles.body_html in the row (storage MAIN), compressed.

With the default storage (EXTENDED) a 2-8 KB body is compressed and, still over 2 KB, moved
out of line into the TOAST table, among the chunks of body_text and search_vector. A read by
key then took two index lookups (the row, its TOAST chunks) and three or four pages, which
at a million articles are seldom all cached: the detail read spent more CPU in its backend
than the query's plan suggests, mostly fetching chunks. MAIN keeps the compressed body in
the row unless the row would not fit a page: one index lookup and one page per read, and
the pages detail reads touch (the table, 5 GB at 1M) are apart from those only search and
ingest touch (the text and search vector, out of line as before).

SQLite has no such storage setting (its row layout is 0006's business): nothing there. The
logical schema is unchanged, so the downgrade puts the default back.

On an existing PostgreSQL database only rows written from now on are stored this way;
`VACUUM FULL articles` rewrites the others (it takes the table's size in free disk space and
locks the table while it runs).

Revision ID: 0007_postgresql_body_html_in_row
Revises: 0006_sqlite_body_text_last
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007_postgresql_body_html_in_row"
down_revision: str | None = "0006_sqlite_body_text_last"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE articles ALTER COLUMN body_html SET STORAGE MAIN")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE articles ALTER COLUMN body_html SET STORAGE EXTENDED")
