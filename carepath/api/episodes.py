"""Episodes: enrollment, the list, one episode with what comes next, events, withdrawal,
migration, FHIR and the audit trail. Reads are plain ``def`` (FastAPI runs them in its
threadpool, off the event loop); writes await the episode's workflow."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from carepath.access import PHYSICIANS, Principal, ensure
from carepath.api.deps import Clinician, EpisodeId, Migrator, Reader, Service
from carepath.api.tasks import PatientRefPrefix, paged
from carepath.engine.inputs import Text
from carepath.engine.registry import pathways
from carepath.service import AuditEntry, Enrolled, EpisodeWithUpcoming, Migrated
from db.checkins import last_day
from db.queries import EpisodeSummary, EventView, episode_page, events
from workflows.contracts import EventOutcome

router = APIRouter(prefix="/episodes", tags=["episodes"])
EpisodeStatus = Annotated[str | None, Query(pattern="^(reserving|active|completed|withdrawn)$")]


def check_author(who: Principal, event: dict[str, Any]) -> None:
    """Some events need a physician (an override): checked before the event is validated, so a
    coordinator's override is 403 whatever its content. Read from the body FastAPI already parsed
    (the body is read once)."""
    kind = event.get("type")
    if isinstance(kind, str) and any(kind in pathway.physician_events() for pathway in pathways()):
        ensure(who, PHYSICIANS, f"record {kind.replace('_', ' ')} events")


class WithdrawRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, StringConstraints(min_length=1, max_length=64)]  # the pathway's vocabulary
    text: Text | None = None


class MigrateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1)
    reason: Text


@router.post("", status_code=201)
async def enroll(
    enrollment: Annotated[dict[str, Any], Body(description="the pathway's enrollment (see /definitions)")],
    who: Clinician,
    service: Service,
    pathway: Annotated[
        str | None, Query(min_length=1, max_length=64, description="default: the default pathway")
    ] = None,
) -> Enrolled:
    """Enroll a patient in ``pathway`` (``identified_on`` is day 0). 409 if the patient has an
    active episode. The body is that pathway's enrollment; errors name its fields."""
    return await service.enroll(enrollment, who.actor, pathway)


@router.get("")
def list_episodes(
    request: Request,
    response: Response,
    _: Reader,
    service: Service,
    patient_ref: PatientRefPrefix = None,
    phase: Annotated[str | None, Query(max_length=64)] = None,
    status: EpisodeStatus = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> list[EpisodeSummary]:
    """Episodes, active and finished, by patient ref; paged like ``GET /tasks`` (``X-Next-Cursor``)."""
    page = episode_page(service.engine, service.today(), limit, patient_ref, phase, status, cursor)
    paged(response, request, page.next_cursor)
    return page.items


@router.get("/{episode_id}")
async def episode(episode_id: EpisodeId, _: Reader, service: Service) -> EpisodeWithUpcoming:
    """Phase, definition version, open tasks, timeline, and what comes next (``upcoming``)."""
    return await service.episode_with_upcoming(episode_id)


@router.get("/{episode_id}/events")
def recorded_events(episode_id: EpisodeId, _: Reader, service: Service) -> list[EventView]:
    """The events people recorded (notes with their text), who recorded each and when."""
    service.episode(episode_id)  # 404 for an unknown episode
    return events(service.engine, episode_id)


@router.post("/{episode_id}/events")
async def record_event(
    episode_id: EpisodeId,
    event: Annotated[dict[str, Any], Body(description="one event of the episode's pathway")],
    who: Clinician,
    service: Service,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> EventOutcome:
    """Record one clinical event (``occurred_on`` between day 0 and today).

    A rejected event gets 422 naming the field and changes nothing. Retrying with the same
    ``Idempotency-Key`` applies the event once (keys are per episode and expire after 24 h).
    """
    check_author(who, event)
    return await service.record_event(episode_id, event, who.actor, idempotency_key)


@router.post("/{episode_id}/withdraw")
async def withdraw(episode_id: EpisodeId, body: WithdrawRequest, who: Clinician, service: Service) -> EventOutcome:
    """Withdraw the patient: open tasks are cancelled and the episode ends."""
    return await service.withdraw(episode_id, body.reason, body.text, who.actor)


class CheckInSent(BaseModel):
    episode_id: str
    occasion: str = Field(description="what the check-in is for: asked-<day>-<n> for one sent on request")
    valid_until: str = Field(description="the last day the link works (YYYY-MM-DD)")


@router.post("/{episode_id}/checkins", status_code=201, tags=["notifications"])
async def send_checkin(episode_id: EpisodeId, request: Request, who: Clinician, service: Service) -> CheckInSent:
    """Send the patient a check-in link now (the patient asked, or a link expired): a message with
    a single-use link to the check-in page, on the audit trail. 422 if the episode has ended."""
    from carepath.checkin_send import public_url
    from carepath.checkin_send import send_checkin as send

    service.episode(episode_id)  # 404 for an unknown episode
    sent = await send(service, episode_id, who.actor, public_url(request))
    return CheckInSent(episode_id=episode_id, occasion=sent.occasion, valid_until=last_day(sent.expires_on))


@router.get("/{episode_id}/fhir")
def fhir(episode_id: EpisodeId, _: Reader, service: Service) -> dict[str, Any]:
    """The episode as a FHIR R4 Bundle: a CarePlan, its Tasks, and the recorded events
    (pain scores as Observations, notes as Communications)."""
    from carepath.fhir import episode_bundle

    service.episode(episode_id)  # 404 for an unknown episode
    return episode_bundle(service.engine, episode_id)


@router.post("/{episode_id}/migrate", tags=["definitions"])
async def migrate(episode_id: EpisodeId, body: MigrateRequest, who: Migrator, service: Service) -> Migrated:
    """Move a running episode to a newer pathway version, deliberately (timeline + audit trail).

    The answer carries no patient data (admins migrate too): read the episode for its timeline.
    """
    return await service.migrate(episode_id, body.version, body.reason, who.actor)


@router.get("/{episode_id}/audit", tags=["audit"])
def audit(episode_id: EpisodeId, _: Reader, service: Service) -> list[AuditEntry]:
    """Who did what to the episode, when and why (append-only)."""
    return service.audit(episode_id)


@router.get("/{episode_id}/audit/fhir", tags=["audit"])
def audit_fhir(episode_id: EpisodeId, _: Reader, service: Service) -> dict[str, Any]:
    """The audit trail as FHIR R4 AuditEvents."""
    from carepath.fhir import audit_bundle

    service.episode(episode_id)  # 404 for an unknown episode
    return audit_bundle(service.engine, episode_id)
