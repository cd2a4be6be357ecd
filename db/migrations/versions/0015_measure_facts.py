"""measure facts: per episode, the facts the cohort measures read (first days, latest values),
kept at recording time; the sets of them filled for all episodes; and the indexes a cold report
and the worklist's role filter read by (timeline items by kind, so that "entered a phase" reads
the phase items only; open tasks by role in worklist order)

The facts of the episodes stored before are filled by the first report that needs them, in
batches (a report counts from the events and items themselves until a set is filled).

Revision ID: 0015_measure_facts
Revises: 0014_intake
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_measure_facts"
down_revision: str | None = "0014_intake"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "measure_facts",
        sa.Column("episode_id", sa.String(length=64), nullable=False),
        sa.Column("fact", sa.String(length=32), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("value", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["episode_id"], ["episodes.id"]),
        sa.PrimaryKeyConstraint("episode_id", "fact"),
    )
    op.create_index("ix_measure_facts_fact", "measure_facts", ["fact", "episode_id", "day", "value"])
    op.create_table(
        "measure_fact_sets",
        sa.Column("signature", sa.String(length=32), nullable=False),
        sa.Column("pathway_id", sa.String(length=64), nullable=False),
        sa.Column("filled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("signature"),
    )
    op.create_index("ix_timeline_items_kind", "timeline_items", ["kind", "code", "episode_id", "day"])
    op.create_index("ix_tasks_assignee_worklist", "tasks", ["status", "assignee", "priority", "due_on", "id"])


def downgrade() -> None:
    op.drop_index("ix_tasks_assignee_worklist", table_name="tasks")
    op.drop_index("ix_timeline_items_kind", table_name="timeline_items")
    op.drop_table("measure_fact_sets")
    op.drop_index("ix_measure_facts_fact", table_name="measure_facts")
    op.drop_table("measure_facts")
