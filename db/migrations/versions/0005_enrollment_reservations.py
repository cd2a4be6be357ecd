"""enrollment reservations: a reserving episode counts against the one-active rule until its
workflow records the baseline; old ghosts (active, nothing ever recorded) become reservations

Revision ID: 0005_enrollment_reservations
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_enrollment_reservations"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW = "status IN ('reserving', 'active') AND NOT simulated"
OLD = "status = 'active' AND NOT simulated"


def upgrade() -> None:
    with op.batch_alter_table("episodes") as batch_op:
        batch_op.add_column(sa.Column("enrollment_digest", sa.String(length=64), nullable=True))
        batch_op.drop_index("uq_episodes_active_patient")
        batch_op.create_index(
            "uq_episodes_active_patient",
            ["patient_ref"],
            unique=True,
            sqlite_where=sa.text(NEW),
            postgresql_where=sa.text(NEW),
        )
    # The baseline and the first audit entry are recorded in one transaction that also makes the
    # row active, so an active episode with no audit entry was never backed by a recorded
    # workflow: a reservation from before this revision. The sweep settles it like any other.
    op.execute(
        "UPDATE episodes SET status = 'reserving' WHERE status = 'active' AND NOT simulated "
        "AND NOT EXISTS (SELECT 1 FROM audit_log WHERE audit_log.episode_id = episodes.id)"
    )


def downgrade() -> None:
    op.execute("UPDATE episodes SET status = 'active' WHERE status = 'reserving'")
    with op.batch_alter_table("episodes") as batch_op:
        batch_op.drop_index("uq_episodes_active_patient")
        batch_op.create_index(
            "uq_episodes_active_patient",
            ["patient_ref"],
            unique=True,
            sqlite_where=sa.text(OLD),
            postgresql_where=sa.text(OLD),
        )
        batch_op.drop_column("enrollment_digest")
