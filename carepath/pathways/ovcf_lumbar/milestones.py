"""SPEC section 4: the timed milestones, the reassessment due checks, the watchdog and denosumab.

Each milestone's behaviour is a named hook (``MILESTONE_HOOKS``), one short function whose
docstring quotes its SPEC row; the definition says which hooks a milestone runs (its flags).
"""

from __future__ import annotations

from datetime import date, timedelta

from carepath.engine.definition import action_time
from carepath.engine.pathway import Due
from carepath.engine.state import ENROLLMENT_PERIOD
from carepath.pathways.ovcf_lumbar.definition import MilestoneSpec
from carepath.pathways.ovcf_lumbar.evaluation import evaluate
from carepath.pathways.ovcf_lumbar.state import EpisodeState
from carepath.pathways.ovcf_lumbar.step import OvcfStep

# Phases on the conservative track that a milestone may move forward (SPEC section 2).
TRACK: tuple[str, ...] = ("acute", "conservative")

# Order within one instant (SPEC section 1): milestones, then reminders, then due checks.
MILESTONE, DOSE_REMINDER, REASSESSMENT_DUE, WATCHDOG = 0, 1, 2, 3


# ---- the named milestone hooks ------------------------------------------------------------------


def pain_reassessment(step: OvcfStep, spec: MilestoneSpec) -> None:
    """SPEC 4 | `week4` 28, `week6` 42, `week8` 56, `month3` 91 | `PAIN_REASSESSMENT`;
    4.1: a task for the coordinator (routine, due in 3 days) and a notification. A newer one
    supersedes an unanswered older one."""
    step.close("PAIN_REASSESSMENT", "cancelled", f"superseded by the {spec.name} reassessment")
    step.raise_("PAIN_REASSESSMENT", spec.name)
    step.state.milestones[spec.name].reassessment = "open"


def week4_stop_calcitonin(step: OvcfStep, spec: MilestoneSpec) -> None:
    """SPEC 4 | `week4` | 28 | `STOP_CALCITONIN` if calcitonin is in use (the 4-week acute course
    is over) [1][2]."""
    if step.definition.calcitonin in step.state.analgesics:
        step.raise_("STOP_CALCITONIN", spec.name)


def week8_not_resolving(step: OvcfStep, spec: MilestoneSpec) -> None:
    """SPEC 4 | `week8` | 56 | once that reassessment is recorded or overdue, `NOT_RESOLVING`
    (flag / high / physician) if the latest NRS >= 4 — "do not assume all pain is from the
    acute fracture" [1]."""
    if step.state.latest_nrs >= step.definition.thresholds.not_resolving_min_nrs:
        step.raise_("NOT_RESOLVING", spec.name, extra=f"Latest NRS {step.state.latest_nrs}.")


def month3_evaluation(step: OvcfStep, spec: MilestoneSpec) -> None:
    """SPEC 4 | `month3` | 91 | `PAIN_REASSESSMENT`, then the evaluation of 4.5 once the
    reassessment is recorded or overdue."""
    evaluate(step, spec)


def month12_review(step: OvcfStep, spec: MilestoneSpec) -> None:
    """SPEC 4 | `month12` | 365 | `TWELVE_MONTH_REVIEW` (task / high / physician): screen for a new
    vertebral fracture, confirm therapy adherence, calcium and vitamin D [1][4]. Then
    `completed`, or `maintenance` while on denosumab."""
    step.raise_("TWELVE_MONTH_REVIEW", spec.name)
    finish_year(step)


# What runs once a milestone's reassessment is recorded, overdue or waived (its
# ``after_reassessment`` in the definition).
AFTER_REASSESSMENT = {"not_resolving": week8_not_resolving, "evaluation": month3_evaluation}


# ---- running a milestone ------------------------------------------------------------------------


def run_milestone(step: OvcfStep, spec: MilestoneSpec) -> None:
    state = step.state
    progress = state.milestones[spec.name]
    state.period = spec.name
    if progress.status == "skip_requested":
        # A clinician skipped it ahead of time: its actions do not run, but the episode still
        # moves on as the milestone's day says.
        progress.status = "skipped"
        enter_phase(step, spec)
        if spec.after_reassessment == "evaluation":
            evaluate(step, spec)
        if spec.twelve_month_review:
            finish_year(step)
        return
    if state.phase == "resolved" and spec.pain_reassessment:
        skip_milestone(step, spec, "pain resolved")  # SPEC 4.2
        return
    progress.status = "done"
    enter_phase(step, spec)
    if spec.pain_reassessment:
        pain_reassessment(step, spec)
    if spec.stop_calcitonin:
        week4_stop_calcitonin(step, spec)
    if spec.twelve_month_review:
        month12_review(step, spec)


def after_reassessment(step: OvcfStep, spec: MilestoneSpec) -> None:
    """What a milestone does once its reassessment is recorded, overdue or waived."""
    hook = AFTER_REASSESSMENT.get(spec.after_reassessment or "")
    if hook is not None:
        hook(step, spec)


def skip_milestone(step: OvcfStep, spec: MilestoneSpec, why: str) -> None:
    """SPEC 1 / 4.2: a skipped milestone's code is its name, with the reason."""
    step.state.milestones[spec.name].status = "skipped"
    step.state.period = spec.name
    step.record(spec.name, "skipped", f"{spec.name} skipped: {why}", spec.name)


def enter_phase(step: OvcfStep, spec: MilestoneSpec) -> None:
    if spec.enters_phase is not None and step.state.phase in TRACK:
        step.set_phase(spec.enters_phase, f"day {spec.day} ({spec.name})")


def finish_year(step: OvcfStep) -> None:
    if step.state.on_denosumab:
        step.set_phase("maintenance", "12-month review done; denosumab continues")
    else:
        step.set_phase("completed", "12-month review done")


def reassessment_overdue(step: OvcfStep, spec: MilestoneSpec) -> None:
    """SPEC 4.1: no pain assessment within 7 days (param): `PAIN_REASSESSMENT_OVERDUE`
    (escalation / high / coordinator) once for that milestone; what waited on it moves on."""
    step.state.milestones[spec.name].reassessment = "overdue"
    step.raise_("PAIN_REASSESSMENT_OVERDUE", spec.name)
    after_reassessment(step, spec)


def pharmacotherapy_watchdog(step: OvcfStep) -> None:
    """SPEC 3: no osteoporosis agent recorded within 7 days (param) of enrollment:
    `PHARMACOTHERAPY_OVERDUE` (escalation / urgent / physician), once."""
    step.state.watchdog = "fired"
    step.raise_("PHARMACOTHERAPY_OVERDUE", ENROLLMENT_PERIOD)


def denosumab_reminder(step: OvcfStep, due: date) -> None:
    """SPEC 4.3: `DENOSUMAB_DOSE_DUE` (task / high / coordinator) 14 days (param) before each dose
    is due, once per dose."""
    step.state.denosumab_reminded_for = due
    step.raise_("DENOSUMAB_DOSE_DUE", f"dose:{due.isoformat()}", due_on=due, extra=f"Next dose due {due}.")


# ---- the schedule ---------------------------------------------------------------------------------


def next_dose_due(state: EpisodeState) -> date | None:
    """SPEC 4.3: a dose is due 182 days (param) after the last recorded dose."""
    if not state.on_denosumab or state.denosumab_last_dose is None:
        return None
    return state.denosumab_last_dose + timedelta(days=state.definition.denosumab.interval_days)


def due_points(state: EpisodeState) -> list[Due]:
    """Timed actions derived from the state (never stored as a schedule): milestones at 09:00 on
    their day, due checks at 09:00 on day N+7, the watchdog, the next dose reminder."""
    d = state.definition
    points: list[Due] = []
    for spec in d.milestones:
        progress = state.milestones[spec.name]
        day = state.identified_on + timedelta(days=spec.day)
        if progress.status in ("pending", "skip_requested"):
            points.append(Due(action_time(d, day), MILESTONE, "milestone", spec.name))
        if progress.reassessment == "open":
            overdue_on = day + timedelta(days=d.reassessment.overdue_after_days)
            points.append(Due(action_time(d, overdue_on), REASSESSMENT_DUE, "reassessment_due", spec.name))
    if state.watchdog == "armed":
        check_on = state.enrolled_on + timedelta(days=d.pharmacotherapy_watchdog_days)
        points.append(Due(action_time(d, check_on), WATCHDOG, "watchdog"))
    due = next_dose_due(state)
    if due is not None and state.denosumab_reminded_for != due:
        remind_on = due - timedelta(days=d.denosumab.reminder_lead_days)
        points.append(Due(action_time(d, remind_on), DOSE_REMINDER, "dose_reminder", due.isoformat(), due))
    return sorted(points)


def run_due(step: OvcfStep, point: Due) -> None:
    d = step.definition
    if point.what == "milestone":
        run_milestone(step, d.milestone(point.ref))
    elif point.what == "reassessment_due":
        reassessment_overdue(step, d.milestone(point.ref))
    elif point.what == "watchdog":
        pharmacotherapy_watchdog(step)
    elif point.what == "dose_reminder":
        assert point.on is not None
        denosumab_reminder(step, point.on)
