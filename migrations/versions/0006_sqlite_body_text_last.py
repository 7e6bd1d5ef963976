"""SQLite: store articles.body_text after every other column.

A SQLite row is one record, and a 2-8 KB body spills into a chain of overflow pages that
can only be walked in order. With `body_text` in the middle of the row, reading any column
after it (language, image, licence, authors, tags, removal) walked the text's pages too,
although no read but the search index's needs the text. Stored last, a read by key stops
before it, so the pages the reads touch are about a third fewer, and more of a large
database stays in the page cache.

PostgreSQL keeps long values out of line (TOAST), so its column order does not matter and
nothing changes there. The logical schema is the same before and after, so the downgrade
has nothing to undo.

On an existing SQLite database this rewrites the articles table (like VACUUM: it takes
about the table's size in free disk space and time to match).

Revision ID: 0006_sqlite_body_text_last
Revises: 0005_notifications
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = "0006_sqlite_body_text_last"
down_revision: str | None = "0005_notifications"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    # The search triggers name body_text, and SQLite refuses to drop a column a trigger
    # names: they are dropped and then created again exactly as they were.
    triggers = bind.execute(
        text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'articles'")
    ).all()
    for name, _ in triggers:
        op.execute(f'DROP TRIGGER "{name}"')
    # ADD COLUMN appends; each row is rewritten with the copy at its end.
    op.execute("ALTER TABLE articles ADD COLUMN body_text_last TEXT")
    op.execute("UPDATE articles SET body_text_last = body_text")
    op.execute("ALTER TABLE articles DROP COLUMN body_text")
    op.execute("ALTER TABLE articles RENAME COLUMN body_text_last TO body_text")
    for _, sql in triggers:
        op.execute(sql)


def downgrade() -> None:
    pass
