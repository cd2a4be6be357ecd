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

from pydantic import Field, ValidationInfo, field_validator

from carepath.engine.inputs import EventCore, InputModel, parse_model
from carepath.engine.pathway import Pathway
from carepath.engine.registry import default_pathway, pathway_for
from carepath.errors import FieldError, InvalidInput

Day = Annotated[int, Field(strict=True)]


class Scenario(InputModel):
    name: str = ""
    pathway: str = ""  # the pathway's id (default: the default pathway)
    enroll_day: Day = 0
    until_day: Day = 400
    # The pathway's enrollment as a story writes it (days, not dates): ``Pathway.story_enrollment``.
    enrollment: Any
    # Events stay raw here: each one is validated when it is submitted on its day, so one bad
    # event is rejected on its own while the story goes on.
    events: list[Any] = []
    expect: dict[str, Any] | None = None  # expectations for check.py; ignored by simulate

    @field_validator("enrollment", mode="before")
    @classmethod
    def _the_pathways_enrollment(cls, value: Any, info: ValidationInfo) -> Any:
        return story_pathway(info.data.get("pathway") or "").story_enrollment(value)

    def model_post_init(self, __context: Any) -> None:
        if self.enroll_day < 0:
            raise InvalidInput.one("enroll_day", "must not be negative (identified_on would be in the future)")
        if self.until_day < self.enroll_day:
            raise InvalidInput.one("until_day", f"must not be before enroll_day ({self.enroll_day})")


def story_pathway(pathway_id: str) -> Pathway:
    """The pathway a story is written for (its ``pathway`` key, else the default one)."""
    try:
        return pathway_for(pathway_id) if pathway_id else default_pathway()
    except LookupError as exc:
        raise InvalidInput.one("pathway", str(exc)) from None


# Dated field names the rules report, and the scenario keys a person wrote instead (the pathway
# adds its own: ``Pathway.story_fields``).
_SCENARIO_FIELDS = {"identified_on": "enroll_day", "occurred_on": "day"}


def scenario_field(field: str, pathway: Pathway | None = None) -> str:
    """``imaging[0].performed_on`` -> ``imaging[0].day``: name what the scenario called it."""
    head, _, last = field.rpartition(".")
    names = _SCENARIO_FIELDS | (pathway or default_pathway()).story_fields()
    renamed = names.get(last, last)
    return f"{head}.{renamed}" if head else renamed


def in_scenario_terms(error: InvalidInput, prefix: str, pathway: Pathway | None = None) -> InvalidInput:
    """Rename dated fields to the scenario's keys and nest them under ``prefix``."""
    renamed = InvalidInput(FieldError(scenario_field(e.field, pathway), e.message) for e in error.errors)
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
            story_pathway(str(data.get("pathway") or "")).story_enrollment(data["enrollment"])
        except InvalidInput as exc:
            raise exc.under("enrollment") from None
    return parse_model(Scenario, data)


@dataclass(frozen=True)
class PlannedEvent:
    index: int
    day: int
    event: EventCore | None  # None: rejected before submission
    error: InvalidInput | None = None

    @property
    def type(self) -> str:
        return self.event.type if self.event is not None else "?"


def plan_events(scenario: Scenario, identified_on: date) -> list[PlannedEvent]:
    """Each event parsed against its day; shape errors are kept for the ``rejected`` list."""
    planned: list[PlannedEvent] = []
    pathway = story_pathway(scenario.pathway)
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
            planned.append(PlannedEvent(index, day, pathway.parse_event(body)))
        except InvalidInput as exc:
            planned.append(PlannedEvent(index, day, None, in_scenario_terms(exc, prefix, pathway)))
    # Stable: events of one day keep the order given (SPEC section 1).
    return sorted(planned, key=lambda p: p.day)


def raw_type(scenario: Scenario, index: int) -> str:
    raw = scenario.events[index]
    return str(raw.get("type", "?")) if isinstance(raw, dict) else "?"
