"""The intake over HTTP: FHIR R4 resources in (``/fhir``), the candidates queue (``/candidates``), and
the messages kept for review (``/intake/messages``).

FHIR answers are FHIR: 201 (or 200 when every resource was received before) with an
OperationOutcome saying what became of each resource, and every 4xx as an OperationOutcome naming
the field in ``expression``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from carepath.api.deps import Clinician, Reader, RowId, Service
from carepath.engine.inputs import Text
from carepath.errors import InvalidInput
from carepath.intake import fhir
from carepath.intake.candidates import Candidates
from carepath.intake.receive import store
from carepath.service import Enrolled
from db.intake import CandidateView, MessageView, candidate_audit, candidates, messages
from workflows.contracts import EventOutcome

router = APIRouter(tags=["intake"])
FHIR_JSON = "application/fhir+json"
CandidateStatus = Annotated[str | None, Query(pattern="^(open|enrolled|recorded|dismissed)$")]


class DismissRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text


class CandidateDetail(CandidateView):
    draft: dict[str, Any]  # the enrollment as far as the message gave it
    audit: list[dict[str, Any]]


def outcome(issues: list[dict[str, Any]], status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"resourceType": "OperationOutcome", "issue": issues}
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON, headers=headers)


def _issue(severity: str, code: str, text: str, field: str = "") -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": text}
    if field:
        issue["expression"] = [field]
    return issue


async def _receive(request: Request, service: Service, expected: str | None) -> JSONResponse:
    raw = await request.body()
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return outcome([_issue("error", "structure", "is not valid JSON", "body")], 422)
    try:
        received = fhir.read(data, expected)
    except InvalidInput as exc:
        return outcome([_issue("error", "invalid", e.message, e.field) for e in exc.errors], 422)
    results = await run_in_threadpool(store, service.engine, received)
    issues = []
    for item, result in zip(received, results, strict=True):
        what = f"{item.kind} for patient {item.patient.ref if item.patient else '?'}"
        if result.duplicate:
            issues.append(_issue("information", "informational", f"{what}: received before; nothing changed"))
        elif result.candidate_ids:
            named = ", ".join(str(n) for n in result.candidate_ids)
            issues.append(_issue("information", "informational", f"{what}: stored; candidate {named} to review"))
        else:
            issues.append(_issue("information", "informational", f"{what}: stored; no candidate in it"))
    new = any(not r.duplicate for r in results)
    return outcome(issues, 201 if new else 200)


@router.post("/fhir", openapi_extra={"requestBody": {"content": {FHIR_JSON: {}}}})
async def fhir_bundle(request: Request, _: Clinician, service: Service) -> Response:
    """A Bundle (transaction, batch or collection) of Patients, DiagnosticReports and Conditions,
    stored whole or not at all."""
    return await _receive(request, service, "Bundle")


@router.post("/fhir/DiagnosticReport")
async def fhir_report(request: Request, _: Clinician, service: Service) -> Response:
    """A DiagnosticReport; the patient by ``subject.identifier`` or a contained Patient."""
    return await _receive(request, service, "DiagnosticReport")


@router.post("/fhir/Condition")
async def fhir_condition(request: Request, _: Clinician, service: Service) -> Response:
    """A Condition (SNOMED CT or ICD-10 coded); a refuted one names nobody."""
    return await _receive(request, service, "Condition")


async def fhir_outcomes(request: Request, call_next: Any) -> Response:
    """Every 4xx under /fhir as an OperationOutcome (the API's other answers name fields as ``detail``)."""
    response = await call_next(request)
    if not request.url.path.startswith("/fhir") or not 400 <= response.status_code < 500:
        return response
    body = b"".join([chunk async for chunk in response.body_iterator])
    try:
        data = json.loads(body)
    except ValueError:
        data = {}
    if data.get("resourceType") == "OperationOutcome":
        return Response(body, response.status_code, headers=dict(response.headers), media_type=FHIR_JSON)
    issues = [
        _issue("error", "security" if response.status_code in (401, 403) else "invalid", d["message"], d["field"])
        for d in data.get("detail", [])
        if isinstance(d, dict)
    ] or [_issue("error", "processing", "refused")]
    keep = {k: v for k, v in response.headers.items() if k.lower() in ("www-authenticate", "retry-after")}
    return outcome(issues, response.status_code, keep)


class FhirOutcomes:
    """``fhir_outcomes`` for the requests under /fhir only: the others go straight on, without the
    per-request task group a dispatching middleware costs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app, self.outcomes = app, BaseHTTPMiddleware(app, dispatch=fhir_outcomes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        under_fhir = scope["type"] == "http" and scope["path"].startswith("/fhir")
        await (self.outcomes if under_fhir else self.app)(scope, receive, send)


# ---- the candidates queue -------------------------------------------------------------------------


@router.get("/candidates")
def list_candidates(
    _: Reader, service: Service, status: CandidateStatus = "open", limit: Annotated[int, Query(ge=1, le=500)] = 200
) -> list[CandidateView]:
    """Patients and events the intake found, newest first: source and message id, the matched
    sentence (``spans`` mark the words), levels, age and sex as the message gave them, and the
    patient's active episode if there is one."""
    return candidates(service.engine, status, limit)


@router.get("/candidates/{candidate_id}")
def show_candidate(candidate_id: RowId, _: Reader, service: Service) -> CandidateDetail:
    queue = Candidates(service)
    view = queue.get(candidate_id)
    return CandidateDetail(
        **view.model_dump(), draft=queue.draft(view), audit=candidate_audit(service.engine, candidate_id)
    )


@router.post("/candidates/{candidate_id}/enroll", status_code=201)
async def enroll_candidate(
    candidate_id: RowId,
    who: Clinician,
    service: Service,
    enrollment: Annotated[dict[str, Any], Body(description="the rest of the enrollment (pain_nrs, ...)")],
) -> Enrolled:
    """Enroll the candidate's patient: the body is the enrollment, and what it leaves out of the
    patient, the day and the levels comes from the message. 409 if the patient has an active episode."""
    return await Candidates(service).enroll(candidate_id, enrollment, who.actor)


@router.post("/candidates/{candidate_id}/confirm")
async def confirm_candidate(candidate_id: RowId, who: Clinician, service: Service) -> EventOutcome:
    """Record the offered event (a hospital admission) on the patient's episode."""
    return await Candidates(service).confirm(candidate_id, who.actor)


@router.post("/candidates/{candidate_id}/dismiss")
def dismiss_candidate(
    candidate_id: RowId, body: Annotated[DismissRequest, Body()], who: Clinician, service: Service
) -> CandidateView:
    return Candidates(service).dismiss(candidate_id, body.reason, who.actor)


@router.get("/intake/messages")
def intake_messages(
    _: Clinician,
    service: Service,
    status: Annotated[str | None, Query(pattern="^(accepted|refused)$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[MessageView]:
    """Messages as received, newest first; ``status=refused`` lists those kept for review, with why."""
    return messages(service.engine, status, limit)
