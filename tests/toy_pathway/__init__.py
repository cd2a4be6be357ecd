"""A deliberately tiny pathway, defined outside carepath: two milestones and one event.

It proves the plug-in protocol: registered with ``carepath.engine.registry.register``, it runs
through the production workflow, recording, API, worklist, the episode page (its year picture,
event form and what comes next) and the FHIR export without any engine change.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from carepath.engine.definition import DefinitionCore, DefinitionData, DefinitionFiles, action_time, local_date
from carepath.engine.inputs import EnrollmentCore, EventCore, InputModel, PatientRef, between, parse_model
from carepath.engine.items import Changes
from carepath.engine.pathway import Due, PathwayRules
from carepath.engine.presentation import Fact, RecordedEvent
from carepath.engine.state import EpisodeCore
from carepath.engine.step import Step
from carepath.errors import InvalidInput


class ToyMilestone(DefinitionData):
    name: str
    day: int = Field(ge=1)
    raises: str


class ToyDefinition(DefinitionCore):
    milestones: list[ToyMilestone]


class ToyPatient(InputModel):
    ref: PatientRef


class ToyEnrollment(EnrollmentCore):
    patient: ToyPatient

    @property
    def patient_ref(self) -> str:
        return self.patient.ref


class Flare(EventCore):
    type: Literal["flare"] = "flare"
    severity: Annotated[int, Field(strict=True), between(0, 10)]


class ToyState(EpisodeCore):
    definition: ToyDefinition
    done: list[str] = []


class ToyKnee(PathwayRules[ToyDefinition, ToyState]):
    id = "toy-knee"
    title = "Toy knee sprain follow-up"
    files = DefinitionFiles("tests.toy_pathway", "toy-knee", ToyDefinition)
    state_model = ToyState
    enrollment_model = ToyEnrollment
    due_titles = {"milestone": "{ref} check"}
    enrollment_labels = {"identified_on": "Sprained on (day 0)", "patient.ref": "Patient ref"}
    event_labels = {"flare": {"occurred_on": "Flared up on", "severity": "Severity (0-10)"}}

    def parse_event(self, data: Any, prefix: str = "") -> EventCore:
        return data if isinstance(data, BaseModel) else parse_model(Flare, data, prefix)

    def validate_enrollment(self, definition: ToyDefinition, enrollment: ToyEnrollment, now: datetime) -> None:
        if enrollment.identified_on > local_date(definition, now):
            raise InvalidInput.one("identified_on", "must not be in the future")

    def starting_phase(self, definition: ToyDefinition, enrollment: ToyEnrollment, now: datetime) -> str:
        return "recovering"

    def enroll(
        self, definition: ToyDefinition, enrollment: ToyEnrollment, episode_id: str, now: datetime, rules_revision: int
    ) -> tuple[ToyState, Changes]:
        self.validate_enrollment(definition, enrollment, now)
        state = ToyState(
            episode_id=episode_id,
            definition=definition,
            rules_revision=rules_revision,
            identified_on=enrollment.identified_on,
            enrolled_on=local_date(definition, now),
            phase="recovering",
        )
        return self.advance(state, now)  # a milestone whose day has come is raised at once

    def due_points(self, state: ToyState) -> list[Due]:
        d = state.definition
        return [
            Due(action_time(d, state.identified_on + timedelta(days=m.day)), 0, "milestone", m.name)
            for m in d.milestones
            if m.name not in state.done
        ]

    def run_due(self, step: Step[ToyState], point: Due) -> None:
        milestone = next(m for m in step.state.definition.milestones if m.name == point.ref)
        step.state.done.append(milestone.name)
        step.state.period = milestone.name
        step.raise_(milestone.raises, milestone.name)
        if len(step.state.done) == len(step.state.definition.milestones):
            step.set_phase("completed", "follow-up done")

    def apply(self, step: Step[ToyState], event: Flare) -> None:  # type: ignore[override]
        if event.severity >= 5:
            step.raise_("FLARE_ALERT", extra=f"Severity {event.severity}.")

    # ---- what the edges show ------------------------------------------------------------------

    def event_models(self) -> list[type[EventCore]]:
        return [Flare]

    def label(self, definition: ToyDefinition, code: str) -> str:
        return {"flare": "Knee flare-up", "recovering": "Recovering"}.get(code) or super().label(definition, code)

    def phases(self) -> list[str]:
        return ["recovering", "completed", "withdrawn"]

    def header_facts(self, state: ToyState) -> list[Fact]:
        return [Fact(label="Checks done", value=", ".join(state.done) or "none yet")]

    def fhir_resource(self, event: RecordedEvent) -> dict[str, Any] | None:
        if event.type != "flare":
            return None
        return {
            "resourceType": "Observation",
            "code": {"text": "knee flare-up severity (0-10)"},
            "valueInteger": event.payload["severity"],
        }


TOY_KNEE = ToyKnee()
