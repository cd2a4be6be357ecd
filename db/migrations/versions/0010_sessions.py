"""sign-in sessions apart from API tokens; the event outbox: what a keyed claim is to send

Revision ID: 0010_sessions
Revises: 0009_followup
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_sessions"
down_revision: str | None = "0009_followup"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["token_id"], ["api_tokens.id"]),
        sa.PrimaryKeyConstraint("id_hash"),
    )
    op.create_index("ix_sessions_token_id", "sessions", ["token_id"])
    with op.batch_alter_table("idempotency_keys") as table:
        table.add_column(sa.Column("request", sa.JSON(), nullable=True))
        table.add_column(sa.Column("actor", sa.String(length=200), nullable=True))
        table.add_column(sa.Column("last_cause", sa.String(length=300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as table:
        table.drop_column("last_cause")
        table.drop_column("actor")
        table.drop_column("request")
    op.drop_index("ix_sessions_token_id", table_name="sessions")
    op.drop_table("sessions")
