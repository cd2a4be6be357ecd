"""The patient's check-in page (``/checkin/{token}``, no sign-in) and the failed-deliveries list.

The page is the only thing a check-in link opens. It records a pain assessment through the
episode's workflow (the same path and validation as ``POST /episodes/{id}/events``), once.
The security reasoning is in carepath/checkin.py.
"""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi_csrf_protect.exceptions import CsrfProtectError
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from carepath import checkin
from carepath.api.auth import CLINICIANS, Principal, allow
from carepath.engine.definition import local_date
from carepath.errors import InvalidInput
from carepath.pathways.ovcf_lumbar.definition import load_definition
from carepath.service import CarepathService
from carepath.web import drafts
from carepath.web.pages import FORGED, _from_this_page, render
from db.models import NotificationRow

STATIC = FilePath(__file__).resolve().parent.parent / "web" / "static"
GONE = (
    "This check-in link cannot be used any more: it was already answered, it has expired, or it is not a "
    "link we sent. Nothing was changed. If you want to tell us how you are, please call your care team."
)
SLOW_DOWN = "Too many tries in a short time. Please wait a minute and try again."
ANALGESICS = [
    ("acetaminophen", "Paracetamol (acetaminophen)"),
    ("nsaid", "Ibuprofen, naproxen or similar"),
    ("opioid", "Opioid (e.g. tramadol, codeine, morphine)"),
]
MOBILITY = [
    ("ambulatory", "I get around on my own"),
    ("limited", "I can move, but only a little or with help"),
    ("bed_rest", "I stay in bed most of the day"),
]
EFFECTS = [("sedation", "Very sleepy or drowsy"), ("nausea", "Feeling sick"), ("fall", "I had a fall")]
# Words people use for the 0-10 scale (the NRS anchors).
NRS_WORDS = {
    0: "no pain",
    1: "",
    2: "mild",
    3: "",
    4: "moderate",
    5: "",
    6: "",
    7: "severe",
    8: "",
    9: "",
    10: "worst pain imaginable",
}

router = APIRouter(include_in_schema=False)
api = APIRouter(tags=["notifications"])


def _service(request: Request) -> CarepathService:
    return request.app.state.service


def _limiter(request: Request) -> checkin.RateLimiter:
    state = request.app.state
    if getattr(state, "checkin_limiter", None) is None:
        state.checkin_limiter = checkin.RateLimiter()
    return state.checkin_limiter


def _allowed(request: Request, token: str) -> bool:
    """5 tries a minute per link and per client address (the token's hash keys it: no token in memory)."""
    client = request.client.host if request.client else "unknown"
    return _limiter(request).allow(f"token:{checkin.hash_token(token)}", f"client:{client}")


def _page(template: str, status: int, request: Request | None = None, **context: Any) -> HTMLResponse:
    return render(template, status, request, **context)


def _gone() -> HTMLResponse:
    return _page("checkin_message.html", 404, heading="This link cannot be used", message=GONE)


def _today(request: Request) -> Any:
    return local_date(load_definition(), _service(request).clock())


def _form(request: Request, token: str, draft: drafts.Draft = drafts.EMPTY) -> Response:
    return _page(
        "checkin.html",
        200,
        request,
        token=token,
        draft=draft,
        nrs_words=NRS_WORDS,
        analgesics=ANALGESICS,
        mobility=MOBILITY,
        effects=EFFECTS,
    )


def _ask_again(request: Request, token: str, answers: dict[str, Any], exc: InvalidInput) -> Response:
    """Back to the questions (post/redirect/get), every answer kept, each problem beside its question."""
    values = {k: v if isinstance(v, list) else [str(v)] for k, v in answers.items() if k != "csrf_token" and v}
    questions = ("nrs", "analgesics", "adequate", "mobility", "symptoms_changed")
    errors = {(e.field if e.field in questions else "form"): e.message for e in exc.errors}
    draft = drafts.Draft("checkin", values, errors)
    return drafts.redirect_back(request, f"/checkin/{token}", draft) or _form(request, token, draft)


@router.get("/checkin/{token}")
async def checkin_page(request: Request, token: str) -> Response:
    draft = drafts.take(request)
    # The page a refused answer was sent back to costs no try: its answer (a POST) already did.
    if not draft.form and not _allowed(request, token):
        return _page("checkin_message.html", 429, heading="Please wait", message=SLOW_DOWN)
    found = checkin.find(_service(request).engine, token, _today(request))
    if found.checkin_id is None:
        return _gone()
    checkin.mark_opened(_service(request).engine, found.checkin_id, checkin.utcnow())
    return _form(request, token, draft)


async def _answers(request: Request) -> dict[str, Any] | None:
    """The posted answers if the form came from this page (origin + CSRF token), else None."""
    if not _from_this_page(request):
        return None
    try:
        form = await request.form()
        await request.app.state.csrf.validate_csrf(request)
    except (CsrfProtectError, ValueError, HTTPException):
        return None
    many = ("analgesics", "opioid_effects")
    return {k: ([v for v in form.getlist(k) if isinstance(v, str)] if k in many else form.get(k)) for k in form}


@router.post("/checkin/{token}")
async def checkin_answer(request: Request, token: str) -> Response:
    if not _allowed(request, token):
        return _page("checkin_message.html", 429, heading="Please wait", message=SLOW_DOWN)
    service = _service(request)
    answers = await _answers(request)
    if answers is None:
        return _page("checkin_message.html", 403, heading="Not sent", message=FORGED)
    found = checkin.find(service.engine, token, _today(request))
    if found.checkin_id is None or found.episode_id is None:
        return _gone()
    try:
        event = checkin.answer_event(answers, _today(request))
    except InvalidInput as exc:  # nothing claimed: the link stays usable
        return _ask_again(request, token, answers, exc)
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
        return _ask_again(request, token, answers, exc)
    except Exception:
        checkin.settle(service.engine, found.checkin_id, None)
        raise
    checkin.settle(service.engine, found.checkin_id, outcome.event_id)
    return _page(
        "checkin_message.html",
        200,
        heading="Thank you",
        message="Your answers reached your care team. You can close this page.",
    )


@router.get("/checkin-static/checkin.css")
async def checkin_stylesheet() -> FileResponse:
    return FileResponse(STATIC / "checkin.css", media_type="text/css")


class NotificationView(BaseModel):
    id: int
    episode_id: str | None
    code: str
    occasion: str
    recipient_role: str
    subject: str
    status: str
    attempts: int
    last_error: str | None
    created_at: Any
    delivered_at: Any


@api.get("/notifications")
async def notifications(
    request: Request,
    _: Annotated[Principal, Depends(allow(*CLINICIANS))],
    status: Literal["pending", "failed", "delivered"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[NotificationView]:
    """The outbox: ``status=failed`` lists deliveries that failed and are being retried."""
    query = select(NotificationRow).order_by(NotificationRow.id.desc()).limit(limit)
    if status is not None:
        query = query.where(NotificationRow.status == status)
    with Session(_service(request).engine) as session:
        return [NotificationView.model_validate(row, from_attributes=True) for row in session.scalars(query)]


def failed_count(engine: Any) -> int:
    from sqlalchemy import func

    with Session(engine) as session:
        return (
            session.scalar(select(func.count()).select_from(NotificationRow).where(NotificationRow.status == "failed"))
            or 0
        )
