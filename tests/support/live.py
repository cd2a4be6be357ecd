"""A real Temporal dev server (in memory, real time) with the production worker and the API app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI
from temporalio.testing import WorkflowEnvironment

from carepath.app import create_app
from carepath.codec import EncryptionCodec
from carepath.service import CarepathService
from carepath.temporal import DATA_CONVERTER, bundled_binary, quiet_runtime
from db.engine import make_engine
from db.migrate import upgrade
from db.tokens import ROLES, create_token
from tests.support.temporal import TASK_QUEUE, MemorySink, running_worker


async def start_dev_server() -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=bundled_binary("temporal"),
        data_converter=DATA_CONVERTER,
        runtime=quiet_runtime(),
        ui=False,
    )


@dataclass
class LiveApi:
    client: httpx.AsyncClient  # authorised as a physician unless a test says otherwise
    service: CarepathService
    tokens: dict[str, str]  # role -> bearer token
    app: FastAPI

    def auth(self, role: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"} if role else {"Authorization": ""}


@asynccontextmanager
async def api_client(
    env: WorkflowEnvironment, database_url: str, sink: MemorySink | None = None, codec: EncryptionCodec | None = None
) -> AsyncIterator[LiveApi]:
    upgrade(database_url)
    engine = make_engine(database_url)
    service = CarepathService(env.client, engine, TASK_QUEUE)
    tokens = {role: create_token(engine, f"test-{role}", role, "test")[1] for role in ROLES}
    app = create_app(service=service, codec=codec)
    try:
        async with running_worker(env, engine, sink):
            transport = httpx.ASGITransport(app=app)
            headers = {"Authorization": f"Bearer {tokens['physician']}"}
            async with httpx.AsyncClient(
                transport=transport, base_url="http://carepath.test", headers=headers
            ) as client:
                yield LiveApi(client, service, tokens, app)
    finally:
        engine.dispose()


def sqlite_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'carepath.db'}"


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """Serve ``app`` over real HTTP on a free loopback port; yields the base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
