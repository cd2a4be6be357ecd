"""What the edges read of one episode beyond its store row: what comes next and its header facts,
from the running workflow's own state (its pathway's ``upcoming`` and ``header_facts``) when it
answers in time, else what the definition alone says."""

from __future__ import annotations

from datetime import datetime

from fastapi.concurrency import run_in_threadpool
from pydantic import Field

from carepath.engine.presentation import DuePoint, Fact
from carepath.service import CarepathService, EpisodeDetail


class EpisodeWithUpcoming(EpisodeDetail):
    next_due: datetime | None = Field(None, description="when the workflow's clock next acts (its view)")
    upcoming: list[DuePoint] = Field(
        default_factory=list,
        description="what comes next (milestones, due checks, doses): the clock's own due points, titled",
    )
    facts: list[Fact] = Field(
        default_factory=list, description="the pathway's header facts in words (from the running workflow)"
    )


async def episode_with_upcoming(service: CarepathService, episode_id: str) -> EpisodeWithUpcoming:
    """The episode from the store, with what comes next from its running workflow when it answers."""
    detail = await run_in_threadpool(service.episode, episode_id)
    if detail.status != "active":
        return EpisodeWithUpcoming(**detail.model_dump())
    state = await service.workflow_state(episode_id)
    if state is None:  # no answer in time (no worker): milestones from the definition alone
        pathway_id, version = detail.pathway.rsplit(".v", 1)
        pathway = service.pathway(pathway_id)
        points = pathway.planned(pathway.definition(int(version)), detail.identified_on, service.today())
        return EpisodeWithUpcoming(**detail.model_dump(), upcoming=points)
    pathway = service.pathway(state.definition.id)
    return EpisodeWithUpcoming(
        **detail.model_dump(),
        next_due=pathway.next_due(state),
        upcoming=pathway.upcoming(state),
        facts=pathway.header_facts(state),
    )
