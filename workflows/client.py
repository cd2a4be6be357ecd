"""The one way to talk to an episode's workflow: start it, send it updates, read it.

Used by the service (API, terminal), ``carepath simulate`` and the tests alike, so all of them
exercise the production start path. Shaped like temporalio/samples-python's update-with-start
starter: the start and the first update (``catch_up``, which returns once the baseline is
recorded) go in one call.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
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
from workflows.episode import INVALID_INPUT, RUN_ENDING, EpisodeWorkflow

# What Temporal answers for an update to a workflow that has already completed.
_CLOSED = (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION)
# Refusals that pass: the same call later is answered (Temporal back, fewer updates in flight,
# the run that continued as new started).
_PASSING = (
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.RESOURCE_EXHAUSTED,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.ABORTED,
)
UNREACHABLE = "Temporal is unreachable"
CONTINUING = "the episode's workflow is continuing as new"
BUSY = "the episode's workflow has Temporal's limit of updates in flight"
NO_ANSWER = "Temporal did not answer in time"
RETRY_CAP_SECONDS = 2.0


class EpisodeClosed(Exception):
    """The episode's workflow has finished (completed or withdrawn): it takes no more updates."""


class Attempts:
    """What a retried call has met so far: the last refusal that passes, in words (None: none yet)."""

    def __init__(self) -> None:
        self.cause: str | None = None
        self.count = 0

    def refused(self, cause: str) -> None:
        self.cause = cause
        self.count += 1


def passing_cause(exc: RPCError) -> str | None:
    """Why Temporal refused a call for now, in words; None if the refusal is final."""
    message = exc.message.lower()
    if "closing" in message or "aborted" in message:
        return CONTINUING  # the run ended (continue-as-new) with the update admitted, not applied
    if exc.status == RPCStatusCode.RESOURCE_EXHAUSTED:
        return CONTINUING if "total" in message else BUSY
    if exc.status == RPCStatusCode.DEADLINE_EXCEEDED:
        return NO_ANSWER
    if exc.status in _PASSING:
        return UNREACHABLE
    return None


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

    async def record_event(
        self, episode_id: str, event: Any, event_id: str, actor: str, attempts: Attempts | None = None
    ) -> EventOutcome:
        """``event``: the pathway's event model or its JSON. Retried until the workflow answers
        (see ``_retrying``); the update id is ``event-<event_id>`` and the workflow remembers the
        event ids it recorded across continue-as-new, so however often it is sent it applies once."""
        payload = event if isinstance(event, dict) else event.model_dump(mode="json")
        request = EventRequest(event=payload, event_id=event_id, actor=actor)
        handle = self.handle(episode_id)
        return await self._retrying(
            episode_id,
            lambda: handle.execute_update(EpisodeWorkflow.record_event, request, id=f"event-{event_id}"),
            attempts,
        )

    async def close_task(
        self, episode_id: str, key: TaskKey, status: str, reason: str, actor: str, attempts: Attempts | None = None
    ) -> EventOutcome:
        closing = TaskClosing(code=key.code, milestone=key.occasion, status=status, reason=reason, actor=actor)  # type: ignore[arg-type]
        handle = self.handle(episode_id)
        return await self._retrying(
            episode_id, lambda: handle.execute_update(EpisodeWorkflow.close_task, closing), attempts
        )

    async def migrate(
        self, episode_id: str, definition: DefinitionCore, reason: str, actor: str, attempts: Attempts | None = None
    ) -> EpisodeView:
        migration = Migration(definition=definition, reason=reason, actor=actor)
        handle = self.handle(episode_id)
        return await self._retrying(
            episode_id, lambda: handle.execute_update(EpisodeWorkflow.migrate, migration), attempts
        )

    async def catch_up(self, episode_id: str) -> EpisodeView:
        return await self._call(self.handle(episode_id).execute_update(EpisodeWorkflow.catch_up))

    async def view(self, episode_id: str) -> EpisodeView:
        return await self._call(self.handle(episode_id).query(EpisodeWorkflow.view))

    async def state(self, episode_id: str) -> EpisodeCore:
        """The episode's state, as its pathway's own model."""
        # By name: a method reference would decode by its return type (the engine's base model).
        data = await self._call(self.handle(episode_id).query("state", result_type=dict))
        return pathway_of(data).decode_state(data)

    async def _retrying(
        self, episode_id: str, send: Callable[[], Awaitable[Any]], attempts: Attempts | None = None
    ) -> Any:
        """``send()``'s answer, sent again (backing off) while Temporal refuses it for now: unreachable,
        too many updates in flight, or the run continuing as new (the next run gets it)."""
        attempts = attempts or Attempts()
        delay = 0.05
        while True:
            cause = await self._passing(episode_id, send)
            if not isinstance(cause, str):
                return cause.result
            attempts.refused(cause)
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))  # jitter: many writers, one workflow
            delay = min(delay * 2, RETRY_CAP_SECONDS)

    async def _passing(self, episode_id: str, send: Callable[[], Awaitable[Any]]) -> _Answer | str:
        """One try: the answer, or why it was refused for now; a final refusal raises."""
        try:
            return _Answer(await self._call(send()))
        except EpisodeClosed:
            if await self._status(episode_id) != WorkflowExecutionStatus.RUNNING:
                raise
            return CONTINUING  # that run ended; the one it continued as is running
        except WorkflowUpdateFailedError as exc:
            if not (isinstance(exc.cause, ApplicationError) and exc.cause.type == RUN_ENDING):
                raise
            return CONTINUING
        except RPCError as exc:
            cause = passing_cause(exc)
            if cause is None:
                raise
            return cause
        except WorkflowUpdateRPCTimeoutOrCancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # our own caller gave up
            return NO_ANSWER

    async def _status(self, episode_id: str) -> WorkflowExecutionStatus | None:
        try:
            return (await self.handle(episode_id).describe()).status
        except RPCError as exc:
            if passing_cause(exc) is not None:
                return WorkflowExecutionStatus.RUNNING  # unknown for now: the loop asks again
            raise

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


class _Answer:
    """A call's answer, told apart from a refusal's words."""

    def __init__(self, result: Any) -> None:
        self.result = result
