"""One durable workflow per episode: it sleeps until the pathway's next due time, takes clinical
events as validated updates, and records what the pure rules decide through activities.

The workflow id carries only the episode id (``episode-<id>``), never patient data.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.notifications import NotificationDispatcher
    from activities.recording import ChangeRecord, ComingItem, EpisodeOpened, EpisodeRecorder, RecordedEvent
    from carepath.engine.items import Changes, TaskKey
    from carepath.engine.pathway import Pathway
    from carepath.engine.registry import pathway_for
    from carepath.engine.state import EpisodeCore
    from carepath.errors import InvalidInput
    from workflows.contracts import (
        EpisodeStart,
        EpisodeView,
        EventOutcome,
        EventRequest,
        Migration,
        TaskClosing,
    )

INVALID_INPUT = "InvalidInput"
# An update refused while this run drains before continuing as new: the client sends it again
# and the next run takes it (workflows/client.py).
RUN_ENDING = "RunEnding"
# Event ids the workflow remembers (with their outcome) across continue-as-new, so an event
# sent again after its first sending landed (an outbox retry) applies once. A year's episode
# has a few hundred events; the bound keeps a flooded episode's carried state small.
REMEMBERED_EVENTS = 2_000
# A running episode takes its pathway's newest rules revision at its first decision made by this
# code (e.g. ovcf-lumbar SPEC section 8 amended on 2026-12-01), marked in its history by a patch
# "rules-r<N>@<k>". patched() answers once per id for a whole run, so one id asked at every
# decision would stay False after the first replayed one: the id names the decision k, so exactly
# the first live decision of an old episode carries the marker (docs/rule-changes.md).
RULES_PATCH = "rules-r"
# Recording takes ~0.1 s (1.9 s worst measured under load); a worker killed mid-activity is
# noticed after this long, so it is short (it was 60 s: a killed worker stalled an episode 60 s).
RECORD_TIMEOUT = timedelta(seconds=15)
# A database outage must not lose a patient: retry for as long as it takes, backing off.
RECORD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(minutes=1)
)
# Runs started by this code first try each recording as a local activity: in the worker running
# the workflow task, within that task, so an update is answered in one workflow task instead of
# three server round trips (the same idempotent transaction). One try only, bounded by its
# timeout: a local activity retrying through a database outage would hold the workflow task, be
# invisible to `describe` and keep a stopping worker waiting, so a failed try falls back to the
# scheduled activity with RECORD_RETRY, which waits out the outage durably. Asked once at the
# start of a run: a run begun before this code (a checked-in history, a running episode
# replayed) keeps scheduling its recordings until it continues as new (docs/rule-changes.md).
LOCAL_RECORD_PATCH = "record-local"
LOCAL_RECORD_TRY = RetryPolicy(maximum_attempts=1)


def _invalid(exc: InvalidInput) -> ApplicationError:
    return ApplicationError(str(exc), {"errors": exc.as_dicts()}, type=INVALID_INPUT, non_retryable=True)


def _update_id() -> str:
    info = workflow.current_update_info()
    return info.id if info is not None else ""


@workflow.defn(name="Episode")
class EpisodeWorkflow:
    @workflow.init
    def __init__(self, start: EpisodeStart) -> None:
        self._lock = asyncio.Lock()
        self._start = start
        self._seq = start.change_seq
        self._decisions = 0  # counts this run's decisions: the patch ids (see RULES_PATCH)
        self._woken = False
        self._pending: Changes | None = None
        self._delivery: asyncio.Task[None] | None = None
        self._delivery_wanted = False
        self._local_record = False  # set at the start of run (LOCAL_RECORD_PATCH)
        # Events parsed by the update validator, by update id: the handler takes its own instead
        # of parsing again (on replay validators do not run, and the handler parses).
        self._parsed: dict[str, Any] = {}
        self._ending = False  # draining in-flight updates before continue-as-new
        self._not_enrolled: str | None = None  # why the enrollment's recording failed
        self._recorded: dict[str, EventOutcome] = dict(start.recorded_events)
        if start.state is not None:
            self._state: EpisodeCore = start.state  # its definition is the shared instance
            self._pathway: Pathway = pathway_for(self._state.definition.id)
        else:
            if start.enrollment is None or start.definition is None:
                raise ApplicationError("a new episode needs an enrollment and a definition", non_retryable=True)
            self._pathway = pathway_for(start.definition.id)
            revision = self._decided_revision(1)
            try:
                # Pure and deterministic, so the state exists before any update is validated.
                self._enrollment = self._pathway.parse_enrollment(start.enrollment, "enrollment")
                self._state, self._pending = self._pathway.enroll(
                    start.definition,
                    self._enrollment,
                    start.episode_id,
                    workflow.now(),
                    revision,
                )
            except InvalidInput as exc:
                raise _invalid(exc) from None

    @workflow.run
    async def run(self, start: EpisodeStart) -> str:
        self._local_record = workflow.patched(LOCAL_RECORD_PATCH)
        if self._pending is not None:
            async with self._lock:
                try:
                    await self._record(self._pending, "enroll", start.actor, opened=self._opened(start))
                except ActivityError as exc:  # e.g. its reservation was released: this run fails
                    self._not_enrolled = str(exc.cause or exc)
                    await workflow.wait_condition(workflow.all_handlers_finished)  # they are told, then end
                    raise
                self._pending = None
        while not self._state.finished:
            due = self._pathway.next_due(self._state)
            timeout = None if due is None else max(due - workflow.now(), timedelta(0))
            self._woken = False
            # Events may move what is due next, so they wake this wait (see _woken).
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._woken or self._state.finished or self._history_full(), timeout=timeout
                )
            async with self._lock:
                self._adopt_newest_rules()
                self._state, changes = self._pathway.advance(self._state, workflow.now())
                if not changes.empty:
                    await self._record(changes, "clock", "pathway")
            if self._history_full() and not self._state.finished:
                self._ending = True  # new updates are refused (RUN_ENDING) and go to the next run
                await self._quiesce()
                workflow.continue_as_new(
                    EpisodeStart(
                        episode_id=start.episode_id,
                        state=self._state,
                        change_seq=self._seq,
                        history_limit=start.history_limit,
                        simulated=start.simulated,
                        recorded_events=self._recorded,
                    )
                )
        await self._quiesce()
        return self._state.phase

    async def _quiesce(self) -> None:
        """Let running updates and notification deliveries finish before this run ends: in one
        condition, so an update accepted while a delivery finishes is waited for too."""
        await workflow.wait_condition(
            lambda: workflow.all_handlers_finished() and (self._delivery is None or self._delivery.done())
        )

    def _refuse_while_ending(self) -> None:
        if self._ending:
            raise ApplicationError("the run is continuing as new; send again", type=RUN_ENDING, non_retryable=True)

    # ---- events and decisions ---------------------------------------------------------------
    # Every update runs the same way: wait until enrollment is recorded, then under the lock ask
    # the pure rules, record what they decided, and wake the main loop (what is due may move).
    # Its validator asks the same rules without recording: a rejected update never enters
    # history, so the episode stays exactly as it was.

    async def _decide(
        self, decide: Callable[[], tuple[EpisodeCore, Changes]], action: str, actor: str, **extra: Any
    ) -> Changes:
        await workflow.wait_condition(lambda: self._pending is None or self._not_enrolled is not None)
        if self._not_enrolled is not None:
            raise ApplicationError(f"the enrollment was not recorded: {self._not_enrolled}", non_retryable=True)
        async with self._lock:
            self._adopt_newest_rules()
            try:
                self._state, changes = decide()
            except InvalidInput as exc:  # the clock moved on since validation
                raise _invalid(exc) from None
            if not changes.empty or extra.get("event") is not None:
                await self._record(changes, action, actor, **extra)
            self._woken = True
        return changes

    def _outcome(self, changes: Changes, event_id: str) -> EventOutcome:
        return EventOutcome(
            event_id=event_id,
            phase=self._state.phase,
            raised=[str(item.key) for item in changes.items],
            closed=[str(c.key) for c in changes.closures],
        )

    @staticmethod
    def _check(decide: Callable[[], object]) -> None:
        try:
            decide()
        except InvalidInput as exc:
            raise _invalid(exc) from None

    def _event(self, request: EventRequest) -> Any:
        try:
            return self._pathway.parse_event(request.event)
        except InvalidInput as exc:
            raise _invalid(exc) from None

    @workflow.update
    async def record_event(self, request: EventRequest) -> EventOutcome:
        parsed = self._parsed.pop(_update_id(), None)
        if request.event_id in self._recorded:  # sent again after it landed: its first outcome
            return self._recorded[request.event_id]
        event = parsed if parsed is not None else self._event(request)
        recorded = RecordedEvent(
            event_id=request.event_id,
            type=event.type,
            occurred_on=event.occurred_on,
            payload=event.model_dump(mode="json"),
        )
        changes = await self._decide(
            lambda: self._pathway.apply_event(self._state, event, workflow.now()),
            f"event:{event.type}",
            request.actor,
            event=recorded,
            reason=getattr(event, "reason", None),
        )
        outcome = self._outcome(changes, request.event_id)
        self._remember(outcome)
        return outcome

    def _remember(self, outcome: EventOutcome) -> None:
        self._recorded[outcome.event_id] = outcome
        while len(self._recorded) > REMEMBERED_EVENTS:
            del self._recorded[next(iter(self._recorded))]  # the oldest (dicts keep insertion order)

    @record_event.validator
    def _validate_event(self, request: EventRequest) -> None:
        self._refuse_while_ending()
        if request.event_id in self._recorded:
            return
        event = self._event(request)
        self._check(lambda: self._pathway.validate_event(self._state, event, workflow.now()))
        self._parsed[_update_id()] = event

    def _closing(self, request: TaskClosing) -> tuple[EpisodeCore, Changes]:
        key = TaskKey(request.code, request.milestone)
        return self._pathway.close_task(self._state, key, request.status, request.reason, workflow.now())

    @workflow.update
    async def close_task(self, request: TaskClosing) -> EventOutcome:
        """A person completes or cancels an open task; what waited on it moves on."""
        changes = await self._decide(
            lambda: self._closing(request), f"task:{request.status}", request.actor, reason=request.reason
        )
        return self._outcome(changes, str(TaskKey(request.code, request.milestone)))

    @close_task.validator
    def _validate_close_task(self, request: TaskClosing) -> None:
        self._refuse_while_ending()
        self._check(lambda: self._closing(request))

    def _migrating(self, request: Migration) -> tuple[EpisodeCore, Changes]:
        return self._pathway.migrate(self._state, request.definition, workflow.now(), request.actor, request.reason)

    @workflow.update
    async def migrate(self, request: Migration) -> EpisodeView:
        """Move this episode to a newer pathway version, on its timeline and audit trail."""
        await self._decide(
            lambda: self._migrating(request),
            "migrate",
            request.actor,
            reason=request.reason,
            pathway_version=request.definition.version,
        )
        return self.view()

    @migrate.validator
    def _validate_migrate(self, request: Migration) -> None:
        self._refuse_while_ending()
        self._check(lambda: self._migrating(request))

    @workflow.update
    async def catch_up(self) -> EpisodeView:
        """Run whatever the clock owes now and return the episode as it then stands."""
        await self._decide(lambda: self._pathway.advance(self._state, workflow.now()), "clock", "pathway")
        return self.view()

    @catch_up.validator
    def _validate_catch_up(self) -> None:
        self._refuse_while_ending()

    @workflow.query
    def view(self) -> EpisodeView:
        due = self._pathway.next_due(self._state)
        return EpisodeView(
            episode_id=self._state.episode_id,
            pathway=self._state.definition.key,
            phase=self._state.phase,
            identified_on=self._state.identified_on.isoformat(),
            enrolled_on=self._state.enrolled_on.isoformat(),
            open_tasks=self._state.open_tasks,
            next_due=due.isoformat() if due else None,
            rules_revision=self._state.rules_revision,
            delivering=self._delivery is not None and not self._delivery.done(),
        )

    @workflow.query
    def state(self) -> EpisodeCore:
        """The whole state (serialized as the pathway's model; ``EpisodeClient.state`` decodes it)."""
        return self._state

    # ---- rules revisions --------------------------------------------------------------------

    def _decided_revision(self, current: int) -> int:
        """The rules revision this decision is made on: the newest for a live one; on replay, the
        newest whose marker the history has at this decision (``rules-r<N>@<k>``), else
        ``current``. Older revisions' markers are asked too, so histories recorded while they
        were the newest replay as they ran."""
        self._decisions += 1
        for revision in range(self._pathway.rules_revision, current, -1):
            if workflow.patched(f"{RULES_PATCH}{revision}@{self._decisions}"):
                return revision
        return current

    def _adopt_newest_rules(self) -> None:
        """Before a decision: an episode still on older rules moves to a newer one, once."""
        current = self._state.rules_revision
        if current < self._pathway.rules_revision:
            revision = self._decided_revision(current)
            if revision > current:
                self._state = self._pathway.upgrade(self._state, revision)

    # ---- helpers ----------------------------------------------------------------------------

    def _history_full(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() >= self._start.history_limit

    def _opened(self, start: EpisodeStart) -> EpisodeOpened:
        assert start.definition is not None
        return EpisodeOpened(
            patient_ref=self._enrollment.patient_ref,
            pathway_id=start.definition.id,
            pathway_version=start.definition.version,
            identified_on=self._enrollment.identified_on,
            enrolled_on=self._state.enrolled_on,
            simulated=start.simulated,
            enrollment=self._enrollment.model_dump(mode="json"),
        )

    async def _record(self, changes: Changes, action: str, actor: str, **extra: Any) -> None:
        self._seq += 1
        record = ChangeRecord(
            change_id=f"{self._state.episode_id}/{self._seq}",
            episode_id=self._state.episode_id,
            at=workflow.now(),
            phase=self._state.phase,
            actor=actor,
            action=action,
            changes=changes,
            facts=self._snapshot(),
            coming=self._coming(),
            **extra,
        )
        await self._write(record)
        if not self._start.simulated and any(item.notify for item in changes.items):
            self._request_delivery()

    async def _write(self, record: ChangeRecord) -> None:
        """One recording: a local try first where this run takes it (LOCAL_RECORD_PATCH), else or
        after a failed try the scheduled activity, which also gives a final refusal (a released
        reservation) as callers expect it: an ActivityError, on the history."""
        if self._local_record:
            try:
                await workflow.execute_local_activity_method(
                    EpisodeRecorder.record_changes,
                    record,
                    start_to_close_timeout=RECORD_TIMEOUT,
                    retry_policy=LOCAL_RECORD_TRY,
                )
                return
            except FailureError as exc:  # a local failure comes unwrapped (not as an ActivityError)
                if isinstance(exc, CancelledError):
                    raise
        await workflow.execute_activity_method(
            EpisodeRecorder.record_changes,
            record,
            start_to_close_timeout=RECORD_TIMEOUT,
            retry_policy=RECORD_RETRY,
        )

    def _snapshot(self) -> dict[str, Any]:
        """The facts and the next due points rows show (pure: it replays as it ran)."""
        ahead = self._pathway.upcoming(self._state)[:3]
        return {
            "facts": [fact.model_dump() for fact in self._pathway.header_facts(self._state)],
            "upcoming": [point.model_dump(mode="json") for point in ahead],
        }

    def _coming(self) -> list[ComingItem] | None:
        """What the clock will raise next (pure, from the pathway's due points): the workload
        forecast reads it from the store. Simulated stories are no one's workload."""
        if self._start.simulated:
            return None
        items = self._pathway.coming(self._state, workflow.now())
        return [ComingItem(due_on=i.on, code=i.code, assignee=i.assignee or "") for i in items]

    def _request_delivery(self) -> None:
        # Delivery runs beside the episode, one at a time, so a slow or failing sink never
        # delays recording or an update's reply; it is awaited before the run ends.
        self._delivery_wanted = True
        if self._delivery is None or self._delivery.done():
            self._delivery = asyncio.create_task(self._deliver())

    async def _deliver(self) -> None:
        while self._delivery_wanted:
            self._delivery_wanted = False
            await workflow.execute_activity_method(
                NotificationDispatcher.deliver_notifications,
                self._state.episode_id,
                start_to_close_timeout=RECORD_TIMEOUT,
                retry_policy=RECORD_RETRY,
            )
