"""Every 4xx names the field; no 5xx carries a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError

from carepath.api.auth import Forbidden, Unauthorized
from carepath.errors import FieldError, InvalidInput, from_error_list
from carepath.pathway.inputs import EVENT_TYPES
from carepath.service import Conflict, NotFound

log = logging.getLogger("carepath.api")

# FastAPI prefixes locations with where the value came from; the field path is what follows.
_SOURCES = frozenset({"body", "query", "path", "header"})


def _body(errors: list[FieldError]) -> dict[str, object]:
    return {"detail": [{"field": e.field, "message": e.message} for e in errors]}


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = from_error_list(exc.errors(), skip=EVENT_TYPES | _SOURCES).errors
        return JSONResponse(status_code=422, content=_body(errors))

    @app.exception_handler(InvalidInput)
    async def _invalid(_: Request, exc: InvalidInput) -> JSONResponse:
        return JSONResponse(status_code=422, content=_body(exc.errors))

    @app.exception_handler(Conflict)
    async def _conflict(_: Request, exc: Conflict) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
        return JSONResponse(status_code=409, content=_body([exc.error]), headers=headers)

    @app.exception_handler(Unauthorized)
    async def _unauthorized(_: Request, exc: Unauthorized) -> JSONResponse:
        return JSONResponse(
            status_code=401,
            content=_body([FieldError("Authorization", str(exc))]),
            headers={"WWW-Authenticate": "Bearer"},
        )

    @app.exception_handler(Forbidden)
    async def _forbidden(_: Request, exc: Forbidden) -> JSONResponse:
        return JSONResponse(status_code=403, content=_body([FieldError("Authorization", str(exc))]))

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse(status_code=404, content=_body([FieldError("", str(exc))]))

    @app.exception_handler(OperationalError)
    async def _database_down(request: Request, exc: OperationalError) -> JSONResponse:
        log.warning("database unavailable on %s %s", request.method, request.url.path)
        return JSONResponse(
            status_code=503,
            content=_body([FieldError("", "the database is unavailable; nothing was changed, retry shortly")]),
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(status_code=500, content=_body([FieldError("", "internal error; it has been logged")]))
