"""The removal queue.

Revision ID: 0003_removal_queue
Revises: 0002_takedowns
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_removal_queue"
down_revision: str | None = "0002_takedowns"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "removal_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("takedown_id", sa.String(length=36), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=100), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["article_id"], ["articles.id"], name=op.f("fk_removal_jobs_article_id_articles")
        ),
        sa.ForeignKeyConstraint(
            ["takedown_id"], ["takedowns.id"], name=op.f("fk_removal_jobs_takedown_id_takedowns")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_removal_jobs")),
        sa.UniqueConstraint(
            "takedown_id", "article_id", name=op.f("uq_removal_jobs_takedown_id_article_id")
        ),
    )
    with op.batch_alter_table("removal_jobs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_removal_jobs_status_deadline_at", ["status", "deadline_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_removal_jobs_takedown_id"), ["takedown_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("removal_jobs")
