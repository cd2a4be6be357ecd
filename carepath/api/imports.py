"""``POST /imports``: many enrollments in one body, read line by line as it arrives.

The body is not held: lines are parsed and enrolled as they come (``carepath.importer``, the same
code and report as ``carepath import``), and the next bytes are read only when a lane is free, so
the sender's upload progress is the import's progress. The API's body limit
(``CAREPATH_MAX_REQUEST_BYTES``) does not apply; this route has its own
(``CAREPATH_IMPORT_MAX_BYTES``, and ``MAX_LINE_BYTES`` a line).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from carepath.api.deps import Clinician, Service
from carepath.api.schema import ERROR, ERROR_SCHEMAS, REF
from carepath.importer import MAX_LINE_BYTES, ImportCut, ImportReport, import_enrollments, split_lines

router = APIRouter(tags=["episodes"])
log = logging.getLogger("carepath.api")
# What a JSON-lines body is sent as; application/json is one enrollment a line all the same.
LINES_TYPES = ("application/x-ndjson", "application/jsonl", "application/json")
_STATUS = {"too_large": 413, "cut_short": 400}
# A body stopped early: the error, and the report of the lines read before it.
CUT = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "detail": ERROR_SCHEMAS["ErrorAnswer"]["properties"]["detail"],
                    "report": {"$ref": REF.format(model="ImportReport")},
                },
            }
        }
    }
}


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


def _log_cut(work: asyncio.Future[ImportReport]) -> None:
    """An import that stopped early, in the log (its sender may no longer be there to be told)."""
    cut = None if work.cancelled() else work.exception()
    if isinstance(cut, ImportCut) and cut.report is not None:
        log.warning("import stopped: %s (%s)", cut.message, cut.report.summary())
    elif cut is not None:
        log.error("import failed: %s", cut, exc_info=cut)


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
        400: {"description": "the connection closed mid-body: `report` says what the lines read did", **CUT},
        413: {
            "description": "over CAREPATH_IMPORT_MAX_BYTES: refused before reading when Content-Length says so, "
            "else the lines read before the limit were imported and `report` says how",
            **CUT,
        },
        415: {
            "description": "the body is not sent as application/x-ndjson (or application/jsonl, application/json)",
            "content": {"application/json": {"schema": ERROR}},
        },
    },
)
async def imports(request: Request, who: Clinician, service: Service) -> Response:
    """Enroll many patients: the body is JSON lines (``application/x-ndjson``), one enrollment per line.

    Each line is exactly a ``POST /episodes`` body. Each start is durable and does not wait for the
    baseline; patients already active are skipped, so a re-sent file enrolls only what is missing.

    **Any size, one request.** The body is read line by line as it arrives and 64 lines are enrolled
    at a time; the next bytes are read only as lines are done, so the upload's own progress is the
    import's progress, and the answer comes when the last line is done (about 150 lines a second
    on one dev server: give the client a long timeout). Limits: 65,536 bytes a line, and
    ``CAREPATH_IMPORT_MAX_BYTES`` (64 MiB, about 170,000 enrollments) in all; the API's request limit
    (``CAREPATH_MAX_REQUEST_BYTES``) does not apply here.

    **The answer** is the report ``carepath import --json`` prints: ``enrolled`` and
    ``already_active`` (line, episode id), ``rejected`` (line, field, message: bad input, nothing
    enrolled for that line) and ``failed`` (Temporal or the database unavailable: send the file
    again). A line that is over the line limit, not UTF-8 or not JSON is rejected naming ``line``
    (a last line cut short says so); the other lines are imported all the same. A body over the
    total limit answers 413: refused before reading when its Content-Length says so, else the
    lines before the limit were imported and the answer's ``report`` says how.
    """
    limit = request.app.state.import_max_bytes
    if (refused := _refused_up_front(request, limit)) is not None:
        return refused
    lines = split_lines(_chunks(request, limit), MAX_LINE_BYTES)
    # Shielded: if the sender goes away (the request is cancelled), the lines already read are
    # still enrolled, and no start is cut off between its reservation and its workflow.
    work = asyncio.ensure_future(import_enrollments(service, lines, who.actor))
    work.add_done_callback(_log_cut)
    try:
        report = await asyncio.shield(work)
    except ImportCut as cut:
        return _refusal(_STATUS[cut.reason], "body", cut.message, cut.report)
    return Response(report.model_dump_json(), media_type="application/json")
