"""The JSON API over the carepath service: one router per resource (``episodes``, ``tasks``,
``definitions``, ``tokens``, ``codec``, ``notifications``, ``intake``: FHIR in and the candidates,
``measures``, ``imports``, ops), its error answers and its hardening. Shared typed dependencies are in
``carepath.api.deps``. The app that serves it (with the pages) is composed in ``carepath.app``.
"""

from __future__ import annotations

from fastapi import FastAPI

from carepath.api import (
    definitions,
    episodes,
    errors,
    imports,
    intake,
    measures,
    notifications,
    schema,
    security,
    tasks,
    tokens,
)
from carepath.api.codec import router as codec_router
from carepath.api.deps import MAX_ID
from carepath.api.errors import PageAnswer
from carepath.api.ops import router as ops_router
from carepath.settings import Settings

__all__ = ["MAX_ID", "install"]


def install(app: FastAPI, config: Settings, unavailable_page: PageAnswer | None = None) -> None:
    """The API's routes, error answers and hardening on ``app``; ``unavailable_page`` answers a
    page's request when the service is unavailable (the pages' own 503 page)."""
    errors.install(app, unavailable_page)
    schema.install(app)  # request bodies and error answers in the OpenAPI document
    security.install(app, config)
    # Links in messages: the configured address, else (unset) the address this server is reached at.
    app.state.public_url = config.public_url if "public_url" in config.model_fields_set else None

    @app.get("/health", tags=["ops"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    routers = (episodes, tasks, definitions, tokens, notifications, intake, measures, imports)
    for router in (*(r.router for r in routers), codec_router, ops_router):
        app.include_router(router)
    app.add_middleware(intake.FhirOutcomes)  # outside the hardening: every 4xx under /fhir is FHIR
