"""What crosses the wire to and from the episode workflow (inputs, update arguments, results).

Kept out of workflows/episode.py so the sandbox passes them through instead of rebuilding these
pydantic classes for every workflow instance.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field

from carepath.engine.items import OpenTask
from carepath.engine.wire import WireDefinition, WireState


def _as_json(value: Any) -> Any:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


# A pathway's input as JSON (given as its model or as JSON): the pathway parses it.
PathwayInput = Annotated[dict[str, Any], BeforeValidator(_as_json)]


def workflow_id(episode_id: str) -> str:
    return f"episode-{episode_id}"


class EventOutcome(BaseModel):
    event_id: str
    phase: str
    raised: list[str]
    closed: list[str]


class EpisodeStart(BaseModel):
    """Workflow input: a new enrollment, or the carried state after continue-as-new."""

    episode_id: str
    # The pathway's enrollment as JSON: the pathway (the definition's id) parses it.
    enrollment: PathwayInput | None = None
    definition: WireDefinition | None = None
    actor: str = "system"
    # Simulated stories (carepath simulate) deliver no notifications.
    simulated: bool = False
    state: WireState | None = None
    change_seq: int = 0
    # Continue-as-new once history passes this many events (or when Temporal suggests it).
    history_limit: int = Field(10_000, ge=100)
    # The last events recorded (event id -> outcome), carried so that one sent again applies once.
    recorded_events: dict[str, EventOutcome] = {}


class EventRequest(BaseModel):
    # The pathway's event as JSON (``type``, ``occurred_on``, ...): the episode's pathway parses it.
    event: PathwayInput
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
    definition: WireDefinition
    reason: str = Field(min_length=1, max_length=4000)
    actor: str = "system"


class EpisodeView(BaseModel):
    episode_id: str
    pathway: str
    phase: str
    identified_on: str
    enrolled_on: str
    open_tasks: list[OpenTask]
    next_due: str | None
    delivering: bool = False
    rules_revision: int = 1
