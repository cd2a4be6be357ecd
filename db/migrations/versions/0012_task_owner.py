"""tasks assigned to a named person: ``tasks.owner`` (null: the role's, nobody's in particular);
and the patient's facts on the episode row (``episodes.facts``, written with every recorded change)

Revision ID: 0012_task_owner
Revises: 0010_sessions
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_task_owner"
# Given as 0009_followup; follows 0010_sessions (issue 23, merged in through issue 19) so that the
# chain has one head. The lead relinks the chain at merge time.
down_revision: str | None = "0010_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN (SQLite has it): no batch table copy, which on SQLite would rebuild
    # episodes without its expression index ix_episodes_patient_ref_lower.
    op.add_column("episodes", sa.Column("facts", sa.JSON(), nullable=True))
    op.add_column("tasks", sa.Column("owner", sa.String(length=200), nullable=True))
    op.create_index("ix_tasks_owner", "tasks", ["owner"])


def downgrade() -> None:
    op.drop_index("ix_tasks_owner", table_name="tasks")
    with op.batch_alter_table("tasks") as batch_op:
        batch_op.drop_column("owner")
    with op.batch_alter_table("episodes") as batch_op:
        batch_op.drop_column("facts")
    # SQLite's batch copy of episodes leaves out the expression index it cannot reflect: put it back
    # (0008 made it; on PostgreSQL it never left).
    op.execute("CREATE INDEX IF NOT EXISTS ix_episodes_patient_ref_lower ON episodes (lower(patient_ref))")
