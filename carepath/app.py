"""The composition root: the one app that serves the JSON API (``carepath.api``) and the pages
(``carepath.web``), with the service they share. Run with ``carepath api`` (or inside
``carepath dev``). Neither edge knows the other; only this module puts them together.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from carepath import __version__
from carepath.api import app as api
from carepath.codec import EncryptionCodec
from carepath.observability import RequestMetrics, instrument_app
from carepath.pathways import register_shipped
from carepath.service import CarepathService
from carepath.settings import Settings, load_settings
from carepath.web import site
from carepath.web.guard import unavailable_page

__all__ = ["create_app"]


def create_app(
    settings: Settings | None = None, service: CarepathService | None = None, codec: EncryptionCodec | None = None
) -> FastAPI:
    """The app; with no ``service`` it connects to Temporal and the database from ``settings``."""
    config = settings or load_settings()
    register_shipped()  # the boot list: the engine and the edges know pathways only through it

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if service is not None:  # injected (tests, `carepath dev`): nothing to open or close
            yield
            return
        from carepath.observability import tracing_interceptors
        from carepath.reconcile import drain_periodically, reconcile_periodically, sweep_schedule
        from carepath.temporal import connect
        from db.engine import make_engine

        engine = make_engine(config.database_url)
        client = await connect(
            config.temporal_address,
            config.temporal_namespace,
            converter=config.data_converter(),
            interceptors=tracing_interceptors(config.otel_exporter),
        )
        app.state.service = CarepathService.from_settings(client, engine, config)
        ring = config.key_ring()
        app.state.codec = EncryptionCodec(ring) if ring else None
        sweeps = [
            asyncio.create_task(reconcile_periodically(app.state.service, *sweep_schedule(config))),
            asyncio.create_task(drain_periodically(app.state.service, config.outbox_every_seconds)),
        ]
        yield
        for sweep in sweeps:
            sweep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweep
        engine.dispose()

    app = FastAPI(
        title="carepath",
        version=__version__,
        description="Durable care pathways: decision support, one workflow per episode "
        "(see /definitions for the pathways). Every write goes through the episode's workflow.",
        lifespan=lifespan,
        # Swagger UI and ReDoc load their script from a CDN, which the CSP (and no network) forbid:
        # /docs is a server-rendered reference of openapi.json instead (carepath.web.docs).
        docs_url=None,
        redoc_url=None,
    )
    if service is not None:
        app.state.service = service
        app.state.codec = codec
    api.install(app, config, unavailable_page=unavailable_page)
    site.install(app, config)
    app.add_middleware(RequestMetrics)
    instrument_app(app, config.otel_exporter)
    return app
