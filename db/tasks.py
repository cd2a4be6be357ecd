"""A task by its id, and a task closed in the store directly: when its episode's workflow has
ended (e.g. the 12-month review after completion) there is no workflow left to ask."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from carepath.engine.items import TaskKey
from db.audit import write_audit
from db.models import TaskRow


class TaskClosed(Exception):
    """The task was closed already (by someone else, or before)."""

    def __init__(self, task_id: int, status: str) -> None:
        super().__init__(f"task {task_id} is already {status}")


def task_row(engine: Engine, task_id: int) -> TaskRow | None:
    with Session(engine) as session:
        return session.get(TaskRow, task_id)


def close_after_workflow(engine: Engine, task_id: int, status: str, reason: str, actor: str, now: datetime) -> None:
    """Close the open task ``status`` (completed or cancelled), audited. Raises TaskClosed."""
    with Session(engine) as session, session.begin():
        task = session.get(TaskRow, task_id, with_for_update=True)
        if task is None:
            raise LookupError(f"no task {task_id}")
        if task.status != "open":
            raise TaskClosed(task_id, task.status)
        task.status, task.closed_at, task.close_reason = status, now, reason
        write_audit(
            session,
            change_id=f"{task.episode_id}/task-{task_id}-{status}",
            episode_id=task.episode_id,
            at=now,
            actor=actor,
            action=f"task:{status}",
            detail={
                "closed": [f"{TaskKey(task.code, task.occasion)}:{status}"],
                "reason": reason,
                "after_workflow": True,
            },
        )
