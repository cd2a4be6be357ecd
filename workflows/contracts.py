"""What crosses the wire to and from the episode workflow (inputs, update arguments, results).

Kept out of workflows/episode.py so the sandbox passes them through instead of rebuilding these
pydantic classes for every workflow instance.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from carepath.pathway.definition import SharedDefinition
from carepath.pathway.inputs import Enrollment, Event
from carepath.pathway.state import EpisodeState, OpenTask
from carepath.pathway.vocabulary import Phase


def workflow_id(episode_id: str) -> str:
    return f"episode-{episode_id}"


class EpisodeStart(BaseModel):
    """Workflow input: a new enrollment, or the carried state after continue-as-new."""

    episode_id: str
    enrollment: Enrollment | None = None
    definition: SharedDefinition | None = None
    actor: str = "system"
    # Simulated stories (carepath simulate) deliver no notifications.
    simulated: bool = False
    state: EpisodeState | None = None
    change_seq: int = 0
    # Continue-as-new once history passes this many events (or when Temporal suggests it).
    history_limit: int = Field(10_000, ge=100)


class EventRequest(BaseModel):
    event: Event
    # The events table's primary key (String(64)) and the update id: random, or chosen with the
    # request's Idempotency-Key claim (db/idempotency.py).
    event_id: str = Field(min_length=1, max_length=64)
    actor: str = "system"


class TaskClosing(BaseModel):
    code: str
    milestone: str
    status: Literal["completed", "cancelled"]
    reason: str = Field(min_length=1, max_length=4000)
    actor: str = "system"


class Migration(BaseModel):
    definition: SharedDefinition
    reason: str = Field(min_length=1, max_length=4000)
    actor: str = "system"


class EventOutcome(BaseModel):
    event_id: str
    phase: Phase
    raised: list[str]
    closed: list[str]


class EpisodeView(BaseModel):
    episode_id: str
    pathway: str
    phase: Phase
    identified_on: str
    enrolled_on: str
    open_tasks: list[OpenTask]
    next_due: str | None
    delivering: bool = False
    rules_revision: int = 1
