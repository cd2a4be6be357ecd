"""The scenario file format (shared/pathway/SCENARIOS.md) and its mapping to dated inputs.

A scenario speaks in days relative to fracture identification; the pathway speaks in dates.
``plan`` turns one into the other once day 0 is pinned to a calendar date.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from carepath.errors import FieldError, InvalidInput
from carepath.pathways.ovcf_lumbar.inputs import (
    CurrentTherapy,
    Enrollment,
    EnrollmentBase,
    Event,
    ImagingStudy,
    InputModel,
    Modality,
    parse_event,
    parse_model,
)

Day = Annotated[int, Field(strict=True)]


class ScenarioImaging(InputModel):
    day: Day
    modality: Modality


class ScenarioTherapy(InputModel):
    agent: str
    last_dose_day: Day | None = None


class ScenarioEnrollment(EnrollmentBase):
    osteoporosis_therapy: ScenarioTherapy | None = None
    imaging: list[ScenarioImaging] = []

    def dated(self, identified_on: date) -> Enrollment:
        def on(day: int) -> date:
            return identified_on + timedelta(days=day)

        therapy = self.osteoporosis_therapy
        return Enrollment(
            **self.model_dump(exclude={"osteoporosis_therapy", "imaging"}),
            identified_on=identified_on,
            osteoporosis_therapy=None
            if therapy is None
            else CurrentTherapy(
                agent=therapy.agent,
                last_dose_on=None if therapy.last_dose_day is None else on(therapy.last_dose_day),
            ),
            imaging=[ImagingStudy(performed_on=on(i.day), modality=i.modality) for i in self.imaging],
        )


class Scenario(InputModel):
    name: str = ""
    enroll_day: Day = 0
    until_day: Day = 400
    enrollment: ScenarioEnrollment
    # Events stay raw here: each one is validated when it is submitted on its day, so one bad
    # event is rejected on its own while the story goes on.
    events: list[Any] = []
    expect: dict[str, Any] | None = None  # expectations for check.py; ignored by simulate

    def model_post_init(self, __context: Any) -> None:
        if self.enroll_day < 0:
            raise InvalidInput.one("enroll_day", "must not be negative (identified_on would be in the future)")
        if self.until_day < self.enroll_day:
            raise InvalidInput.one("until_day", f"must not be before enroll_day ({self.enroll_day})")


# Dated field names the rules report, and the scenario keys a person wrote instead.
_SCENARIO_FIELDS = {
    "identified_on": "enroll_day",
    "performed_on": "day",
    "last_dose_on": "last_dose_day",
    "occurred_on": "day",
}


def scenario_field(field: str) -> str:
    """``imaging[0].performed_on`` -> ``imaging[0].day``: name what the scenario called it."""
    head, _, last = field.rpartition(".")
    renamed = _SCENARIO_FIELDS.get(last, last)
    return f"{head}.{renamed}" if head else renamed


def in_scenario_terms(error: InvalidInput, prefix: str) -> InvalidInput:
    """Rename dated fields to the scenario's keys and nest them under ``prefix``."""
    renamed = InvalidInput(FieldError(scenario_field(e.field), e.message) for e in error.errors)
    return renamed.under(prefix) if prefix else renamed


def load_scenario(path: Path) -> Scenario:
    """Read and validate one scenario file; errors name the file and the field."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput.one(str(path), "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput.one(str(path), f"cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput.one(str(path), f"not valid JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("enrollment"), dict):
        # Name enrollment errors from the scenario's root: ``enrollment.patient.age``.
        try:
            parse_model(ScenarioEnrollment, data["enrollment"])
        except InvalidInput as exc:
            raise exc.under("enrollment") from None
    return parse_model(Scenario, data)


@dataclass(frozen=True)
class PlannedEvent:
    index: int
    day: int
    event: Event | None  # None: rejected before submission
    error: InvalidInput | None = None

    @property
    def type(self) -> str:
        return self.event.type if self.event is not None else "?"


def plan_events(scenario: Scenario, identified_on: date) -> list[PlannedEvent]:
    """Each event parsed against its day; shape errors are kept for the ``rejected`` list."""
    planned: list[PlannedEvent] = []
    for index, raw in enumerate(scenario.events):
        prefix = f"events[{index}]"
        if not isinstance(raw, dict):
            error = InvalidInput.one(prefix, "must be an object")
            planned.append(PlannedEvent(index, scenario.enroll_day, None, error))
            continue
        day = raw.get("day")
        if not isinstance(day, int) or isinstance(day, bool):
            error = InvalidInput.one(f"{prefix}.day", "is required and must be an integer")
            planned.append(PlannedEvent(index, scenario.enroll_day, None, error))
            continue
        body = {k: v for k, v in raw.items() if k != "day"}
        body["occurred_on"] = (identified_on + timedelta(days=day)).isoformat()
        try:
            planned.append(PlannedEvent(index, day, parse_event(body)))
        except InvalidInput as exc:
            planned.append(PlannedEvent(index, day, None, in_scenario_terms(exc, prefix)))
    # Stable: events of one day keep the order given (SPEC section 1).
    return sorted(planned, key=lambda p: p.day)


def raw_type(scenario: Scenario, index: int) -> str:
    raw = scenario.events[index]
    return str(raw.get("type", "?")) if isinstance(raw, dict) else "?"
