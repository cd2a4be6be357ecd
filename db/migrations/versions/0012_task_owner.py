"""tasks assigned to a named person: ``tasks.owner`` (null: the role's, nobody's in particular)

Revision ID: 0012_task_owner
Revises: 0009_followup
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_task_owner"
down_revision: str | None = "0009_followup"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch_op:
        batch_op.add_column(sa.Column("owner", sa.String(length=200), nullable=True))
        batch_op.create_index("ix_tasks_owner", ["owner"])


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch_op:
        batch_op.drop_index("ix_tasks_owner")
        batch_op.drop_column("owner")
