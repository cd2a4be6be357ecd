"""The worklist across episodes, and closing tasks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from carepath.access import ensure
from carepath.api.deps import CLOSERS, Clinician, Reader, RowId, Service
from carepath.engine.inputs import Text
from carepath.engine.vocabulary import Assignee, Priority, TaskStatus
from carepath.service import CarepathService
from db.queries import TaskFilter, TaskView, task_page

router = APIRouter(prefix="/tasks", tags=["tasks"])
Cursor = Annotated[str | None, Query(max_length=512, description="next_cursor of the previous page")]
PatientRefPrefix = Annotated[str | None, Query(max_length=64, description="patient ref prefix, any case")]


class CompleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text = "done"


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text = Field(description="why the task no longer needs doing")


def paged(response: Response, request: Request, next_cursor: str | None) -> None:
    """The next page's cursor travels in headers, so the body stays the list it always was."""
    if next_cursor:
        response.headers["X-Next-Cursor"] = next_cursor
        response.headers["Link"] = f'<{request.url.include_query_params(cursor=next_cursor)}>; rel="next"'


@router.get("")
def tasks(
    request: Request,
    response: Response,
    _: Reader,
    service: Service,
    assignee: Assignee | None = None,
    status: TaskStatus | None = "open",
    priority: Priority | None = None,
    patient_ref: PatientRefPrefix = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    cursor: Cursor = None,
) -> list[TaskView]:
    """The worklist across episodes: most urgent first, then most overdue first.

    Keyset paging: when more tasks match, ``X-Next-Cursor`` (and ``Link: rel="next"``) carry the
    cursor of the next page; pass it back as ``?cursor=`` with the same filters.
    """
    f = TaskFilter(assignee=assignee, status=status, priority=priority, patient_ref=patient_ref)
    page = task_page(service.engine, service.today(), f, limit, cursor)
    paged(response, request, page.next_cursor)
    return page.items


async def close(service: CarepathService, who: Clinician, task_id: int, status: str, reason: str) -> TaskView:
    task = await run_in_threadpool(service.task, task_id)
    ensure(who, CLOSERS[task.assignee], "this task")
    return await service.close_task(task_id, status, reason, who.actor)


@router.post("/{task_id}/complete")
async def complete(
    task_id: RowId, who: Clinician, service: Service, body: Annotated[CompleteRequest | None, Body()] = None
) -> TaskView:
    """Complete a task (physician tasks need the physician role)."""
    return await close(service, who, task_id, "completed", body.reason if body else "done")


@router.post("/{task_id}/cancel")
async def cancel(task_id: RowId, body: CancelRequest, who: Clinician, service: Service) -> TaskView:
    """Cancel a task with a reason (physician tasks need the physician role)."""
    return await close(service, who, task_id, "cancelled", body.reason)
