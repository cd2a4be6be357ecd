"""One enrollment in a process of its own, so that a test can SIGKILL it at a chosen point.

It stands for the API process: ``CarepathService.enroll`` against a Temporal server and a
database, as ``POST /episodes`` runs it. Run it as ``python -m tests.support.enroll_process
--address HOST:PORT --task-queue Q --database-url URL --enrollment FILE --crash-at POINT``. It
prints ``enrolled <episode id>`` (or ``refused <status> <message>``) unless it dies first.

Crash points (``POINTS``), each a SIGKILL of this process, so no ``except``/``finally`` runs:

- ``reserve-before-commit``: the reservation row is written but its transaction not committed;
- ``reserved``: the reservation is committed, nothing sent to Temporal;
- ``start-before-send``: update-with-start is about to be sent;
- ``start-sent``: Temporal has the workflow (seen by describing it), the reply is not back
  (the test keeps the worker down so that the baseline is not recorded yet);
- ``answered``: the baseline is recorded and the reply is back, the response not yet sent;
- ``none``: no crash.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

POINTS = ("reserve-before-commit", "reserved", "start-before-send", "start-sent", "answered", "none")


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.support.enroll_process")
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--enrollment", required=True, type=Path)
    parser.add_argument("--crash-at", choices=POINTS, default="none")
    return parser.parse_args(argv)


async def _run(args: argparse.Namespace) -> None:
    from sqlalchemy import event
    from sqlalchemy.orm import Session
    from temporalio import client as temporal_client
    from temporalio.service import RPCError

    from carepath.errors import InvalidInput
    from carepath.pathways.ovcf_lumbar.inputs import Enrollment
    from carepath.service import CarepathService, Conflict
    from carepath.temporal import DATA_CONVERTER, quiet_runtime
    from db.engine import make_engine

    point = args.crash_at
    watchers: list[asyncio.Task[None]] = []
    if point == "reserve-before-commit":
        event.listen(Session, "before_commit", lambda _: _die())
    elif point == "reserved":
        event.listen(Session, "after_commit", lambda _: _die())

    class Crash(temporal_client.Interceptor):
        def intercept_client(self, next: temporal_client.OutboundInterceptor) -> temporal_client.OutboundInterceptor:
            class Outbound(temporal_client.OutboundInterceptor):
                async def start_update_with_start_workflow(self, input: Any) -> Any:
                    if point == "start-before-send":
                        _die()
                    if point == "start-sent":
                        watchers.append(asyncio.create_task(_die_once_started(input.start_workflow_input.id)))
                    handle = await super().start_update_with_start_workflow(input)
                    if point == "answered":
                        await handle.result()
                        _die()
                    return handle

            return Outbound(next)

    client = await temporal_client.Client.connect(
        args.address, data_converter=DATA_CONVERTER, runtime=quiet_runtime(), interceptors=[Crash()]
    )

    async def _die_once_started(workflow_id: str) -> None:
        while True:
            try:
                await client.get_workflow_handle(workflow_id).describe()
                _die()
            except RPCError:
                await asyncio.sleep(0.02)

    engine = make_engine(args.database_url)
    service = CarepathService(client, engine, args.task_queue, pathway_version=1, update_wait=600)  # kills, not bounds
    enrollment = Enrollment.model_validate_json(args.enrollment.read_text())
    try:
        enrolled = await service.enroll(enrollment, "coordinator:faults")
    except (Conflict, InvalidInput) as exc:
        print(f"refused {type(exc).__name__} {exc}", flush=True)
        return
    print(f"enrolled {enrolled.episode_id}", flush=True)


def main(argv: list[str] | None = None) -> None:
    asyncio.run(_run(_arguments(argv)))
    sys.stdout.flush()
    os._exit(0)  # the SDK sometimes hangs at interpreter exit (ENGINEERING.md)


if __name__ == "__main__":
    main()
