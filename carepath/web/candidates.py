"""The candidates on the pages: the worklist's "Found in reports" section, the enroll form opened
pre-filled from a candidate's message, confirming an offered event, dismissing with a reason."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from carepath.access import CLINICIANS, Principal
from carepath.engine.registry import pathway_for
from carepath.errors import InvalidInput
from carepath.intake.candidates import Candidates
from carepath.service import Conflict, NotFound
from carepath.web import drafts, handling
from carepath.web.guard import render
from carepath.web.intake_view import highlighted
from carepath.web.pages import render_enroll_form
from db.intake import CandidateView
from db.models import MAX_ID

router = APIRouter(include_in_schema=False)


def form_values(draft: dict[str, Any], prefix: str = "") -> dict[str, list[str]]:
    """A draft enrollment as the enroll form's fields (``patient.ref``, ``imaging[0].modality``)."""
    values: dict[str, list[str]] = {}
    for key, value in draft.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            values |= form_values(value, name)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for n, item in enumerate(value):
                values |= form_values(item, f"{name}[{n}]")
        elif isinstance(value, list):
            values[name] = [str(v) for v in value]
        elif value is not None:
            values[name] = [str(value)]
    return values


def _queue(request: Request) -> Candidates:
    return Candidates(handling.service_of(request))


def _form(request: Request, who: Principal, view: CandidateView, status: int = 200, **context: Any) -> Response:
    queue = _queue(request)
    values = form_values(queue.draft(view))
    values.setdefault("identified_on", [view.received_at.date().isoformat()])
    return render_enroll_form(
        request,
        who,
        pathway_for(view.pathway_id),
        status,
        **{
            "values": values,
            "candidate": view,
            "candidate_words": highlighted(view.sentence, view.spans),
            "form_action": f"/ui/candidates/{view.id}/enroll",
            **context,
        },
    )


def _missing(request: Request, who: Principal) -> Response:
    heading = "No such candidate"
    return render("message.html", 404, request, heading=heading, message="Nothing was changed.", who=who)


@router.get("/ui/candidates/{candidate_id}/enroll")
def enroll_form(request: Request, candidate_id: int) -> Response:
    who = handling.signed_in(request, CLINICIANS, "enrolling patients")
    if isinstance(who, Response):
        return who
    try:
        view = _queue(request).get(candidate_id) if 1 <= candidate_id <= MAX_ID else None
    except NotFound:
        view = None
    if view is None:
        return _missing(request, who)
    if view.status != "open" or view.active_episode_id:
        target = view.active_episode_id or view.episode_id
        return handling.redirect_after(f"/ui/episodes/{target}" if target else "/", "enrolled" if target else "closed")
    return _form(request, who, view)


@router.post("/ui/candidates/{candidate_id}/enroll")
async def enroll(request: Request, candidate_id: int) -> Response:
    checked = await handling.guarded_action(request, CLINICIANS, "enrolling patients")
    if isinstance(checked, Response):
        return checked
    who, form = checked
    queue = _queue(request)
    try:
        view = await run_in_threadpool(queue.get, candidate_id) if 1 <= candidate_id <= MAX_ID else None
    except NotFound:
        view = None
    if view is None:
        return _missing(request, who)
    typed = drafts.typed(form)
    pathway = pathway_for(view.pathway_id)
    sections = pathway.enrollment_form(pathway.definition())
    given = handling.posted_sections(sections, form)
    try:
        enrolled = await queue.enroll(candidate_id, given, who.actor)
    except InvalidInput as exc:
        return _form(request, who, view, 422, errors=handling.field_errors(exc), values=typed)
    except Conflict as exc:
        held = await run_in_threadpool(handling.service_of(request).active_episode_of, view.patient_ref)
        errors = {exc.error.field: exc.error.message}
        return _form(request, who, view, 409, errors=errors, values=typed, existing=held)
    return handling.redirect_after(f"/ui/episodes/{enrolled.episode_id}", "enrolled")


@router.post("/ui/candidates/{candidate_id}/{action}")
async def close(request: Request, candidate_id: int, action: str) -> Response:
    """``confirm`` (record the offered event) or ``dismiss`` (a reason is required)."""
    checked = await handling.guarded_action(request, CLINICIANS, "candidates")
    if isinstance(checked, Response):
        return checked
    who, form = checked
    if action not in ("confirm", "dismiss") or not 1 <= candidate_id <= MAX_ID:
        return _missing(request, who)
    queue = _queue(request)
    back = handling.return_path(form)
    try:
        if action == "dismiss":
            await run_in_threadpool(queue.dismiss, candidate_id, str(form.get("reason") or ""), who.actor)
            return handling.redirect_after(back, "dismissed")
        await queue.confirm(candidate_id, who.actor)
    except NotFound:
        return _missing(request, who)
    except (InvalidInput, Conflict) as exc:
        message = str(exc.errors[0]) if isinstance(exc, InvalidInput) else str(exc.error)
        return render("message.html", 422, request, heading="Nothing was changed", message=message, who=who)
    view = await run_in_threadpool(queue.get, candidate_id)
    return handling.redirect_after(f"/ui/episodes/{view.episode_id}", "recorded")
