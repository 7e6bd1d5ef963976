"""PostgreSQL: the search vectors move to a narrow table of their own, article_search.

Since 0007 an article's row holds its body and fills most of a page, so at a million
articles the table is a million pages. A search's GIN index scan returns every match of its
words; the bitmap of a common word's matches, one per page, outgrew work_mem and went lossy,
and the heap scan then read each matching page and rechecked every row on it, detoasting
its tsvector: search spent its time reading wide rows it only needed the date of.

article_search holds (article_id, published_at, search_vector) for each live article, about
a hundred rows a page: the same bitmap stays exact and its heap scan reads a few thousand
narrow pages. A trigger on articles keeps it (as FTS5's triggers do on SQLite): an article is
indexed when written, again when its title, text or date changes, and dropped when a
takedown removes its content; the foreign key drops it with the article.

The vectors already computed are copied, not recomputed; the GIN index is built after the
copy, in one pass. At a million articles this takes minutes and holds a lock on articles
that blocks writes (reads go on). SQLite searches FTS5 (0001): nothing there.

Revision ID: 0008_postgresql_search_table
Revises: 0007_postgresql_body_html_in_row
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008_postgresql_search_table"
down_revision: str | None = "0007_postgresql_body_html_in_row"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEARCH_VECTOR = """setweight(to_tsvector('english', coalesce({row}title, '')), 'A')
        || setweight(to_tsvector('english', coalesce({row}body_text, '')), 'B')"""

UPGRADE = [
    "LOCK TABLE articles IN SHARE MODE",
    """CREATE TABLE article_search (
        article_id integer NOT NULL,
        published_at timestamp with time zone NOT NULL,
        search_vector tsvector NOT NULL,
        CONSTRAINT pk_article_search PRIMARY KEY (article_id),
        CONSTRAINT fk_article_search_article_id_articles FOREIGN KEY (article_id)
            REFERENCES articles (id) ON DELETE CASCADE)""",
    """INSERT INTO article_search (article_id, published_at, search_vector)
        SELECT id, published_at, search_vector FROM articles WHERE removed_at IS NULL""",
    "CREATE INDEX ix_article_search_search_vector ON article_search USING gin (search_vector)",
    # Statistics now: until autovacuum gathers them the planner takes the table for empty.
    "ANALYZE article_search",
    f"""CREATE FUNCTION article_search_refresh() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.removed_at IS NOT NULL THEN
            DELETE FROM article_search WHERE article_id = NEW.id;
        ELSE
            INSERT INTO article_search (article_id, published_at, search_vector)
            VALUES (NEW.id, NEW.published_at, {SEARCH_VECTOR.format(row="NEW.")})
            ON CONFLICT (article_id) DO UPDATE
            SET published_at = EXCLUDED.published_at, search_vector = EXCLUDED.search_vector;
        END IF;
        RETURN NULL;
    END
    $$""",
    """CREATE TRIGGER article_search_after_insert AFTER INSERT ON articles
        FOR EACH ROW EXECUTE FUNCTION article_search_refresh()""",
    # An ingest that changes other columns, or writes the same text again, leaves the vector.
    """CREATE TRIGGER article_search_after_update
        AFTER UPDATE OF title, body_text, published_at, removed_at ON articles
        FOR EACH ROW WHEN (
            OLD.title IS DISTINCT FROM NEW.title
            OR OLD.body_text IS DISTINCT FROM NEW.body_text
            OR OLD.published_at IS DISTINCT FROM NEW.published_at
            OR OLD.removed_at IS DISTINCT FROM NEW.removed_at)
        EXECUTE FUNCTION article_search_refresh()""",
    "DROP INDEX ix_articles_search_vector",
    "ALTER TABLE articles DROP COLUMN search_vector",
]

DOWNGRADE = [
    "DROP TRIGGER article_search_after_update ON articles",
    "DROP TRIGGER article_search_after_insert ON articles",
    "DROP FUNCTION article_search_refresh()",
    "DROP TABLE article_search",
    f"""ALTER TABLE articles ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
        {SEARCH_VECTOR.format(row="")}) STORED""",
    "CREATE INDEX ix_articles_search_vector ON articles USING gin (search_vector)",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in UPGRADE:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in DOWNGRADE:
            op.execute(statement)
