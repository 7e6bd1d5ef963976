"""Feeds: subscriptions to publishers' feeds, each with its poll as a job row; the audit
names the feed an event is about.

Revision ID: 0012_feeds
Revises: 0011_one_jobs_mechanism
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_feeds"
down_revision: str | None = "0011_one_jobs_mechanism"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTERS = (
    "fetches",
    "not_modified",
    "entries_seen",
    "articles_created",
    "articles_updated",
    "articles_unchanged",
    "entries_blocked",
    "entries_invalid",
    "entries_reserved",
)


def upgrade() -> None:
    op.create_table(
        "feeds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("paused_reason", sa.Text(), nullable=True),
        sa.Column("opted_out_block_id", sa.Integer(), nullable=True),
        sa.Column("publisher_name", sa.String(length=300), nullable=True),
        sa.Column("publisher_url", sa.String(length=2048), nullable=True),
        sa.Column("language", sa.String(length=35), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("site_url", sa.String(length=2048), nullable=True),
        sa.Column("etag", sa.String(length=1000), nullable=True),
        sa.Column("last_modified", sa.String(length=100), nullable=True),
        sa.Column("last_fetched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.String(length=500), nullable=True),
        sa.Column("consecutive_errors", sa.Integer(), nullable=False),
        sa.Column("interval_seconds", sa.Integer(), nullable=True),
        sa.Column("reserved_reason", sa.String(length=200), nullable=True),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in COUNTERS),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=100), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feeds")),
        sa.UniqueConstraint("url", name=op.f("uq_feeds_url")),
    )
    with op.batch_alter_table("feeds") as batch_op:
        batch_op.create_index("ix_feeds_status_run_at", ["status", "run_at"])
        batch_op.create_index("ix_feeds_state_id", ["state", "id"])
    with op.batch_alter_table("audit_events") as batch_op:
        batch_op.add_column(sa.Column("feed_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_events") as batch_op:
        batch_op.drop_column("feed_id")
    op.drop_table("feeds")
