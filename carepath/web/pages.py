"""The worklist at ``/`` and an episode's page, rendered on the server with escaped output.

People sign in by pasting their API token once; it is kept in an HttpOnly, SameSite=Strict
cookie. The pages load one stylesheet and no scripts, and say so in their
Content-Security-Policy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from carepath.api.auth import COOKIE, READERS, Forbidden, Principal, Unauthorized, authenticate, ensure
from carepath.pathway.vocabulary import Assignee
from carepath.service import CarepathService, NotFound
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

router = APIRouter(include_in_schema=False)


def render(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = TEMPLATES.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers={"Content-Security-Policy": PAGE_CSP})


def _service(request: Request) -> CarepathService:
    return request.app.state.service


def _reader(request: Request) -> Principal | Response:
    """The signed-in reader, or the response to send instead (sign in / not allowed)."""
    try:
        who = authenticate(request)
        ensure(who, READERS, "patient pages")
    except Unauthorized:
        return RedirectResponse("/login", status_code=303)
    except Forbidden as exc:
        return render("message.html", 403, heading="Not allowed", message=str(exc), who=None)
    return who


@router.get("/")
async def worklist(request: Request, assignee: Assignee | None = None) -> Response:
    who = _reader(request)
    if isinstance(who, Response):
        return who
    tasks = _service(request).worklist(assignee=assignee)
    groups = [(key, label, [t for t in tasks if t.priority == key]) for key, label in GROUPS]
    return render("worklist.html", who=who, assignee=assignee, groups=[g for g in groups if g[2]])


@router.get("/ui/episodes/{episode_id}")
async def episode_page(request: Request, episode_id: str) -> Response:
    who = _reader(request)
    if isinstance(who, Response):
        return who
    try:
        episode = _service(request).episode(episode_id)
    except NotFound:
        return render(
            "message.html", 404, heading="No such episode", message=f"There is no episode {episode_id}.", who=who
        )
    return render("episode.html", who=who, episode=episode)


@router.get("/login")
async def login_form(request: Request) -> Response:
    return render("login.html", who=None, error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    if not token or verify(_service(request).engine, token) is None:
        return render("login.html", 401, who=None, error="That token is unknown or revoked.")
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


@router.get("/logout")
async def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


@router.get("/static/carepath.css")
async def stylesheet() -> FileResponse:
    return FileResponse(HERE / "static" / "carepath.css", media_type="text/css")
