"""Appeals, and escalation reasons kept apart.

`takedown_appeals`: a rejected claimant's appeal, at most one per request, with its own
deadline and the operator's decision.

`takedowns.escalation_reason` held the policy's reasons joined by "; ", which also occurs
inside two of them, so they could not be told apart again. `takedowns.escalation_reasons`
holds them as a JSON list. Existing texts are split only when the whole text is a sequence
of the policy's own reasons (their wording is fixed, so each is recognised in full); any
other text (an operator's, or a single policy reason) becomes a list of that one text. The
downgrade joins the list with "; " again.

Revision ID: 0015_appeals
Revises: 0014_console
"""

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_appeals"
down_revision: str | None = "0014_console"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The policy's reasons as filing wrote them up to this revision (app/takedowns/policy.py).
_POLICY_REASON = (
    r"(?:names \d+ articles or addresses; more than \d+ are never removed without an operator"
    r"|asks for the whole domain \S+ without a publisher key \(DNS proof\); an operator decides"
    r"|claims an original published \S+, after we first saw the content \(\S+\))"
)
_POLICY_REASONS = re.compile(rf"{_POLICY_REASON}(?:; {_POLICY_REASON})*")


def split_reasons(joined: str) -> list[str]:
    """The reasons a joined text was made of (see the module's docstring)."""
    if _POLICY_REASONS.fullmatch(joined):
        return re.findall(_POLICY_REASON, joined)
    return [joined]


_takedowns = sa.table(
    "takedowns",
    sa.column("id", sa.String()),
    sa.column("escalation_reason", sa.Text()),
    sa.column("escalation_reasons", sa.JSON()),
)


def upgrade() -> None:
    op.create_table(
        "takedown_appeals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("takedown_id", sa.String(length=36), nullable=False),
        sa.Column("statement", sa.Text(), nullable=False),
        sa.Column("filed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rejected_by", sa.String(length=100), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["takedown_id"],
            ["takedowns.id"],
            name=op.f("fk_takedown_appeals_takedown_id_takedowns"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_takedown_appeals")),
        sa.UniqueConstraint("takedown_id", name=op.f("uq_takedown_appeals_takedown_id")),
    )
    op.create_index(
        "ix_takedown_appeals_decided_at_due_at",
        "takedown_appeals",
        ["decided_at", "due_at"],
        unique=False,
    )
    op.add_column("takedowns", sa.Column("escalation_reasons", sa.JSON(), nullable=True))
    bind = op.get_bind()
    joined = bind.execute(
        sa.select(_takedowns.c.id, _takedowns.c.escalation_reason).where(
            _takedowns.c.escalation_reason.is_not(None)
        )
    ).all()
    for takedown_id, text in joined:
        bind.execute(
            _takedowns.update()
            .where(_takedowns.c.id == takedown_id)
            .values(escalation_reasons=split_reasons(text))
        )
    # Both engines drop a plain column in place (SQLite since 3.35).
    op.execute("ALTER TABLE takedowns DROP COLUMN escalation_reason")


def downgrade() -> None:
    op.add_column("takedowns", sa.Column("escalation_reason", sa.Text(), nullable=True))
    bind = op.get_bind()
    listed = bind.execute(
        sa.select(_takedowns.c.id, _takedowns.c.escalation_reasons).where(
            _takedowns.c.escalation_reasons.is_not(None)
        )
    ).all()
    for takedown_id, reasons in listed:
        bind.execute(
            _takedowns.update()
            .where(_takedowns.c.id == takedown_id)
            .values(escalation_reason="; ".join(reasons) if reasons else None)
        )
    op.execute("ALTER TABLE takedowns DROP COLUMN escalation_reasons")
    op.drop_index("ix_takedown_appeals_decided_at_due_at", table_name="takedown_appeals")
    op.drop_table("takedown_appeals")
