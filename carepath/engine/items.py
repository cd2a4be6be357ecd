"""What the rules hand back to be recorded: timeline items, task closures, and their keys.

One shape for an item from the rules to the store: a ``TimelineEntry`` is what the recording
activity writes as a timeline row, a task row and a notification (``db_rows``), and its
``TaskKey`` is the identity all three share.
"""

from __future__ import annotations

from datetime import date
from typing import Literal, NamedTuple

from pydantic import BaseModel, Field

from carepath.engine.vocabulary import ACTIONABLE_KINDS, Assignee, Kind, Priority


class TaskKey(NamedTuple):
    """An item's identity within its episode: its code and its occasion (what raised it: a
    milestone, a dose, the enrollment, or an event and its day), shown as ``code@occasion``."""

    code: str
    occasion: str

    def __str__(self) -> str:
        return f"{self.code}@{self.occasion}"


class OpenTask(BaseModel):
    code: str
    # The item's occasion (the wire name stays "milestone": carried states in histories use it).
    milestone: str
    # What the item names, for a code whose new subjects raise it again (a consultation's red flags).
    subjects: list[str] = Field(default_factory=list)

    @property
    def key(self) -> TaskKey:
        return TaskKey(self.code, self.milestone)


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
    milestone: str  # the occasion
    due_on: date | None = None
    notify: bool = False

    @property
    def key(self) -> TaskKey:
        return TaskKey(self.code, self.milestone)

    @property
    def actionable(self) -> bool:
        """A person acts on it: it is a task with a status as well as a timeline item."""
        return self.kind in ACTIONABLE_KINDS and self.assignee is not None


class TaskClosure(BaseModel):
    code: str
    milestone: str  # the occasion
    status: Literal["completed", "cancelled"]
    reason: str

    @property
    def key(self) -> TaskKey:
        return TaskKey(self.code, self.milestone)


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
