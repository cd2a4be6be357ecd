"""What every page shares: rendering (escaped templates, the strict Content-Security-Policy) and the
guards of every form that changes something, the patients' check-in page included.

Forms are guarded twice against cross-site request forgery: a POST must come from this origin
(``Origin`` / ``Sec-Fetch-Site``; SameSite=Strict alone lets another port of the same host
through) and carry the CSRF token of the page it came from (fastapi-csrf-protect: a signed
double-submit cookie).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi_csrf_protect import CsrfProtect
from fastapi_csrf_protect.exceptions import CsrfProtectError
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData

HERE = Path(__file__).resolve().parent
PAGE_CSP = (
    "default-src 'self'; style-src 'self'; script-src 'none'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
TEMPLATES = Environment(
    loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True, default_for_string=True)
)
CSRF_FIELD = "csrf_token"
CSRF_COOKIE = "carepath_csrf"
CSRF_LIFETIME = 8 * 3600  # seconds: a page left open for a shift can still sign out
FORGED = "This form expired or came from another site; nothing was changed. Try again from this page."


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


def from_this_page(request: Request) -> bool:
    """A POST sent from this origin: ``Origin`` is ours, and ``Sec-Fetch-Site`` (sent by browsers
    since 2020) is not "same-site", which is what another port of this host is."""
    site = request.headers.get("sec-fetch-site", "same-origin")
    origin = request.headers.get("origin")
    if origin == "null":  # a page with no-referrer sends that, ours or not: Sec-Fetch-Site decides
        origin = None
    ours = origin is None or origin == str(request.base_url).rstrip("/")
    return ours and site in ("same-origin", "none")


async def checked_form(request: Request) -> FormData | None:
    """The posted form when it passes the origin and CSRF checks, else None."""
    if not from_this_page(request):
        return None
    try:
        form = await request.form()  # validate_csrf reads the token from the parsed form
        await request.app.state.csrf.validate_csrf(request)
    except (CsrfProtectError, ValueError, HTTPException):  # HTTPException: an unparsable form
        return None
    return form


def unavailable_page(request: Request, message: str, headers: dict[str, str]) -> HTMLResponse:
    """The 503 page of a form or page whose write or read could not be done now."""
    sentence = message[:1].upper() + message[1:] + "."
    page = render("message.html", 503, request, heading="Not done now: try again shortly", message=sentence, who=None)
    page.headers.update(headers)
    return page
