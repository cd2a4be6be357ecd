"""Who is asking and what their role allows, for both edges (the JSON API's bearer tokens and the
pages' sign-in). Bearer tokens with roles. No token: 401. Wrong role: 403.

Roles: ``viewer`` reads; ``coordinator`` also enrolls, records events, completes coordinator and
patient tasks and withdraws; ``physician`` does all of that plus physician tasks and overrides;
``admin`` manages tokens and definitions and reads no patient data.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request
from pydantic import BaseModel

from db.tokens import verify

COOKIE = "carepath_token"
READERS = ("viewer", "coordinator", "physician")
CLINICIANS = ("coordinator", "physician")
PHYSICIANS = ("physician",)
ADMINS = ("admin",)
EVERYONE = ("viewer", "coordinator", "physician", "admin")
# Who may close a task depends on whom it is for (SPEC assignees).
CLOSERS = {"physician": PHYSICIANS, "coordinator": CLINICIANS, "patient": CLINICIANS}


class Unauthorized(Exception):
    pass


class Forbidden(Exception):
    pass


class Principal(BaseModel):
    token_id: int
    name: str
    role: str

    @property
    def actor(self) -> str:
        """How the audit trail names who acted."""
        return f"{self.role}:{self.name}"


def token_of(request: Request, cookie: bool = False) -> str | None:
    """The bearer token; the sign-in cookie only when ``cookie`` (the HTML pages).

    The JSON API takes bearer tokens only: a browser attaches the cookie to any request, even
    one a page on another port of the same host makes it send (cross-site request forgery).
    """
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(COOKIE) if cookie else None


def authenticate(request: Request, cookie: bool = False) -> Principal:
    token = token_of(request, cookie)
    if not token:
        raise Unauthorized("a bearer token is required")
    holder = verify(request.app.state.service.engine, token)
    if holder is None:
        raise Unauthorized("the token is unknown or revoked")
    return Principal(token_id=holder.id, name=holder.name, role=holder.role)


def allow(*roles: str) -> Callable[[Request], Principal]:
    """A dependency admitting only ``roles``."""

    def dependency(request: Request) -> Principal:
        principal = authenticate(request)
        ensure(principal, roles)
        return principal

    return dependency


def ensure(principal: Principal, roles: tuple[str, ...], what: str = "this") -> None:
    if principal.role not in roles:
        raise Forbidden(f"role {principal.role} may not do {what} (needs {' or '.join(roles)})")
