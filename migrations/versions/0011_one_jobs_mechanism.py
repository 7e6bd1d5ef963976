"""One mechanism for background work: every kind's rows have the same job columns and the
same statuses (queued, running, done, failed, cancelled).

- claimant_emails and webhook_deliveries: `next_attempt_at` becomes `run_at`; statuses
  pending -> queued, sending -> running, delivering -> running, sent -> done, delivered ->
  done. An e-mail that was `submitting` (its worker was handing it over) stays running with
  `handed_over_at` set, so its recovery still never sends it twice. Failed and unconfirmed
  rows keep their status.
- removal_jobs: a try is now counted when a row is claimed, so a running row counts the try
  it is making; an index on (status, run_at) for the workers' next wake-up.
- publisher_rechecks (new): the daily re-check of a verified domain as a job row, one per
  verified verification, due when its `next_check_at` was; that column goes.

Every row that is queued, running or failed stays so.

And takedowns' blocks act only once their removals may run: `takedowns.blocked_at` records
when a request's URLs and domain were blocked. Requests that are queued, executing or
completed now were blocked when they were confirmed or approved, under the earlier rule;
they are marked so (their blocks stay as they are).

Revision ID: 0011_one_jobs_mechanism
Revises: 0010_takedown_proof
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0011_one_jobs_mechanism"
down_revision: str | None = "0010_takedown_proof"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EMAIL_STATUSES = {"pending": "queued", "sending": "running", "submitting": "running",
                  "sent": "done"}  # fmt: skip
DELIVERY_STATUSES = {"pending": "queued", "delivering": "running", "delivered": "done"}


def _rename_statuses(table: str, renames: dict[str, str]) -> None:
    for old, new in renames.items():
        op.execute(sa.text(f"UPDATE {table} SET status = :new WHERE status = :old")
                   .bindparams(new=new, old=old))  # fmt: skip


def upgrade() -> None:
    with op.batch_alter_table("takedowns") as batch_op:
        batch_op.add_column(sa.Column("blocked_at", sa.DateTime(timezone=True)))
    op.execute(
        "UPDATE takedowns SET blocked_at = COALESCE(email_confirmed_at, received_at) "
        "WHERE status IN ('queued', 'executing', 'completed')"
    )
    with op.batch_alter_table("claimant_emails") as batch_op:
        batch_op.drop_index("ix_claimant_emails_status_next_attempt_at")
        batch_op.alter_column(
            "next_attempt_at",
            new_column_name="run_at",
            existing_type=sa.DateTime(timezone=True),
            nullable=True,
        )
        batch_op.add_column(sa.Column("handed_over_at", sa.DateTime(timezone=True)))
    with op.batch_alter_table("claimant_emails") as batch_op:
        batch_op.create_index("ix_claimant_emails_status_run_at", ["status", "run_at"])
    op.execute(
        sa.text(
            "UPDATE claimant_emails SET handed_over_at = :now WHERE status = 'submitting'"
        ).bindparams(now=datetime.now(UTC))
    )
    _rename_statuses("claimant_emails", EMAIL_STATUSES)

    with op.batch_alter_table("webhook_deliveries") as batch_op:
        batch_op.drop_index("ix_webhook_deliveries_status_next_attempt_at")
        batch_op.alter_column(
            "next_attempt_at",
            new_column_name="run_at",
            existing_type=sa.DateTime(timezone=True),
            nullable=True,
        )
    with op.batch_alter_table("webhook_deliveries") as batch_op:
        batch_op.create_index("ix_webhook_deliveries_status_run_at", ["status", "run_at"])
    _rename_statuses("webhook_deliveries", DELIVERY_STATUSES)

    op.execute("UPDATE removal_jobs SET attempts = attempts + 1 WHERE status = 'running'")
    with op.batch_alter_table("removal_jobs") as batch_op:
        batch_op.create_index("ix_removal_jobs_status_run_at", ["status", "run_at"])

    op.create_table(
        "publisher_rechecks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("verification_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=100), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["verification_id"],
            ["publisher_verifications.id"],
            name=op.f("fk_publisher_rechecks_verification_id_publisher_verifications"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_publisher_rechecks")),
        sa.UniqueConstraint("verification_id", name=op.f("uq_publisher_rechecks_verification_id")),
    )
    with op.batch_alter_table("publisher_rechecks") as batch_op:
        batch_op.create_index("ix_publisher_rechecks_status_run_at", ["status", "run_at"])
    op.execute(
        sa.text(
            "INSERT INTO publisher_rechecks (verification_id, status, run_at, attempts, "
            "created_at) SELECT id, 'queued', COALESCE(next_check_at, :now), 0, :now "
            "FROM publisher_verifications WHERE status = 'verified'"
        ).bindparams(now=datetime.now(UTC))
    )
    with op.batch_alter_table("publisher_verifications") as batch_op:
        batch_op.drop_index("ix_publisher_verifications_status_next_check_at")
        batch_op.drop_column("next_check_at")


def downgrade() -> None:
    with op.batch_alter_table("takedowns") as batch_op:
        batch_op.drop_column("blocked_at")
    with op.batch_alter_table("publisher_verifications") as batch_op:
        batch_op.add_column(sa.Column("next_check_at", sa.DateTime(timezone=True)))
        batch_op.create_index(
            "ix_publisher_verifications_status_next_check_at", ["status", "next_check_at"]
        )
    op.execute(
        "UPDATE publisher_verifications SET next_check_at = (SELECT run_at FROM "
        "publisher_rechecks WHERE publisher_rechecks.verification_id = "
        "publisher_verifications.id AND publisher_rechecks.status = 'queued')"
    )
    with op.batch_alter_table("publisher_rechecks") as batch_op:
        batch_op.drop_index("ix_publisher_rechecks_status_run_at")
    op.drop_table("publisher_rechecks")

    with op.batch_alter_table("removal_jobs") as batch_op:
        batch_op.drop_index("ix_removal_jobs_status_run_at")
    op.execute("UPDATE removal_jobs SET attempts = attempts - 1 WHERE status = 'running'")

    _rename_statuses("webhook_deliveries", {new: old for old, new in DELIVERY_STATUSES.items()})
    op.execute("UPDATE webhook_deliveries SET run_at = created_at WHERE run_at IS NULL")
    with op.batch_alter_table("webhook_deliveries") as batch_op:
        batch_op.drop_index("ix_webhook_deliveries_status_run_at")
        batch_op.alter_column(
            "run_at",
            new_column_name="next_attempt_at",
            existing_type=sa.DateTime(timezone=True),
            nullable=False,
        )
    with op.batch_alter_table("webhook_deliveries") as batch_op:
        batch_op.create_index(
            "ix_webhook_deliveries_status_next_attempt_at", ["status", "next_attempt_at"]
        )

    op.execute(
        "UPDATE claimant_emails SET status = 'submitting' "
        "WHERE status = 'running' AND handed_over_at IS NOT NULL"
    )
    _rename_statuses(
        "claimant_emails",
        {"queued": "pending", "running": "sending", "done": "sent"},
    )
    op.execute("UPDATE claimant_emails SET run_at = created_at WHERE run_at IS NULL")
    with op.batch_alter_table("claimant_emails") as batch_op:
        batch_op.drop_index("ix_claimant_emails_status_run_at")
        batch_op.drop_column("handed_over_at")
        batch_op.alter_column(
            "run_at",
            new_column_name="next_attempt_at",
            existing_type=sa.DateTime(timezone=True),
            nullable=False,
        )
    with op.batch_alter_table("claimant_emails") as batch_op:
        batch_op.create_index(
            "ix_claimant_emails_status_next_attempt_at", ["status", "next_attempt_at"]
        )
