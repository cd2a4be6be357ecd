"""The worklist at ``/`` and an episode's page, rendered on the server with escaped output.

People sign in by pasting their API token once; it is kept in an HttpOnly, SameSite=Strict
cookie that only these pages accept (the JSON API wants a bearer token). The pages load one
stylesheet and no scripts, and say so in their Content-Security-Policy.

Every form that changes something is guarded by ``carepath.web.guard`` (this origin and the
page's CSRF token), which also renders every page.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, TypeVar, get_args
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.datastructures import FormData

from carepath.access import (
    CLINICIANS,
    CLOSERS,
    COOKIE,
    PHYSICIANS,
    READERS,
    Forbidden,
    Principal,
    Unauthorized,
    authenticate,
    ensure,
    session_policy,
)
from carepath.engine.pathway import Pathway
from carepath.engine.presentation import EventForm, sections_values
from carepath.engine.registry import default_pathway, pathway_for, pathways
from carepath.engine.vocabulary import Assignee, Priority, TaskStatus
from carepath.errors import InvalidInput
from carepath.service import CarepathService, Conflict, NotFound, enrollment_digest
from carepath.web import drafts
from carepath.web.audit_words import audit_lines
from carepath.web.guard import FORGED, checked_form, render
from carepath.web.intake_view import section as intake_section
from carepath.web.timeline import timeline_svg
from db.models import EPISODE_ID_PATTERN, MAX_ID
from db.queries import LISTED_STATUSES, TaskFilter, episode_page, events, failed_count, task_counts, task_page
from db.sessions import end_session, open_session
from db.tokens import verify

GROUPS = [("urgent", "Urgent"), ("high", "High"), ("routine", "Routine")]
EPISODE_ID = re.compile(EPISODE_ID_PATTERN)
HERE = Path(__file__).resolve().parent

P = TypeVar("P")
ASSIGNEES: tuple[str, ...] = get_args(Assignee)
PRIORITIES: tuple[str, ...] = get_args(Priority)
STATUSES: tuple[str, ...] = get_args(TaskStatus)

router = APIRouter(include_in_schema=False)


def _service(request: Request) -> CarepathService:
    return request.app.state.service


def _signed_in(request: Request, roles: tuple[str, ...], what: str) -> Principal | Response:
    """The signed-in person when their role is one of ``roles``, or the response to send instead."""
    try:
        who = authenticate(request, cookie=True)
        ensure(who, roles, what)
    except Unauthorized:
        return RedirectResponse("/login", status_code=303)
    except Forbidden as exc:
        return render("message.html", 403, request, heading="Not allowed", message=str(exc), who=None)
    return who


def _reader(request: Request) -> Principal | Response:
    return _signed_in(request, READERS, "open patient pages")


async def _action(request: Request, roles: tuple[str, ...], what: str) -> tuple[Principal, FormData] | Response:
    """A state-changing page form: the person's role, then this origin and the page's CSRF token."""
    who = await run_in_threadpool(_signed_in, request, roles, what)  # the token's look-up: off the loop
    if isinstance(who, Response):
        return who
    form = await checked_form(request)
    if form is None:
        return render("message.html", 403, request, heading="Nothing was changed", message=FORGED, who=who)
    return who, form


def _back(form: FormData, default: str = "/") -> str:
    """Where a form returns to: a path on this site only (never another host)."""
    target = str(form.get("back") or default)
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else default


def _redirect(target: str, notice: str) -> RedirectResponse:
    """After a change made on a page (POST-redirect-GET): the worklist counts are counted afresh."""
    _counted.clear()
    joiner = "&" if "?" in target else "?"
    return drafts.clear(RedirectResponse(f"{target}{joiner}notice={notice}", status_code=303), target)


def _text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


def _all(form: FormData, name: str) -> list[str]:
    return [v for v in form.getlist(name) if isinstance(v, str)]


def _errors(exc: InvalidInput) -> dict[str, str]:
    """Field -> message, the API's own field names (the page shows each beside its input)."""
    found: dict[str, str] = {}
    for error in exc.errors:
        found.setdefault(error.field or "form", error.message)
    return found


# What a redirect's ?notice= says (codes, so that a link cannot make the page say anything else).
NOTICES = {
    "completed": "Task completed.",
    "cancelled": "Task cancelled.",
    "closed": "That task was already closed; nothing was recorded twice.",
    "recorded": "Event recorded.",
    "enrolled": "Patient enrolled.",
    "already": "This patient was already enrolled with exactly these details: nothing new was created; "
    "this is the existing episode.",
    "withdrawn": "Patient withdrawn; open tasks were cancelled.",
    "migrated": "Episode migrated to the new pathway version.",
    "checkin": "A check-in link is on its way to the patient.",
    "assigned": "Task assigned.",
    "unassigned": "Task handed back to its role.",
    "dismissed": "Candidate dismissed; nobody was enrolled.",
}
PAGE_SIZE = 50


def _common(request: Request, who: Principal) -> dict[str, Any]:
    """What every signed-in page shows: who, and the notice of the action that led here."""
    return {
        "who": who,
        "notice": NOTICES.get(request.query_params.get("notice", "")),
        "can_act": who.role in CLINICIANS,
        "is_physician": who.role in PHYSICIANS,
        "closers": {assignee: roles for assignee, roles in CLOSERS.items()},
        "form_key": secrets.token_urlsafe(16),  # one per rendered page: a resubmission reuses it
    }


# Counting every open task is the one read on the worklist that grows with the store (tens of ms
# at 100,000 tasks): the counts are kept COUNTS_TTL seconds per filter, and dropped by any change
# made through these pages, so a person's own action shows in them at once.
COUNTS_TTL = 5.0
_counted: dict[tuple[str, date], tuple[float, dict[str, dict[str, int]]]] = {}


def _counts(service: CarepathService, today: date, f: TaskFilter) -> dict[str, dict[str, int]]:
    key = (f.model_dump_json(), today)
    now = time.monotonic()
    held = _counted.get(key)
    if held is None or held[0] < now:
        if len(_counted) > 1000:  # filters typed by hand: keep the cache small
            _counted.clear()
        held = _counted[key] = (now + COUNTS_TTL, task_counts(service.engine, today, f))
    return held[1]


def _from_cursor(fetch: Callable[[str | None], P], cursor: str | None) -> P:
    """The page at ``cursor``; a stale or edited cursor shows the first page instead of an error."""
    try:
        return fetch(cursor or None)
    except InvalidInput:
        return fetch(None)


def _choice(value: str | None, allowed: tuple[str, ...]) -> str | None:
    return value if value in allowed else None


@router.get("/")
def worklist(
    request: Request,
    assignee: str | None = None,
    priority: str | None = None,
    status: str | None = None,
    patient: str | None = None,
    mine: str | None = None,
    cursor: str | None = None,
) -> Response:
    who = _reader(request)
    if isinstance(who, Response):
        return who
    service = _service(request)
    today = service.today()
    f = TaskFilter(
        assignee=_choice(assignee, ASSIGNEES),
        priority=_choice(priority, PRIORITIES),
        status=_choice(status, STATUSES) or "open",
        patient_ref=(patient or "").strip()[:64] or None,
        owner=who.name if mine else None,  # "My tasks": the ones this person took on
    )
    page = _from_cursor(lambda at: task_page(service.engine, today, f, PAGE_SIZE, at), cursor)
    counts = _counts(service, today, f)
    groups = [(key, label, [t for t in page.items if t.priority == key]) for key, label in GROUPS]
    filters = {
        "assignee": f.assignee,
        "priority": f.priority,
        "status": f.status,
        "patient": f.patient_ref,
        "mine": "1" if mine else None,
    }
    next_url = str(request.url.include_query_params(cursor=page.next_cursor)) if page.next_cursor else None
    failed = failed_count(service.engine) if who.role == "coordinator" else 0
    return render(
        "worklist.html",
        200,
        request,
        **_common(request, who),
        assignee=f.assignee,
        groups=[g for g in groups if g[2]],
        failed_notifications=failed,
        intake=None if cursor else intake_section(service.engine, who),  # the intake's candidates
        counts=counts,
        filters=filters,
        options={"assignee": ASSIGNEES, "priority": PRIORITIES, "status": STATUSES},
        next_url=next_url and next_url.replace(str(request.base_url).rstrip("/"), ""),
        first_page=not cursor,
        back=request.url.path + ("?" + request.url.query if request.url.query else ""),
    )


@router.post("/ui/tasks/{task_id}/{action}")
async def close_task(request: Request, task_id: int, action: str) -> Response:
    checked = await _action(request, CLINICIANS, "close tasks")
    if isinstance(checked, Response):
        return checked
    who, form = checked
    if action not in ("complete", "cancel", "assign") or not 1 <= task_id <= MAX_ID:
        return render("message.html", 404, request, heading="No such action", message="Nothing was changed.", who=who)
    service = _service(request)
    back = _back(form)
    if action == "assign":
        return await _assign(request, who, task_id, str(form.get("owner") or "").strip(), back)
    reason = str(form.get("reason") or "").strip()
    if action == "cancel" and not reason:
        return _task_refused(request, who, back, "reason: a cancellation needs a reason")
    try:
        task = await run_in_threadpool(service.task, task_id)
        ensure(who, CLOSERS[task.assignee], "close this task")
        status = "completed" if action == "complete" else "cancelled"
        await service.close_task(task_id, status, reason or "done", who.actor)
    except Conflict:  # closed already (a double click, or someone else): nothing recorded twice
        return _redirect(back, "closed")
    except Forbidden as exc:
        return _task_refused(request, who, back, str(exc), 403)
    except NotFound as exc:
        return _task_refused(request, who, back, str(exc), 404)
    except InvalidInput as exc:
        return _task_refused(request, who, back, str(exc))
    return _redirect(back, status)


async def _assign(request: Request, who: Principal, task_id: int, owner: str, back: str) -> Response:
    """Take a task on ("me"), give it to a colleague by name, or hand it back (empty)."""
    from carepath.assignments import assign_task

    name = who.name if owner == "me" else owner[:200] or None
    try:
        await assign_task(_service(request), task_id, name, who.actor)
    except Conflict as exc:
        return _task_refused(request, who, back, exc.error.message, 409)
    except NotFound as exc:
        return _task_refused(request, who, back, str(exc), 404)
    return _redirect(back, "assigned" if name else "unassigned")


def _task_refused(request: Request, who: Principal, back: str, why: str, status: int = 422) -> Response:
    return render("message.html", status, request, heading="Nothing was changed", message=why, who=who, back=back)


def _phases() -> tuple[str, ...]:
    """Every registered pathway's phases, in order, once each (the patients filter's choices)."""
    return tuple(dict.fromkeys(phase for pathway in pathways() for phase in pathway.phases()))


@router.get("/ui/patients")
def patients(
    request: Request,
    patient: str | None = None,
    phase: str | None = None,
    status: str | None = None,
    cursor: str | None = None,
) -> Response:
    who = _reader(request)
    if isinstance(who, Response):
        return who
    service = _service(request)
    query = {
        "patient_ref": (patient or "").strip()[:64] or None,
        "phase": _choice(phase, _phases()),
        "status": _choice(status, LISTED_STATUSES),
    }
    page = _from_cursor(lambda at: episode_page(service.engine, service.today(), PAGE_SIZE, cursor=at, **query), cursor)
    next_url = f"/ui/patients?{urlencode({**{k: v for k, v in query.items() if v}, 'cursor': page.next_cursor})}"
    return render(
        "patients.html",
        200,
        request,
        **_common(request, who),
        episodes=page.items,
        query=query,
        phases=_phases(),
        statuses=LISTED_STATUSES,
        next_url=next_url if page.next_cursor else None,
    )


@router.get("/ui/episodes/{episode_id}/fhir")
def episode_fhir(request: Request, episode_id: str) -> Response:
    """The FHIR Bundle as a file, for the signed-in person (the JSON API wants a bearer token)."""
    from carepath.fhir import episode_bundle

    return _fhir_file(request, episode_id, "fhir", episode_bundle)


@router.get("/ui/episodes/{episode_id}/audit/fhir")
def audit_fhir(request: Request, episode_id: str) -> Response:
    from carepath.fhir import audit_bundle

    return _fhir_file(request, episode_id, "audit-fhir", audit_bundle)


def _fhir_file(request: Request, episode_id: str, name: str, build: Callable[[Any, str], dict[str, Any]]) -> Response:
    who = _reader(request)
    if isinstance(who, Response):
        return who
    service = _service(request)
    try:
        if not EPISODE_ID.fullmatch(episode_id):
            raise NotFound(episode_id)
        service.episode(episode_id)
    except NotFound:
        return render("message.html", 404, request, heading="No such episode", message="Nothing to export.", who=who)
    disposition = f'attachment; filename="episode-{episode_id}-{name}.json"'
    return JSONResponse(build(service.engine, episode_id), headers={"Content-Disposition": disposition})


@router.get("/ui/episodes/{episode_id}")
async def episode_screen(request: Request, episode_id: str) -> Response:
    who = await run_in_threadpool(_reader, request)
    if isinstance(who, Response):
        return who
    return await _episode_view(request, who, episode_id, draft=drafts.take(request))


async def _episode_view(
    request: Request, who: Principal, episode_id: str, status: int = 200, draft: drafts.Draft = drafts.EMPTY
) -> Response:
    service = _service(request)
    try:
        if not EPISODE_ID.fullmatch(episode_id):
            raise NotFound(episode_id)
        episode = await service.episode_with_upcoming(episode_id)
    except NotFound:
        return render(
            "message.html",
            404,
            request,
            heading="No such episode",
            message=f"There is no episode {episode_id[:64]}.",  # a huge id is not echoed whole
            who=who,
        )
    from db.checkins import summary  # follow-up: the patient's check-in links

    recorded = await run_in_threadpool(events, service.engine, episode_id)
    trail = await run_in_threadpool(service.audit, episode_id)
    pathway_id, version = episode.pathway.rsplit(".v", 1)
    pathway = pathway_for(pathway_id)
    definition = pathway.definition(int(version))
    today = service.today()
    # A refused form's answers, as the form macros refill them: ``kind.name`` its first value,
    # ``chosen[kind.name]`` every value ticked.
    values = {f"{draft.form}.{k}": v[0] for k, v in draft.values.items() if v}
    chosen = {f"{draft.form}.{k}": v for k, v in draft.values.items()}
    return render(
        "episode.html",
        status,
        request,
        **_common(request, who),
        episode=episode,
        events=recorded,
        audit=audit_lines(trail, pathway, definition),
        label=lambda code: pathway.label(definition, code),
        definition=definition,
        newer=[v for v in pathway.versions() if v > int(version)],
        picture=timeline_svg(episode, recorded, pathway, definition, today),
        marks_legend=", ".join(pathway.picture_legend(definition)),
        today=today.isoformat(),
        form_errors={draft.form: draft.errors} if draft.form else {},
        values=values,
        chosen=chosen,
        event_forms=pathway.event_forms(definition),
        withdraw_form=pathway.withdraw_form(definition),
        active=episode.status == "active",
        checkins=summary(service.engine, episode_id),
    )


def _event_form(pathway: Pathway, definition: Any, kind: str) -> EventForm | None:
    return next((form for form in pathway.event_forms(definition) if form.type == kind), None)


@router.post("/ui/episodes/{episode_id}/events")
async def record_event(request: Request, episode_id: str) -> Response:
    checked = await _action(request, CLINICIANS, "record events")
    if isinstance(checked, Response):
        return checked
    who, form = checked
    kind = str(form.get("type") or "")
    back = f"/ui/episodes/{episode_id}"
    service = _service(request)
    try:
        if not EPISODE_ID.fullmatch(episode_id):
            raise NotFound(episode_id)
        pathway, definition = await run_in_threadpool(service.episode_pathway, episode_id)
        spec = _event_form(pathway, definition, kind)
        if spec is None:
            raise InvalidInput.one("type", "is not an event this page records")
        if spec.physicians_only:
            ensure(who, PHYSICIANS, f"record {spec.title.lower()} events")
        event = pathway.parse_event(spec.values(lambda name: _text(form, name), lambda name: _all(form, name)))
        # The page's form key is the Idempotency-Key: a double click or a resubmission applies once.
        key = f"form-{str(form.get('form_key') or '')[:40]}" if form.get("form_key") else None
        await service.record_event(episode_id, event, who.actor, key)
    except InvalidInput as exc:
        return await _refused(request, who, episode_id, drafts.Draft(kind, drafts.typed(form), _errors(exc)))
    except Forbidden as exc:  # not this person's to do: said at once, with what they typed
        draft = drafts.Draft(kind, drafts.typed(form), {"form": str(exc)})
        return await _episode_view(request, who, episode_id, 403, draft)
    except NotFound:
        return await _episode_view(request, who, episode_id, 404)
    return _redirect(back, "recorded")


async def _refused(request: Request, who: Principal, episode_id: str, draft: drafts.Draft) -> Response:
    """A refused episode form: back to the page (303) with what was typed and what was wrong, so a
    reload is a GET; a draft too large for its cookie is answered on the spot instead."""
    back = drafts.redirect_back(request, f"/ui/episodes/{episode_id}", draft)
    return back or await _episode_view(request, who, episode_id, 422, draft)


@router.post("/ui/episodes/{episode_id}/checkins")
async def send_checkin(request: Request, episode_id: str) -> Response:
    checked = await _action(request, CLINICIANS, "send check-in links")
    if isinstance(checked, Response):
        return checked
    who, _ = checked
    from carepath.checkin_send import public_url
    from carepath.checkin_send import send_checkin as send

    try:
        await send(_service(request), episode_id, who.actor, public_url(request))
    except InvalidInput as exc:
        return await _refused(request, who, episode_id, drafts.Draft("checkin", {}, _errors(exc)))
    return _redirect(f"/ui/episodes/{episode_id}", "checkin")


@router.post("/ui/episodes/{episode_id}/withdraw")
async def withdraw(request: Request, episode_id: str) -> Response:
    checked = await _action(request, CLINICIANS, "withdraw a patient")
    if isinstance(checked, Response):
        return checked
    who, form = checked
    service = _service(request)
    try:
        pathway, definition = await run_in_threadpool(service.episode_pathway, episode_id)
        spec = pathway.withdraw_form(definition)
        if spec is None:
            raise InvalidInput.one("episode", "this pathway takes no withdrawal on this page")
        data = spec.values(lambda name: _text(form, name), lambda name: _all(form, name))
        data["occurred_on"] = service.today(definition).isoformat()
        key = f"form-{str(form.get('form_key') or '')[:40]}" if form.get("form_key") else None
        await service.record_event(episode_id, data, who.actor, key)
    except InvalidInput as exc:
        return await _refused(request, who, episode_id, drafts.Draft("withdraw", drafts.typed(form), _errors(exc)))
    except NotFound:
        return await _episode_view(request, who, episode_id, 404)
    return _redirect(f"/ui/episodes/{episode_id}", "withdrawn")


@router.post("/ui/episodes/{episode_id}/migrate")
async def migrate(request: Request, episode_id: str) -> Response:
    checked = await _action(request, PHYSICIANS, "migrate an episode")
    if isinstance(checked, Response):
        return checked
    who, form = checked
    version = str(form.get("version") or "")
    reason = str(form.get("reason") or "").strip()
    try:
        if not version.isdigit() or not 1 <= int(version) <= MAX_ID:
            raise InvalidInput.one("version", "choose a pathway version")
        if not reason:
            raise InvalidInput.one("reason", "a migration needs a reason")
        await _service(request).migrate(episode_id, int(version), reason, who.actor)
    except InvalidInput as exc:
        return await _refused(request, who, episode_id, drafts.Draft("migrate", drafts.typed(form), _errors(exc)))
    except NotFound:
        return await _episode_view(request, who, episode_id, 404)
    return _redirect(f"/ui/episodes/{episode_id}", "migrated")


def _enroll_pathway(request: Request, form: FormData | None = None) -> Pathway:
    """The pathway the enroll page is for (``?pathway=``), the default one when none or unknown."""
    wanted = str((form.get("pathway") if form is not None else None) or request.query_params.get("pathway") or "")
    try:
        return pathway_for(wanted) if wanted else default_pathway()
    except LookupError:
        return default_pathway()


def _enroll_form(request: Request, who: Principal, pathway: Pathway, status: int = 200, **context: Any) -> Response:
    service = _service(request)
    definition = pathway.definition(service.pathway_version if pathway is default_pathway() else None)
    sections = pathway.enrollment_form(definition)
    return render(
        "enroll.html",
        status,
        request,
        **_common(request, who),
        pathway=pathway,
        pathways=pathways(),
        definition=definition,
        sections=sections,
        # The error summary names each field by its label (the page's words, not "fracture.levels").
        field_labels={f.name: f.label for section in sections for row in section.expanded() for f in row},
        today=service.today(definition).isoformat(),
        **{"errors": {}, "values": None, "existing": None, **context},
    )


@router.get("/ui/enroll")
def enroll_form(request: Request) -> Response:
    who = _signed_in(request, CLINICIANS, "enroll patients")
    if isinstance(who, Response):
        return who
    pathway = _enroll_pathway(request)
    draft = drafts.take(request)
    if draft.form != "enroll":
        return _enroll_form(request, who, pathway)
    ref = draft.value("patient.ref").strip()
    existing = _service(request).active_episode_of(ref) if ref and "patient.ref" in draft.errors else None
    return _enroll_form(request, who, pathway, errors=draft.errors, values=draft.values, existing=existing)


@router.post("/ui/enroll")
async def enroll(request: Request) -> Response:
    checked = await _action(request, CLINICIANS, "enroll patients")
    if isinstance(checked, Response):
        return checked
    who, form = checked
    service = _service(request)
    pathway = _enroll_pathway(request, form)
    try:
        definition = pathway.definition(service.pathway_version if pathway is default_pathway() else None)
        data = sections_values(pathway.enrollment_form(definition), lambda n: _text(form, n), lambda n: _all(form, n))
        enrollment = pathway.parse_enrollment(data)
        enrolled = await service.enroll(enrollment, who.actor, pathway.id)
    except InvalidInput as exc:
        return _enroll_refused(request, who, pathway, drafts.Draft("enroll", drafts.typed(form), _errors(exc)), 422)
    except Conflict as exc:
        held = await run_in_threadpool(service.active_episode_of, enrollment.patient_ref)
        if held is not None and held.enrollment_digest == enrollment_digest(enrollment):
            # The same form sent again (a double click, or later): the first made the episode.
            return _redirect(f"/ui/episodes/{held.id}", "already")
        draft = drafts.Draft("enroll", drafts.typed(form), {exc.error.field: exc.error.message})
        return _enroll_refused(request, who, pathway, draft, 409, held)
    return _redirect(f"/ui/episodes/{enrolled.episode_id}", "enrolled")


def _enroll_refused(
    request: Request, who: Principal, pathway: Pathway, draft: drafts.Draft, status: int, held: Any = None
) -> Response:
    """Back to the enroll form (303) with what was typed and what was wrong (post/redirect/get)."""
    target = "/ui/enroll" if pathway is default_pathway() else f"/ui/enroll?pathway={pathway.id}"
    back = drafts.redirect_back(request, target, draft)
    return back or _enroll_form(request, who, pathway, status, errors=draft.errors, values=draft.values, existing=held)


@router.get("/ui/evidence")
def evidence(request: Request) -> Response:
    """The evidence the pathways cite as [1]..[6]: what each reference supports, in words."""
    who = _reader(request)
    if isinstance(who, Response):
        return who
    lists = [(p.title, p.id, p.evidence()) for p in pathways() if p.evidence()]
    return render("evidence.html", 200, request, **_common(request, who), lists=lists)


@router.get("/login")
async def login_form(request: Request) -> Response:
    return render("login.html", 200, request, who=None, error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await checked_form(request)
    if form is None:
        return render("login.html", 403, request, who=None, error=FORGED)
    token = str(form.get("token") or "").strip()
    service = _service(request)
    holder = await run_in_threadpool(verify, service.engine, token) if token else None
    if holder is None:
        return render("login.html", 401, request, who=None, error="That token is unknown or revoked.")
    # The cookie carries a session of its own, never the token: logging out ends it on the server.
    session_id = await run_in_threadpool(open_session, service.engine, holder.id, service.clock())
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=int(session_policy(request).absolute.total_seconds()),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    if await checked_form(request) is None:
        return render("message.html", 403, request, heading="Not signed out", message=FORGED, who=None)
    if session_id := request.cookies.get(COOKIE):
        service = _service(request)
        await run_in_threadpool(end_session, service.engine, session_id, service.clock())
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


@router.get("/static/carepath.css")
async def stylesheet() -> FileResponse:
    return FileResponse(HERE / "static" / "carepath.css", media_type="text/css")
