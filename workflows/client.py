"""The one way to talk to an episode's workflow: start it, send it updates, read it.

Used by the service (API, terminal), ``carepath simulate`` and the tests alike, so all of them
exercise the production start path. Shaped like temporalio/samples-python's update-with-start
starter: the start and the first update (``catch_up``, which returns once the baseline is
recorded) go in one call.
"""

from __future__ import annotations

from typing import Any

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from carepath.engine.definition import DefinitionCore
from carepath.engine.inputs import EnrollmentCore
from carepath.engine.items import TaskKey
from carepath.engine.registry import pathway_of
from carepath.engine.state import EpisodeCore
from carepath.errors import FieldError, InvalidInput
from workflows.contracts import (
    EpisodeStart,
    EpisodeView,
    EventOutcome,
    EventRequest,
    Migration,
    TaskClosing,
    workflow_id,
)
from workflows.episode import INVALID_INPUT, EpisodeWorkflow

# What Temporal answers for an update to a workflow that has already completed.
_CLOSED = (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION)


class EpisodeClosed(Exception):
    """The episode's workflow has finished (completed or withdrawn): it takes no more updates."""


def rejection(exc: WorkflowUpdateFailedError) -> InvalidInput | None:
    """The field-named errors of an update the workflow rejected, or None for another failure."""
    cause = exc.cause
    if isinstance(cause, ApplicationError) and cause.type == INVALID_INPUT:
        errors = cause.details[0]["errors"] if cause.details else []
        return InvalidInput(FieldError(e["field"], e["message"]) for e in errors)
    return None


class EpisodeClient:
    def __init__(self, client: Client, task_queue: str) -> None:
        self.client = client
        self.task_queue = task_queue

    def handle(self, episode_id: str) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(workflow_id(episode_id))

    async def start(
        self,
        episode_id: str,
        enrollment: EnrollmentCore,
        definition: DefinitionCore,
        actor: str,
        *,
        simulated: bool = False,
        history_limit: int | None = None,
        wait: bool = True,
    ) -> tuple[EpisodeView | None, WorkflowHandle[Any, Any]]:
        """Start the episode and wait until its baseline is recorded (one round trip: ~2x the
        enrollments/s of start, then update), so the worklist shows it on return. Returns the
        episode then, and the handle of the run that was started.

        ``wait=False`` (bulk import): a durable start only; the baseline is recorded when a worker
        gets to it, and the view is None."""
        start = EpisodeStart(
            episode_id=episode_id,
            enrollment=enrollment.model_dump(mode="json"),
            definition=definition,
            actor=actor,
            simulated=simulated,
            **({"history_limit": history_limit} if history_limit is not None else {}),
        )
        options: dict[str, Any] = {
            "id": workflow_id(episode_id),
            "id_conflict_policy": WorkflowIDConflictPolicy.FAIL,
            "task_queue": self.task_queue,
        }
        if not wait:
            return None, await self.client.start_workflow(EpisodeWorkflow.run, start, **options)
        operation = WithStartWorkflowOperation(EpisodeWorkflow.run, start, **options)
        view = await self._call(
            self.client.execute_update_with_start_workflow(EpisodeWorkflow.catch_up, start_workflow_operation=operation)
        )
        return view, await operation.workflow_handle()

    async def record_event(self, episode_id: str, event: Any, event_id: str, actor: str) -> EventOutcome:
        """``event``: the pathway's event model or its JSON. The update id is ``event-<event_id>``,
        so a retried request applies once within the run."""
        payload = event if isinstance(event, dict) else event.model_dump(mode="json")
        request = EventRequest(event=payload, event_id=event_id, actor=actor)
        return await self._call(
            self.handle(episode_id).execute_update(EpisodeWorkflow.record_event, request, id=f"event-{event_id}")
        )

    async def close_task(self, episode_id: str, key: TaskKey, status: str, reason: str, actor: str) -> EventOutcome:
        closing = TaskClosing(code=key.code, milestone=key.occasion, status=status, reason=reason, actor=actor)  # type: ignore[arg-type]
        return await self._call(self.handle(episode_id).execute_update(EpisodeWorkflow.close_task, closing))

    async def migrate(self, episode_id: str, definition: DefinitionCore, reason: str, actor: str) -> EpisodeView:
        migration = Migration(definition=definition, reason=reason, actor=actor)
        return await self._call(self.handle(episode_id).execute_update(EpisodeWorkflow.migrate, migration))

    async def catch_up(self, episode_id: str) -> EpisodeView:
        return await self._call(self.handle(episode_id).execute_update(EpisodeWorkflow.catch_up))

    async def view(self, episode_id: str) -> EpisodeView:
        return await self._call(self.handle(episode_id).query(EpisodeWorkflow.view))

    async def state(self, episode_id: str) -> EpisodeCore:
        """The episode's state, as its pathway's own model."""
        # By name: a method reference would decode by its return type (the engine's base model).
        data = await self._call(self.handle(episode_id).query("state", result_type=dict))
        return pathway_of(data).decode_state(data)

    @staticmethod
    async def _call(pending: Any) -> Any:
        """Await a call: a rejection becomes ``InvalidInput``, a finished workflow ``EpisodeClosed``."""
        try:
            return await pending
        except WorkflowUpdateFailedError as exc:
            rejected = rejection(exc)
            if rejected is None:
                raise
            raise rejected from None
        except RPCError as exc:
            if exc.status not in _CLOSED:
                raise
            raise EpisodeClosed(str(exc)) from None
