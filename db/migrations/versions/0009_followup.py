"""follow-up: patient check-ins (hashed single-use links), failed deliveries visible on the outbox,
and outbox rows that belong to no episode (the daily digests)

Revision ID: 0009_followup
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_followup"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "checkins",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("episode_id", sa.String(length=64), nullable=False),
        sa.Column("occasion", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("reminder_token_hash", sa.String(length=64), nullable=True),
        sa.Column("expires_on", sa.Date(), nullable=False),
        sa.Column("remind_after_days", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("event_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["episode_id"], ["episodes.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("episode_id", "occasion", name="uq_checkin_occasion"),
        sa.UniqueConstraint("token_hash"),
        sa.UniqueConstraint("reminder_token_hash"),
    )
    with op.batch_alter_table("notifications") as batch_op:
        batch_op.alter_column("episode_id", existing_type=sa.String(length=64), nullable=True)
        batch_op.add_column(sa.Column("last_error", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch_op:
        batch_op.drop_column("last_error")
        batch_op.alter_column("episode_id", existing_type=sa.String(length=64), nullable=False)
    op.drop_table("checkins")
