"""Operations routes: ``/metrics`` (Prometheus), ``/ready`` (database and Temporal reachable)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from carepath.engine.definition import local_date
from carepath.engine.registry import default_pathway
from carepath.observability import metrics_text
from carepath.service import CarepathService
from db.health import check_database

router = APIRouter(tags=["ops"])
# A readiness probe must answer quickly even when what it probes hangs.
READY_TIMEOUT = 3.0


def _service(request: Request) -> CarepathService:
    return request.app.state.service


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus text format: no patient data (counts by phase, code and status; route templates)."""
    service = _service(request)
    definition = default_pathway().definition()
    body = await asyncio.to_thread(metrics_text, service.engine, lambda: local_date(definition, service.clock()))
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    """200 when the database and Temporal both answer; 503 naming each that does not."""
    service = _service(request)
    checks = {
        "database": asyncio.to_thread(check_database, service.engine),
        "temporal": service.client.service_client.check_health(timeout=timedelta(seconds=READY_TIMEOUT)),
    }
    down = []
    for name, check in checks.items():
        try:
            await asyncio.wait_for(check, READY_TIMEOUT)
        except Exception as exc:
            down.append({"field": name, "message": f"{name} is unavailable ({type(exc).__name__})"})
    if down:
        return JSONResponse(status_code=503, content={"detail": down}, headers={"Retry-After": "5"})
    return JSONResponse({"status": "ready", "database": "ok", "temporal": "ok"})
