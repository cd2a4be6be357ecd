"""A task taken on by a named person, or handed back to its role (the API's and the pages' one
path): the owner and its audit entry are written together (``db.assignments``)."""

from __future__ import annotations

from fastapi.concurrency import run_in_threadpool

from carepath.service import CarepathService, Conflict, NotFound
from db.queries import TaskView


async def assign_task(service: CarepathService, task_id: int, owner: str | None, actor: str) -> TaskView:
    from db.assignments import TaskNotOpen
    from db.assignments import assign as set_owner

    try:
        found = await run_in_threadpool(set_owner, service.engine, task_id, owner, actor, service.clock())
    except TaskNotOpen as exc:
        raise Conflict("task", str(exc)) from None
    if not found:
        raise NotFound(f"there is no task {task_id}", "task")
    return await run_in_threadpool(service.task, task_id)
