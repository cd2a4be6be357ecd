"""The protocol a pathway plugs into the engine by, and the base that implements its clock.

The workflow, activities, service, API, worklist and FHIR export call only what ``Pathway``
names. ``PathwayRules`` implements the parts every pathway shares (the clock loop, event
validation and application, a person closing a task, migration between versions, moving to a
newer rules revision), and leaves the clinical rules to its subclass's hooks.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from carepath.engine.definition import DefinitionCore, DefinitionFiles, local_date, shared
from carepath.engine.inputs import EnrollmentCore, EventCore, parse_model
from carepath.engine.items import Changes, TaskKey, TimelineEntry
from carepath.engine.measures import MeasureSet, load_measures
from carepath.engine.state import EpisodeCore
from carepath.engine.step import Step
from carepath.errors import FieldError, InvalidInput

S = TypeVar("S", bound=EpisodeCore)
# How far ahead an episode's coming items are projected (the forecast's longest horizon).
COMING_DAYS = 7 * 53
_MEASURES: dict[str, MeasureSet] = {}
D = TypeVar("D", bound=DefinitionCore)


@runtime_checkable
class Pathway(Protocol):
    """A pathway as the engine sees it. Every function is pure: no I/O, no Temporal."""

    id: str
    title: str
    rules_revision: int  # the newest revision of its rules (docs/rule-changes.md)

    def versions(self) -> list[int]: ...
    def definition(self, version: int | None = None) -> DefinitionCore: ...
    def decode_definition(self, data: Any) -> DefinitionCore: ...
    def decode_state(self, data: Any) -> EpisodeCore: ...
    def parse_enrollment(self, data: Any, prefix: str = "") -> EnrollmentCore: ...
    def parse_event(self, data: Any, prefix: str = "") -> EventCore: ...
    def validate_enrollment(self, definition: Any, enrollment: Any, now: datetime) -> None: ...
    def starting_phase(self, definition: Any, enrollment: Any, now: datetime) -> str: ...
    def enroll(
        self, definition: Any, enrollment: Any, episode_id: str, now: datetime, rules_revision: int
    ) -> tuple[EpisodeCore, Changes]: ...
    def next_due(self, state: Any) -> datetime | None: ...
    def advance(self, state: Any, now: datetime) -> tuple[EpisodeCore, Changes]: ...
    def validate_event(self, state: Any, event: Any, now: datetime) -> None: ...
    def apply_event(self, state: Any, event: Any, now: datetime) -> tuple[EpisodeCore, Changes]: ...
    def close_task(
        self, state: Any, key: TaskKey, status: str, reason: str, now: datetime
    ) -> tuple[EpisodeCore, Changes]: ...
    def migrate(
        self, state: Any, target: Any, now: datetime, actor: str, reason: str
    ) -> tuple[EpisodeCore, Changes]: ...
    def upgrade(self, state: Any) -> EpisodeCore: ...
    def coming(self, state: Any, now: datetime, days: int = ...) -> list[TimelineEntry]: ...
    def measures(self) -> MeasureSet: ...


@dataclass(frozen=True, order=True)
class Due:
    """Something the clock owes an episode: at ``at``; among equal times lower ``rank`` first."""

    at: datetime
    rank: int
    what: str
    ref: str = ""
    on: date | None = None  # the day it concerns, when that is not ``at``'s day


class PathwayRules(Generic[D, S]):
    """Shared machinery; a pathway subclasses it and supplies the hooks marked below."""

    id: str
    title: str
    rules_revision: int = 1
    files: DefinitionFiles
    state_model: type[S]
    enrollment_model: type[EnrollmentCore]
    step_class: type[Step[Any]] = Step

    # ---- hooks a pathway supplies -------------------------------------------------------------

    def parse_event(self, data: Any, prefix: str = "") -> EventCore:
        raise NotImplementedError

    def validate_enrollment(self, definition: D, enrollment: Any, now: datetime) -> None:
        raise NotImplementedError

    def starting_phase(self, definition: D, enrollment: Any, now: datetime) -> str:
        raise NotImplementedError

    def enroll(
        self, definition: D, enrollment: Any, episode_id: str, now: datetime, rules_revision: int
    ) -> tuple[S, Changes]:
        raise NotImplementedError

    def due_points(self, state: S) -> list[Due]:
        """Everything the clock will owe this episode, soonest first."""
        raise NotImplementedError

    def run_due(self, step: Step[S], point: Due) -> None:
        raise NotImplementedError

    def event_errors(self, state: S, event: Any) -> list[FieldError]:
        """What is wrong with ``event`` for this episode beyond its shape and date."""
        return []

    def apply(self, step: Step[S], event: Any) -> None:
        raise NotImplementedError

    def closed_by_person(self, step: Step[S], code: str, occasion: str | None, status: str, why: str) -> None:
        """A person closed a task (done, cancelled, overridden): what waited on it moves on."""
        step.close(code, status, why, occasion)

    # ---- definitions --------------------------------------------------------------------------

    def versions(self) -> list[int]:
        return self.files.versions()

    def definition(self, version: int | None = None) -> D:
        return self.files.load(version)  # type: ignore[return-value]

    def shipped(self, definition: DefinitionCore) -> D | None:
        """The definition with ``definition``'s id and version as shipped now, if it is shipped."""
        try:
            return self.definition(definition.version)
        except LookupError:
            return None

    def decode_definition(self, data: Any) -> D:
        if isinstance(data, self.files.model):
            return shared(data)  # type: ignore[return-value]
        return shared(self.files.model.model_validate(data))  # type: ignore[return-value]

    def decode_state(self, data: Any) -> S:
        return data if isinstance(data, self.state_model) else self.state_model.model_validate(data)

    def parse_enrollment(self, data: Any, prefix: str = "") -> EnrollmentCore:
        if isinstance(data, self.enrollment_model):
            return data
        return parse_model(self.enrollment_model, data, prefix)

    # ---- the clock ----------------------------------------------------------------------------

    def next_due(self, state: S) -> datetime | None:
        """When the clock next has something to do for this episode (None: nothing, ever)."""
        if state.finished:
            return None
        points = self.due_points(state)
        return points[0].at if points else None

    def advance(self, state: S, now: datetime) -> tuple[S, Changes]:
        """Run every timed action due at or before ``now``, in order."""
        state = self.copy(state)
        changes = Changes()
        while not state.finished:
            due = [p for p in self.due_points(state) if p.at <= now]
            if not due:
                break
            point = due[0]
            # Never date anything before enrollment: a reminder whose day had passed at
            # enrollment is raised on the enrollment day.
            on = max(local_date(state.definition, point.at), state.enrolled_on)
            step = self.step_class(state, on)
            self.run_due(step, point)
            changes.extend(step.changes)
        return state, changes

    def coming(self, state: S, now: datetime, days: int = COMING_DAYS) -> list[TimelineEntry]:
        """What the clock will raise for people to act on over the next ``days`` if nothing else is
        recorded meanwhile: the episode's own due points run forward on a copy (the workload
        forecast). Escalations that fire only when something goes unanswered are counted too."""
        if state.finished:
            return []
        _, changes = self.advance(state, now + timedelta(days=days))
        return [item for item in changes.items if item.actionable]

    def measures(self) -> MeasureSet:
        """The cohort quality measures this pathway declares (``measures.json`` in its package)."""
        if self.id not in _MEASURES:
            _MEASURES[self.id] = load_measures(self.files.package, self.id)
        return _MEASURES[self.id]

    def copy(self, state: S) -> S:
        """A deep copy that shares the definition: it is immutable, and copying it every step
        would cost ~40 KiB and its CPU per step per episode."""
        return copy.deepcopy(state, {id(state.definition): state.definition})

    # ---- events -------------------------------------------------------------------------------

    def validate_event(self, state: S, event: Any, now: datetime) -> None:
        """Raise ``InvalidInput`` naming the field if ``event`` may not be applied at ``now``."""
        state, _ = self.advance(state, now)
        self._check_event(state, event, now)

    def _check_event(self, state: S, event: Any, now: datetime) -> None:
        """``validate_event`` on a state the clock has already caught up."""
        if state.finished:
            raise InvalidInput.one("episode", f"episode is {state.phase}; no further events are accepted")
        today = local_date(state.definition, now)
        errors: list[FieldError] = []
        if event.occurred_on < state.identified_on:
            errors.append(FieldError("occurred_on", f"must not be before day 0 (identified_on {state.identified_on})"))
        elif event.occurred_on > today:
            errors.append(FieldError("occurred_on", f"must not be in the future (today is {today})"))
        errors += self.event_errors(state, event)
        if errors:
            raise InvalidInput(errors)

    def apply_event(self, state: S, event: Any, now: datetime) -> tuple[S, Changes]:
        """Validate, run what the clock owes first, then apply ``event``."""
        state, changes = self.advance(state, now)  # the one copy of the state this event makes
        self._check_event(state, event, now)
        step = self.step_class(state, local_date(state.definition, now))
        step.triggered_by(event.type, event.occurred_on)
        self.apply(step, event)
        changes.extend(step.changes)
        return state, changes

    def close_task(self, state: S, key: TaskKey, status: str, reason: str, now: datetime) -> tuple[S, Changes]:
        """A person completes or cancels an open task (``status`` ``completed`` or ``cancelled``)."""
        state, changes = self.advance(state, now)
        if not any(task.key == key for task in state.open_tasks):
            raise InvalidInput.one("task", f"{key} is not open on this episode")
        if status not in ("completed", "cancelled"):
            raise InvalidInput.one("status", "must be completed or cancelled")
        step = self.step_class(state, local_date(state.definition, now))
        self.closed_by_person(step, key.code, key.occasion, status, reason)
        changes.extend(step.changes)
        return state, changes

    # ---- versions and revisions ---------------------------------------------------------------

    def migration_errors(self, state: S, target: D) -> list[FieldError]:
        return []

    def migrate(self, state: S, target: D, now: datetime, actor: str, reason: str) -> tuple[S, Changes]:
        """Move a running episode to a newer version of its pathway, deliberately and on the record.

        What was raised stays; from now on the new parameters apply (e.g. the next reminder's day).
        """
        current = state.definition
        if target.id != current.id:
            raise InvalidInput.one("version", f"episode follows {current.id}, not {target.id}")
        if target.version <= current.version:
            raise InvalidInput.one("version", f"episode is on v{current.version}; migrate only to a newer version")
        errors = self.migration_errors(state, target)
        if errors:
            raise InvalidInput(errors)
        state, changes = self.advance(state, now)
        if state.finished:
            raise InvalidInput.one("episode", f"episode is {state.phase}; nothing to migrate")
        state.definition = target
        step = self.step_class(state, local_date(target, now))
        title = f"Pathway {current.key} -> {target.key} by {actor}: {reason}"
        step.record("PATHWAY_MIGRATED", "info", title, f"migrate:v{target.version}")
        changes.extend(step.changes)
        return state, changes

    def upgrade(self, state: S) -> S:
        """The same episode, deciding from now on by the newest rules revision. What was raised
        stays as it was.

        An episode carries the definition it was enrolled on, perhaps recorded before its actions
        had a ``repeat`` policy; the shipped definition with the same id and version supplies the
        policies, and nothing else of the carried definition changes.
        """
        if state.rules_revision >= self.rules_revision:
            return state
        definition = state.definition
        shipped = self.shipped(definition)
        if shipped is not None:
            actions = {
                code: spec.model_copy(update={"repeat": shipped.actions[code].repeat})
                if code in shipped.actions
                else spec
                for code, spec in definition.actions.items()
            }
            definition = shared(definition.model_copy(update={"actions": actions}))
        return state.model_copy(update={"rules_revision": self.rules_revision, "definition": definition})
