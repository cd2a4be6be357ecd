"""item occasion: an item is unique per (episode, code, occasion), not per milestone

SPEC section 8 (amended 2026-12-01) raises an event-driven safety code again once the open one is
closed, so a second NEW_FRACTURE while the episode is in month3 must be a row of its own. The
column that held the milestone now holds the item's occasion: its milestone, its dose, the
enrollment, or the event that raised it (``red_flag-day250``). Existing rows keep their values
(their occasions were their milestones), and the unique keys that make recording idempotent are
the same columns under names that say what they are.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table -> (old unique constraint, new unique constraint); notifications are keyed by dedupe_key.
_KEYED = {
    "timeline_items": ("uq_timeline_once_per_milestone", "uq_timeline_item_occasion"),
    "tasks": ("uq_task_once_per_milestone", "uq_task_occasion"),
}


def _rename(old_column: str, new_column: str, constraint_names: int) -> None:
    for table in ("timeline_items", "tasks", "notifications"):
        # Batch mode: SQLite recreates the table (rows copied), PostgreSQL alters it in place.
        with op.batch_alter_table(table) as batch_op:
            if table in _KEYED:
                batch_op.drop_constraint(_KEYED[table][1 - constraint_names], type_="unique")
            batch_op.alter_column(old_column, new_column_name=new_column)
        if table in _KEYED:  # a batch of its own: within the rename's batch SQLite would lose it
            with op.batch_alter_table(table) as batch_op:
                batch_op.create_unique_constraint(_KEYED[table][constraint_names], ["episode_id", "code", new_column])


def upgrade() -> None:
    _rename("milestone", "occasion", constraint_names=1)


def downgrade() -> None:
    _rename("occasion", "milestone", constraint_names=0)
