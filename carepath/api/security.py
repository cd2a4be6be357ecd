"""Input hardening and response headers for every request."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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

    app.add_middleware(Hardening, limit=limit)


class Hardening:
    """The body limit and the security headers, as a plain ASGI middleware: ``@app.middleware``
    runs each request through a task group and memory streams, a cost paid on every write."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _securing(send)
        if (scope["method"], scope["path"]) in STREAMED:
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _too_large(self.limit)(scope, receive, send)
            return
        if scope["method"] in ("POST", "PUT", "PATCH") and declared is None:
            # A chunked body has no declared size: read it with the limit applied, then hand it on.
            body = await _read_within(receive, self.limit)
            if body is None:
                await _too_large(self.limit)(scope, receive, send)
                return
            receive = _replaying(body, receive)
        await self.app(scope, receive, send)


def _securing(send: Send) -> Send:
    async def securing(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            for name, value in SECURITY_HEADERS.items():
                if name not in headers:
                    headers[name] = value
        await send(message)

    return securing


async def _read_within(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None once it is over ``limit`` bytes."""
    body, more = b"", True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) > limit:
            return None
    return body


def _replaying(body: bytes, receive: Receive) -> Receive:
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: the disconnect, when it comes

    return replay


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse(
        status_code=413, content={"detail": [{"field": "body", "message": f"request body over {limit} bytes"}]}
    )
