"""Feeds: the digests of the entries stored at the last fetch, so that an entry seen again
unchanged is not prepared and written again.

Revision ID: 0017_feed_entry_digests
Revises: 0016_bigint_ids
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_feed_entry_digests"
down_revision: str | None = "0016_bigint_ids"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("feeds") as batch:
        batch.add_column(sa.Column("entry_digests", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("feeds") as batch:
        batch.drop_column("entry_digests")
