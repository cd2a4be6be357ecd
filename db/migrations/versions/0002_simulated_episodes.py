"""simulated episodes: excluded from the one-active-episode-per-patient rule

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("episodes") as batch_op:
        batch_op.add_column(sa.Column("simulated", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.drop_index("uq_episodes_active_patient")
        batch_op.create_index(
            "uq_episodes_active_patient",
            ["patient_ref"],
            unique=True,
            sqlite_where=sa.text("status = 'active' AND NOT simulated"),
            postgresql_where=sa.text("status = 'active' AND NOT simulated"),
        )


def downgrade() -> None:
    with op.batch_alter_table("episodes") as batch_op:
        batch_op.drop_index("uq_episodes_active_patient")
        batch_op.create_index(
            "uq_episodes_active_patient",
            ["patient_ref"],
            unique=True,
            sqlite_where=sa.text("status = 'active'"),
            postgresql_where=sa.text("status = 'active'"),
        )
        batch_op.drop_column("simulated")
