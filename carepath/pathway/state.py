"""What an episode remembers between events, and what the rules hand back to be recorded.

All of it is plain pydantic data so that it crosses Temporal's wire (and continue-as-new)
unchanged. The patient reference is deliberately absent: the workflow never needs it.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field

from carepath.pathway.definition import SharedDefinition
from carepath.pathway.vocabulary import Assignee, Kind, Phase, Priority

MilestoneStatus = Literal["pending", "done", "skipped", "skip_requested"]
ReassessmentStatus = Literal["none", "open", "recorded", "overdue", "waived"]
WatchdogStatus = Literal["off", "armed", "satisfied", "fired"]

ENROLLMENT_PERIOD = "enrollment"


class MilestoneProgress(BaseModel):
    status: MilestoneStatus = "pending"
    reassessment: ReassessmentStatus = "none"


class OpenTask(BaseModel):
    code: str
    # The item's occasion: its milestone, its dose, the enrollment, or the event that raised it.
    milestone: str
    # What the item names, for a code whose new subjects raise it again (a consultation's red flags).
    subjects: list[str] = Field(default_factory=list)


# Revisions of the rules' own behaviour (not of a pathway's parameters). 1: every code at most
# once per milestone period (SPEC section 8 before 2026-12-01). 2: the amended section 8, event-
# driven safety codes raised again unless still open, as each action's ``repeat`` says. A state
# recorded before revisions existed has none and is 1; see docs/rule-changes.md.
RULES_REVISION = 2


class EpisodeState(BaseModel):
    episode_id: str
    definition: SharedDefinition
    rules_revision: int = 1
    identified_on: date
    enrolled_on: date
    age: int
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
    # The milestone whose period we are in. Under rules revision 1 items raised by events are
    # keyed by it ("at most once per milestone"); revision 2 keys them by the event instead.
    period: str = ENROLLMENT_PERIOD
    milestones: dict[str, MilestoneProgress]
    evaluated: bool = False
    raised: list[str] = Field(default_factory=list)
    open_tasks: list[OpenTask] = Field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.phase in ("completed", "withdrawn")

    @property
    def on_denosumab(self) -> bool:
        return self.definition.denosumab.agent in self.osteoporosis_agents

    def day_of(self, on: date) -> int:
        return (on - self.identified_on).days


class TimelineEntry(BaseModel):
    """One thing the pathway raised or recorded, as it appears on the timeline."""

    code: str
    kind: Kind
    priority: Priority
    assignee: Assignee | None
    title: str
    detail: str = ""
    evidence: list[str] = Field(default_factory=list)
    day: int
    on: date
    milestone: str
    due_on: date | None = None
    notify: bool = False

    @property
    def key(self) -> str:
        return f"{self.code}@{self.milestone}"


class TaskClosure(BaseModel):
    code: str
    milestone: str
    status: Literal["completed", "cancelled"]
    reason: str


class Changes(BaseModel):
    """What one step of the rules asks the outside world to record."""

    items: list[TimelineEntry] = Field(default_factory=list)
    closures: list[TaskClosure] = Field(default_factory=list)

    def extend(self, other: Changes) -> None:
        self.items.extend(other.items)
        self.closures.extend(other.closures)

    @property
    def empty(self) -> bool:
        return not self.items and not self.closures
