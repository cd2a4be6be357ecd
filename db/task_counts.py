"""The worklist's counts from the task ledger (``task_counts``, kept by triggers on ``tasks``).

Writers only ever append to the ledger (+1 for a task's new key, -1 for its old one), so concurrent
recordings share no row to wait or deadlock on; readers sum it. ``fold`` turns the ledger back into
one row per key, and readers call it when the ledger has grown: the sums it writes are of exactly
the rows its DELETE took, so a recording committing meanwhile is never lost or counted twice.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import TYPE_CHECKING

from sqlalchemy import Engine, case, delete, func, insert, select, text
from sqlalchemy.orm import Session

from db.models import TaskCountRow

if TYPE_CHECKING:
    from db.queries import TaskFilter

LEDGER = TaskCountRow.__table__
KEY = ("status", "priority", "assignee", "owner", "due_on", "simulated")
# Fold when the ledger is this many rows longer than at the last fold (a fold rewrites it whole).
FOLD_AFTER = 2_000
_folded_rows: dict[str, int] = {}  # per database: the ledger's rows after this process's last fold


def ledger_counts(engine: Engine, today: date, f: TaskFilter) -> dict[str, dict[str, int]]:
    """Per priority: how many tasks match ``f`` (its status, role, priority and owner), and how many
    of them are overdue (due before ``today``)."""
    overdue = func.sum(case((TaskCountRow.due_on < today, TaskCountRow.n), else_=0))
    query = select(TaskCountRow.priority, func.sum(TaskCountRow.n), overdue)
    for column, value in (
        (TaskCountRow.status, f.status),
        (TaskCountRow.assignee, f.assignee),
        (TaskCountRow.priority, f.priority),
        (TaskCountRow.owner, f.owner),
    ):
        if value is not None:
            query = query.where(column == value)
    if not f.include_simulated:
        query = query.where(TaskCountRow.simulated.is_(False))
    with Session(engine) as session:
        rows = session.execute(query.group_by(TaskCountRow.priority)).all()
        ledger_rows = session.scalar(select(func.count()).select_from(TaskCountRow)) or 0
    if ledger_rows > _folded_rows.get(str(engine.url), 0) + FOLD_AFTER:
        fold(engine)
    return {p: {"total": int(n), "overdue": int(late or 0)} for p, n, late in rows if n}


def fold(engine: Engine) -> int:
    """Replace the ledger's rows by one row per key (keys that sum to 0 go); the rows left."""
    with engine.begin() as db:
        lock = "SELECT pg_try_advisory_xact_lock(hashtext('task_counts'))"
        if engine.dialect.name == "postgresql" and not db.execute(text(lock)).scalar_one():
            return _folded_rows.get(str(engine.url), 0)  # another process is folding it
        taken = db.execute(delete(LEDGER).returning(*(LEDGER.c[k] for k in KEY), LEDGER.c.n)).all()
        sums: Counter[tuple] = Counter()
        for *key, n in taken:
            sums[tuple(key)] += n
        rows = [dict(zip(KEY, key, strict=True), n=n) for key, n in sums.items() if n]
        if rows:
            db.execute(insert(LEDGER), rows)
    _folded_rows[str(engine.url)] = len(rows)
    return len(rows)
