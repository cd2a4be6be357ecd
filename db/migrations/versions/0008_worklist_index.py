"""worklist indexes: tasks by (status, priority, due_on, id), the order the worklist pages by keyset;
episodes by lower(patient_ref) for the prefix search (PostgreSQL: text_pattern_ops, and its statistics
tell the planner how many patients a prefix matches)

Revision ID: 0008
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_tasks_worklist", "tasks", ["status", "priority", "due_on", "id"])
    pattern = " text_pattern_ops" if op.get_bind().dialect.name == "postgresql" else ""
    op.create_index("ix_episodes_patient_ref_lower", "episodes", [sa.text(f"lower(patient_ref){pattern}")])


def downgrade() -> None:
    op.drop_index("ix_episodes_patient_ref_lower", table_name="episodes")
    op.drop_index("ix_tasks_worklist", table_name="tasks")
