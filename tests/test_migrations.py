"""One Alembic history for both engines: it round-trips and matches the models."""

import hashlib
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, Engine, inspect, select, text

from app.db import create_db_engine, new_session
from app.migrate import (
    alembic_config,
    current_revision,
    downgrade_to_base,
    head_revision,
    schema_differences,
    upgrade_to_head,
)
from app.models import metadata
from app.takedowns.models import Takedown


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    assert current_revision(engine) == head_revision()
    assert schema_differences(engine) == []


def test_upgrade_downgrade_upgrade_round_trips(database_url: str, engine: Engine) -> None:
    downgrade_to_base(database_url)
    scratch = create_db_engine(database_url)
    try:
        leftover = set(inspect(scratch).get_table_names()) - {"alembic_version"}
        assert leftover == set()
        upgrade_to_head(database_url)
        assert current_revision(scratch) == head_revision()
        assert set(metadata.tables) <= set(inspect(scratch).get_table_names())
        assert schema_differences(scratch) == []
    finally:
        scratch.dispose()


def test_sqlite_body_text_moves_last_with_its_text_and_search(tmp_path: Path) -> None:
    """0006 rewrites SQLite's articles with body_text stored last; nothing else changes."""
    url = f"sqlite:///{tmp_path / 'at-0005.db'}"
    command.upgrade(alembic_config(url), "0005_notifications")
    scratch = create_db_engine(url)
    try:
        with scratch.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO publishers (id, name, article_count, created_at)"
                    " VALUES (1, 'Reuters', 1, '2026-01-01 00:00:00')"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO articles (id, canonical_url, source_url, source_domain, slug,"
                    " publisher_id, published_at, first_seen_at, updated_at, content_hash,"
                    " title, body_html, body_text, language, license)"
                    " VALUES (7, 'https://e.com/a', 'https://e.com/a', 'e.com', 'a', 1,"
                    " '2026-01-01 00:00:00', '2026-01-01 00:00:00', '2026-01-01 00:00:00',"
                    " 'h', 'Harbour strike', '<p>Dockers walk out</p>', 'Dockers walk out',"
                    " 'en', 'CC-BY')"
                )
            )
        columns = [c["name"] for c in inspect(scratch).get_columns("articles")]
        assert columns.index("body_text") < columns.index("language")

        upgrade_to_head(url)

        inspector = inspect(scratch)
        columns = [c["name"] for c in inspector.get_columns("articles")]
        assert columns[-1] == "body_text"
        assert schema_differences(scratch) == []
        with scratch.begin() as connection:
            row = connection.execute(
                text("SELECT title, body_text, language, license FROM articles WHERE id = 7")
            ).one()
            assert tuple(row) == ("Harbour strike", "Dockers walk out", "en", "CC-BY")

            def found(word: str) -> list[int]:
                match = text("SELECT rowid FROM articles_fts WHERE articles_fts MATCH :w")
                return list(connection.execute(match, {"w": word}).scalars())

            assert found("dockers") == [7]
            # The search triggers are back: a changed body is indexed again.
            connection.execute(text("UPDATE articles SET body_text = 'Cranes idle' WHERE id = 7"))
            assert found("cranes") == [7]
            assert found("dockers") == []
            connection.execute(
                text("INSERT INTO articles_fts(articles_fts) VALUES ('integrity-check')")
            )
    finally:
        scratch.dispose()


def test_postgresql_search_vectors_move_to_their_own_table(
    database_url: str, engine: Engine
) -> None:
    """0008 copies the live articles' vectors into article_search, whose triggers keep it
    from then on: new and changed text is indexed, removed and deleted articles leave it."""
    if engine.dialect.name != "postgresql":
        pytest.skip("article_search is PostgreSQL's")
    command.downgrade(alembic_config(database_url), "0007_postgresql_body_html_in_row")
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO publishers (id, name, article_count, created_at)"
                    " VALUES (1, 'Reuters', 1, '2026-01-01 00:00:00+00')"
                )
            )
            for article_id, title, body, removed_at in [
                (7, "Harbour strike", "Dockers walk out", None),
                (8, None, None, "2026-01-02 00:00:00+00"),
            ]:
                _insert_article(connection, article_id, title, body, removed_at)

        upgrade_to_head(database_url)

        assert schema_differences(engine) == []
        with engine.begin() as connection:

            def found(words: str) -> list[int]:
                match = text(
                    "SELECT article_id FROM article_search WHERE search_vector"
                    " @@ websearch_to_tsquery('english', :words) ORDER BY article_id"
                )
                return list(connection.execute(match, {"words": words}).scalars())

            def indexed() -> list[int]:
                ids = text("SELECT article_id FROM article_search ORDER BY article_id")
                return list(connection.execute(ids).scalars())

            assert indexed() == [7]
            assert found("dockers") == found("harbour") == [7]
            connection.execute(text("UPDATE articles SET body_text = 'Cranes idle' WHERE id = 7"))
            assert found("cranes") == [7]
            assert found("dockers") == []
            _insert_article(connection, 9, "Port reopens", "Cranes move again", None)
            assert found("cranes") == [7, 9]
            connection.execute(
                text(
                    "UPDATE articles SET removed_at = now(), title = NULL, body_text = NULL"
                    " WHERE id = 7"
                )
            )
            connection.execute(text("DELETE FROM articles WHERE id = 9"))
            assert indexed() == []
    finally:
        upgrade_to_head(database_url)


def test_postgresql_read_columns_stay_in_the_row_until_downgraded(
    database_url: str, engine: Engine
) -> None:
    """0009 sets storage MAIN on every variable-length column of articles but body_text (the
    read path's test checks that a read then touches no TOAST page); its downgrade restores
    the default, EXTENDED, on all of them but body_html (MAIN since 0007)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("column storage is PostgreSQL's")

    def storage() -> dict[str, str]:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT attname, attstorage FROM pg_attribute"
                    " WHERE attrelid = 'articles'::regclass AND attnum > 0"
                    " AND NOT attisdropped AND attlen = -1"
                )
            )
            return {name: kind for name, kind in rows}

    at_head = storage()
    assert at_head.pop("body_text") == "x"
    assert set(at_head.values()) == {"m"}
    command.downgrade(alembic_config(database_url), "0008_postgresql_search_table")
    try:
        before = storage()
        assert before.pop("body_html") == "m"
        assert set(before.values()) == {"x"}
        # publisher_url came with 0013, after 0008.
        assert set(before) == set(at_head) - {"body_html", "publisher_url"} | {"body_text"}
    finally:
        upgrade_to_head(database_url)
    assert storage() == {**at_head, "body_text": "x"}


def _insert_article(
    connection: Connection,
    article_id: int,
    title: str | None,
    body: str | None,
    removed_at: str | None,
) -> None:
    connection.execute(
        text(
            "INSERT INTO articles (id, canonical_url, source_url, source_domain, slug,"
            " publisher_id, published_at, first_seen_at, updated_at, content_hash,"
            " title, body_text, removed_at)"
            " VALUES (:id, :url, :url, 'e.com', :slug, 1, '2026-01-01 00:00:00+00',"
            " '2026-01-01 00:00:00+00', '2026-01-01 00:00:00+00', 'h', :title, :body,"
            " :removed_at)"
        ),
        {
            "id": article_id,
            "url": f"https://e.com/{article_id}",
            "slug": f"a-{article_id}",
            "title": title,
            "body": body,
            "removed_at": removed_at,
        },
    )


def test_0010_keys_every_article_merges_spellings_of_a_blocked_url_and_hides_removed_slugs(
    database_url: str, engine: Engine
) -> None:
    """0010 fills the matching keys of articles and targets, re-keys URL blocks (two blocks
    of one URL become one: the other is lifted, audited), writes a tombstone for every
    removed article and keeps only a hash of its slug; requests filed before it keep their
    state and ask for no confirmation."""
    command.downgrade(alembic_config(database_url), "0009_postgresql_columns_in_row")
    stamp = "2026-01-01 00:00:00" + ("+00" if engine.dialect.name == "postgresql" else "")
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO publishers (id, name, article_count, created_at)"
                    " VALUES (1, 'Reuters', 1, :at)"
                ),
                {"at": stamp},
            )
            for article_id, url, slug, removed in [
                (7, "https://www.reuters.com/world/x-1", "flood-defences-hold-1a2b", None),
                (8, "https://www.reuters.com/world/strike", "harbour-strike-3c4d", "t-done"),
            ]:
                connection.execute(
                    text(
                        "INSERT INTO articles (id, canonical_url, source_url, source_domain,"
                        " slug, publisher_id, published_at, first_seen_at, updated_at,"
                        " content_hash, removed_at, removed_by_takedown_id)"
                        " VALUES (:id, :url, :url, 'reuters.com', :slug, 1, :at, :at, :at,"
                        " 'h', :removed_at, :takedown)"
                    ),
                    {
                        "id": article_id,
                        "url": url,
                        "slug": slug,
                        "at": stamp,
                        "removed_at": stamp if removed else None,
                        "takedown": removed,
                    },
                )
            for takedown_id, status in [("t-done", "completed"), ("t-open", "queued")]:
                connection.execute(
                    text(
                        "INSERT INTO takedowns (id, status, reason, claimant_name,"
                        " claimant_email, claimant_role, explanation, signature, token_hash,"
                        " fingerprint, received_at, due_at, run_at)"
                        " VALUES (:id, :status, 'copyright', 'P', 'p@reuters.com', 'owner',"
                        " 'e', 's', 'h', :id, :at, :at, :at)"
                    ),
                    {"id": takedown_id, "status": status, "at": stamp},
                )
            connection.execute(
                text(
                    "INSERT INTO takedown_targets (takedown_id, position, input, kind,"
                    " canonical_url, article_id, state) VALUES ('t-open', 0,"
                    " 'http://reuters.com/world/x-1/', 'source_url',"
                    " 'http://reuters.com/world/x-1/', NULL, 'blocked')"
                )
            )
            for block_id, value in [
                (1, "https://www.reuters.com/world/x-1"),
                (2, "http://reuters.com/world/x-1/"),
            ]:
                connection.execute(
                    text(
                        "INSERT INTO blocks (id, kind, value, takedown_id, created_at)"
                        " VALUES (:id, 'url', :value, 't-open', :at)"
                    ),
                    {"id": block_id, "value": value, "at": stamp},
                )

        upgrade_to_head(database_url)

        assert schema_differences(engine) == []
        with engine.connect() as connection:

            def rows(sql: str) -> list[tuple[object, ...]]:
                return [tuple(row) for row in connection.execute(text(sql))]

            assert rows("SELECT article_id, match_key FROM article_match_keys ORDER BY 1") == [
                (7, "reuters.com/world/x-1"),
                (8, "reuters.com/world/strike"),
            ]
            assert rows("SELECT match_key FROM takedown_targets") == [("reuters.com/world/x-1",)]
            blocks = rows("SELECT id, value, lifted_at IS NULL, lifted_by FROM blocks ORDER BY id")
            assert blocks[0] == (1, "reuters.com/world/x-1", True, None)
            assert blocks[1][0] == 2 and not blocks[1][2] and blocks[1][3] == "migration 0010"
            assert rows("SELECT action, block_id FROM audit_events") == [("block_lifted", 2)]
            assert rows("SELECT article_id, takedown_id FROM article_tombstones") == [(8, "t-done")]
            slugs = dict(rows("SELECT id, slug FROM articles"))
            assert slugs[7] == "flood-defences-hold-1a2b"
            assert slugs[8] == "~" + hashlib.sha256(b"harbour-strike-3c4d").hexdigest()
            assert rows(
                "SELECT status, confirmation_hash, email_confirmed_at FROM takedowns"
                " WHERE id = 't-open'"
            ) == [("queued", None, None)]
    finally:
        upgrade_to_head(database_url)


def test_0015_splits_joined_escalation_reasons_exactly_and_the_downgrade_joins_them(
    database_url: str, engine: Engine
) -> None:
    """Before 0015 the policy's reasons were stored joined by "; ", which also occurs inside
    two of them: only a text made wholly of the policy's reasons is split, into exactly
    those; an operator's text stays one reason, "; " and all."""
    command.downgrade(alembic_config(database_url), "0014_console")
    stamp = "2026-01-01 00:00:00" + ("+00" if engine.dialect.name == "postgresql" else "")
    many = "names 30 articles or addresses; more than 25 are never removed without an operator"
    domain = (
        "asks for the whole domain reuters.com without a publisher key (DNS proof); "
        "an operator decides"
    )
    later = (
        "claims an original published 2026-01-02T00:00:00+00:00, after we first saw the "
        "content (2026-01-01T00:00:00+00:00)"
    )
    operator = "Check the licence; and the date"
    joined = {
        "t-three": f"{many}; {domain}; {later}",
        "t-two": f"{domain}; {later}",
        "t-one": domain,
        "t-operator": operator,
        "t-none": None,
    }
    try:
        with engine.begin() as connection:
            for takedown_id, reason in joined.items():
                connection.execute(
                    text(
                        "INSERT INTO takedowns (id, status, reason, claimant_name,"
                        " claimant_email, claimant_role, explanation, signature, token_hash,"
                        " fingerprint, received_at, due_at, escalation_reason)"
                        " VALUES (:id, 'escalated', 'copyright', 'P', 'p@reuters.com', 'owner',"
                        " 'e', 's', 'h', :id, :at, :at, :reason)"
                    ),
                    {"id": takedown_id, "at": stamp, "reason": reason},
                )

        upgrade_to_head(database_url)

        assert schema_differences(engine) == []
        with new_session(engine) as session:
            reasons = {
                takedown.id: takedown.escalation_reasons
                for takedown in session.scalars(select(Takedown))
            }
        assert reasons == {
            "t-three": [many, domain, later],
            "t-two": [domain, later],
            "t-one": [domain],
            "t-operator": [operator],
            "t-none": None,
        }

        command.downgrade(alembic_config(database_url), "0014_console")
        with engine.connect() as connection:
            back = dict(
                connection.execute(text("SELECT id, escalation_reason FROM takedowns")).all()
            )
        assert back == joined
    finally:
        upgrade_to_head(database_url)


def test_postgresql_0016_makes_ids_bigint_keeping_rows_and_numbering_on(
    database_url: str, engine: Engine
) -> None:
    """0016 changes the id columns and their sequences to bigint on PostgreSQL: the rows,
    their search rows and the next ids carry on, and the sequences go past 2**31."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite's INTEGER ids are 64 bits already")
    command.downgrade(alembic_config(database_url), "0014_console")
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO publishers (id, name, article_count, created_at)"
                    " VALUES (1, 'Reuters', 1, '2026-01-01 00:00:00+00')"
                )
            )
            _insert_article(connection, 7, "Harbour strike", "Dockers walk out", None)
            connection.execute(text("SELECT setval('articles_id_seq', 7)"))
            max_before = connection.execute(
                text("SELECT max_value FROM pg_sequences WHERE sequencename = 'articles_id_seq'")
            ).scalar_one()
        assert max_before == 2**31 - 1

        upgrade_to_head(database_url)

        assert schema_differences(engine) == []
        with engine.begin() as connection:
            assert connection.execute(
                text("SELECT data_type, max_value FROM pg_sequences WHERE sequencename = :name"),
                {"name": "articles_id_seq"},
            ).one() == ("bigint", 2**63 - 1)
            assert connection.execute(
                text(
                    "SELECT articles.id, article_search.article_id FROM articles"
                    " JOIN article_search ON article_search.article_id = articles.id"
                )
            ).all() == [(7, 7)]
            connection.execute(text("SELECT setval('articles_id_seq', 2147483647)"))
            connection.execute(
                text(
                    "INSERT INTO articles (canonical_url, source_url, source_domain, slug,"
                    " publisher_id, published_at, first_seen_at, updated_at, content_hash)"
                    " VALUES ('https://e.com/b', 'https://e.com/b', 'e.com', 'b', 1,"
                    " now(), now(), now(), 'h')"
                )
            )
            assert (
                connection.execute(text("SELECT id FROM articles WHERE slug = 'b'")).scalar_one()
                == 2**31
            )
    finally:
        upgrade_to_head(database_url)
