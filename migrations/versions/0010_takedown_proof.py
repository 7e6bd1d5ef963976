"""Takedowns you can trust: proof (e-mail confirmation, publisher keys proven by DNS),
matching keys for URLs as rights holders write them, tombstones that survive an undo.

- takedowns: `confirmation_hash`, `email_confirmed_at`, `publisher_key_id`, `duplicate_of`.
  Requests filed before this revision have no confirmation hash: they keep the behaviour
  they were filed under (already queued, escalated or done; nothing waits for a
  confirmation that was never asked for).
- publisher_verifications (new) and `api_keys.domain`: publisher keys bound to a domain.
- article_match_keys (new), filled here for every article; `takedown_targets.match_key`
  and `closest_article_id`; URL blocks now hold the matching key of their URL. Blocks whose
  URLs share a key are merged: the oldest stays, the others are lifted (audited as lifted
  by this migration).
- article_tombstones (new): one row per removal, filled here for the articles removed so
  far; removed articles keep only a hash of their slug from now on (and are rewritten so).
- claimant_emails: e-mails about publishers' verifications too (`verification_id`,
  `takedown_id` nullable), and the confirmation code until the receipt is sent.
- audit_events: `verification_id`.

The keys are computed by `app.articles.urls.match_key` as it is at this revision; a later
change to that function comes with a migration of its own that recomputes them.

Revision ID: 0010_takedown_proof
Revises: 0009_postgresql_columns_in_row
"""

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from app.articles.urls import InvalidUrl, match_key

revision: str = "0010_takedown_proof"
down_revision: str | None = "0009_postgresql_columns_in_row"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 10_000
MIGRATION_ACTOR = "migration 0010"


def _key(url: str) -> str:
    try:
        return match_key(url)
    except InvalidUrl:
        # Stored before the URL rules tightened: it matches only itself.
        return url


def upgrade() -> None:
    op.create_table(
        "publisher_verifications",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("record_value", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_check_error", sa.Text(), nullable=True),
        sa.Column("next_check_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("record_missing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lapsed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("api_key_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_publisher_verifications_api_key_id_api_keys"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_publisher_verifications")),
    )
    with op.batch_alter_table("publisher_verifications") as batch_op:
        batch_op.create_index(
            "ix_publisher_verifications_status_next_check_at", ["status", "next_check_at"]
        )
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.add_column(sa.Column("domain", sa.String(length=255), nullable=True))

    with op.batch_alter_table("takedowns") as batch_op:
        batch_op.add_column(sa.Column("confirmation_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("email_confirmed_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("publisher_key_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("duplicate_of", sa.String(length=36), nullable=True))
    with op.batch_alter_table("audit_events") as batch_op:
        batch_op.add_column(sa.Column("verification_id", sa.String(length=36), nullable=True))

    with op.batch_alter_table("claimant_emails") as batch_op:
        batch_op.alter_column("takedown_id", existing_type=sa.String(length=36), nullable=True)
        batch_op.alter_column(
            "kind", existing_type=sa.String(length=20), type_=sa.String(length=30)
        )
        batch_op.add_column(sa.Column("verification_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("confirmation_code", sa.String(length=100), nullable=True))
        batch_op.create_foreign_key(
            op.f("fk_claimant_emails_verification_id_publisher_verifications"),
            "publisher_verifications",
            ["verification_id"],
            ["id"],
        )
        batch_op.create_index("ix_claimant_emails_verification_id", ["verification_id"])

    op.create_table(
        "article_match_keys",
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("match_key", sa.String(length=2048), nullable=False),
        sa.ForeignKeyConstraint(
            ["article_id"],
            ["articles.id"],
            name=op.f("fk_article_match_keys_article_id_articles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("article_id", name=op.f("pk_article_match_keys")),
    )
    op.create_table(
        "article_tombstones",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("canonical_url", sa.String(length=2048), nullable=False),
        sa.Column("publisher_id", sa.Integer(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("takedown_id", sa.String(length=36), nullable=True),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("restored_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["article_id"],
            ["articles.id"],
            name=op.f("fk_article_tombstones_article_id_articles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_article_tombstones")),
    )
    with op.batch_alter_table("takedown_targets") as batch_op:
        batch_op.add_column(sa.Column("match_key", sa.String(length=2048), nullable=True))
        batch_op.add_column(sa.Column("closest_article_id", sa.Integer(), nullable=True))

    connection = op.get_bind()
    _fill_match_keys(connection)
    with op.batch_alter_table("article_match_keys") as batch_op:
        batch_op.create_index("ix_article_match_keys_match_key", ["match_key"])
    _fill_target_keys(connection)
    _rekey_url_blocks(connection)
    _fill_tombstones(connection)
    with op.batch_alter_table("article_tombstones") as batch_op:
        batch_op.create_index("ix_article_tombstones_article_id", ["article_id"])


def _fill_match_keys(connection: sa.Connection) -> None:
    last = 0
    while True:
        rows = connection.execute(
            sa.text("SELECT id, canonical_url FROM articles WHERE id > :last ORDER BY id LIMIT :n"),
            {"last": last, "n": BATCH},
        ).all()
        if not rows:
            return
        connection.execute(
            sa.text("INSERT INTO article_match_keys (article_id, match_key) VALUES (:id, :key)"),
            [{"id": row.id, "key": _key(row.canonical_url)} for row in rows],
        )
        last = rows[-1].id


def _fill_target_keys(connection: sa.Connection) -> None:
    rows = connection.execute(
        sa.text("SELECT id, canonical_url FROM takedown_targets WHERE canonical_url IS NOT NULL")
    ).all()
    if rows:
        connection.execute(
            sa.text("UPDATE takedown_targets SET match_key = :key WHERE id = :id"),
            [{"id": row.id, "key": _key(row.canonical_url)} for row in rows],
        )


def _rekey_url_blocks(connection: sa.Connection) -> None:
    rows = connection.execute(
        sa.text(
            "SELECT id, value, takedown_id, lifted_at FROM blocks WHERE kind = 'url' "
            "ORDER BY (lifted_at IS NULL) DESC, id"
        )
    ).all()
    kept: dict[str, int] = {}
    now = datetime.now(UTC)
    if connection.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)  # as the models' UTC columns store it there
    for row in rows:
        key = _key(row.value)
        if key not in kept:
            kept[key] = row.id
            if key != row.value:
                connection.execute(
                    sa.text("UPDATE blocks SET value = :key WHERE id = :id"),
                    {"key": key, "id": row.id},
                )
            continue
        # Another spelling of a URL already blocked: the block that stays covers it.
        if row.lifted_at is None:
            connection.execute(
                sa.text("UPDATE blocks SET lifted_at = :now, lifted_by = :actor WHERE id = :id"),
                {"now": now, "actor": MIGRATION_ACTOR, "id": row.id},
            )
            connection.execute(
                sa.text(
                    "INSERT INTO audit_events (at, actor, action, takedown_id, block_id, reason)"
                    " VALUES (:now, :actor, 'block_lifted', :takedown_id, :block_id, :reason)"
                ),
                {
                    "now": now,
                    "actor": MIGRATION_ACTOR,
                    "takedown_id": row.takedown_id,
                    "block_id": row.id,
                    "reason": f"merged into block {kept[key]}, which blocks the same URL",
                },
            )


def _fill_tombstones(connection: sa.Connection) -> None:
    connection.execute(
        sa.text(
            "INSERT INTO article_tombstones (article_id, canonical_url, publisher_id,"
            " first_seen_at, content_hash, takedown_id, removed_at)"
            " SELECT id, canonical_url, publisher_id, first_seen_at, content_hash,"
            " removed_by_takedown_id, removed_at FROM articles WHERE removed_at IS NOT NULL"
            " ORDER BY id"
        )
    )
    removed = connection.execute(
        sa.text("SELECT id, slug FROM articles WHERE removed_at IS NOT NULL AND slug NOT LIKE '~%'")
    ).all()
    if removed:
        connection.execute(
            sa.text("UPDATE articles SET slug = :slug WHERE id = :id"),
            [
                {"id": row.id, "slug": "~" + hashlib.sha256(row.slug.encode()).hexdigest()}
                for row in removed
            ],
        )


def downgrade() -> None:
    with op.batch_alter_table("article_tombstones") as batch_op:
        batch_op.drop_index("ix_article_tombstones_article_id")
    op.drop_table("article_tombstones")
    with op.batch_alter_table("article_match_keys") as batch_op:
        batch_op.drop_index("ix_article_match_keys_match_key")
    op.drop_table("article_match_keys")
    with op.batch_alter_table("takedown_targets") as batch_op:
        batch_op.drop_column("closest_article_id")
        batch_op.drop_column("match_key")
    with op.batch_alter_table("claimant_emails") as batch_op:
        batch_op.drop_index("ix_claimant_emails_verification_id")
        batch_op.drop_constraint(
            op.f("fk_claimant_emails_verification_id_publisher_verifications"),
            type_="foreignkey",
        )
        batch_op.drop_column("confirmation_code")
        batch_op.drop_column("verification_id")
        batch_op.alter_column(
            "kind", existing_type=sa.String(length=30), type_=sa.String(length=20)
        )
        batch_op.alter_column("takedown_id", existing_type=sa.String(length=36), nullable=False)
    with op.batch_alter_table("audit_events") as batch_op:
        batch_op.drop_column("verification_id")
    with op.batch_alter_table("takedowns") as batch_op:
        batch_op.drop_column("duplicate_of")
        batch_op.drop_column("publisher_key_id")
        batch_op.drop_column("email_confirmed_at")
        batch_op.drop_column("confirmation_hash")
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.drop_column("domain")
    with op.batch_alter_table("publisher_verifications") as batch_op:
        batch_op.drop_index("ix_publisher_verifications_status_next_check_at")
    op.drop_table("publisher_verifications")
