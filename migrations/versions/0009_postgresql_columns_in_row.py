"""PostgreSQL: keep every column an article read returns in the row (storage MAIN).

0007 kept body_html in the row, and that pushed the other columns out. PostgreSQL shrinks a
row over 2 KB by moving its EXTENDED (default) values out of line, biggest first, while the
row is still over 2 KB, and it counts any value over 24 bytes. body_text went first, as
0007 meant; but with a 2-8 KB body_html in the row, no row ever got under 2 KB, so the
title, excerpt, URLs, slug, content hash, authors and tags followed, each its own TOAST
entry. A read by key then fetched seven or more TOAST values, an index lookup each: a third
of its backend's CPU at a million articles (measured with perf). Columns with storage MAIN are
compressed when a row is too large but moved out of line only when it would not fit a page,
so with all of them MAIN (body_text excepted: only search and ingest read it) a read by key
or a list page reads one heap page per article and nothing else.

Like 0007, this applies to rows written from now on; `VACUUM FULL articles` rewrites the
others (it takes the table's size in free disk space and locks the table while it runs).
SQLite keeps a row whole in its pages (its layout is 0006's business): nothing there.

Revision ID: 0009_postgresql_columns_in_row
Revises: 0008_postgresql_search_table
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009_postgresql_columns_in_row"
down_revision: str | None = "0008_postgresql_search_table"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The variable-length columns of articles that reads return (body_html has been MAIN since
# 0007); body_text stays EXTENDED.
READ_COLUMNS = (
    "canonical_url", "source_url", "source_domain", "slug", "content_hash", "title", "excerpt",
    "language", "image_url", "image_alt", "license", "authors", "tags", "removed_by_takedown_id",
)  # fmt: skip


def _storage(storage: str) -> str:
    columns = ", ".join(f"ALTER COLUMN {name} SET STORAGE {storage}" for name in READ_COLUMNS)
    return f"ALTER TABLE articles {columns}"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_storage("MAIN"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_storage("EXTENDED"))
