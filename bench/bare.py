"""A no-op workflow that sleeps like an episode: the bare-Temporal baseline for bench/live.py.

The workflow lives in this importable module (the sandbox rejects ``__main__``). Run its worker
in a process of its own, as bench/live.py does:

    .venv/bin/python -m bench.bare --address 127.0.0.1:7233 --task-queue bare [--max-cached 11000]
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from temporalio import workflow


@workflow.defn(name="BareEpisode")
class BareWorkflow:
    def __init__(self) -> None:
        self._done = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self._done)

    @workflow.update
    async def ping(self) -> str:
        return "pong"


async def serve(address: str, task_queue: str, max_cached: int) -> None:
    from temporalio.client import Client
    from temporalio.worker import Worker

    from carepath.temporal import quiet_runtime

    client = await Client.connect(address, runtime=quiet_runtime())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Worker(client, task_queue=task_queue, workflows=[BareWorkflow], max_cached_workflows=max_cached):
        print("ready", flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", default="bare-bench")
    parser.add_argument("--max-cached", type=int, default=10_000)
    args = parser.parse_args()
    asyncio.run(serve(args.address, args.task_queue, args.max_cached))
    print("SUMMARY: bare worker stopped")


if __name__ == "__main__":
    main()
