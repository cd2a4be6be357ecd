"""measure facts: the indexes a cold measures report and the worklist's role filters read by
(timeline items by kind, so that "entered a phase" reads the phase items only; open tasks by
role in worklist order)

Revision ID: 0015_measure_facts
Revises: 0014_intake
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015_measure_facts"
down_revision: str | None = "0014_intake"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_timeline_items_kind", "timeline_items", ["kind", "code", "episode_id", "day"])
    op.create_index("ix_tasks_assignee_worklist", "tasks", ["status", "assignee", "priority", "due_on", "id"])


def downgrade() -> None:
    op.drop_index("ix_tasks_assignee_worklist", table_name="tasks")
    op.drop_index("ix_timeline_items_kind", table_name="timeline_items")
