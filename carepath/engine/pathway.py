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
from typing import Any, Generic, Literal, Protocol, TypeVar, get_args, get_origin, runtime_checkable

from pydantic import BaseModel

from carepath.engine.definition import DefinitionCore, DefinitionFiles, local_date, shared
from carepath.engine.inputs import EnrollmentCore, EventCore, parse_model
from carepath.engine.intake import IntakeDetector
from carepath.engine.items import Changes, TaskKey, TimelineEntry
from carepath.engine.measures import MeasureSet, load_measures
from carepath.engine.presentation import (
    CheckIn,
    Choice,
    DuePoint,
    EventForm,
    Fact,
    FormSection,
    Mark,
    RecordedEvent,
    form_fields,
    layout,
    model_fields_flat,
    summary_line,
    words,
)
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
    intake: IntakeDetector | None  # finds its patients in reports and codes (carepath.engine.intake)

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
    def upgrade(self, state: Any, revision: int | None = None) -> EpisodeCore: ...
    def coming(self, state: Any, now: datetime, days: int = ...) -> list[TimelineEntry]: ...
    def measures(self) -> MeasureSet: ...

    # ---- what the edges show (pages, API, FHIR, follow-up); pure, like the rest ----------------

    def upcoming(self, state: Any) -> list[DuePoint]:
        """What comes next for a running episode, soonest first, for display: built from the same
        ``due_points`` the clock runs by (titled in words), plus what the pathway expects without
        acting on it (e.g. the next dose's own day)."""
        ...

    def planned(self, definition: Any, identified_on: date, today: date) -> list[DuePoint]:
        """What the definition alone says is ahead after ``today`` (no running workflow answered):
        the milestones by date, no checks or doses."""
        ...

    def milestone_days(self, definition: Any) -> list[tuple[str, int]]:
        """The named milestones of the pathway's year and their day (day 0: identification), in
        order: the year picture's diamonds, the override form's choices."""
        ...

    def label(self, definition: Any, code: str) -> str:
        """Words for a code a person would otherwise read raw: a timeline code (the action's
        title), a phase, an event type, a milestone, a vocabulary value (``bed_rest``)."""
        ...

    def event_forms(self, definition: Any) -> list[EventForm]:
        """One form per event type a clinician records on the episode page, built from the
        pathway's input models: fields in order, labels in words, choices with human labels
        (closed vocabularies from the models, open ones such as agents from ``definition``).
        Withdrawal is left out: every page has its own withdraw form."""
        ...

    def enrollment_form(self, definition: Any) -> list[FormSection]:
        """The enroll page's form for this pathway, in sections, built from its enrollment model
        (dotted names such as ``patient.ref``, the names the API's errors use), labels in words,
        choices from the model's vocabularies and the definition's lists."""
        ...

    def withdraw_form(self, definition: Any) -> EventForm | None:
        """The withdrawal form (reasons in words; the day is today), or None when the pathway
        takes no ``withdraw`` event."""
        ...

    def physician_events(self) -> frozenset[str]:
        """Event types only a physician may record (checked before the body is validated)."""
        ...

    def evidence(self) -> dict[str, str]:
        """The evidence its items cite ("1" -> what that reference supports, in words): the
        reference list every page citing [1].. links to."""
        ...

    def header_facts(self, state: Any) -> list[Fact]:
        """The facts an episode's header shows, label and value in words (e.g. age, levels,
        latest pain score, analgesics, therapy, red flags); those with a ``short`` form are also
        on its worklist and patients rows (recorded with every change, so rows need no workflow call)."""
        ...

    def row_facts(self, definition: Any, identified_on: date, today: date) -> list[Fact]:
        """What a worklist or patients row says of the episode beyond its phase, from the store
        and the definition alone (no workflow call per row), e.g. the next milestone."""
        ...

    def event_summary(self, event: RecordedEvent) -> str:
        """A recorded event in one line of words (e.g. "Pain 6 of 10; analgesics: opioid")."""
        ...

    def picture_marks(self, definition: Any, events: list[RecordedEvent], upcoming: list[DuePoint]) -> list[Mark]:
        """The pathway's own markers on the year picture, from what was recorded and what is
        coming (e.g. doses given and the next one due)."""
        ...

    def picture_legend(self, definition: Any) -> list[str]:
        """What the picture's own markers are, in words, for its legend (empty: it draws none)."""
        ...

    def phases(self) -> list[str]:
        """Every phase an episode of this pathway can be in, in order (filters' choices)."""
        ...

    def fhir_resource(self, event: RecordedEvent) -> dict[str, Any] | None:
        """The FHIR R4 resource one recorded event exports as, without identifiers, subject or
        plan (the exporter adds those): ``resourceType`` ``Observation`` (``code``, ``value*``,
        optional ``category`` and ``note``) or ``Communication`` (``payload``, ``sender``), or None
        when the event is not exported."""
        ...

    def check_in(self, definition: Any, code: str) -> CheckIn | None:
        """The patient check-in that raising ``code`` triggers, if any (the follow-up beside the
        rules: a link to a page with the check-in's questions)."""
        ...

    def story_enrollment(self, data: Any) -> Any:
        """An enrollment as a story (``carepath simulate``) writes it, in days since day 0, parsed
        (InvalidInput naming the field); its ``dated(identified_on)`` is the enrollment."""
        ...

    def story_fields(self) -> dict[str, str]:
        """The enrollment's dated field names and the story keys that hold their days instead."""
        ...

    def patient_message(self, definition: Any, code: str) -> tuple[str, str] | None:
        """A patient task's message in the patient's words (subject, body), or None: then the
        action's title and a plain request to call the care team."""
        ...

    def check_in_event(self, definition: Any, check_in: CheckIn, answers: dict[str, Any], today: date) -> EventCore:
        """A patient's check-in answers as the event they record; InvalidInput naming the
        question when an answer is missing or wrong."""
        ...


@dataclass(frozen=True)
class _Dated:
    """A story enrollment that was written with dates already: dated is itself."""

    enrollment: EnrollmentCore

    def dated(self, identified_on: date) -> EnrollmentCore:
        return self.enrollment


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
    # The action fields each rules revision reads that an older carried definition may lack.
    refreshed_by_revision: dict[int, tuple[str, ...]] = {2: ("repeat",)}
    intake: IntakeDetector | None = None  # a pathway found in reports declares its detector
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

    # ---- what the edges show (see ``Pathway``); a pathway overrides what it has more of ------

    due_titles: dict[str, str] = {"milestone": "{ref} milestone"}
    event_labels: dict[str, dict[str, str]] = {}  # per event type: field name -> words

    def due_title(self, point: Due) -> str:
        """A clock point in words (``due_titles`` by its ``what``, formatted with its ``ref``)."""
        template = self.due_titles.get(point.what)
        return template.format(ref=point.ref) if template else f"{words(point.what)} {point.ref}".strip()

    def expected(self, state: S) -> list[DuePoint]:
        """What the pathway expects on a day without the clock acting on it (none by default)."""
        return []

    def upcoming(self, state: S) -> list[DuePoint]:
        if state.finished:
            return []
        day0 = state.identified_on
        points = [
            DuePoint(
                on=(on := local_date(state.definition, p.at)),
                day=(on - day0).days,
                what=p.what,
                ref=p.ref,
                title=self.due_title(p),
            )
            for p in self.due_points(state)
        ]
        return sorted([*points, *self.expected(state)], key=lambda p: (p.on, p.day))

    def milestone_days(self, definition: D) -> list[tuple[str, int]]:
        return [(m.name, m.day) for m in getattr(definition, "milestones", ())]

    def planned(self, definition: D, identified_on: date, today: date) -> list[DuePoint]:
        points = []
        for name, day in self.milestone_days(definition):
            on = identified_on + timedelta(days=day)
            if on > today:
                title = self.due_titles["milestone"].format(ref=self.label(definition, name))
                points.append(DuePoint(on=on, day=day, what="milestone", ref=name, title=title))
        return points

    def label(self, definition: D, code: str) -> str:
        action = definition.actions.get(code)
        return action.title if action is not None else words(code)

    def event_models(self) -> list[type[EventCore]]:
        """The pathway's event input models (one per event type)."""
        raise NotImplementedError

    def event_forms(self, definition: D) -> list[EventForm]:
        forms = []
        for model in self.event_models():
            kind = model.model_fields["type"].default
            if kind == "withdraw":
                continue
            fields = form_fields(
                model,
                self.event_labels.get(kind, {}),
                self.form_choices(definition, kind),
                lambda code: self.label(definition, code),
            )
            forms.append(
                EventForm(
                    type=kind,
                    title=self.label(definition, kind),
                    fields=fields,
                    physicians_only=kind in self.physician_events(),
                )
            )
        return forms

    enrollment_labels: dict[str, str] = {}  # dotted field name -> words
    enrollment_layout: list[tuple[str, list[str], int]] = []  # (heading, dotted names, rows); empty: one section

    def enrollment_choices(self, definition: D) -> dict[str, list[Choice]]:
        """Choices for enrollment fields the model leaves open, by dotted name."""
        return {}

    def enrollment_form(self, definition: D) -> list[FormSection]:
        fields = model_fields_flat(
            self.enrollment_model,
            self.enrollment_labels,
            self.enrollment_choices(definition),
            lambda code: self.label(definition, code),
        )
        if self.enrollment_layout:
            return layout(fields, self.enrollment_layout)
        return [FormSection(title="Enrollment", fields=[f for f in fields if "[]" not in f.name])]

    def withdraw_form(self, definition: D) -> EventForm | None:
        model = next((m for m in self.event_models() if m.model_fields["type"].default == "withdraw"), None)
        if model is None:
            return None
        labels = {"reason": "Reason", "text": "Details"} | self.event_labels.get("withdraw", {})
        fields = form_fields(model, labels, None, lambda code: self.label(definition, code), ("type", "occurred_on"))
        return EventForm(type="withdraw", title=self.label(definition, "withdraw"), fields=fields)

    def form_choices(self, definition: D, event_type: str) -> dict[str, list[Choice]]:
        """Choices for fields the input model leaves open (e.g. agents from the definition)."""
        return {}

    def physician_events(self) -> frozenset[str]:
        return frozenset()

    def header_facts(self, state: S) -> list[Fact]:
        return []

    def evidence(self) -> dict[str, str]:
        return {}

    def row_facts(self, definition: D, identified_on: date, today: date) -> list[Fact]:
        ahead = self.planned(definition, identified_on, today)
        return [Fact(label="Next", value=f"{ahead[0].title} on {ahead[0].on.isoformat()}")] if ahead else []

    def event_summary(self, event: RecordedEvent) -> str:
        return summary_line(event.payload, [name for name in event.payload if name not in ("type", "occurred_on")])

    def picture_marks(self, definition: D, events: list[RecordedEvent], upcoming: list[DuePoint]) -> list[Mark]:
        return []

    def picture_legend(self, definition: D) -> list[str]:
        return []

    def phases(self) -> list[str]:
        annotation = self.state_model.model_fields["phase"].annotation
        return [str(v) for v in get_args(annotation)] if get_origin(annotation) is Literal else []

    def fhir_resource(self, event: RecordedEvent) -> dict[str, Any] | None:
        return None

    def check_in(self, definition: D, code: str) -> CheckIn | None:
        return None

    def patient_message(self, definition: D, code: str) -> tuple[str, str] | None:
        return None

    story_model: type[BaseModel] | None = None  # the enrollment in days; None: stories give dates

    def story_enrollment(self, data: Any) -> Any:
        if self.story_model is None:
            return _Dated(self.parse_enrollment(data))
        return data if isinstance(data, self.story_model) else parse_model(self.story_model, data)

    def story_fields(self) -> dict[str, str]:
        return {}

    def check_in_event(self, definition: D, check_in: CheckIn, answers: dict[str, Any], today: date) -> EventCore:
        raise InvalidInput.one("check-in", "this pathway asks no check-in questions")

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

    def upgrade(self, state: S, revision: int | None = None) -> S:
        """The same episode, deciding from now on by rules revision ``revision`` (default: the
        newest). What was raised stays as it was.

        An episode carries the definition it was enrolled on, perhaps recorded before its actions
        had the fields a newer revision reads (``refreshed_by_revision``); the shipped definition
        with the same id and version supplies those fields, and nothing else of the carried
        definition changes.
        """
        target = self.rules_revision if revision is None else revision
        if state.rules_revision >= target:
            return state
        fields = [
            f for r, names in self.refreshed_by_revision.items() if state.rules_revision < r <= target for f in names
        ]
        definition = state.definition
        shipped = self.shipped(definition)
        if shipped is not None and fields:
            actions = {
                code: spec.model_copy(update={f: getattr(shipped.actions[code], f) for f in fields})
                if code in shipped.actions
                else spec
                for code, spec in definition.actions.items()
            }
            definition = shared(definition.model_copy(update={"actions": actions}))
        return state.model_copy(update={"rules_revision": target, "definition": definition})
