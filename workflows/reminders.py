"""Starting the check-in reminders: one ``CheckInReminderWorkflow`` per unanswered check-in,
started beside the workflow it starts (an activity module never starts workflows). The worker
wires ``ReminderStarter.start`` before each episode delivery (worker.py)."""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import Executor

from sqlalchemy import Engine
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.followup import ReminderStart
from db.checkins import waiting_reminders
from workflows.checkin import CheckInReminderWorkflow


def reminder_workflow_id(checkin_id: int) -> str:
    return f"checkin-{checkin_id}"


class ReminderStarter:
    """Starts the reminders of an episode's new check-ins on ``task_queue``."""

    def __init__(self, engine: Engine, executor: Executor, task_queue: str) -> None:
        self.engine = engine
        self.executor = executor
        self.task_queue = task_queue

    async def start(self, episode_id: str, client: Client | None = None) -> None:
        """One reminder workflow per unanswered check-in of the episode (idempotent: the id is
        ``checkin-<id>`` and a closed one is never started again). ``client``: the running
        activity's, unless given."""
        loop = asyncio.get_running_loop()
        waiting = await loop.run_in_executor(self.executor, waiting_reminders, self.engine, episode_id)
        client = client or activity.client()
        for checkin_id, days in waiting:
            with contextlib.suppress(WorkflowAlreadyStartedError):
                await client.start_workflow(
                    CheckInReminderWorkflow.run,
                    ReminderStart(checkin_id=checkin_id, remind_after_days=days),
                    id=reminder_workflow_id(checkin_id),
                    task_queue=self.task_queue,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                )
