"""What an ovcf-lumbar episode remembers between events (on top of the engine's ``EpisodeCore``)."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel

from carepath.engine.state import EpisodeCore
from carepath.pathways.ovcf_lumbar.definition import SharedDefinition
from carepath.pathways.ovcf_lumbar.vocabulary import Phase

MilestoneStatus = Literal["pending", "done", "skipped", "skip_requested"]
ReassessmentStatus = Literal["none", "open", "recorded", "overdue", "waived"]
WatchdogStatus = Literal["off", "armed", "satisfied", "fired"]

# Revisions of these rules' own behaviour (not of the pathway's parameters). 1: every code at most
# once per milestone period (SPEC section 8 before 2026-12-01). 2: the amended section 8, event-
# driven safety codes raised again unless still open, as each action's ``repeat`` says. A state
# recorded before revisions existed has none and is 1; see docs/rule-changes.md.
RULES_REVISION = 2


class MilestoneProgress(BaseModel):
    status: MilestoneStatus = "pending"
    reassessment: ReassessmentStatus = "none"


class EpisodeState(EpisodeCore):
    definition: SharedDefinition
    age: int
    # For the episode's header only (the rules never read them); absent in states recorded before.
    sex: str | None = None
    red_flags: list[str] = []
    levels: list[str]
    acute_injury: bool
    correlating_symptoms: bool
    contraindications: list[str]
    # Pain state: the enrollment counts as the first assessment (SPEC section 5).
    analgesics: list[str]
    latest_nrs: int
    latest_pain_on: date
    oral_analgesia_adequate: bool | None = None
    osteoporosis_agents: list[str]
    watchdog: WatchdogStatus = "off"
    denosumab_last_dose: date | None = None
    denosumab_reminded_for: date | None = None
    latest_imaging_on: date | None = None
    hospital_admission: bool = False
    parenteral_narcotics: bool = False
    phase: Phase
    milestones: dict[str, MilestoneProgress]
    evaluated: bool = False

    @property
    def on_denosumab(self) -> bool:
        return self.definition.denosumab.agent in self.osteoporosis_agents
