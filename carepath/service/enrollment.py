"""Enrollment: the patient's one active episode reserved in the store, then its workflow started and
its baseline awaited; a reservation no workflow backs is released (by the next enrollment of the
patient, or by the sweep ``reconcile_enrollments``)."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from carepath.engine.definition import DefinitionCore, local_date
from carepath.engine.inputs import EnrollmentCore
from carepath.engine.registry import default_pathway
from carepath.errors import InvalidInput
from carepath.outbox import Unavailable
from carepath.service.core import Conflict, ServiceCore
from db import episodes as store
from db.episodes import ABANDONED, RESERVING
from db.models import EpisodeRow
from workflows.client import UNREACHABLE, Attempts, EpisodeClosed, passing_cause
from workflows.contracts import EpisodeView

NOT_ENROLLED = "the patient is not enrolled ({cause}); nothing was kept: retry the same enrollment later"
BASELINE_PENDING = (
    "the enrollment is started; its baseline is not recorded yet ({cause}): retry the same enrollment to get it"
)


class Reconciled(BaseModel):
    released: list[str] = []  # reservations no workflow backed: now abandoned, the patient free
    in_progress: list[str] = []  # reservations whose workflow runs: their baseline is on its way


class Enrolled(BaseModel):
    episode_id: str
    pathway: str
    phase: str
    identified_on: date
    enrolled_on: date


def enrollment_digest(enrollment: EnrollmentCore) -> str:
    """Identifies an enrollment's content, so a client's retry can be told from a new request."""
    return hashlib.sha256(enrollment.model_dump_json().encode()).hexdigest()


def _unbacked(status: WorkflowExecutionStatus | None) -> str:
    if status is None:
        return "no workflow was started for the reservation"
    return f"the reservation's workflow ended ({status.name.lower()}) before recording the baseline"


def _enrolled(episode_id: str, enrollment: EnrollmentCore, view: EpisodeView) -> Enrolled:
    return Enrolled(
        episode_id=episode_id,
        pathway=view.pathway,
        phase=view.phase,
        identified_on=enrollment.identified_on,
        enrolled_on=date.fromisoformat(view.enrolled_on),
    )


def _reservation(
    enrollment: EnrollmentCore, definition: DefinitionCore, phase: str, digest: str, now: datetime
) -> tuple[EpisodeRow, Enrolled]:
    """A new reservation's row, and what enrolling it answers once Temporal has its workflow."""
    episode_id = uuid.uuid4().hex  # kept apart: the row's attributes expire on commit
    enrolled_on = local_date(definition, now)
    row = EpisodeRow(
        id=episode_id,
        patient_ref=enrollment.patient_ref,
        pathway_id=definition.id,
        pathway_version=definition.version,
        identified_on=enrollment.identified_on,
        enrolled_on=enrolled_on,
        phase=phase,
        status=RESERVING,
        enrollment_digest=digest,
        simulated=False,
        created_at=now,
        updated_at=now,
    )
    started = Enrolled(
        episode_id=episode_id,
        pathway=definition.key,
        phase=phase,
        identified_on=enrollment.identified_on,
        enrolled_on=enrolled_on,
    )
    return row, started


class Enrollment:
    def __init__(self, core: ServiceCore) -> None:
        self.core = core

    async def enroll(
        self,
        enrollment: EnrollmentCore | dict[str, Any],
        actor: str,
        pathway_id: str | None = None,
        wait: bool = True,
    ) -> Enrolled:
        """Reserve the patient's one active episode, then start its workflow and wait for the baseline.

        ``wait=False`` (bulk import) returns once Temporal has the workflow: the start is durable and
        the baseline is recorded when a worker gets to it; a reservation whose workflow runs is then
        a Conflict (already being enrolled) instead of being waited for.

        Crash-safe: the reservation row (``reserving``) becomes ``active`` only in the workflow's
        first recording transaction, together with the baseline and the ``enroll`` audit entry.
        A reservation that no workflow backs (the process died between the two) is released by
        the next enrollment of the patient or by ``reconcile_enrollments``.
        """
        core = self.core
        pathway = core.pathway(pathway_id)
        enrollment = pathway.parse_enrollment(enrollment)
        # The configured version is the default pathway's; another pathway starts on its newest.
        definition = pathway.definition(core.pathway_version if pathway is default_pathway() else None)
        now = core.clock()
        pathway.validate_enrollment(definition, enrollment, now)
        phase = pathway.starting_phase(definition, enrollment, now)
        digest = enrollment_digest(enrollment)
        # Each pass either reserves, or settles the reservation in the way; another request may
        # settle it first, so look again (a few times at most: each pass ends one reservation).
        for _ in range(3):
            row, started = _reservation(enrollment, definition, phase, digest, now)
            held = await asyncio.to_thread(store.reserve, core.engine, row)
            if held is None:
                return await self._start(started.episode_id, enrollment, definition, actor, None if wait else started)
            if held.status != RESERVING:
                raise Conflict("patient.ref", f"patient already has an active episode ({held.id})")
            status = await self.workflow_status(held.id)
            if status == WorkflowExecutionStatus.RUNNING and not wait:
                raise Conflict("patient.ref", f"patient is being enrolled ({held.id})")
            if status == WorkflowExecutionStatus.RUNNING:
                # Started, baseline not yet recorded: wait for it like the request that started it.
                enrolled = await self._await_baseline(held.id, enrollment)
                if enrolled is None:
                    continue  # it failed meanwhile (released): look again
                if held.enrollment_digest != digest:
                    raise Conflict("patient.ref", f"patient already has an active episode ({held.id})")
                return enrolled  # the same enrollment again: a client's retry gets its episode
            if await self._release(held.id, actor, _unbacked(status), replacement=row):
                return await self._start(started.episode_id, enrollment, definition, actor, None if wait else started)
        raise Conflict("patient.ref", "patient is being enrolled by another request; try again")

    async def _start(
        self,
        episode_id: str,
        enrollment: EnrollmentCore,
        definition: DefinitionCore,
        actor: str,
        durable: Enrolled | None = None,
    ) -> Enrolled:
        """Start the workflow and wait for its baseline; with ``durable``, return that once Temporal has it."""
        episodes, limit = self.core.episodes, self.core.history_limit
        try:
            # The workflow id is the reservation's, so whoever settles it later can ask Temporal.
            if durable is not None:
                await episodes.start(episode_id, enrollment, definition, actor, wait=False, history_limit=limit)
                return durable
            # Temporal unreachable: the start is given up and the reservation released at once (a
            # start that reached Temporal after all fails at its first recording, see _release).
            view, _ = await self.core.bounded.run(
                episodes.start(episode_id, enrollment, definition, actor, history_limit=limit),
                Attempts(),
                lambda cause: (NOT_ENROLLED if cause == UNREACHABLE else BASELINE_PENDING).format(cause=cause),
                "enroll",
                keep=lambda cause: cause != UNREACHABLE,
            )
        except Exception as exc:
            await self._settle_failed_start(episode_id, actor, exc)
            raise
        return _enrolled(episode_id, enrollment, view)

    async def _settle_failed_start(self, episode_id: str, actor: str, exc: Exception) -> None:
        """Release our reservation unless a workflow runs for it; Conflict if another request replaced it."""
        cause = exc.cause if isinstance(exc, Unavailable) else passing_cause(exc) if isinstance(exc, RPCError) else None
        if cause == UNREACHABLE or (isinstance(exc, RPCError) and cause is not None):
            await self._release(episode_id, actor, f"not started: {cause}")
            if isinstance(exc, RPCError):
                raise Unavailable("", NOT_ENROLLED.format(cause=cause), cause=cause) from None
            return
        if isinstance(exc, Unavailable):
            return  # started: its baseline is on its way
        try:
            status = await self.workflow_status(episode_id)
            if status != WorkflowExecutionStatus.RUNNING:
                await self._release(episode_id, actor, f"{_unbacked(status)} (start failed: {type(exc).__name__})")
        except Exception:  # Temporal or the database is down too: the sweep settles it later
            return
        row = await asyncio.to_thread(store.episode_row, self.core.engine, episode_id)
        if row is not None and row.status == ABANDONED:
            raise Conflict("patient.ref", "another enrollment of this patient replaced this one") from exc

    async def _await_baseline(self, episode_id: str, enrollment: EnrollmentCore) -> Enrolled | None:
        try:
            view = await self.core.bounded.run(
                self.core.episodes.catch_up(episode_id), Attempts(), BASELINE_PENDING, "enroll"
            )
        except (WorkflowUpdateFailedError, RPCError, InvalidInput, EpisodeClosed):
            return None
        return _enrolled(episode_id, enrollment, view)

    async def workflow_status(self, episode_id: str) -> WorkflowExecutionStatus | None:
        """The status of the episode's workflow, None if Temporal never had it."""
        try:
            description = await self.core.episodes.handle(episode_id).describe()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            return None
        return description.status

    async def _release(self, episode_id: str, actor: str, why: str, replacement: EpisodeRow | None = None) -> bool:
        """Release the reservation (see ``db.episodes.release``), reserving ``replacement`` with it."""
        engine, now = self.core.engine, self.core.clock()
        return await asyncio.to_thread(store.release, engine, episode_id, actor, why, now, replacement)

    def active_episode_of(self, patient_ref: str) -> EpisodeRow | None:
        """The patient's active (or reserving) episode, if any: the enrollment page links it."""
        return store.holder(self.core.engine, patient_ref)

    async def reconcile_enrollments(self, older_than: timedelta, actor: str = "carepath:reconcile") -> Reconciled:
        """Release every reservation older than ``older_than`` that no running workflow backs.

        Idempotent, and safe beside live enrollments: one whose workflow runs is left to finish
        (``in_progress``); the age bound spares requests between their reservation and their start.
        """
        cutoff = self.core.clock() - older_than
        pending = await asyncio.to_thread(store.reservations_made_before, self.core.engine, cutoff)
        report = Reconciled()
        for episode_id in pending:
            status = await self.workflow_status(episode_id)
            if status == WorkflowExecutionStatus.RUNNING:
                report.in_progress.append(episode_id)
            elif await self._release(episode_id, actor, _unbacked(status)):
                report.released.append(episode_id)
        return report
