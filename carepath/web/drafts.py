"""A refused form's answers and errors, carried across a redirect (post/redirect/get on errors too).

A page form that is refused redirects back to its page (303) with what was typed and what was
wrong in a short-lived signed cookie, so a reload of the page is a plain GET: it never re-sends
the form (which would meet an expired CSRF token) and never loses what was typed. The cookie is
signed (itsdangerous), lives for five minutes and is scoped to the page's path: a reload shows the
same answers and errors again, and the next change made from that page clears it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.datastructures import FormData

COOKIE = "carepath_draft"
LIFETIME = 300  # seconds: long enough for the redirect, short enough to forget
MAX_COOKIE = 3800  # bytes: browsers keep cookies up to about 4 KiB
SECRET_FIELDS = {"csrf_token", "form_key"}


@dataclass
class Draft:
    """One refused form: which form, what was typed (every value of multi-selects), what was wrong."""

    form: str
    values: dict[str, list[str]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def value(self, name: str, default: str = "") -> str:
        found = self.values.get(name)
        return found[0] if found else default

    def has(self, name: str, value: str) -> bool:
        return value in self.values.get(name, [])


EMPTY = Draft("")


def typed(form: FormData) -> dict[str, list[str]]:
    """What the person typed or ticked, every value of multi-selects, without the form's tokens."""
    return {k: [str(v) for v in form.getlist(k) if isinstance(v, str)] for k in form if k not in SECRET_FIELDS}


def _serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt="carepath-draft")


def install(app: Any, secret: str) -> None:
    app.state.drafts = _serializer(secret)


def redirect_back(request: Request, target: str, draft: Draft) -> Response | None:
    """A 303 to ``target`` carrying ``draft``; None when the draft is too large for a cookie (the
    caller then answers the page itself, so nothing typed is lost)."""
    signed = request.app.state.drafts.dumps({"form": draft.form, "values": draft.values, "errors": draft.errors})
    if len(signed) > MAX_COOKIE:
        return None
    path = target.split("?")[0].split("#")[0]
    response = RedirectResponse(f"{target}#form-{draft.form}", status_code=303)
    secure = request.url.scheme == "https"
    response.set_cookie(COOKIE, signed, max_age=LIFETIME, path=path, httponly=True, samesite="strict", secure=secure)
    return response


def take(request: Request) -> Draft:
    """The draft this page was redirected with (or an empty one)."""
    signed = request.cookies.get(COOKIE)
    if not signed:
        return EMPTY
    try:
        data = request.app.state.drafts.loads(signed, max_age=LIFETIME)
    except BadSignature:
        return EMPTY
    return Draft(str(data.get("form", "")), dict(data.get("values", {})), dict(data.get("errors", {})))


def clear(response: Response, target: str) -> Response:
    """After a change made from the page at ``target``: its refused draft is history."""
    response.delete_cookie(COOKIE, path=target.split("?")[0].split("#")[0])
    return response
