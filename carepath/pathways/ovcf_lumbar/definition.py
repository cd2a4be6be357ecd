"""Versioned pathway definitions: every (param) of the SPEC is data here, not code.

A definition is loaded from ``definitions/<id>.v<version>.json`` and validated. An episode keeps
the definition it was enrolled on for life: the workflow carries the whole definition in its
state, so editing a file never changes a running episode.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from carepath.engine.definition import DefinitionCore, DefinitionData, DefinitionFiles, shared
from carepath.pathways.ovcf_lumbar.vocabulary import Level, Phase

PATHWAY_ID = "ovcf-lumbar"

# Codes the rules raise. Renaming one is a breaking change (SPEC section 8), so a definition
# must describe every one of them.
ACTION_CODES: tuple[str, ...] = (
    "START_OSTEOPOROSIS_THERAPY",
    "PHARMACOTHERAPY_OVERDUE",
    "CALCIUM_VITAMIN_D",
    "CALCITONIN_ACUTE_PAIN",
    "ACETAMINOPHEN_MILD_PAIN",
    "OPIOID_CAUTION_ELDERLY",
    "AVOID_BED_REST",
    "BRACING_INCONCLUSIVE",
    "EXERCISE_INCONCLUSIVE",
    "SURGICAL_CONSULTATION",
    "PAIN_REASSESSMENT",
    "PAIN_REASSESSMENT_OVERDUE",
    "STOP_CALCITONIN",
    "NOT_RESOLVING",
    "OBTAIN_MRI",
    "AUGMENTATION_REVIEW",
    "NERVE_ROOT_BLOCK_OPTION",
    "BED_REST_ALERT",
    "NEW_FRACTURE",
    "DENOSUMAB_DOSE_DUE",
    "TWELVE_MONTH_REVIEW",
)


class Thresholds(DefinitionData):
    calcitonin_min_nrs: int = Field(ge=0, le=10)
    calcitonin_window_days: int = Field(ge=0)
    mild_pain_nrs: tuple[int, int]
    elderly_age: int = Field(ge=0)
    resolved_max_nrs: int = Field(ge=0, le=10)
    not_resolving_min_nrs: int = Field(ge=0, le=10)
    refractory_min_nrs: int = Field(ge=0, le=10)
    persisting_pain_min_nrs: int = Field(ge=0, le=10)
    imaging_stale_days: int = Field(ge=0)


class ReassessmentSpec(DefinitionData):
    due_in_days: int = Field(ge=0)
    overdue_after_days: int = Field(ge=1)
    # Days without an answer to a patient's check-in link before one reminder (issue 14; not a
    # SPEC parameter: follow-up beside the rules, never on the timeline).
    patient_reminder_after_days: int = Field(2, ge=1)


class DenosumabSpec(DefinitionData):
    agent: str
    interval_days: int = Field(ge=1)
    reminder_lead_days: int = Field(ge=0)


class MilestoneSpec(DefinitionData):
    name: str
    day: int = Field(ge=1)
    enters_phase: Phase | None = None
    pain_reassessment: bool = False
    stop_calcitonin: bool = False
    after_reassessment: Literal["not_resolving", "evaluation"] | None = None
    twelve_month_review: bool = False


class AnalgesicSpec(DefinitionData):
    oral: bool


class PathwayDefinition(DefinitionCore):
    """ovcf-lumbar's definition: every (param) of its SPEC, and the actions it raises."""

    thresholds: Thresholds
    pharmacotherapy_watchdog_days: int = Field(ge=1)
    reassessment: ReassessmentSpec
    denosumab: DenosumabSpec
    milestones: list[MilestoneSpec]
    osteoporosis_agents: list[str]
    analgesics: dict[str, AnalgesicSpec]
    opioid: str
    calcitonin: str
    opioid_caution_effects: list[str]
    pain_medication_contraindication: list[str]
    red_flags: dict[str, str]
    nerve_root_block_levels: list[Level]

    @model_validator(mode="after")
    def _consistent(self) -> PathwayDefinition:
        missing = [code for code in ACTION_CODES if code not in self.actions]
        if missing:
            raise ValueError(f"actions missing for codes: {', '.join(missing)}")
        days = [m.day for m in self.milestones]
        if days != sorted(days) or len(set(days)) != len(days):
            raise ValueError("milestones must be in strictly increasing day order")
        names = [m.name for m in self.milestones]
        if len(set(names)) != len(names):
            raise ValueError("milestone names must be unique")
        if sum(m.after_reassessment == "evaluation" for m in self.milestones) != 1:
            raise ValueError("exactly one milestone must run the evaluation")
        if sum(m.twelve_month_review for m in self.milestones) != 1:
            raise ValueError("exactly one milestone must be the closing review")
        if self.denosumab.agent not in self.osteoporosis_agents:
            raise ValueError("denosumab.agent must be one of osteoporosis_agents")
        for agent in (self.opioid, self.calcitonin):
            if agent not in self.analgesics:
                raise ValueError(f"{agent!r} must be one of analgesics")
        return self

    @property
    def known_agents(self) -> list[str]:
        return [*self.osteoporosis_agents, *self.analgesics]

    def milestone(self, name: str) -> MilestoneSpec:
        for spec in self.milestones:
            if spec.name == name:
                return spec
        raise KeyError(name)


# A definition field decoded from the wire (workflow input, carried state, migration) points at
# the one shared instance: Temporal keeps each cached workflow's decoded input for its life, and
# a private copy is ~40 KiB per sleeping episode.
SharedDefinition = Annotated[PathwayDefinition, AfterValidator(shared)]


DEFINITIONS = DefinitionFiles("carepath.pathways.ovcf_lumbar", PATHWAY_ID, PathwayDefinition)


def load_definition(pathway_id: str = PATHWAY_ID, version: int | None = None) -> PathwayDefinition:
    """ovcf-lumbar at ``version`` (default: the newest shipped)."""
    if pathway_id != PATHWAY_ID:
        raise LookupError(f"no pathway definition named {pathway_id!r}")
    return DEFINITIONS.load(version)  # type: ignore[return-value]
