"""SPEC section 3: the baseline actions at enrollment."""

from __future__ import annotations

from carepath.pathways.ovcf_lumbar.inputs import Enrollment
from carepath.pathways.ovcf_lumbar.step import OvcfStep


def baseline(step: OvcfStep, enrollment: Enrollment, enroll_day: int) -> None:
    """SPEC 3, row by row: osteoporosis therapy (and its watchdog), calcium and vitamin D,
    calcitonin for acute pain, acetaminophen for mild pain, opioid caution, avoid bed rest,
    bracing and exercise inconclusive, surgical consultation for any red flag."""
    d = step.definition
    t = d.thresholds
    if enrollment.osteoporosis_therapy is None:
        step.raise_("START_OSTEOPOROSIS_THERAPY")
        step.state.watchdog = "armed"
    if not enrollment.calcium_vitamin_d:
        step.raise_("CALCIUM_VITAMIN_D")
    if (
        enroll_day < t.calcitonin_window_days
        and enrollment.pain_nrs >= t.calcitonin_min_nrs
        and d.calcitonin not in enrollment.analgesics
    ):
        step.raise_("CALCITONIN_ACUTE_PAIN")
    low, high = t.mild_pain_nrs
    if low <= enrollment.pain_nrs <= high:
        step.raise_("ACETAMINOPHEN_MILD_PAIN")
    if d.opioid in enrollment.analgesics:
        opioid_caution(step, "on an opioid at enrollment")
    step.raise_("AVOID_BED_REST")
    step.raise_("BRACING_INCONCLUSIVE")
    step.raise_("EXERCISE_INCONCLUSIVE")
    if enrollment.red_flags:
        step.raise_(
            "SURGICAL_CONSULTATION",
            extra=red_flag_text(step, enrollment.red_flags),
            subjects=list(dict.fromkeys(enrollment.red_flags)),
        )


def red_flag_text(step: OvcfStep, flags: list[str]) -> str:
    return "Red flags: " + "; ".join(step.definition.red_flags[f] for f in flags) + "."


def opioid_caution(step: OvcfStep, why: str) -> None:
    """`OPIOID_CAUTION_ELDERLY` (flag / high / physician): on an opioid and age >= 65 (param)."""
    if step.state.age >= step.definition.thresholds.elderly_age:
        step.raise_("OPIOID_CAUTION_ELDERLY", extra=f"Age {step.state.age}, {why}.")
