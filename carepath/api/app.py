"""HTTP API over the carepath service. Run with ``carepath api`` (or inside ``carepath dev``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Body, FastAPI, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from carepath import __version__
from carepath.api import errors
from carepath.pathway.inputs import Enrollment, Event, Text
from carepath.pathway.vocabulary import Assignee, Priority, TaskStatus, WithdrawReason
from carepath.service import CarepathService, Enrolled, EpisodeDetail, TaskView
from carepath.settings import Settings
from workflows.episode import EventOutcome

Actor = Annotated[str, Header(alias="X-Carepath-Actor", max_length=200)]


class WithdrawRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: WithdrawReason
    text: Text | None = None


class CompleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text = "done"


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text = Field(description="why the task no longer needs doing")


def service_of(request: Request) -> CarepathService:
    return request.app.state.service


def create_app(settings: Settings | None = None, service: CarepathService | None = None) -> FastAPI:
    """The app; with no ``service`` it connects to Temporal and the database from ``settings``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if service is not None:  # injected (tests, `carepath dev`): nothing to open or close
            yield
            return
        from carepath.temporal import connect
        from db.engine import make_engine

        config = settings or Settings()
        engine = make_engine(config.database_url)
        client = await connect(config.temporal_address, config.temporal_namespace, converter=config.data_converter())
        app.state.service = CarepathService(client, engine, config.task_queue)
        yield
        engine.dispose()

    app = FastAPI(
        title="carepath",
        version=__version__,
        description="Durable care pathways: decision support for osteoporotic lumbar compression fractures "
        "(pathway ovcf-lumbar). Every write goes through the episode's workflow.",
        lifespan=lifespan,
    )
    errors.install(app)
    if service is not None:
        app.state.service = service

    @app.get("/health", tags=["ops"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/episodes", status_code=201, tags=["episodes"])
    async def enroll(request: Request, enrollment: Enrollment, actor: Actor = "api") -> Enrolled:
        """Enroll a patient (``identified_on`` is day 0). 409 if the patient has an active episode."""
        return await service_of(request).enroll(enrollment, actor)

    @app.get("/episodes/{episode_id}", tags=["episodes"])
    async def episode(request: Request, episode_id: str) -> EpisodeDetail:
        """Phase, definition version, open tasks and timeline."""
        return service_of(request).episode(episode_id)

    @app.post("/episodes/{episode_id}/events", tags=["episodes"])
    async def record_event(
        request: Request,
        episode_id: str,
        event: Annotated[Event, Body()],
        actor: Actor = "api",
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    ) -> EventOutcome:
        """Record one clinical event (``occurred_on`` between day 0 and today).

        A rejected event gets 422 naming the field and changes nothing. Retrying with the same
        ``Idempotency-Key`` applies the event once.
        """
        return await service_of(request).record_event(episode_id, event, actor, idempotency_key)

    @app.post("/episodes/{episode_id}/withdraw", tags=["episodes"])
    async def withdraw(request: Request, episode_id: str, body: WithdrawRequest, actor: Actor = "api") -> EventOutcome:
        """Withdraw the patient: open tasks are cancelled and the episode ends."""
        return await service_of(request).withdraw(episode_id, body.reason, body.text, actor)

    @app.get("/episodes/{episode_id}/fhir", tags=["episodes"])
    async def fhir(request: Request, episode_id: str) -> dict[str, Any]:
        """The episode as a FHIR R4 Bundle: a CarePlan and its Tasks."""
        from carepath.fhir import episode_bundle

        service = service_of(request)
        service.episode(episode_id)  # 404 for an unknown episode
        return episode_bundle(service.engine, episode_id, base_url=str(request.base_url).rstrip("/"))

    @app.get("/tasks", tags=["tasks"])
    async def tasks(
        request: Request,
        assignee: Assignee | None = None,
        status: TaskStatus | None = "open",
        priority: Priority | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> list[TaskView]:
        """The worklist across episodes: most urgent first, then most overdue first."""
        return service_of(request).worklist(assignee=assignee, status=status, priority=priority, limit=limit)

    @app.post("/tasks/{task_id}/complete", tags=["tasks"])
    async def complete(
        request: Request, task_id: int, body: Annotated[CompleteRequest | None, Body()] = None, actor: Actor = "api"
    ) -> TaskView:
        reason = body.reason if body else "done"
        return await service_of(request).close_task(task_id, "completed", reason, actor)

    @app.post("/tasks/{task_id}/cancel", tags=["tasks"])
    async def cancel(request: Request, task_id: int, body: CancelRequest, actor: Actor = "api") -> TaskView:
        return await service_of(request).close_task(task_id, "cancelled", body.reason, actor)

    return app
