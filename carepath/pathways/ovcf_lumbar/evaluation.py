"""SPEC 4.4 (stale imaging) and 4.5: the evaluation at 3 months, and the re-checks after it."""

from __future__ import annotations

from carepath.engine.items import TaskKey
from carepath.pathways.ovcf_lumbar.definition import MilestoneSpec, PathwayDefinition
from carepath.pathways.ovcf_lumbar.state import EpisodeState
from carepath.pathways.ovcf_lumbar.step import OvcfStep


def evaluation_milestone(definition: PathwayDefinition) -> MilestoneSpec:
    return next(m for m in definition.milestones if m.after_reassessment == "evaluation")


def criteria(state: EpisodeState) -> list[str]:
    """SPEC 4.5 augmentation criteria: refractory pain, contraindication to pain medication,
    parenteral narcotics or a hospital admission for this fracture at any time since day 0."""
    d = state.definition
    met: list[str] = []
    oral = [a for a in state.analgesics if a in d.analgesics and d.analgesics[a].oral]
    if state.latest_nrs >= d.thresholds.refractory_min_nrs and oral:
        met.append(f"pain refractory to oral analgesics (NRS {state.latest_nrs} on {', '.join(oral)})")
    elif state.oral_analgesia_adequate is False:
        met.append("oral analgesia recorded as inadequate")
    if set(d.pain_medication_contraindication) <= set(state.contraindications):
        met.append("contraindication to pain medication")
    if state.parenteral_narcotics:
        met.append("parenteral narcotics required")
    if state.hospital_admission:
        met.append("hospital admission for this fracture")
    return met


def imaging_stale(step: OvcfStep) -> bool:
    """SPEC 4.4: imaging is stale when the most recent is more than 90 days (param) old."""
    latest = step.state.latest_imaging_on
    return latest is None or (step.on - latest).days > step.definition.thresholds.imaging_stale_days


def evaluate(step: OvcfStep, spec: MilestoneSpec) -> None:
    """SPEC 4.5: `OBTAIN_MRI` when pain persists (NRS >= 4) and imaging is stale; then
    `AUGMENTATION_REVIEW` if any criterion holds, otherwise the phase becomes
    `conservative_success`."""
    state = step.state
    state.evaluated = True
    step.evaluated_now = True
    if state.latest_nrs >= step.definition.thresholds.persisting_pain_min_nrs and imaging_stale(step):
        step.raise_(
            "OBTAIN_MRI",
            spec.name,
            extra=f"Pain persists (NRS {state.latest_nrs}) and the latest imaging is "
            + (f"from {state.latest_imaging_on}." if state.latest_imaging_on else "missing."),
        )
    if not augmentation_review(step, spec.name):
        step.set_phase("conservative_success", "augmentation criteria not met at evaluation")


def augmentation_review(step: OvcfStep, occasion: str) -> bool:
    """Raise `AUGMENTATION_REVIEW` once if any criterion holds, with `NERVE_ROOT_BLOCK_OPTION`
    when a fractured level is L3 or L4 after an acute injury with correlating symptoms [1][6].
    True if it is (or already was) raised."""
    state, d = step.state, step.definition
    if str(TaskKey("AUGMENTATION_REVIEW", occasion)) in state.raised:
        return True
    met = criteria(state)
    if not met:
        return False
    step.raise_("AUGMENTATION_REVIEW", occasion, extra="Criteria met: " + "; ".join(met) + ".")
    if set(state.levels) & set(d.nerve_root_block_levels) and state.acute_injury and state.correlating_symptoms:
        step.raise_("NERVE_ROOT_BLOCK_OPTION", occasion)
    if state.phase in ("evaluation", "conservative_success"):
        step.set_phase("augmentation_review", "augmentation criteria met: " + "; ".join(met))
    return True


def recheck_after_evaluation(step: OvcfStep) -> None:
    """SPEC 4.5: after the evaluation, every accepted event re-checks the criteria."""
    if step.state.evaluated and not step.evaluated_now and not step.state.finished:
        augmentation_review(step, evaluation_milestone(step.definition).name)
