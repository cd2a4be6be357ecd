"""The worklist at ``/`` and an episode's page, rendered on the server with escaped output.

People sign in by pasting their API token once; it is kept in an HttpOnly, SameSite=Strict
cookie that only these pages accept (the JSON API wants a bearer token). The pages load one
stylesheet and no scripts, and say so in their Content-Security-Policy.

Forms that change something (sign in, sign out) are guarded twice against cross-site request
forgery: a POST must come from this origin (``Origin`` / ``Sec-Fetch-Site``; SameSite=Strict
alone lets another port of the same host through) and carry the CSRF token of the page it came
from (fastapi-csrf-protect: a signed double-submit cookie).
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi_csrf_protect import CsrfProtect
from fastapi_csrf_protect.exceptions import CsrfProtectError
from jinja2 import Environment, FileSystemLoader, select_autoescape

from carepath.api.auth import COOKIE, READERS, Forbidden, Principal, Unauthorized, authenticate, ensure
from carepath.engine.vocabulary import Assignee
from carepath.service import CarepathService, NotFound
from db.models import EPISODE_ID_PATTERN
from db.tokens import verify

HERE = Path(__file__).resolve().parent
PAGE_CSP = (
    "default-src 'self'; style-src 'self'; script-src 'none'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
GROUPS = [("urgent", "Urgent"), ("high", "High"), ("routine", "Routine")]
TEMPLATES = Environment(
    loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True, default_for_string=True)
)
EPISODE_ID = re.compile(EPISODE_ID_PATTERN)
CSRF_FIELD = "csrf_token"
CSRF_COOKIE = "carepath_csrf"
CSRF_LIFETIME = 8 * 3600  # seconds: a page left open for a shift can still sign out
FORGED = "This form expired or came from another site; nothing was changed. Try again from this page."

router = APIRouter(include_in_schema=False)


def install_csrf(app: FastAPI, secret: str) -> None:
    """A CsrfProtect configured for this app (the library keeps its settings on the class)."""
    csrf = type("PageCsrf", (CsrfProtect,), {})
    settings = {
        "secret_key": secret or secrets.token_urlsafe(32),
        "cookie_key": CSRF_COOKIE,
        "cookie_samesite": "strict",
        "httponly": True,
        "max_age": CSRF_LIFETIME,
        "token_location": "body",
        "token_key": CSRF_FIELD,
    }
    csrf.load_config(lambda: list(settings.items()))
    app.state.csrf = csrf()


def render(template: str, status: int = 200, request: Request | None = None, **context: Any) -> HTMLResponse:
    """The page; with ``request``, its forms get a fresh CSRF token (and its cookie)."""
    signed = None
    if request is not None:
        context["csrf_token"], signed = request.app.state.csrf.generate_csrf_tokens()
    html = TEMPLATES.get_template(template).render(**context)
    # same-origin, not no-referrer: the browser then sends our own Origin with the forms' POSTs.
    headers = {"Content-Security-Policy": PAGE_CSP, "Referrer-Policy": "same-origin"}
    response = HTMLResponse(html, status_code=status, headers=headers)
    if signed is not None:
        request.app.state.csrf.set_csrf_cookie(signed, response)
    return response


def _service(request: Request) -> CarepathService:
    return request.app.state.service


def _from_this_page(request: Request) -> bool:
    """A POST sent from this origin: ``Origin`` is ours, and ``Sec-Fetch-Site`` (sent by browsers
    since 2020) is not "same-site", which is what another port of this host is."""
    site = request.headers.get("sec-fetch-site", "same-origin")
    origin = request.headers.get("origin")
    if origin == "null":  # a page with no-referrer sends that, ours or not: Sec-Fetch-Site decides
        origin = None
    ours = origin is None or origin == str(request.base_url).rstrip("/")
    return ours and site in ("same-origin", "none")


async def _checked_form(request: Request) -> dict[str, str] | None:
    """The posted form when it passes the origin and CSRF checks, else None."""
    if not _from_this_page(request):
        return None
    try:
        form = await request.form()  # validate_csrf reads the token from the parsed form
        await request.app.state.csrf.validate_csrf(request)
    except (CsrfProtectError, ValueError, HTTPException):  # HTTPException: an unparsable form
        return None
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _reader(request: Request) -> Principal | Response:
    """The signed-in reader, or the response to send instead (sign in / not allowed)."""
    try:
        who = authenticate(request, cookie=True)
        ensure(who, READERS, "patient pages")
    except Unauthorized:
        return RedirectResponse("/login", status_code=303)
    except Forbidden as exc:
        return render("message.html", 403, request, heading="Not allowed", message=str(exc), who=None)
    return who


@router.get("/")
async def worklist(request: Request, assignee: Assignee | None = None) -> Response:
    who = _reader(request)
    if isinstance(who, Response):
        return who
    tasks = _service(request).worklist(assignee=assignee)
    groups = [(key, label, [t for t in tasks if t.priority == key]) for key, label in GROUPS]
    from carepath.api.checkin import failed_count  # follow-up: failed deliveries, for coordinators

    failed = failed_count(_service(request).engine) if who.role == "coordinator" else 0
    return render(
        "worklist.html",
        200,
        request,
        who=who,
        assignee=assignee,
        groups=[g for g in groups if g[2]],
        failed_notifications=failed,
    )


@router.get("/ui/episodes/{episode_id}")
async def episode_page(request: Request, episode_id: str) -> Response:
    who = _reader(request)
    if isinstance(who, Response):
        return who
    try:
        episode = _service(request).episode(episode_id) if EPISODE_ID.fullmatch(episode_id) else None
    except NotFound:
        episode = None
    if episode is None:
        return render(
            "message.html",
            404,
            request,
            heading="No such episode",
            message=f"There is no episode {episode_id[:64]}.",  # a huge id is not echoed whole
            who=who,
        )
    from carepath.checkin import summary  # follow-up: the patient's check-in links

    return render(
        "episode.html", 200, request, who=who, episode=episode, checkins=summary(_service(request).engine, episode_id)
    )


@router.get("/login")
async def login_form(request: Request) -> Response:
    return render("login.html", 200, request, who=None, error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _checked_form(request)
    if form is None:
        return render("login.html", 403, request, who=None, error=FORGED)
    token = form.get("token", "").strip()
    if not token or verify(_service(request).engine, token) is None:
        return render("login.html", 401, request, who=None, error="That token is unknown or revoked.")
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    if await _checked_form(request) is None:
        return render("message.html", 403, request, heading="Not signed out", message=FORGED, who=None)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


@router.get("/static/carepath.css")
async def stylesheet() -> FileResponse:
    return FileResponse(HERE / "static" / "carepath.css", media_type="text/css")
