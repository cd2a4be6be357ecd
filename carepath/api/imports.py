"""``POST /imports``: many enrollments in one body, read line by line as it arrives.

The body is not held: lines are parsed and enrolled as they come (``carepath.importer``, the same
code and report as ``carepath import``), and the next bytes are read only when a lane is free, so
the sender's upload progress is the import's progress. The API's body limit
(``CAREPATH_MAX_REQUEST_BYTES``) does not apply; this route has its own
(``CAREPATH_IMPORT_MAX_BYTES``, and ``MAX_LINE_BYTES`` a line).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from carepath.api.deps import Clinician, Service
from carepath.importer import MAX_LINE_BYTES, ImportCut, ImportReport, import_enrollments, split_lines

router = APIRouter(tags=["episodes"])
# What a JSON-lines body is sent as; application/json is one enrollment a line all the same.
LINES_TYPES = ("application/x-ndjson", "application/jsonl", "application/json")
_STATUS = {"too_large": 413, "cut_short": 400}


def _refusal(status: int, field: str, message: str, report: ImportReport | None = None) -> JSONResponse:
    content: dict[str, Any] = {"detail": [{"field": field, "message": message}]}
    if report is not None:
        content["report"] = report.model_dump(mode="json")
    return JSONResponse(status_code=status, content=content)


async def _chunks(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive, stopped past ``limit`` bytes (0: no limit)."""
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if limit and received > limit:
                raise ImportCut("too_large", f"the import is over {limit} bytes (CAREPATH_IMPORT_MAX_BYTES)")
            yield chunk
    except ClientDisconnect:
        raise ImportCut("cut_short", "the connection closed before the body ended") from None


def _refused_up_front(request: Request, limit: int) -> JSONResponse | None:
    """A body this route cannot take, refused before anything is read or enrolled."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in LINES_TYPES:
        said = f"is {kind!r}" if kind else "is missing"
        return _refusal(415, "content-type", f"{said}: send the lines as application/x-ndjson (one enrollment a line)")
    declared = request.headers.get("content-length", "")
    if declared and (not declared.isdigit() or (limit and int(declared) > limit)):
        return _refusal(413, "body", f"the import is over {limit} bytes (CAREPATH_IMPORT_MAX_BYTES): nothing was read")
    return None


@router.post(
    "/imports",
    response_model=ImportReport,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/x-ndjson": {"schema": {"type": "string", "description": "one enrollment a line"}}},
        }
    },
    responses={
        400: {"description": "the connection closed mid-body: `report` says what the lines read did"},
        413: {
            "description": "over CAREPATH_IMPORT_MAX_BYTES: refused before reading when Content-Length says so, "
            "else the lines read before the limit were imported and `report` says how"
        },
        415: {"description": "the body is not sent as application/x-ndjson (or application/jsonl, application/json)"},
    },
)
async def imports(request: Request, who: Clinician, service: Service) -> Response:
    """Enroll many patients: the body is JSON lines (``application/x-ndjson``), one enrollment per line.

    Each start is durable and does not wait for the baseline; patients already active are skipped
    (a re-sent file enrolls only what is missing). The body is read line by line as it arrives,
    64 at a time being enrolled, so a file of any size up to ``CAREPATH_IMPORT_MAX_BYTES`` (256 MiB
    by default) goes in one request; the upload advances as lines are enrolled. Lines are refused
    one by one, naming the line and the field (a line over 65,536 bytes, not UTF-8 or not JSON names
    ``line``), and the good lines are imported. The answer is the report ``carepath import --json``
    prints: ``enrolled``, ``already_active``, ``rejected``, ``failed``, each by line number.
    """
    limit = request.app.state.import_max_bytes
    if (refused := _refused_up_front(request, limit)) is not None:
        return refused
    lines = split_lines(_chunks(request, limit), MAX_LINE_BYTES)
    try:
        report = await import_enrollments(service, lines, who.actor)
    except ImportCut as cut:
        return _refusal(_STATUS[cut.reason], "body", cut.message, cut.report)
    return Response(report.model_dump_json(), media_type="application/json")
