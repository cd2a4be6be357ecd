"""What every episode remembers between events, whatever its pathway.

A pathway's state model extends ``EpisodeCore`` with its clinical facts. All of it is plain
pydantic data so that it crosses Temporal's wire (and continue-as-new) unchanged. The patient
reference is deliberately absent: the workflow never needs it.
"""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field

from carepath.engine.definition import DefinitionCore
from carepath.engine.items import OpenTask
from carepath.engine.vocabulary import FINAL_PHASES

ENROLLMENT_PERIOD = "enrollment"


class EpisodeCore(BaseModel):
    episode_id: str
    definition: DefinitionCore
    # The revision of the pathway's rules this episode decides by (docs/rule-changes.md). A
    # state recorded before revisions existed has none and is 1.
    rules_revision: int = 1
    identified_on: date
    enrolled_on: date
    phase: str
    # The milestone whose period we are in: the default occasion of what a step raises.
    period: str = ENROLLMENT_PERIOD
    raised: list[str] = Field(default_factory=list)
    open_tasks: list[OpenTask] = Field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.phase in FINAL_PHASES

    def day_of(self, on: date) -> int:
        return (on - self.identified_on).days
