"""task counts: an append-only ledger of how many tasks there are per status, priority, role,
owner, due date and simulated flag (``task_counts``), kept by triggers on ``tasks`` in the writing
transaction, so that the worklist's counts are a sum over a few thousand rows instead of a count
of every open task (a scan of 840,000 index entries at 100,000 episodes)

The ledger starts from the tasks stored before, counted once here.

Revision ID: 0016_task_counts
Revises: 0015_measure_facts
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_task_counts"
down_revision: str | None = "0015_measure_facts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = "status, priority, assignee, owner, due_on, simulated"
SIMULATED = "COALESCE((SELECT simulated FROM episodes WHERE id = {row}.episode_id), {no})"
COUNTED_BY = ("status", "priority", "assignee", "owner", "due_on")
CHANGED = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in COUNTED_BY)


def _row(row: str, n: int, no: str) -> str:
    """The ledger row of ``row`` (OLD or NEW) counted ``n`` times."""
    simulated = SIMULATED.format(row=row, no=no)
    values = f"{row}.status, {row}.priority, {row}.assignee, {row}.owner, {row}.due_on, {simulated}, {n}"
    return f"INSERT INTO task_counts ({KEY}, n) VALUES ({values});"


POSTGRES_FUNCTION = f"""
CREATE FUNCTION task_counts_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND NOT ({CHANGED}) THEN
    RETURN NULL;
  END IF;
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    {_row("OLD", -1, "false")}
  END IF;
  IF TG_OP IN ('UPDATE', 'INSERT') THEN
    {_row("NEW", 1, "false")}
  END IF;
  RETURN NULL;
END $$
"""
POSTGRES_TRIGGER = (
    "CREATE TRIGGER task_counts_follow AFTER INSERT OR DELETE OR UPDATE OF status, priority, assignee, owner, due_on "
    "ON tasks FOR EACH ROW EXECUTE FUNCTION task_counts_follow()"
)
SQLITE_CHANGED = CHANGED.replace("IS DISTINCT FROM", "IS NOT")
SQLITE_TRIGGERS = {
    "task_counts_insert": f"AFTER INSERT ON tasks BEGIN {_row('NEW', 1, '0')} END",
    "task_counts_delete": f"AFTER DELETE ON tasks BEGIN {_row('OLD', -1, '0')} END",
    "task_counts_update": (
        "AFTER UPDATE OF status, priority, assignee, owner, due_on ON tasks "
        f"WHEN {SQLITE_CHANGED} BEGIN {_row('OLD', -1, '0')} {_row('NEW', 1, '0')} END"
    ),
}


def upgrade() -> None:
    op.create_table(
        "task_counts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("assignee", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=True),
        sa.Column("due_on", sa.Date(), nullable=True),
        sa.Column("simulated", sa.Boolean(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_FUNCTION)
        op.execute(POSTGRES_TRIGGER)
    else:
        for name, body in SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {body}")
    op.execute(
        f"INSERT INTO task_counts ({KEY}, n) "
        "SELECT t.status, t.priority, t.assignee, t.owner, t.due_on, e.simulated, count(*) "
        "FROM tasks t JOIN episodes e ON e.id = t.episode_id "
        "GROUP BY t.status, t.priority, t.assignee, t.owner, t.due_on, e.simulated"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER task_counts_follow ON tasks")
        op.execute("DROP FUNCTION task_counts_follow()")
    else:
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER {name}")
    op.drop_table("task_counts")
