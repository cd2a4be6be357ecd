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

from db.sessions import SessionPolicy, session_holder
from db.tokens import TokenHolder, verify

# The pages' sign-in cookie: a session id (db/sessions.py), never the API token.
COOKIE = "carepath_session"
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


def token_of(request: Request) -> str | None:
    """The bearer token of the request, if any."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def session_policy(request: Request) -> SessionPolicy:
    return getattr(request.app.state, "session_policy", None) or SessionPolicy()


def authenticate(request: Request, cookie: bool = False) -> Principal:
    """The bearer token's holder; with ``cookie`` (the HTML pages), else the sign-in session's.

    The JSON API takes bearer tokens only: a browser attaches the cookie to any request, even
    one a page on another port of the same host makes it send (cross-site request forgery).
    """
    service = request.app.state.service
    token = token_of(request)
    holder: TokenHolder | None
    if token:
        holder = verify(service.engine, token)
        if holder is None:
            raise Unauthorized("the token is unknown or revoked")
    elif cookie and (session_id := request.cookies.get(COOKIE)):
        holder = session_holder(service.engine, session_id, service.clock(), session_policy(request))
        if holder is None:
            raise Unauthorized("the sign-in session has ended; sign in again")
    else:
        raise Unauthorized("a bearer token is required")
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
