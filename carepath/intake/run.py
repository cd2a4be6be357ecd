"""`carepath intake`: the production HL7 v2 listener (MLLP), beside the API and the worker.

It needs only the database (CAREPATH_DATABASE_URL): candidates are confirmed on the pages or the
API, which go through the workflows.
"""

from __future__ import annotations

import asyncio
import signal

from carepath.intake.mllp import MllpLimits, MllpServer
from carepath.settings import Settings, load_settings
from db.engine import make_engine


def limits_of(settings: Settings) -> MllpLimits:
    return MllpLimits(
        max_bytes=settings.intake_max_bytes,
        max_connections=settings.intake_max_connections,
        idle_seconds=settings.intake_idle_seconds,
    )


async def run_intake(host: str, port: int, settings: Settings, stop: asyncio.Event) -> None:
    engine = make_engine(settings.database_url)
    try:
        async with MllpServer(engine, host, port, limits_of(settings)) as server:
            print(f"carepath intake: HL7 v2 (MLLP) on {host}:{server.bound_port}", flush=True)
            await stop.wait()
    finally:
        engine.dispose()


def main(host: str, port: int) -> int:
    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_intake(host, port, load_settings(), stop)

    asyncio.run(_main())
    return 0
