"""Every 4xx names the field; no 5xx carries a traceback."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError

from carepath.access import Forbidden, Unauthorized
from carepath.api.security import secured
from carepath.errors import FieldError, InvalidInput, from_error_list
from carepath.outbox import RETRY_AFTER_SECONDS
from carepath.service import Conflict, NotFound, Unavailable
from workflows.client import passing_cause

log = logging.getLogger("carepath.api")


def _body(errors: list[FieldError]) -> dict[str, object]:
    return {"detail": [{"field": e.field, "message": e.message} for e in errors]}


def request_errors(exc: RequestValidationError) -> list[FieldError]:
    """FastAPI's errors named by the field path inside their source (or the source itself)."""
    errors = []
    for err in exc.errors():
        source, *rest = err["loc"] or ("body",)
        if err["type"] == "json_invalid":
            reason = err.get("ctx", {}).get("error", "")
            errors.append(FieldError("body", f"is not valid JSON ({reason})" if reason else "is not valid JSON"))
            continue
        # An event body's union tag (its own "type") sits between "body" and the field.
        body = exc.body
        if rest and isinstance(body, dict) and body.get("type") == rest[0]:
            rest = rest[1:]
        field = from_error_list([{**err, "loc": tuple(rest)}]).errors[0]
        errors.append(FieldError(field.field or str(source), field.message))
    return errors


# The pages and their forms answer HTML, also when the service is unavailable.
_PAGES = ("/ui/", "/login", "/logout", "/checkin/")


def _is_page(request: Request) -> bool:
    return request.url.path == "/" or request.url.path.startswith(_PAGES)


# How the pages answer when the service is unavailable (given by the composition root: the API
# does not render pages).
PageAnswer = Callable[[Request, str, dict[str, str]], Response]
_page_answer: list[PageAnswer] = []


def _unavailable_answer(request: Request, message: str, retry_after: int) -> Response:
    headers = {"Retry-After": str(retry_after)}
    if _is_page(request) and _page_answer:
        return _page_answer[0](request, message, headers)
    return JSONResponse(status_code=503, content=_body([FieldError("", message)]), headers=headers)


# Starlette's own refusals (no such route, wrong method, an unparsable body) in the same shape.
_HTTP_FIELDS = {400: "body", 404: "path", 405: "method"}


# Bad input: each problem named by its field, nothing changed.


async def _request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse(status_code=422, content=_body(request_errors(exc)))


async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    # FastAPI answers 400 for a body it cannot parse at all (e.g. nested past the parser's
    # depth): that is bad input like any other malformed JSON.
    status = 422 if exc.status_code == 400 else exc.status_code
    message = exc.detail if isinstance(exc.detail, str) else "refused"
    field = _HTTP_FIELDS.get(exc.status_code, "")
    return JSONResponse(status_code=status, content=_body([FieldError(field, message)]), headers=exc.headers)


async def _invalid(_: Request, exc: InvalidInput) -> JSONResponse:
    return JSONResponse(status_code=422, content=_body(exc.errors))


# Who is asking: no valid token (401), or a role that may not (403).


async def _unauthorized(_: Request, exc: Unauthorized) -> JSONResponse:
    return JSONResponse(
        status_code=401,
        content=_body([FieldError("Authorization", str(exc))]),
        headers={"WWW-Authenticate": "Bearer"},
    )


async def _forbidden(_: Request, exc: Forbidden) -> JSONResponse:
    return JSONResponse(status_code=403, content=_body([FieldError("Authorization", str(exc))]))


# What is recorded: no such thing (404), or a clash with it (409).


async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
    return JSONResponse(status_code=404, content=_body([FieldError(exc.field, str(exc))]))


async def _conflict(_: Request, exc: Conflict) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return JSONResponse(status_code=409, content=_body([exc.error]), headers=headers)


# Outages: Temporal or the database unavailable (503 with Retry-After; a page answers a page).


async def _unavailable(request: Request, exc: Unavailable) -> Response:
    return _unavailable_answer(request, exc.error.message, exc.retry_after)


async def _temporal_refused(request: Request, exc: RPCError) -> Response:
    """Temporal unreachable (or refusing for now) outside a bounded write: nothing was changed."""
    cause = passing_cause(exc)
    if cause is None:
        return await _unexpected(request, exc)
    log.warning("%s on %s %s (%s)", cause, request.method, request.url.path, exc.status.name if exc.status else "")
    return _unavailable_answer(request, f"{cause}; nothing was changed, retry shortly", RETRY_AFTER_SECONDS)


async def _database_down(request: Request, exc: OperationalError) -> Response:
    log.warning("database unavailable on %s %s", request.method, request.url.path)
    return _unavailable_answer(
        request, "the database is unavailable; nothing was changed, retry shortly", RETRY_AFTER_SECONDS
    )


# Anything else: logged, answered 500 without a traceback.


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    # Starlette re-raises the exception after this answer and the server drops the connection:
    # say so, so that a client does not reuse it.
    # Answered by Starlette's outermost middleware, past the hardening one: secured here.
    return secured(
        JSONResponse(
            status_code=500,
            content=_body([FieldError("", "internal error; it has been logged")]),
            headers={"Connection": "close"},
        )
    )


HANDLERS: dict[type[Exception], Callable[[Request, Any], Awaitable[Response]]] = {
    RequestValidationError: _request_invalid,
    StarletteHTTPException: _http,
    InvalidInput: _invalid,
    Unauthorized: _unauthorized,
    Forbidden: _forbidden,
    NotFound: _not_found,
    Conflict: _conflict,
    Unavailable: _unavailable,
    RPCError: _temporal_refused,
    OperationalError: _database_down,
    Exception: _unexpected,
}


def install(app: FastAPI, unavailable_page: PageAnswer | None = None) -> None:
    if unavailable_page is not None:
        _page_answer[:] = [unavailable_page]
    for family, handler in HANDLERS.items():
        app.add_exception_handler(family, handler)
