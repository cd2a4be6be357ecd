"""A no-op workflow that sleeps like an episode: the bare-Temporal baseline for bench/live.py."""

from __future__ import annotations

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
