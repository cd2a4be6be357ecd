"""Versioned pathway definitions: every (param) of the SPEC is data here, not code.

A definition is loaded from ``definitions/<id>.v<version>.json`` and validated. An episode keeps
the definition it was enrolled on for life: the workflow carries the whole definition in its
state, so editing a file never changes a running episode.
"""

from __future__ import annotations

import json
from datetime import time
from functools import cache
from importlib import resources
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from carepath.pathway.vocabulary import Assignee, Kind, Level, Phase, Priority

DEFAULT_PATHWAY = "ovcf-lumbar"

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


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClockSpec(_Data):
    timezone: str = "UTC"
    action_time: time = time(9, 0)
    max_backdate_days: int = Field(364, ge=0)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


class Thresholds(_Data):
    calcitonin_min_nrs: int = Field(ge=0, le=10)
    calcitonin_window_days: int = Field(ge=0)
    mild_pain_nrs: tuple[int, int]
    elderly_age: int = Field(ge=0)
    resolved_max_nrs: int = Field(ge=0, le=10)
    not_resolving_min_nrs: int = Field(ge=0, le=10)
    refractory_min_nrs: int = Field(ge=0, le=10)
    persisting_pain_min_nrs: int = Field(ge=0, le=10)
    imaging_stale_days: int = Field(ge=0)


class ReassessmentSpec(_Data):
    due_in_days: int = Field(ge=0)
    overdue_after_days: int = Field(ge=1)


class DenosumabSpec(_Data):
    agent: str
    interval_days: int = Field(ge=1)
    reminder_lead_days: int = Field(ge=0)


class MilestoneSpec(_Data):
    name: str
    day: int = Field(ge=1)
    enters_phase: Phase | None = None
    pain_reassessment: bool = False
    stop_calcitonin: bool = False
    after_reassessment: Literal["not_resolving", "evaluation"] | None = None
    twelve_month_review: bool = False


class AnalgesicSpec(_Data):
    oral: bool


class RepeatSpec(_Data):
    """How often an action may be raised again (SPEC section 8, amended 2026-12-01)."""

    # "once_per_occasion": at most once per occasion (its milestone, its dose, the enrollment).
    # "unless_open": every triggering event raises it again, unless an item with the same code
    # is still open; the open one stays the one to act on.
    when: Literal["once_per_occasion", "unless_open"] = "once_per_occasion"
    # With "unless_open": a trigger naming something no open item names (a new red flag) raises a
    # new item all the same, because it is new information for whoever acts on it.
    new_subject_raises: bool = False


class ActionSpec(_Data):
    kind: Kind
    priority: Priority
    assignee: Assignee
    title: str
    detail: str = ""
    evidence: list[str] = []
    due_in_days: int | None = None
    notify: bool = False
    repeat: RepeatSpec = RepeatSpec()


class PathwayDefinition(_Data):
    id: str
    version: int = Field(ge=1)
    title: str
    source: str = ""
    changes: str = ""  # what this version changed from the previous one
    clock: ClockSpec = ClockSpec()
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
    actions: dict[str, ActionSpec]

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
    def key(self) -> str:
        return f"{self.id}.v{self.version}"

    @property
    def known_agents(self) -> list[str]:
        return [*self.osteoporosis_agents, *self.analgesics]

    def milestone(self, name: str) -> MilestoneSpec:
        for spec in self.milestones:
            if spec.name == name:
                return spec
        raise KeyError(name)


_SHARED: dict[str, PathwayDefinition] = {}


def shared(definition: PathwayDefinition) -> PathwayDefinition:
    """One instance per distinct definition, however many episodes carry it (definitions are
    immutable): thousands of sleeping episodes then hold one copy, not thousands."""
    key = definition.model_dump_json()
    return _SHARED.setdefault(key, definition)


# A definition field decoded from the wire (workflow input, carried state, migration) points at
# the one shared instance: Temporal keeps each cached workflow's decoded input for its life, and
# a private copy is ~40 KiB per sleeping episode.
SharedDefinition = Annotated[PathwayDefinition, AfterValidator(shared)]


def available_versions(pathway_id: str = DEFAULT_PATHWAY) -> list[int]:
    folder = resources.files("carepath.pathway") / "definitions"
    prefix = f"{pathway_id}.v"
    versions = [
        int(entry.name[len(prefix) : -len(".json")])
        for entry in folder.iterdir()
        if entry.name.startswith(prefix) and entry.name.endswith(".json")
    ]
    return sorted(versions)


def shipped_definition(definition: PathwayDefinition) -> PathwayDefinition | None:
    """The definition with ``definition``'s id and version as shipped now, if it is shipped."""
    try:
        return load_definition(definition.id, definition.version)
    except LookupError:
        return None


@cache
def load_definition(pathway_id: str = DEFAULT_PATHWAY, version: int | None = None) -> PathwayDefinition:
    """The definition ``pathway_id`` at ``version`` (default: the newest shipped)."""
    versions = available_versions(pathway_id)
    if not versions:
        raise LookupError(f"no pathway definition named {pathway_id!r}")
    chosen = versions[-1] if version is None else version
    if chosen not in versions:
        raise LookupError(f"pathway {pathway_id!r} has no version {chosen} (have {versions})")
    path = resources.files("carepath.pathway") / "definitions" / f"{pathway_id}.v{chosen}.json"
    definition = PathwayDefinition.model_validate(json.loads(path.read_text(encoding="utf-8")))
    if definition.id != pathway_id or definition.version != chosen:
        raise ValueError(f"{path.name} declares {definition.key}")
    return definition
