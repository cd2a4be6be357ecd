"""Input hardening and response headers for every request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from carepath.settings import Settings
from db.sessions import SessionPolicy

# Pages set their own policy (allowing their stylesheet); everything else loads nothing.
API_CSP = "default-src 'none'; frame-ancestors 'none'"
# On every answer, refusals (404, 413, 500, ...) included; a page's own values are kept.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": API_CSP,
    "X-Frame-Options": "DENY",
    # Patient data must not linger in shared caches.
    "Cache-Control": "no-store",
}


def secured(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


# Routes that read their body as a stream under their own limit (CAREPATH_IMPORT_MAX_BYTES).
STREAMED = frozenset({("POST", "/imports")})


def install(app: FastAPI, settings: Settings) -> None:
    limit = settings.max_request_bytes
    app.state.import_max_bytes = settings.import_max_bytes
    app.state.session_policy = SessionPolicy(
        idle=timedelta(minutes=settings.session_idle_minutes),
        absolute=timedelta(hours=settings.session_absolute_hours),
    )
    origins = [o.strip() for o in settings.codec_cors_origins.split(",") if o.strip()]
    if origins:
        # The Temporal UI calls /codec from the browser with the reader's bearer token.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["POST"],
            allow_headers=["Authorization", "Content-Type", "X-Namespace"],
        )

    @app.middleware("http")
    async def harden(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if (request.method, request.url.path) in STREAMED:
            return secured(await call_next(request))
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return secured(_too_large(limit))
        if request.method in ("POST", "PUT", "PATCH") and declared is None:
            # A chunked body has no declared size: read it with the limit applied.
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    return secured(_too_large(limit))
            request._body = body  # starlette re-reads the cached body downstream
        return secured(await call_next(request))


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse(
        status_code=413, content={"detail": [{"field": "body", "message": f"request body over {limit} bytes"}]}
    )
