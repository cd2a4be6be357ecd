"""The outbox as clinicians see it: ``GET /notifications`` (``status=failed``: deliveries that failed
and are being retried)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from carepath.access import CLINICIANS, Principal, allow
from carepath.service import CarepathService
from db.queries import notifications as outbox

router = APIRouter(tags=["notifications"])


def _service(request: Request) -> CarepathService:
    return request.app.state.service


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


@router.get("/notifications")
async def notifications(
    request: Request,
    _: Annotated[Principal, Depends(allow(*CLINICIANS))],
    status: Literal["pending", "failed", "delivered"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[NotificationView]:
    """The outbox: ``status=failed`` lists deliveries that failed and are being retried."""
    rows = outbox(_service(request).engine, status, limit)
    return [NotificationView.model_validate(row, from_attributes=True) for row in rows]
