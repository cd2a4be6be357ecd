"""Temporal helpers for tests: a time-skipping server, a production worker, clock driving."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.notifications import NotificationSink
from carepath.pathways.ovcf_lumbar.definition import load_definition
from carepath.pathways.ovcf_lumbar.inputs import Enrollment, parse_model
from carepath.temporal import DATA_CONVERTER, bundled_binary, quiet_runtime
from db.models import CheckInRow
from tests.support.story import base_enrollment
from worker import build_worker
from workflows.client import EpisodeClient
from workflows.episode import EpisodeWorkflow
from workflows.reminders import reminder_workflow_id

TASK_QUEUE = "carepath-tests"


async def start_time_skipping() -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=bundled_binary("temporal-test-server"),
        data_converter=DATA_CONVERTER,
        runtime=quiet_runtime(),
    )


class MemorySink:
    """Keeps delivered notifications; ``fail_next`` makes deliveries raise (a sink outage)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.fail_next = 0

    def deliver(self, message: dict[str, Any]) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("sink unavailable")
        self.messages.append(message)


@asynccontextmanager
async def running_worker(
    env: WorkflowEnvironment, engine: Engine, sink: NotificationSink | None = None
) -> AsyncIterator[None]:
    with ThreadPoolExecutor(max_workers=4) as threads:
        worker = build_worker(env.client, engine, TASK_QUEUE, threads, sink or MemorySink(), 100, 4)
        try:
            async with worker:
                yield
        finally:
            await stop_reminders(env, engine)


async def stop_reminders(env: WorkflowEnvironment, engine: Engine) -> None:
    """Terminate the check-in reminders this database's episodes started: they outlive their
    episode, and on a shared time-skipping server a timer waking with no worker stops the clock."""
    with Session(engine) as session:
        ids = session.scalars(select(CheckInRow.id)).all()
    for checkin_id in ids:
        with contextlib.suppress(RPCError):
            await env.client.get_workflow_handle(reminder_workflow_id(checkin_id)).terminate()


class Clock:
    """Day numbers on the test server's clock, day 0 pinned so that enrollment is at 08:00."""

    def __init__(self, env: WorkflowEnvironment, day0: datetime) -> None:
        self.env = env
        self.day0 = day0.date()

    @classmethod
    async def for_enrollment(cls, env: WorkflowEnvironment, enroll_day: int = 0) -> Clock:
        now = await env.get_current_time()
        enroll_on = now.astimezone(UTC).date() + timedelta(days=1)
        clock = cls(env, datetime.combine(enroll_on - timedelta(days=enroll_day), time(), UTC))
        await clock.to(enroll_day, time(8, 0))
        return clock

    def on(self, day: int) -> str:
        return (self.day0 + timedelta(days=day)).isoformat()

    async def to(self, day: int, clock: time = time(12, 0)) -> None:
        target = datetime.combine(self.day0 + timedelta(days=day), clock, UTC)
        now = await self.env.get_current_time()
        if target > now:
            await self.env.sleep(target - now)


async def start_episode(
    env: WorkflowEnvironment, clock: Clock, history_limit: int = 10_000, **enrollment: Any
) -> tuple[str, WorkflowHandle[Any, Any]]:
    """Enroll through the production start path (``EpisodeClient.start``: update-with-start)."""
    episode_id = uuid.uuid4().hex
    model = parse_model(Enrollment, base_enrollment(identified_on=clock.on(0), **enrollment))
    episodes = EpisodeClient(env.client, TASK_QUEUE)
    _, handle = await episodes.start(episode_id, model, load_definition(version=1), "test", history_limit=history_limit)
    return episode_id, handle


async def stop_episode(handle: WorkflowHandle[Any, Any]) -> None:
    """Terminate an episode once its notification deliveries have settled.

    An activity left running by a terminated workflow would hold the time-skipping clock.
    """
    for _ in range(200):
        view = await handle.query(EpisodeWorkflow.view)
        if not view.delivering:
            break
        await asyncio.sleep(0.01)
    with contextlib.suppress(RPCError):  # it may have completed on its own
        await handle.terminate()
