"""The MLLP listener in a process of its own, so that a test can SIGKILL it at a chosen point.

``python -m tests.support.intake_process --database-url URL --port PORT --crash-at POINT`` prints
``listening PORT`` once it accepts connections. Crash points, each a SIGKILL of this process (no
``except`` or ``finally`` runs, the ACK is never sent):

- ``before-commit``: the message's rows are written, their transaction not committed (the
  connection's commit event, before the database commits);
- ``after-commit``: the transaction is committed (the writer's batch has returned), the ACK not
  yet sent;
- ``none``: no crash.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

POINTS = ("before-commit", "after-commit", "none")


def _die(*_: object) -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


async def _run(args: argparse.Namespace) -> None:
    from sqlalchemy import Engine, event

    from carepath.intake.mllp import MllpServer
    from carepath.intake.receive import BatchWriter
    from carepath.pathways import register_shipped
    from db.engine import make_engine

    register_shipped()  # as every entry point does at boot
    if args.crash_at == "before-commit":
        event.listen(Engine, "commit", _die)
    elif args.crash_at == "after-commit":
        stored = BatchWriter._read_and_store

        def store_then_die(self: BatchWriter, jobs: list) -> list:
            stored(self, jobs)
            _die()
            return []

        BatchWriter._read_and_store = store_then_die  # type: ignore[method-assign]
    engine = make_engine(args.database_url)
    async with MllpServer(engine, "127.0.0.1", args.port) as server:
        print(f"listening {server.bound_port}", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.intake_process")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--crash-at", choices=POINTS, default="none")
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()
