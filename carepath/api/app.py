"""HTTP API over the carepath service. Run with ``carepath api`` (or inside ``carepath dev``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Body, Depends, FastAPI, Header, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from carepath import __version__
from carepath.api import checkin as followup
from carepath.api import errors, security
from carepath.api.auth import ADMINS, CLINICIANS, EVERYONE, PHYSICIANS, READERS, Principal, allow, ensure
from carepath.api.codec import router as codec_router
from carepath.api.ops import router as ops_router
from carepath.codec import EncryptionCodec
from carepath.engine.inputs import Text
from carepath.engine.registry import DEFAULT_PATHWAY, pathway_for, pathways
from carepath.engine.vocabulary import Assignee, Priority, TaskStatus
from carepath.observability import instrument_app, measure_request
from carepath.service import AuditEntry, CarepathService, Enrolled, EpisodeDetail, Migrated, NotFound, TaskView
from carepath.settings import Settings, load_settings
from carepath.web.pages import install_csrf
from carepath.web.pages import router as web_router
from db.models import EPISODE_ID_PATTERN
from db.tokens import create_token, list_tokens, revoke
from workflows.contracts import EventOutcome

Reader = Annotated[Principal, Depends(allow(*READERS))]
Clinician = Annotated[Principal, Depends(allow(*CLINICIANS))]
Admin = Annotated[Principal, Depends(allow(*ADMINS))]
Anyone = Annotated[Principal, Depends(allow(*EVERYONE))]
# Changing the rules a patient is followed by: the physician, or the admin who owns definitions.
Migrator = Annotated[Principal, Depends(allow(*PHYSICIANS, *ADMINS))]
# Row ids are INTEGER columns, 32-bit on PostgreSQL: a larger id names nothing, and the drivers
# would fail on it (SQLite: OverflowError past 2**63 - 1; PostgreSQL: out of range past 2**31 - 1).
MAX_ID = 2**31 - 1
RowId = Annotated[int, Path(ge=1, le=MAX_ID)]
# Episode ids are 32 hex characters; anything far from that shape (NUL bytes, huge strings) is
# refused before it reaches the database.
EpisodeId = Annotated[str, Path(pattern=EPISODE_ID_PATTERN)]


async def event_author(request: Request, who: Clinician) -> Principal:
    """Overrides need a physician: checked before the body is validated, so a coordinator's
    override is 403 whatever its content (FastAPI solves dependencies before the body)."""
    try:
        body = await request.json()
    except (ValueError, RecursionError):  # malformed JSON: the body's validation names it
        return who
    if isinstance(body, dict) and body.get("type") == "override":
        ensure(who, PHYSICIANS, "an override")
    return who


EventAuthor = Annotated[Principal, Depends(event_author)]
# Who may close a task depends on whom it is for (SPEC assignees).
CLOSERS = {"physician": PHYSICIANS, "coordinator": CLINICIANS, "patient": CLINICIANS}


class WithdrawRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, StringConstraints(min_length=1, max_length=64)]  # the pathway's vocabulary
    text: Text | None = None


class CompleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text = "done"


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text = Field(description="why the task no longer needs doing")


class MigrateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1)
    reason: Text


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    role: Literal["viewer", "coordinator", "physician", "admin"]


class TokenCreated(BaseModel):
    id: int
    name: str
    role: str
    token: str = Field(description="shown once; only its hash is stored")


class TokenInfo(BaseModel):
    id: int
    name: str
    role: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


def service_of(request: Request) -> CarepathService:
    return request.app.state.service


def create_app(
    settings: Settings | None = None, service: CarepathService | None = None, codec: EncryptionCodec | None = None
) -> FastAPI:
    """The app; with no ``service`` it connects to Temporal and the database from ``settings``."""
    config = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if service is not None:  # injected (tests, `carepath dev`): nothing to open or close
            yield
            return
        from carepath.observability import tracing_interceptors
        from carepath.reconcile import reconcile_periodically, sweep_schedule
        from carepath.temporal import connect
        from db.engine import make_engine

        engine = make_engine(config.database_url)
        client = await connect(
            config.temporal_address,
            config.temporal_namespace,
            converter=config.data_converter(),
            interceptors=tracing_interceptors(config.otel_exporter),
        )
        app.state.service = CarepathService(
            client,
            engine,
            config.task_queue,
            pathway_version=config.pathway_version,
            update_wait=config.update_wait_seconds,
        )
        ring = config.key_ring()
        app.state.codec = EncryptionCodec(ring) if ring else None
        sweep = asyncio.create_task(reconcile_periodically(app.state.service, *sweep_schedule(config)))
        yield
        sweep.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweep
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
        app.state.codec = codec
    security.install(app, config)
    install_csrf(app, config.csrf_secret)
    app.include_router(codec_router)
    app.include_router(ops_router)
    app.middleware("http")(measure_request)
    instrument_app(app, config.otel_exporter)
    app.include_router(web_router)
    app.include_router(followup.router)  # the patients' check-in page
    app.include_router(followup.api)  # GET /notifications

    @app.get("/health", tags=["ops"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/episodes", status_code=201, tags=["episodes"])
    async def enroll(
        request: Request,
        enrollment: Annotated[dict[str, Any], Body(description="the pathway's enrollment (see /definitions)")],
        who: Clinician,
        pathway: Annotated[str, Query(min_length=1, max_length=64)] = DEFAULT_PATHWAY,
    ) -> Enrolled:
        """Enroll a patient in ``pathway`` (``identified_on`` is day 0). 409 if the patient has an
        active episode. The body is that pathway's enrollment; errors name its fields."""
        return await service_of(request).enroll(enrollment, who.actor, pathway)

    @app.get("/episodes/{episode_id}", tags=["episodes"])
    async def episode(request: Request, episode_id: EpisodeId, _: Reader) -> EpisodeDetail:
        """Phase, definition version, open tasks and timeline."""
        return service_of(request).episode(episode_id)

    @app.post("/episodes/{episode_id}/events", tags=["episodes"])
    async def record_event(
        request: Request,
        episode_id: EpisodeId,
        event: Annotated[dict[str, Any], Body(description="one event of the episode's pathway")],
        who: EventAuthor,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    ) -> EventOutcome:
        """Record one clinical event (``occurred_on`` between day 0 and today).

        A rejected event gets 422 naming the field and changes nothing. Retrying with the same
        ``Idempotency-Key`` applies the event once (keys are per episode and expire after 24 h).
        """
        return await service_of(request).record_event(episode_id, event, who.actor, idempotency_key)

    @app.post("/episodes/{episode_id}/withdraw", tags=["episodes"])
    async def withdraw(request: Request, episode_id: EpisodeId, body: WithdrawRequest, who: Clinician) -> EventOutcome:
        """Withdraw the patient: open tasks are cancelled and the episode ends."""
        return await service_of(request).withdraw(episode_id, body.reason, body.text, who.actor)

    @app.get("/episodes/{episode_id}/fhir", tags=["episodes"])
    async def fhir(request: Request, episode_id: EpisodeId, _: Reader) -> dict[str, Any]:
        """The episode as a FHIR R4 Bundle: a CarePlan and its Tasks."""
        from carepath.fhir import episode_bundle

        service = service_of(request)
        service.episode(episode_id)  # 404 for an unknown episode
        return episode_bundle(service.engine, episode_id)

    @app.get("/tasks", tags=["tasks"])
    async def tasks(
        request: Request,
        _: Reader,
        assignee: Assignee | None = None,
        status: TaskStatus | None = "open",
        priority: Priority | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> list[TaskView]:
        """The worklist across episodes: most urgent first, then most overdue first."""
        return service_of(request).worklist(assignee=assignee, status=status, priority=priority, limit=limit)

    @app.post("/tasks/{task_id}/complete", tags=["tasks"])
    async def complete(
        request: Request, task_id: RowId, who: Clinician, body: Annotated[CompleteRequest | None, Body()] = None
    ) -> TaskView:
        """Complete a task (physician tasks need the physician role)."""
        service = service_of(request)
        ensure(who, CLOSERS[service.task(task_id).assignee], "this task")
        return await service.close_task(task_id, "completed", body.reason if body else "done", who.actor)

    @app.post("/tasks/{task_id}/cancel", tags=["tasks"])
    async def cancel(request: Request, task_id: RowId, body: CancelRequest, who: Clinician) -> TaskView:
        """Cancel a task with a reason (physician tasks need the physician role)."""
        service = service_of(request)
        ensure(who, CLOSERS[service.task(task_id).assignee], "this task")
        return await service.close_task(task_id, "cancelled", body.reason, who.actor)

    @app.post("/episodes/{episode_id}/migrate", tags=["definitions"])
    async def migrate(request: Request, episode_id: EpisodeId, body: MigrateRequest, who: Migrator) -> Migrated:
        """Move a running episode to a newer pathway version, deliberately (timeline + audit trail).

        The answer carries no patient data (admins migrate too): read the episode for its timeline.
        """
        return await service_of(request).migrate(episode_id, body.version, body.reason, who.actor)

    @app.get("/episodes/{episode_id}/audit", tags=["audit"])
    async def audit(request: Request, episode_id: EpisodeId, _: Reader) -> list[AuditEntry]:
        """Who did what to the episode, when and why (append-only)."""
        return service_of(request).audit(episode_id)

    @app.get("/episodes/{episode_id}/audit/fhir", tags=["audit"])
    async def audit_fhir(request: Request, episode_id: EpisodeId, _: Reader) -> dict[str, Any]:
        """The audit trail as FHIR R4 AuditEvents."""
        from carepath.fhir import audit_bundle

        service = service_of(request)
        service.episode(episode_id)  # 404 for an unknown episode
        return audit_bundle(service.engine, episode_id)

    @app.get("/definitions", tags=["definitions"])
    async def definitions(_: Anyone) -> list[dict[str, Any]]:
        """The pathway definitions this server ships."""
        return [
            {"id": pathway.id, "version": v, "title": pathway.definition(v).title}
            for pathway in pathways()
            for v in pathway.versions()
        ]

    @app.get("/definitions/{pathway_id}/{version}", tags=["definitions"])
    async def definition(pathway_id: str, version: RowId, _: Anyone) -> dict[str, Any]:
        """One definition with every parameter."""
        try:
            pathway = pathway_for(pathway_id)
        except LookupError as exc:
            raise NotFound(str(exc), field="pathway_id") from None
        try:
            return pathway.definition(version).model_dump(mode="json")
        except LookupError as exc:
            raise NotFound(str(exc), field="version") from None

    @app.post("/tokens", status_code=201, tags=["admin"])
    async def create_api_token(request: Request, body: TokenRequest, who: Admin) -> TokenCreated:
        """Create an API token; the token is in this answer only."""
        token_id, token = create_token(service_of(request).engine, body.name, body.role, who.actor)
        return TokenCreated(id=token_id, name=body.name, role=body.role, token=token)

    @app.get("/tokens", tags=["admin"])
    async def api_tokens(request: Request, _: Admin) -> list[TokenInfo]:
        return [TokenInfo.model_validate(row, from_attributes=True) for row in list_tokens(service_of(request).engine)]

    @app.post("/tokens/{token_id}/revoke", tags=["admin"])
    async def revoke_api_token(request: Request, token_id: RowId, _: Admin) -> dict[str, Any]:
        if not revoke(service_of(request).engine, token_id):
            raise NotFound(f"no active token {token_id}", field="token_id")
        return {"id": token_id, "revoked": True}

    return app
