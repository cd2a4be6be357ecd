"""SPEC section 7 checks that need the definition or the clock (shapes are in ``inputs``)."""

from __future__ import annotations

from datetime import datetime

from carepath.engine.definition import local_date
from carepath.errors import FieldError, InvalidInput
from carepath.pathways.ovcf_lumbar.definition import PathwayDefinition
from carepath.pathways.ovcf_lumbar.inputs import (
    DoseGiven,
    Enrollment,
    Event,
    MedicationStarted,
    MedicationStopped,
    Override,
    PainAssessment,
    RedFlagRaised,
)
from carepath.pathways.ovcf_lumbar.state import EpisodeState


def validate_enrollment(definition: PathwayDefinition, enrollment: Enrollment, now: datetime) -> None:
    """`identified_on` in the future or 365+ days ago, unknown agents and red flags, future dates."""
    today = local_date(definition, now)
    errors: list[FieldError] = []
    age_days = (today - enrollment.identified_on).days
    if age_days < 0:
        errors.append(FieldError("identified_on", f"must not be in the future (today is {today})"))
    elif age_days > definition.clock.max_backdate_days:
        errors.append(
            FieldError(
                "identified_on",
                f"is {age_days} days ago; enrollment may be back-dated at most "
                f"{definition.clock.max_backdate_days} days",
            )
        )
    errors += unknown("analgesics", enrollment.analgesics, definition.analgesics, "analgesic")
    errors += unknown("red_flags", enrollment.red_flags, definition.red_flags, "red flag")
    therapy = enrollment.osteoporosis_therapy
    if therapy is not None:
        if therapy.agent not in definition.osteoporosis_agents:
            errors.append(
                FieldError(
                    "osteoporosis_therapy.agent",
                    f"unknown osteoporosis agent {therapy.agent!r}; known: {', '.join(definition.osteoporosis_agents)}",
                )
            )
        if therapy.last_dose_on is not None and therapy.last_dose_on > today:
            errors.append(FieldError("osteoporosis_therapy.last_dose_on", "must not be in the future"))
    for i, study in enumerate(enrollment.imaging):
        if study.performed_on > today:
            errors.append(FieldError(f"imaging[{i}].performed_on", "must not be in the future"))
    if errors:
        raise InvalidInput(errors)


def unknown(field: str, values: list[str], known: dict[str, object], what: str) -> list[FieldError]:
    return [
        FieldError(f"{field}[{i}]", f"unknown {what} {value!r}; known: {', '.join(known)}")
        for i, value in enumerate(values)
        if value not in known
    ]


def event_errors(state: EpisodeState, event: Event) -> list[FieldError]:
    """An unknown agent or red flag; an override of a milestone not pending or a task not open."""
    d = state.definition
    match event:
        case PainAssessment():
            return unknown("analgesics", event.analgesics, d.analgesics, "analgesic")
        case MedicationStarted() | MedicationStopped() | DoseGiven():
            if event.agent not in d.known_agents:
                return [FieldError("agent", f"unknown agent {event.agent!r}; known: {', '.join(d.known_agents)}")]
        case RedFlagRaised():
            if event.flag not in d.red_flags:
                return [FieldError("flag", f"unknown red flag {event.flag!r}; known: {', '.join(d.red_flags)}")]
        case Override():
            return override_errors(state, event)
    return []


def override_errors(state: EpisodeState, event: Override) -> list[FieldError]:
    if event.skip_milestone is not None:
        progress = state.milestones.get(event.skip_milestone)
        if progress is None:
            return [FieldError("skip_milestone", f"unknown milestone; known: {', '.join(state.milestones)}")]
        if progress.status != "pending":
            return [FieldError("skip_milestone", f"milestone {event.skip_milestone} is not pending")]
    if event.close_task is not None and not any(t.code == event.close_task for t in state.open_tasks):
        return [FieldError("close_task", f"no open task {event.close_task!r} on this episode")]
    return []
