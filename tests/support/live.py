"""A real Temporal dev server (in memory, real time) with the production worker and the API app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from temporalio.testing import WorkflowEnvironment

from carepath.api.app import create_app
from carepath.service import CarepathService
from carepath.temporal import DATA_CONVERTER, bundled_binary, quiet_runtime
from db.engine import make_engine
from db.migrate import upgrade
from tests.support.temporal import TASK_QUEUE, MemorySink, running_worker


async def start_dev_server() -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=bundled_binary("temporal"),
        data_converter=DATA_CONVERTER,
        runtime=quiet_runtime(),
        ui=False,
    )


@asynccontextmanager
async def api_client(
    env: WorkflowEnvironment, database_url: str, sink: MemorySink | None = None
) -> AsyncIterator[tuple[httpx.AsyncClient, CarepathService]]:
    upgrade(database_url)
    engine = make_engine(database_url)
    service = CarepathService(env.client, engine, TASK_QUEUE)
    app = create_app(service=service)
    try:
        async with running_worker(env, engine, sink):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://carepath.test") as client:
                yield client, service
    finally:
        engine.dispose()


def sqlite_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'carepath.db'}"
