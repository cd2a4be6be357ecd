"""A task taken on by a named person (or handed back): the owner and its audit entry, in one
transaction. Tasks still belong to their role (who may close them is unchanged); the owner says
who in that role is doing it."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from db.audit import write_audit
from db.models import TaskRow


class TaskNotOpen(Exception):
    def __init__(self, task_id: int, status: str) -> None:
        super().__init__(f"task {task_id} is {status}: only an open task can be given to someone")


def assign(engine: Engine, task_id: int, owner: str | None, actor: str, now: datetime) -> bool:
    """Set (or clear) the task's owner; False if the task does not exist. Raises TaskNotOpen."""
    with Session(engine) as session, session.begin():
        task = session.get(TaskRow, task_id, with_for_update=True)
        if task is None:
            return False
        if task.status != "open":
            raise TaskNotOpen(task_id, task.status)
        before, task.owner = task.owner, owner
        if before == owner:
            return True  # nothing changed: nothing to put on the record
        what = f"{task.title} ({task.code})"
        reason = f"{what} given to {owner}" if owner else f"{what} handed back to the {task.assignee}s"
        if before and owner:
            reason += f" (was {before})"
        write_audit(
            session,
            change_id=f"{task.episode_id}/task-{task_id}-owner-{uuid.uuid4().hex[:12]}",
            episode_id=task.episode_id,
            at=now,
            actor=actor,
            action="task:assigned" if owner else "task:unassigned",
            detail={"reason": reason, "task_id": task_id, "owner": owner, "previous_owner": before},
        )
    return True
