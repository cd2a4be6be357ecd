"""SPEC section 5: clinical events, any time, each with ``occurred_on``."""

from __future__ import annotations

from datetime import date, timedelta

from carepath.pathways.ovcf_lumbar.baseline import opioid_caution, red_flag_text
from carepath.pathways.ovcf_lumbar.definition import MilestoneSpec
from carepath.pathways.ovcf_lumbar.evaluation import recheck_after_evaluation
from carepath.pathways.ovcf_lumbar.inputs import (
    ClinicianNote,
    DoseGiven,
    Event,
    HospitalAdmission,
    Imaging,
    MedicationStarted,
    MedicationStopped,
    Override,
    PainAssessment,
    ParenteralNarcotics,
    RedFlagRaised,
    Withdraw,
)
from carepath.pathways.ovcf_lumbar.milestones import TRACK, after_reassessment
from carepath.pathways.ovcf_lumbar.step import OvcfStep


def apply(step: OvcfStep, event: Event) -> None:
    match event:
        case PainAssessment():
            pain_assessment(step, event)
        case MedicationStarted():
            medication_started(step, event.agent, event.occurred_on)
        case MedicationStopped():
            medication_stopped(step, event.agent)
        case DoseGiven():
            dose_given(step, event.agent, event.occurred_on)
        case Imaging():
            imaging(step, event)
        case HospitalAdmission():
            step.state.hospital_admission = True
        case ParenteralNarcotics():
            step.state.parenteral_narcotics = True
        case RedFlagRaised():
            red_flag(step, event)
        case ClinicianNote():
            pass  # recorded in the event log by the caller; nothing to raise
        case Override():
            override(step, event)
        case Withdraw():
            withdraw(step, event)
    recheck_after_evaluation(step)


def pain_assessment(step: OvcfStep, event: PainAssessment) -> None:
    """| pain assessment | closes the open `PAIN_REASSESSMENT`; NRS <= 2 (param) with no analgesics in
    use -> `resolved`; `bed_rest` -> `BED_REST_ALERT`; symptoms changed -> `OBTAIN_MRI`; fall or
    sedation on opioid -> `OPIOID_CAUTION_ELDERLY` when age >= 65 |"""
    s, d = step.state, step.definition
    before = set(s.analgesics)
    latest = event.occurred_on >= s.latest_pain_on
    if latest:  # a late-recorded older assessment does not overwrite a newer one
        s.analgesics = list(event.analgesics)
        s.latest_nrs = event.nrs
        s.latest_pain_on = event.occurred_on
        s.oral_analgesia_adequate = event.oral_analgesia_adequate
    on_opioid = d.opioid in event.analgesics
    if on_opioid and d.opioid not in before:
        opioid_caution(step, "an opioid was started")
    caution = [e for e in event.opioid_effects if e in d.opioid_caution_effects]
    if on_opioid and caution:
        opioid_caution(step, f"opioid effects: {', '.join(caution)}")
    if event.mobility == "bed_rest":
        step.raise_("BED_REST_ALERT")
    if event.symptoms_changed:
        step.raise_("OBTAIN_MRI", extra="Symptoms have changed.")
    for spec in close_reassessment(step, event.occurred_on):
        after_reassessment(step, spec)
    if (
        latest
        and not step.evaluated_now
        and not s.evaluated
        and s.phase in TRACK
        and event.nrs <= d.thresholds.resolved_max_nrs
        and not s.analgesics
    ):
        step.set_phase("resolved", f"NRS {event.nrs} with no analgesics in use")


def close_reassessment(step: OvcfStep, occurred_on: date) -> list[MilestoneSpec]:
    """Close the open reassessment task(s) of milestones on or before ``occurred_on``.

    Returns the milestones whose reassessment this records (not those already overdue).
    """
    s = step.state
    recorded: list[MilestoneSpec] = []
    for task in [t for t in s.open_tasks if t.code == "PAIN_REASSESSMENT"]:
        spec = step.definition.milestone(task.milestone)
        if s.identified_on + timedelta(days=spec.day) > occurred_on:
            continue  # an assessment before a milestone does not close that milestone
        step.close("PAIN_REASSESSMENT", "completed", f"pain assessment recorded on {occurred_on}", spec.name)
        progress = s.milestones[spec.name]
        if progress.reassessment == "open":
            progress.reassessment = "recorded"
            recorded.append(spec)
    return recorded


def medication_started(step: OvcfStep, agent: str, on: date) -> None:
    """| medication started | osteoporosis agent closes `START_OSTEOPOROSIS_THERAPY` and the
    watchdog; opioid start re-checks `OPIOID_CAUTION_ELDERLY`; denosumab records its first dose |"""
    d = step.definition
    if agent in d.osteoporosis_agents:
        osteoporosis_agent_recorded(step, agent)
        if agent == d.denosumab.agent:
            denosumab_dose(step, on)
        return
    if agent not in step.state.analgesics:
        step.state.analgesics.append(agent)
    if agent == d.opioid:
        opioid_caution(step, "an opioid was started")
    if agent == d.calcitonin:
        step.close("CALCITONIN_ACUTE_PAIN", "completed", "calcitonin started")


def osteoporosis_agent_recorded(step: OvcfStep, agent: str) -> None:
    s = step.state
    if agent not in s.osteoporosis_agents:
        s.osteoporosis_agents.append(agent)
    step.close("START_OSTEOPOROSIS_THERAPY", "completed", f"{agent} recorded")
    if s.watchdog == "armed":
        s.watchdog = "satisfied"


def denosumab_dose(step: OvcfStep, on: date) -> None:
    """SPEC 4.3: recording a dose schedules the next reminder."""
    s = step.state
    if s.denosumab_last_dose is None or on > s.denosumab_last_dose:
        s.denosumab_last_dose = on
    step.close("DENOSUMAB_DOSE_DUE", "completed", f"dose given on {on}")


def medication_stopped(step: OvcfStep, agent: str) -> None:
    """| medication stopped | removes an analgesic; stopping denosumab in `maintenance` completes |"""
    s, d = step.state, step.definition
    if agent in d.osteoporosis_agents:
        if agent in s.osteoporosis_agents:
            s.osteoporosis_agents.remove(agent)
        if agent == d.denosumab.agent:
            step.close("DENOSUMAB_DOSE_DUE", "cancelled", "denosumab stopped")
            if s.phase == "maintenance":
                step.set_phase("completed", "denosumab stopped")
        return
    if agent in s.analgesics:
        s.analgesics.remove(agent)
    if agent == d.calcitonin:
        step.close("STOP_CALCITONIN", "completed", "calcitonin stopped")


def dose_given(step: OvcfStep, agent: str, on: date) -> None:
    d = step.definition
    if agent in d.osteoporosis_agents:
        osteoporosis_agent_recorded(step, agent)
        if agent == d.denosumab.agent:
            denosumab_dose(step, on)


def imaging(step: OvcfStep, event: Imaging) -> None:
    """| imaging | updates imaging age; a new fracture -> `NEW_FRACTURE` (escalation / urgent /
    physician); an MRI completes an open `OBTAIN_MRI` (SPEC 8) |"""
    s = step.state
    if s.latest_imaging_on is None or event.occurred_on > s.latest_imaging_on:
        s.latest_imaging_on = event.occurred_on
    if event.new_fracture:
        step.raise_("NEW_FRACTURE", extra=f"{event.modality.upper()} on {event.occurred_on} shows a new fracture.")
    if event.modality == "mri":
        step.close("OBTAIN_MRI", "completed", f"MRI performed on {event.occurred_on}")


def red_flag(step: OvcfStep, event: RedFlagRaised) -> None:
    """| red flag | `SURGICAL_CONSULTATION` (escalation / urgent / physician) at once; SPEC 8: a red
    flag the open consultation does not name raises a new one |"""
    step.raise_("SURGICAL_CONSULTATION", extra=red_flag_text(step, [event.flag]), subjects=[event.flag])
    if event.flag not in step.state.red_flags:
        step.state.red_flags.append(event.flag)


def override(step: OvcfStep, event: Override) -> None:
    """| override | may skip a pending milestone or close a task, with a reason |"""
    why = f"override by {event.author}: {event.reason}"
    if event.skip_milestone is not None:
        spec = step.definition.milestone(event.skip_milestone)
        step.state.milestones[spec.name].status = "skip_requested"
        step.record(spec.name, "skipped", f"{spec.name} skipped: {why}", spec.name)
        return
    assert event.close_task is not None
    close_by_person(step, event.close_task, None, "cancelled", why)


def close_by_person(step: OvcfStep, code: str, occasion: str | None, status: str, why: str) -> None:
    """A person closes a task (done, cancelled, or overridden): what waited on it moves on."""
    s = step.state
    waived = [t.milestone for t in s.open_tasks if t.code == code and occasion in (None, t.milestone)]
    step.close(code, status, why, occasion)
    if code == "START_OSTEOPOROSIS_THERAPY" and s.watchdog == "armed":
        s.watchdog = "satisfied"
    if code == "PAIN_REASSESSMENT":
        for name in waived:
            progress = s.milestones[name]
            if progress.reassessment == "open":
                progress.reassessment = "waived"
                after_reassessment(step, step.definition.milestone(name))


def withdraw(step: OvcfStep, event: Withdraw) -> None:
    """| withdraw | open tasks cancelled, phase `withdrawn`, workflow completes |"""
    for task in list(step.state.open_tasks):
        step.close(task.code, "cancelled", f"episode withdrawn ({event.reason})", task.milestone)
    step.set_phase("withdrawn", f"withdrawn: {event.reason}")
