"""measures and forecast: the enrollment kept with its episode, indexes the cohort measures read
by (items by code, events by type, episodes by day 0), and each episode's coming items

Revision ID: 0013_measures
Revises: 0012_task_owner
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013_measures"
down_revision: str | None = "0012_task_owner"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN (no batch copy of the table, which would lose SQLite's expression index).
    # JSONB on PostgreSQL (the measures read its fields for every episode of a cohort).
    enrollment = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    op.add_column("episodes", sa.Column("enrollment", enrollment, nullable=True))
    op.create_index("ix_episodes_identified_on", "episodes", ["identified_on"])
    op.create_index("ix_timeline_items_code", "timeline_items", ["code", "episode_id", "occasion", "day"])
    op.create_index("ix_events_type", "events", ["type", "episode_id", "occurred_on"])
    op.create_table(
        "coming_items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("episode_id", sa.String(length=64), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("assignee", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["episode_id"], ["episodes.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_coming_items_episode_id", "coming_items", ["episode_id"])
    op.create_index("ix_coming_items_forecast", "coming_items", ["due_on", "code", "assignee"])


def downgrade() -> None:
    op.drop_index("ix_coming_items_forecast", table_name="coming_items")
    op.drop_index("ix_coming_items_episode_id", table_name="coming_items")
    op.drop_table("coming_items")
    op.drop_index("ix_events_type", table_name="events")
    op.drop_index("ix_timeline_items_code", table_name="timeline_items")
    op.drop_index("ix_episodes_identified_on", table_name="episodes")
    # A plain DROP COLUMN (SQLite >= 3.35): a batch copy of the table would lose SQLite's
    # expression index ix_episodes_patient_ref_lower.
    op.drop_column("episodes", "enrollment")
