"""Pathway ``ovcf-lumbar``: osteoporotic lumbar vertebral compression fracture (SPEC v1).

Where each SPEC section's rule lives:
- section 1 (clock), 4.1 due checks, 4.3 denosumab and the watchdog: ``milestones.due_points``
- section 2 (phases): ``milestones.enter_phase`` / ``finish_year``, ``events.pain_assessment``
- section 3 (baseline actions): ``baseline.baseline``
- section 4 (milestones): ``milestones`` — one named hook each (``week4_stop_calcitonin``,
  ``week8_not_resolving``, ``month3_evaluation``, ``month12_review``, ``pain_reassessment``)
- 4.4 and 4.5 (stale imaging, the evaluation): ``evaluation``
- section 5 (events): ``events``; section 6 (red flags): the definition's ``red_flags``
- section 7 (validation): ``inputs`` (shapes) and ``validation`` (definition and clock)
- section 8 (codes; how often one may be raised): each action's ``repeat`` in the definition,
  applied by ``carepath.engine.step.Step.raise_``

Nothing in this package does I/O or imports Temporal.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from carepath.engine.definition import action_time, local_date
from carepath.engine.inputs import EventCore
from carepath.engine.items import Changes
from carepath.engine.pathway import Due, PathwayRules
from carepath.engine.presentation import CheckIn, Choice, DuePoint, Fact, Mark, RecordedEvent
from carepath.errors import FieldError
from carepath.pathways.ovcf_lumbar import display, events, milestones
from carepath.pathways.ovcf_lumbar.baseline import baseline
from carepath.pathways.ovcf_lumbar.definition import DEFINITIONS, PATHWAY_ID, PathwayDefinition
from carepath.pathways.ovcf_lumbar.evaluation import evaluate, evaluation_milestone
from carepath.pathways.ovcf_lumbar.inputs import EVENT_MODELS, Enrollment, Event, parse_event
from carepath.pathways.ovcf_lumbar.state import RULES_REVISION, EpisodeState, MilestoneProgress
from carepath.pathways.ovcf_lumbar.step import OvcfStep
from carepath.pathways.ovcf_lumbar.stories import STORY_FIELDS, ScenarioEnrollment
from carepath.pathways.ovcf_lumbar.validation import event_errors, validate_enrollment
from carepath.pathways.ovcf_lumbar.vocabulary import Phase


class OvcfLumbar(PathwayRules[PathwayDefinition, EpisodeState]):
    id = PATHWAY_ID
    title = "Osteoporotic lumbar vertebral compression fracture"
    rules_revision = RULES_REVISION
    files = DEFINITIONS
    state_model = EpisodeState
    enrollment_model = Enrollment
    step_class = OvcfStep

    def parse_event(self, data: Any, prefix: str = "") -> Event:
        return data if not isinstance(data, dict) else parse_event(data, prefix)

    def validate_enrollment(self, definition: PathwayDefinition, enrollment: Enrollment, now: datetime) -> None:
        validate_enrollment(definition, enrollment, now)

    def starting_phase(self, definition: PathwayDefinition, enrollment: Enrollment, now: datetime) -> Phase:
        return implied_phase(definition, (local_date(definition, now) - enrollment.identified_on).days)

    def enroll(
        self,
        definition: PathwayDefinition,
        enrollment: Enrollment,
        episode_id: str,
        now: datetime,
        rules_revision: int = RULES_REVISION,
    ) -> tuple[EpisodeState, Changes]:
        """A new episode and its baseline actions (SPEC section 3), skipped milestones included.

        ``rules_revision`` is the newest unless the caller replays an episode enrolled before it.
        """
        validate_enrollment(definition, enrollment, now)
        today = local_date(definition, now)
        enroll_day = (today - enrollment.identified_on).days
        therapy = enrollment.osteoporosis_therapy
        denosumab = definition.denosumab.agent
        state = EpisodeState(
            episode_id=episode_id,
            definition=definition,
            rules_revision=rules_revision,
            identified_on=enrollment.identified_on,
            enrolled_on=today,
            age=enrollment.patient.age,
            sex=enrollment.patient.sex,
            red_flags=list(dict.fromkeys(enrollment.red_flags)),
            levels=list(enrollment.fracture.levels),
            acute_injury=enrollment.fracture.acute_injury,
            correlating_symptoms=enrollment.fracture.correlating_symptoms,
            contraindications=list(enrollment.contraindications),
            analgesics=list(enrollment.analgesics),
            latest_nrs=enrollment.pain_nrs,
            latest_pain_on=today,
            osteoporosis_agents=[therapy.agent] if therapy else [],
            denosumab_last_dose=therapy.last_dose_on if therapy and therapy.agent == denosumab else None,
            latest_imaging_on=max((s.performed_on for s in enrollment.imaging), default=None),
            phase=implied_phase(definition, enroll_day),
            milestones={spec.name: MilestoneProgress() for spec in definition.milestones},
        )
        step = OvcfStep(state, today)
        baseline(step, enrollment, enroll_day)
        for spec in definition.milestones:
            if action_time(definition, enrollment.identified_on + timedelta(days=spec.day)) <= now:
                milestones.skip_milestone(
                    step, spec, f"enrolled on day {enroll_day}, after the milestone's day {spec.day}"
                )
        if state.milestones[evaluation_milestone(definition).name].status == "skipped":
            evaluate(step, evaluation_milestone(definition))  # SPEC 4.5: enrolled after day 91
        if state.on_denosumab and state.denosumab_last_dose is None:
            step.raise_(
                "DENOSUMAB_DOSE_DUE",
                "dose:unknown",
                extra="The date of the last dose is not known: confirm it and when the next is due.",
            )
        # Anything timed that is already due (a denosumab reminder whose day has passed) is raised
        # now, dated on the enrollment day.
        state, more = self.advance(state, now)
        step.changes.extend(more)
        return state, step.changes

    def due_points(self, state: EpisodeState) -> list[Due]:
        return milestones.due_points(state)

    def run_due(self, step: OvcfStep, point: Due) -> None:  # type: ignore[override]
        milestones.run_due(step, point)

    def event_errors(self, state: EpisodeState, event: Event) -> list[FieldError]:
        return event_errors(state, event)

    def apply(self, step: OvcfStep, event: Event) -> None:  # type: ignore[override]
        events.apply(step, event)

    def closed_by_person(self, step: OvcfStep, code: str, occasion: str | None, status: str, why: str) -> None:  # type: ignore[override]
        events.close_by_person(step, code, occasion, status, why)

    # ---- what the edges show (carepath.engine.pathway.Pathway; words in display.py) ----------

    due_titles = display.DUE_TITLES
    event_labels = display.EVENT_LABELS
    enrollment_labels = display.ENROLLMENT_LABELS
    enrollment_layout = display.ENROLLMENT_LAYOUT
    story_model = ScenarioEnrollment

    def story_fields(self) -> dict[str, str]:
        return STORY_FIELDS

    def enrollment_choices(self, definition: PathwayDefinition) -> dict[str, list[Choice]]:
        return display.enrollment_choices(definition)

    def event_models(self) -> list[type[EventCore]]:
        return list(EVENT_MODELS)

    def expected(self, state: EpisodeState) -> list[DuePoint]:
        return display.expected(state)

    def label(self, definition: PathwayDefinition, code: str) -> str:
        return display.label(definition, code)

    def form_choices(self, definition: PathwayDefinition, event_type: str) -> dict[str, list[Choice]]:
        return display.form_choices(definition, event_type)

    def physician_events(self) -> frozenset[str]:
        return frozenset({"override"})

    def header_facts(self, state: EpisodeState) -> list[Fact]:
        return display.header_facts(state)

    def event_summary(self, event: RecordedEvent) -> str:
        return display.event_summary(event)

    def picture_marks(
        self, definition: PathwayDefinition, events: list[RecordedEvent], upcoming: list[DuePoint]
    ) -> list[Mark]:
        return display.picture_marks(definition, events, upcoming)

    def picture_legend(self, definition: PathwayDefinition) -> list[str]:
        return [f"{definition.denosumab.agent} dose (outlined: next due)"]

    def fhir_resource(self, event: RecordedEvent) -> dict[str, Any] | None:
        return display.fhir_resource(event)

    def check_in(self, definition: PathwayDefinition, code: str) -> CheckIn | None:
        return display.check_in(definition, code)

    def patient_message(self, definition: PathwayDefinition, code: str) -> tuple[str, str] | None:
        return display.PATIENT_WORDS.get(code)

    def check_in_event(
        self, definition: PathwayDefinition, check_in: CheckIn, answers: dict[str, Any], today: date
    ) -> EventCore:
        return display.check_in_event(answers, today)

    def migration_errors(self, state: EpisodeState, target: PathwayDefinition) -> list[FieldError]:
        missing = set(state.milestones) - {m.name for m in target.milestones}
        if missing:
            return [FieldError("version", f"v{target.version} lacks milestones {sorted(missing)}")]
        return []


def implied_phase(definition: PathwayDefinition, enroll_day: int) -> Phase:
    """SPEC 2: an episode enrolled after day 27 starts in the phase its day implies."""
    phase: Phase = "acute"
    for spec in definition.milestones:
        if spec.enters_phase is not None and spec.day <= enroll_day:
            phase = spec.enters_phase
    return phase


OVCF_LUMBAR = OvcfLumbar()

__all__ = ["OVCF_LUMBAR", "RULES_REVISION", "OvcfLumbar", "implied_phase"]
