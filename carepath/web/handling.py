"""What every page handler shares between the request and the service: the signed-in person (or
the page to send instead), a guarded form and its values, where a form returns to, the redirect
after a change (POST-redirect-GET, with a notice the page words itself), and what every signed-in
page shows. ``carepath.web.guard`` below it renders and checks origin and CSRF.
"""

from __future__ import annotations

import secrets
from datetime import date
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from carepath.access import CLINICIANS, CLOSERS, PHYSICIANS, Forbidden, Principal, Unauthorized, authenticate, ensure
from carepath.engine.presentation import FormSection, sections_values
from carepath.errors import InvalidInput
from carepath.service import CarepathService
from carepath.web import drafts
from carepath.web.guard import FORGED, checked_form, render

# The worklist's kept counts by filter and day (carepath.web.pages): any change made through the
# pages drops them, so a person's own action shows in them at once.
COUNTED: dict[tuple[str, date], tuple[float, dict[str, dict[str, int]]]] = {}


def service_of(request: Request) -> CarepathService:
    return request.app.state.service


def signed_in(request: Request, roles: tuple[str, ...], what: str) -> Principal | Response:
    """The signed-in person when their role is one of ``roles``, or the response to send instead."""
    try:
        who = authenticate(request, cookie=True)
        ensure(who, roles, what)
    except Unauthorized:
        return RedirectResponse("/login", status_code=303)
    except Forbidden as exc:
        return render("message.html", 403, request, heading="Not allowed", message=str(exc), who=None)
    return who


async def guarded_action(request: Request, roles: tuple[str, ...], what: str) -> tuple[Principal, FormData] | Response:
    """A state-changing page form: the person's role, then this origin and the page's CSRF token."""
    who = await run_in_threadpool(signed_in, request, roles, what)  # the token's look-up: off the loop
    if isinstance(who, Response):
        return who
    form = await checked_form(request)
    if form is None:
        return render("message.html", 403, request, heading="Nothing was changed", message=FORGED, who=who)
    return who, form


def return_path(form: FormData, default: str = "/") -> str:
    """Where a form returns to: a path on this site only (never another host)."""
    target = str(form.get("back") or default)
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else default


def redirect_after(target: str, notice: str) -> RedirectResponse:
    """After a change made on a page (POST-redirect-GET): the worklist counts are counted afresh."""
    COUNTED.clear()
    joiner = "&" if "?" in target else "?"
    return drafts.clear(RedirectResponse(f"{target}{joiner}notice={notice}", status_code=303), target)


def form_text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


def form_list(form: FormData, name: str) -> list[str]:
    return [v for v in form.getlist(name) if isinstance(v, str)]


def field_errors(exc: InvalidInput) -> dict[str, str]:
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


def signed_in_context(request: Request, who: Principal) -> dict[str, Any]:
    """What every signed-in page shows: who, and the notice of the action that led here."""
    return {
        "who": who,
        "notice": NOTICES.get(request.query_params.get("notice", "")),
        "can_act": who.role in CLINICIANS,
        "is_physician": who.role in PHYSICIANS,
        "closers": {assignee: roles for assignee, roles in CLOSERS.items()},
        "form_key": secrets.token_urlsafe(16),  # one per rendered page: a resubmission reuses it
    }


def posted_sections(sections: list[FormSection], form: FormData) -> dict[str, Any]:
    """What a posted sectioned form (the enroll form) says, as the nested data its model takes."""
    return sections_values(sections, lambda name: form_text(form, name), lambda name: form_list(form, name))
