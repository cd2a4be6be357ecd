"""What the edges read: an episode, its audit trail, a task and the worklist from the store the
workflow's activities keep; and what comes next and the header facts, from the running workflow's
own state (its pathway's ``upcoming`` and ``header_facts``) when it answers in time, else what the
definition alone says."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError

from carepath.engine.definition import DefinitionCore
from carepath.engine.pathway import Pathway
from carepath.engine.presentation import DuePoint, Fact
from carepath.engine.state import EpisodeCore
from carepath.service.core import NotFound, ServiceCore
from db.audit import audit_trail
from db.queries import EpisodeFacts, TaskFilter, TaskView, episode_facts, task_page, timeline
from workflows.client import EpisodeClosed


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    detail: dict[str, Any]


class EpisodeDetail(EpisodeFacts):
    open_tasks: list[TaskView]
    timeline: list[dict[str, Any]]


class EpisodeWithUpcoming(EpisodeDetail):
    next_due: datetime | None = Field(None, description="when the workflow's clock next acts (its view)")
    upcoming: list[DuePoint] = Field(
        default_factory=list,
        description="what comes next (milestones, due checks, doses): the clock's own due points, titled",
    )
    facts: list[Fact] = Field(
        default_factory=list, description="the pathway's header facts in words (from the running workflow)"
    )


class Reads:
    def __init__(self, core: ServiceCore) -> None:
        self.core = core

    def episode(self, episode_id: str) -> EpisodeDetail:
        row = self.core.episode_row(episode_id)
        return EpisodeDetail(
            **episode_facts(row),
            open_tasks=self.worklist(episode_id=episode_id, include_simulated=True),
            timeline=timeline(self.core.engine, episode_id),
        )

    async def episode_with_upcoming(self, episode_id: str) -> EpisodeWithUpcoming:
        """The episode from the store, with what comes next from its running workflow when it answers."""
        detail = await asyncio.to_thread(self.episode, episode_id)
        if detail.status != "active":
            return EpisodeWithUpcoming(**detail.model_dump())
        state = await self.workflow_state(episode_id)
        if state is None:  # no answer in time (no worker): milestones from the definition alone
            pathway_id, version = detail.pathway.rsplit(".v", 1)
            pathway = self.core.pathway(pathway_id)
            points = pathway.planned(pathway.definition(int(version)), detail.identified_on, self.core.today())
            return EpisodeWithUpcoming(**detail.model_dump(), upcoming=points)
        pathway = self.core.pathway(state.definition.id)
        return EpisodeWithUpcoming(
            **detail.model_dump(),
            next_due=pathway.next_due(state),
            upcoming=pathway.upcoming(state),
            facts=pathway.header_facts(state),
        )

    def episode_pathway(self, episode_id: str) -> tuple[Pathway, DefinitionCore]:
        """The episode's pathway and the definition version it follows (NotFound if none)."""
        row = self.core.episode_row(episode_id)
        return self.core.pathway(row.pathway_id), self.core.definition("pathway", row.pathway_id, row.pathway_version)

    async def workflow_state(self, episode_id: str, within: float = 2.0) -> EpisodeCore | None:
        """The running workflow's state (its ``state`` query), None if it has ended or does not
        answer within ``within`` seconds (no worker): callers fall back to the store."""
        try:
            return await asyncio.wait_for(self.core.episodes.state(episode_id), within)
        except (TimeoutError, RPCError, WorkflowQueryFailedError, EpisodeClosed):
            return None

    def audit(self, episode_id: str) -> list[AuditEntry]:
        self.core.episode_row(episode_id)
        return [
            AuditEntry.model_validate(row, from_attributes=True) for row in audit_trail(self.core.engine, episode_id)
        ]

    def task(self, task_id: int) -> TaskView:
        found = self.worklist(task_id=task_id, status=None, include_simulated=True)
        if not found:
            raise NotFound(f"no task {task_id}", field="task_id")
        return found[0]

    def worklist(
        self,
        assignee: str | None = None,
        status: str | None = "open",
        priority: str | None = None,
        episode_id: str | None = None,
        task_id: int | None = None,
        include_simulated: bool = False,
        limit: int = 500,
    ) -> list[TaskView]:
        """Tasks across episodes, most urgent first, then most overdue (earliest due) first."""
        f = TaskFilter(
            assignee=assignee,
            status=status,
            priority=priority,
            episode_id=episode_id,
            task_id=task_id,
            include_simulated=include_simulated,
        )
        # Overdue by the clinic's calendar; every shipped definition so far keeps one clinic clock.
        return task_page(self.core.engine, self.core.today(), f, limit).items
