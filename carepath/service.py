"""What coordinators and physicians do, independent of HTTP or the terminal.

Every write goes through the episode's workflow (start, updates), so the API and the workflow
never disagree; reads come from the store the workflow's activities keep. The one exception is
closing a task of an episode whose workflow has already finished (e.g. the 12-month review
after completion): there is no workflow left to ask, so the store is updated directly, audited.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowQueryFailedError, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from carepath.engine.definition import DefinitionCore, local_date
from carepath.engine.inputs import EnrollmentCore, EventCore
from carepath.engine.items import TaskKey
from carepath.engine.pathway import Pathway
from carepath.engine.registry import default_pathway, pathway_for
from carepath.engine.state import EpisodeCore
from carepath.errors import FieldError, InvalidInput
from carepath.outbox import Bounded, EventOutbox, Unavailable
from carepath.settings import Settings
from db import idempotency
from db.audit import audit_trail, write_audit
from db.models import EpisodeRow, TaskRow
from db.queries import EpisodeFacts, TaskFilter, TaskView, episode_facts, task_page, timeline
from workflows.client import UNREACHABLE, Attempts, EpisodeClient, EpisodeClosed, passing_cause
from workflows.contracts import EpisodeView, EventOutcome, TaskClosing


class NotFound(LookupError):
    """Nothing by that id (HTTP 404); ``field`` names the parameter that held the id."""

    def __init__(self, message: str, field: str = "") -> None:
        self.field = field
        super().__init__(message)


class Conflict(Exception):
    """The request is well-formed but clashes with what is recorded (HTTP 409)."""

    def __init__(self, field: str, message: str, retry_after: int | None = None) -> None:
        self.error = FieldError(field, message)
        self.retry_after = retry_after  # seconds, when retrying later can succeed
        super().__init__(str(self.error))


# An outage makes an update wait as long as recording retries; a request answers after this bound.
UPDATE_WAIT_SECONDS = 10.0
# Unkeyed events get a claim too (the outbox), under a key no client can send (it has a space).
SERVER_KEY = "server "
EVENT_PENDING = (
    "the event is not recorded yet ({cause}); it is kept and sent until it is: "
    "retry with the same Idempotency-Key for its outcome"
)
EVENT_PENDING_UNKEYED = (
    "the event is not recorded yet ({cause}); it is kept and sent until it is: "
    "do not send it again (without an Idempotency-Key that would record it twice)"
)
NOT_SENT = (
    "{what} is not recorded ({{cause}}); this server does not send it again: reload and retry "
    "(if it was recorded meanwhile, the retry is refused as already done)"
)
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


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    detail: dict[str, Any]


class Migrated(BaseModel):
    """What a migration answers: no patient data, since admins migrate too."""

    episode_id: str
    pathway: str
    status: str


class EpisodeDetail(EpisodeFacts):
    open_tasks: list[TaskView]
    timeline: list[dict[str, Any]]


Row = TypeVar("Row", EpisodeRow, TaskRow)


def _utcnow() -> datetime:
    return datetime.now(UTC)


RESERVING, ABANDONED = "reserving", "abandoned"


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


# A request that finds its Idempotency-Key in progress waits this long (5 s) for the first answer;
# a claim in progress for longer than KEY_STALE_AFTER is resumed (its request died unanswered).
KEY_WAIT_STEP, KEY_WAIT_STEPS = 0.05, 100
KEY_STALE_AFTER = timedelta(seconds=30)
# The draft's key is a string; printable ASCII up to 64 characters keeps it a safe column value.
_KEY = re.compile(r"[\x20-\x7e]{1,64}")


def _checked_key(key: str) -> str:
    if not _KEY.fullmatch(key) or key.startswith(SERVER_KEY):
        raise InvalidInput.one("Idempotency-Key", "must be 1 to 64 printable ASCII characters")
    return key


class CarepathService:
    def __init__(
        self,
        client: Client,
        engine: Engine,
        task_queue: str,
        clock: Callable[[], datetime] = _utcnow,
        pathway_version: int | None = None,
        update_wait: float = UPDATE_WAIT_SECONDS,
        history_limit: int | None = None,
    ) -> None:
        # New episodes continue-as-new past this many history events (None: the workflow's default).
        self.history_limit = history_limit
        # New enrollments get this version of the pathway (default: the newest shipped).
        self.pathway_version = pathway_version
        self.client = client
        self.episodes = EpisodeClient(client, task_queue)
        self.engine = engine
        self.clock = clock
        self.bounded = Bounded(client, engine, update_wait)
        self._pathway_ids: dict[str, str] = {}  # episode id -> its pathway id (see _pathway_id)
        self.outbox = EventOutbox(engine, self.episodes, lambda episode_id: self._episode_row(episode_id).phase)

    @classmethod
    def from_settings(cls, client: Client, engine: Engine, settings: Settings) -> CarepathService:
        """The service as ``carepath api`` and ``carepath dev`` configure it."""
        return cls(
            client,
            engine,
            settings.task_queue,
            pathway_version=settings.pathway_version,
            update_wait=settings.update_wait_seconds,
            history_limit=settings.history_limit,
        )

    @property
    def update_wait(self) -> float:
        """Seconds a write waits for its answer before 503 (CAREPATH_UPDATE_WAIT_SECONDS)."""
        return self.bounded.wait

    @update_wait.setter
    def update_wait(self, seconds: float) -> None:
        self.bounded.wait = seconds

    @property
    def task_queue(self) -> str:
        """Where new episodes' workflows run (the episode client's)."""
        return self.episodes.task_queue

    @task_queue.setter
    def task_queue(self, queue: str) -> None:
        self.episodes.task_queue = queue

    # ---- writes (through the workflow) ------------------------------------------------------

    def pathway(self, pathway_id: str | None = None) -> Pathway:
        """The pathway ``pathway_id`` (default: the shipped default); errors name ``pathway``."""
        try:
            return pathway_for(pathway_id) if pathway_id else default_pathway()
        except LookupError as exc:
            raise InvalidInput.one("pathway", str(exc)) from None

    def today(self, definition: DefinitionCore | None = None) -> date:
        """Today in the clinic's time zone of ``definition`` (default: the default pathway's)."""
        return local_date(definition or self.pathway().definition(), self.clock())

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
        pathway = self.pathway(pathway_id)
        enrollment = pathway.parse_enrollment(enrollment)
        # The configured version is the default pathway's; another pathway starts on its newest.
        definition = pathway.definition(self.pathway_version if pathway is default_pathway() else None)
        now = self.clock()
        pathway.validate_enrollment(definition, enrollment, now)
        enrolled_on = local_date(definition, now)
        phase = pathway.starting_phase(definition, enrollment, now)
        digest = enrollment_digest(enrollment)
        # Each pass either reserves, or settles the reservation in the way; another request may
        # settle it first, so look again (a few times at most: each pass ends one reservation).
        for _ in range(3):
            episode_id = uuid.uuid4().hex  # kept apart: the row's attributes expire on commit
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
            held = await asyncio.to_thread(self._reserve, row)
            if held is None:
                return await self._start(episode_id, enrollment, definition, actor, None if wait else started)
            if held.status != RESERVING:
                raise Conflict("patient.ref", f"patient already has an active episode ({held.id})")
            status = await self._workflow_status(held.id)
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
            why = _unbacked(status)
            if await asyncio.to_thread(self._release, held.id, actor, why, replacement=row):
                return await self._start(episode_id, enrollment, definition, actor, None if wait else started)
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
        try:
            # The workflow id is the reservation's, so whoever settles it later can ask Temporal.
            limit = self.history_limit
            if durable is not None:
                await self.episodes.start(episode_id, enrollment, definition, actor, wait=False, history_limit=limit)
                return durable
            # Temporal unreachable: the start is given up and the reservation released at once (a
            # start that reached Temporal after all fails at its first recording, see _release).
            view, _ = await self.bounded.run(
                self.episodes.start(episode_id, enrollment, definition, actor, history_limit=limit),
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
        """Release our reservation unless a workflow runs for it; 409 if another request replaced it."""
        cause = exc.cause if isinstance(exc, Unavailable) else passing_cause(exc) if isinstance(exc, RPCError) else None
        if cause == UNREACHABLE or (isinstance(exc, RPCError) and cause is not None):
            await asyncio.to_thread(self._release, episode_id, actor, f"not started: {cause}")
            if isinstance(exc, RPCError):
                raise Unavailable("", NOT_ENROLLED.format(cause=cause), cause=cause) from None
            return
        if isinstance(exc, Unavailable):
            return  # started: its baseline is on its way
        try:
            status = await self._workflow_status(episode_id)
            if status != WorkflowExecutionStatus.RUNNING:
                await asyncio.to_thread(
                    self._release, episode_id, actor, f"{_unbacked(status)} (start failed: {type(exc).__name__})"
                )
        except Exception:  # Temporal or the database is down too: the sweep settles it later
            return
        row = await asyncio.to_thread(self._reservation, episode_id)
        if row is not None and row.status == ABANDONED:
            raise Conflict("patient.ref", "another enrollment of this patient replaced this one") from exc

    async def _await_baseline(self, episode_id: str, enrollment: EnrollmentCore) -> Enrolled | None:
        try:
            view = await self.bounded.run(self.episodes.catch_up(episode_id), Attempts(), BASELINE_PENDING, "enroll")
        except (WorkflowUpdateFailedError, RPCError, InvalidInput, EpisodeClosed):
            return None
        return _enrolled(episode_id, enrollment, view)

    async def _workflow_status(self, episode_id: str) -> WorkflowExecutionStatus | None:
        """The status of the episode's workflow, None if Temporal never had it."""
        try:
            description = await self.episodes.handle(episode_id).describe()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            return None
        return description.status

    def _reserve(self, row: EpisodeRow) -> EpisodeRow | None:
        """Claim the patient's one active episode before the workflow exists (SPEC section 7).

        Returns None once claimed, else the row that holds the patient.
        """
        try:
            with Session(self.engine) as session, session.begin():
                session.add(row)
        except IntegrityError:
            held = self._holding(row.patient_ref)
            if held is None:  # it was released between our insert and this read
                return self._reserve(row)
            return held
        return None

    def active_episode_of(self, patient_ref: str) -> EpisodeRow | None:
        """The patient's active (or reserving) episode, if any: the enrollment page links it."""
        return self._holding(patient_ref)

    def _holding(self, patient_ref: str) -> EpisodeRow | None:
        with Session(self.engine) as session:
            return session.scalar(
                select(EpisodeRow).where(
                    EpisodeRow.patient_ref == patient_ref,
                    EpisodeRow.status.in_((RESERVING, "active")),
                    EpisodeRow.simulated.is_(False),
                )
            )

    def _reservation(self, episode_id: str) -> EpisodeRow | None:
        with Session(self.engine) as session:
            return session.get(EpisodeRow, episode_id)

    def _release(self, episode_id: str, actor: str, why: str, replacement: EpisodeRow | None = None) -> bool:
        """Mark a reservation abandoned, audited, and reserve ``replacement`` in the same transaction.

        False if it was no longer reserving (its workflow recorded the baseline, or someone
        else released it). Conditional on the row's status, so this and the workflow's first
        recording exclude each other: a workflow that starts after the release fails instead.
        """
        now = self.clock()
        try:
            with Session(self.engine) as session, session.begin():
                released = session.execute(
                    update(EpisodeRow)
                    .where(EpisodeRow.id == episode_id, EpisodeRow.status == RESERVING)
                    .values(status=ABANDONED, updated_at=now)
                ).rowcount
                if not released:
                    return False
                write_audit(
                    session,
                    change_id=f"{episode_id}/released",
                    episode_id=episode_id,
                    at=now,
                    actor=actor,
                    action="enroll:released",
                    detail={"reason": why, "replaced_by": replacement.id if replacement else None},
                )
                if replacement is not None:
                    session.flush()  # the old row leaves the one-active index before the new one enters
                    session.add(replacement)
        except IntegrityError:  # another request reserved the patient in between
            return False
        return True

    async def reconcile_enrollments(self, older_than: timedelta, actor: str = "carepath:reconcile") -> Reconciled:
        """Release every reservation older than ``older_than`` that no running workflow backs.

        Idempotent, and safe beside live enrollments: one whose workflow runs is left to finish
        (``in_progress``); the age bound spares requests between their reservation and their start.
        """
        cutoff = self.clock() - older_than
        with Session(self.engine) as session:
            pending = session.scalars(
                select(EpisodeRow.id)
                .where(
                    EpisodeRow.status == RESERVING,
                    EpisodeRow.simulated.is_(False),
                    EpisodeRow.created_at <= cutoff,
                )
                .order_by(EpisodeRow.created_at)
            ).all()
        report = Reconciled()
        for episode_id in pending:
            status = await self._workflow_status(episode_id)
            if status == WorkflowExecutionStatus.RUNNING:
                report.in_progress.append(episode_id)
            elif await asyncio.to_thread(self._release, episode_id, actor, _unbacked(status)):
                report.released.append(episode_id)
        return report

    async def record_event(
        self, episode_id: str, event: EventCore | dict[str, Any], actor: str, idempotency_key: str | None = None
    ) -> EventOutcome:
        """Claim the event (its key, or one of the server's own), keeping it in the outbox, then
        send it: answered within the bound, or 503 while it is sent on until it lands, once."""
        pathway_id = self._pathway_ids.get(episode_id) or await asyncio.to_thread(self._pathway_id, episode_id)
        event = self.pathway(pathway_id).parse_event(event)
        keyed = idempotency_key is not None
        key = _checked_key(idempotency_key) if idempotency_key is not None else SERVER_KEY + uuid.uuid4().hex
        payload = event.model_dump(mode="json")
        held = await self._claim_key(episode_id, key, idempotency.fingerprint(payload), payload, actor)
        if held.response is not None:
            return EventOutcome.model_validate(held.response)
        attempts = Attempts()
        return await self.bounded.run(
            self.outbox.send(episode_id, key, held.event_id, payload, actor, attempts),
            attempts,
            EVENT_PENDING if keyed else EVENT_PENDING_UNKEYED,
        )

    async def drain_outbox(self, older_than: timedelta = timedelta(seconds=30)) -> int:
        """Send the events still in the outbox that no request of this process is sending."""
        return await self.outbox.drain(self.clock(), older_than)

    async def _claim_key(
        self, episode_id: str, key: str, print_: str, request: dict[str, Any], actor: str
    ) -> idempotency.Claim:
        """The claim to act on: this request's own, a finished one (replay), or a stale one (resume)."""
        for _ in range(KEY_WAIT_STEPS):
            now = self.clock()
            held = await asyncio.to_thread(idempotency.claim, self.engine, episode_id, key, print_, now, request, actor)
            if held.fingerprint != print_:
                raise InvalidInput.one(
                    "Idempotency-Key", "was already used with a different request body; use a new key"
                )
            if held.mine or held.status == idempotency.DONE or now - held.created_at > KEY_STALE_AFTER:
                return held
            await asyncio.sleep(KEY_WAIT_STEP)  # the first request with this key is still running
        raise Conflict("Idempotency-Key", "a request with this key is still in progress", retry_after=1)

    async def withdraw(self, episode_id: str, reason: str, text: str | None, actor: str) -> EventOutcome:
        episode = await asyncio.to_thread(self._episode_row, episode_id)
        today = self.today(self._definition("pathway_version", episode.pathway_id, episode.pathway_version))
        event = {"type": "withdraw", "occurred_on": today.isoformat(), "reason": reason}
        return await self.record_event(episode_id, event if text is None else event | {"text": text}, actor)

    async def migrate(self, episode_id: str, version: int, reason: str, actor: str) -> Migrated:
        # The version is checked before the episode is looked up, so that refusing a bad request
        # does not tell an admin (who reads no patient data) whether the episode exists.
        self._definition("version", default_pathway().id, version)
        episode = await asyncio.to_thread(self._episode_row, episode_id)
        target = self._definition("version", episode.pathway_id, version)
        try:
            attempts = Attempts()
            await self.bounded.run(
                self.episodes.migrate(episode_id, target, reason, actor, attempts),
                attempts,
                NOT_SENT.format(what="the migration"),
                "migrate",
                keep=lambda cause: False,
            )
        except EpisodeClosed:
            raise InvalidInput.one("episode", f"episode is {episode.phase}; nothing to migrate") from None
        row = await asyncio.to_thread(self._episode_row, episode_id)
        return Migrated(episode_id=row.id, pathway=f"{row.pathway_id}.v{row.pathway_version}", status=row.status)

    def episode_pathway(self, episode_id: str) -> tuple[Pathway, DefinitionCore]:
        """The episode's pathway and the definition version it follows (NotFound if none)."""
        row = self._episode_row(episode_id)
        return self.pathway(row.pathway_id), self._definition("pathway", row.pathway_id, row.pathway_version)

    def _pathway_id(self, episode_id: str) -> str:
        """The episode's pathway id, read once per episode (it never changes): a write does not
        read the store just to learn which pathway parses its event. NotFound for an unknown one."""
        pathway_id = self._episode_row(episode_id).pathway_id
        if len(self._pathway_ids) >= 100_000:  # bounded: forget them all, they are read again
            self._pathway_ids.clear()
        self._pathway_ids[episode_id] = pathway_id
        return pathway_id

    def _definition(self, field: str, pathway_id: str, version: int) -> DefinitionCore:
        try:
            return self.pathway(pathway_id).definition(version)
        except LookupError as exc:
            raise InvalidInput.one(field, str(exc)) from None

    async def close_task(self, task_id: int, status: str, reason: str, actor: str) -> TaskView:
        task = await asyncio.to_thread(self._task_row, task_id)
        if task.status != "open":
            raise Conflict("task", f"task {task_id} is already {task.status}")
        closing = TaskClosing(code=task.code, milestone=task.occasion, status=status, reason=reason, actor=actor)
        try:
            attempts = Attempts()
            key = TaskKey(task.code, task.occasion)
            await self.bounded.run(
                self.episodes.close_task(task.episode_id, key, status, reason, actor, attempts),
                attempts,
                NOT_SENT.format(what="the task's closing"),
                "close_task",
                keep=lambda cause: False,
            )
        except EpisodeClosed:
            await asyncio.to_thread(self._close_after_workflow, task_id, closing)
        return await asyncio.to_thread(self.task, task_id)

    def _close_after_workflow(self, task_id: int, closing: TaskClosing) -> None:
        now = self.clock()
        with Session(self.engine) as session, session.begin():
            task = session.get(TaskRow, task_id)
            assert task is not None
            if task.status != "open":
                raise Conflict("task", f"task {task_id} is already {task.status}")
            task.status = closing.status
            task.closed_at = now
            task.close_reason = closing.reason
            write_audit(
                session,
                change_id=f"{task.episode_id}/task-{task_id}-{closing.status}",
                episode_id=task.episode_id,
                at=now,
                actor=closing.actor,
                action=f"task:{closing.status}",
                detail={
                    "closed": [f"{TaskKey(task.code, task.occasion)}:{closing.status}"],
                    "reason": closing.reason,
                    "after_workflow": True,
                },
            )

    # ---- reads (from the store) -------------------------------------------------------------

    def _episode_row(self, episode_id: str) -> EpisodeRow:
        return self._row(EpisodeRow, episode_id, "episode")

    def _task_row(self, task_id: int) -> TaskRow:
        return self._row(TaskRow, task_id, "task")

    def _row(self, model: type[Row], key: object, what: str) -> Row:
        with Session(self.engine) as session:
            row = session.get(model, key)
        if row is None:
            raise NotFound(f"no {what} {key}", field=f"{what}_id")
        return row

    def episode(self, episode_id: str) -> EpisodeDetail:
        row = self._episode_row(episode_id)
        return EpisodeDetail(
            **episode_facts(row),
            open_tasks=self.worklist(episode_id=episode_id, include_simulated=True),
            timeline=timeline(self.engine, episode_id),
        )

    async def workflow_state(self, episode_id: str, within: float = 2.0) -> EpisodeCore | None:
        """The running workflow's state (its ``state`` query), None if it has ended or does not
        answer within ``within`` seconds (no worker): callers fall back to the store."""
        try:
            return await asyncio.wait_for(self.episodes.state(episode_id), within)
        except (TimeoutError, RPCError, WorkflowQueryFailedError, EpisodeClosed):
            return None

    def audit(self, episode_id: str) -> list[AuditEntry]:
        self._episode_row(episode_id)
        return [AuditEntry.model_validate(row, from_attributes=True) for row in audit_trail(self.engine, episode_id)]

    def task(self, task_id: int) -> TaskView:
        found = self.worklist(task_id=task_id, status=None, include_simulated=True)
        if not found:
            raise NotFound(f"no task {task_id}", field="task_id")
        return found[0]

    def worklist(
        self,
        assignee: str | None = None,
        status: str | None = "open",
        priority: str | None = None,
        episode_id: str | None = None,
        task_id: int | None = None,
        include_simulated: bool = False,
        limit: int = 500,
    ) -> list[TaskView]:
        """Tasks across episodes, most urgent first, then most overdue (earliest due) first."""
        f = TaskFilter(
            assignee=assignee,
            status=status,
            priority=priority,
            episode_id=episode_id,
            task_id=task_id,
            include_simulated=include_simulated,
        )
        # Overdue by the clinic's calendar; every shipped definition so far keeps one clinic clock.
        return task_page(self.engine, self.today(), f, limit).items
