"""The patient's check-in page (``/checkin/{token}``, no sign-in).

The page is the only thing a check-in link opens. It asks the questions the episode's pathway
declares for the check-in (``Pathway.check_in``) and records the event the pathway makes of the
answers through the episode's workflow (the same path and validation as
``POST /episodes/{id}/events``), once. The security reasoning is in db/checkins.py; the
origin and CSRF checks are the pages' own (``carepath.web.guard``).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path as FilePath
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from carepath.errors import InvalidInput
from carepath.service import CarepathService
from carepath.web.guard import FORGED, checked_form, render
from db import checkins as checkin

STATIC = FilePath(__file__).resolve().parent / "static"
GONE = (
    "This check-in link cannot be used any more: it was already answered, it has expired, or it is not a "
    "link we sent. Nothing was changed. If you want to tell us how you are, please call your care team."
)
SLOW_DOWN = "Too many tries in a short time. Please wait a minute and try again."

router = APIRouter(include_in_schema=False)


class RateLimiter:
    """At most ``limit`` tries per key in a sliding ``window`` of seconds (one API process's memory:
    enough to make guessing pointless next to 256-bit tokens; several processes each count their own)."""

    def __init__(self, limit: int = 5, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._tries: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, *keys: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if len(self._tries) > 10_000:  # forget idle keys so a scan cannot grow this without bound
                self._tries = {k: q for k, q in self._tries.items() if q and q[-1] > now - self.window}
            queues = [self._tries.setdefault(k, deque()) for k in keys]
            for q in queues:
                while q and q[0] <= now - self.window:
                    q.popleft()
            if any(len(q) >= self.limit for q in queues):
                return False
            for q in queues:
                q.append(now)
            return True


def _service(request: Request) -> CarepathService:
    return request.app.state.service


def _limiter(request: Request) -> RateLimiter:
    state = request.app.state
    if getattr(state, "checkin_limiter", None) is None:
        state.checkin_limiter = RateLimiter()
    return state.checkin_limiter


def _allowed(request: Request, token: str) -> bool:
    """5 tries a minute per link and per client address (the token's hash keys it: no token in memory)."""
    client = request.client.host if request.client else "unknown"
    return _limiter(request).allow(f"token:{checkin.hash_token(token)}", f"client:{client}")


def _message(status: int, heading: str, message: str) -> HTMLResponse:
    return render("checkin_message.html", status, None, heading=heading, message=message)


def _gone() -> HTMLResponse:
    return _message(404, "This link cannot be used", GONE)


def _form(
    request: Request, token: str, plan: checkin.Plan, status: int = 200, error: str | None = None, answers: Any = None
) -> HTMLResponse:
    return render(
        "checkin.html",
        status,
        request,
        token=token,
        error=error,
        answers=answers or {},
        check_in=plan.check_in,
    )


@router.get("/checkin/{token}")
async def checkin_page(request: Request, token: str) -> Response:
    if not _allowed(request, token):
        return _message(429, "Please wait", SLOW_DOWN)
    service = _service(request)
    found = checkin.find(service.engine, token, service.today())
    if found.checkin_id is None or found.plan is None:
        return _gone()
    checkin.mark_opened(service.engine, found.checkin_id, checkin.utcnow())
    return _form(request, token, found.plan)


def _answers(form: Any, plan: checkin.Plan) -> dict[str, Any]:
    """The posted answers: every ticked value of a many-answer question, one value otherwise."""
    many = {q.name for q in plan.check_in.questions if q.kind == "choices"}
    return {
        k: ([v for v in form.getlist(k) if isinstance(v, str)] if k in many else form.get(k))
        for k in form
        if k != "csrf_token"
    }


@router.post("/checkin/{token}")
async def checkin_answer(request: Request, token: str) -> Response:
    if not _allowed(request, token):
        return _message(429, "Please wait", SLOW_DOWN)
    service = _service(request)
    form = await checked_form(request)
    if form is None:
        return _message(403, "Not sent", FORGED)
    found = checkin.find(service.engine, token, service.today())
    if found.checkin_id is None or found.episode_id is None or found.plan is None:
        return _gone()
    plan = found.plan
    answers = _answers(form, plan)
    try:
        event = plan.pathway.check_in_event(plan.definition, plan.check_in, answers, service.today(plan.definition))
    except InvalidInput as exc:
        return _form(request, token, plan, 422, error=_plain(exc, plan), answers=answers)
    if not checkin.claim(service.engine, found.checkin_id, checkin.utcnow()):
        return _gone()  # answered a moment ago (another tab, a double submit)
    try:
        # The key makes a retry after a lost answer apply once; the actor says it came from the link.
        outcome = await service.record_event(
            found.episode_id,
            event,
            f"patient:checkin:{found.checkin_id}",
            idempotency_key=f"checkin-{found.checkin_id}",
        )
    except InvalidInput as exc:
        checkin.settle(service.engine, found.checkin_id, None)  # refused: the link stays usable
        return _form(request, token, plan, 422, error=_plain(exc, plan), answers=answers)
    except Exception:
        checkin.settle(service.engine, found.checkin_id, None)
        raise
    checkin.settle(service.engine, found.checkin_id, outcome.event_id)
    return _message(200, "Thank you", "Your answers reached your care team. You can close this page.")


def _plain(exc: InvalidInput, plan: checkin.Plan) -> str:
    """The errors in the patient's words: each names its question (the field's own name after it)."""
    asked = {q.name: q.label for q in plan.check_in.questions}
    parts = [f"{asked.get(e.field or '', e.field)} ({e.field}): {e.message}" for e in exc.errors]
    return "Please check your answers: " + "; ".join(parts)


@router.get("/checkin-static/checkin.css")
async def checkin_stylesheet() -> FileResponse:
    return FileResponse(STATIC / "checkin.css", media_type="text/css")
