"""Articles carry their own attribution: the publisher's homepage as sent with each article,
and whether its publication date was sent at all.

Until now an article showed its publisher's shared record, and any ingest naming that
publisher with another homepage rewrote it for all of its articles. `articles.publisher_url`
is filled from the publisher rows as they stand (what every read showed until now); from
here on ingest writes the homepage sent with the article, and the shared record keeps the
one it was created with.

`published_at_known` says whether `published_at` is the source's date. Ingest without a date
has always stored the time it first saw the article there (`first_seen_at`, to the
microsecond), so a date equal to `first_seen_at` is taken as unknown. Rows written from now
on say which it is; the column's default, false, is the safe one: a date nobody sent is never
stated.

SQLite: ADD COLUMN appends, and 0006 keeps `body_text` after every other column (reads stop
before its overflow pages); it is moved last again, as 0006 did, in the same pass that fills
the new columns (the FTS5 triggers name body_text and SQLite refuses to drop a column a
trigger names: they are dropped and created again as they were). This rewrites the articles
table, twice (the fill, then DROP COLUMN): time and free disk space about twice the table's.
PostgreSQL: the new columns are metadata-only; the fill is one UPDATE of every article row
(its search trigger, on title, body text, date and removal, does not fire), and
`publisher_url` is kept in the row like every column a read returns (storage MAIN, 0009).

Revision ID: 0013_article_attribution
Revises: 0012_feeds
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import text

revision: str = "0013_article_attribution"
down_revision: str | None = "0012_feeds"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FILL = """
UPDATE articles SET
    publisher_url = (SELECT publishers.url FROM publishers
                     WHERE publishers.id = articles.publisher_id),
    published_at_known = (published_at <> first_seen_at){move_body_text}
"""


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    triggers = []
    if sqlite:
        triggers = bind.execute(
            text(
                "SELECT name, sql FROM sqlite_master"
                " WHERE type = 'trigger' AND tbl_name = 'articles'"
            )
        ).all()
        for name, _ in triggers:
            op.execute(f'DROP TRIGGER "{name}"')
    op.add_column("articles", sa.Column("publisher_url", sa.String(length=2048), nullable=True))
    op.add_column(
        "articles",
        sa.Column("published_at_known", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    if sqlite:
        op.execute("ALTER TABLE articles ADD COLUMN body_text_last TEXT")
        op.execute(FILL.format(move_body_text=",\n    body_text_last = body_text"))
        op.execute("ALTER TABLE articles DROP COLUMN body_text")
        op.execute("ALTER TABLE articles RENAME COLUMN body_text_last TO body_text")
        for _, sql in triggers:
            op.execute(sql)
    else:
        op.execute(FILL.format(move_body_text=""))
        op.execute("ALTER TABLE articles ALTER COLUMN publisher_url SET STORAGE MAIN")


def downgrade() -> None:
    # Dropping the two columns leaves body_text last on SQLite; no trigger names them.
    op.drop_column("articles", "published_at_known")
    op.drop_column("articles", "publisher_url")
