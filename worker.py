"""The carepath worker: runs episode workflows and their activities against a Temporal server
and a database, both taken from settings (``CAREPATH_TEMPORAL_ADDRESS``, ``CAREPATH_DATABASE_URL``).

Run it with ``python worker.py`` or ``carepath worker``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities import channels
from activities.followup import FollowUp
from activities.notifications import NotificationDispatcher, NotificationSink
from activities.recording import EpisodeRecorder
from carepath.engine.registry import pathways
from carepath.measures import fill_kept_facts_in_background
from carepath.messages import DEFAULT_PUBLIC_URL
from carepath.observability import configure_logging, tracing_interceptors, worker_runtime
from carepath.pathways import register_shipped
from carepath.schedules import ensure_schedules
from carepath.settings import Settings, load_settings
from carepath.temporal import connect
from db.engine import make_engine
from db.migrate import upgrade
from workflows.checkin import CheckInReminderWorkflow, CheckInSentWorkflow, UrgentWatchWorkflow
from workflows.digest import DigestWorkflow
from workflows.episode import EpisodeWorkflow
from workflows.reminders import ReminderStarter

# The workflow modules pass through the sandbox instead of being imported again for every new
# workflow instance: that import re-ran workflows/episode.py and its @workflow.defn checks, 21-23%
# of the worker's CPU while enrolling (py-spy, bench/write_path.py --profile). They are safe to
# share: no module state, and everything they import is passed through already. What is lost is
# the sandbox's run-time check of calls made in their own code (datetime.now, random): the replay
# tests (tests/test_replay.py) run them under the full sandbox, which still makes that check.
# The packages they import are passed through by name as well: those imports then no longer run
# inside each instance's sandbox, and an import made there while a workflow runs (after its
# first load) gets the host's module too, never a fresh copy (e.g. a registry with no pathway).
WORKFLOW_MODULES = ("workflows.episode", "workflows.checkin", "workflows.digest")
WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(
        *WORKFLOW_MODULES, "workflows.contracts", "activities", "carepath", "db"
    )
)


def build_worker(
    client: Client,
    engine: Engine,
    task_queue: str,
    executor: ThreadPoolExecutor,
    sink: NotificationSink,
    max_cached_workflows: int = 10_000,
    max_concurrent_activities: int = 50,
    public_url: str = DEFAULT_PUBLIC_URL,
) -> Worker:
    register_shipped()  # before any workflow runs: pathways are never first imported in the sandbox
    recorder = EpisodeRecorder(engine, public_url)
    dispatcher = NotificationDispatcher(engine, sink, public_url, executor)
    followup = FollowUp(engine, dispatcher)
    # Each episode delivery first starts the reminders of its new check-ins (never blocking recording).
    dispatcher.before_delivery = ReminderStarter(engine, executor, task_queue).start
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[EpisodeWorkflow, CheckInReminderWorkflow, CheckInSentWorkflow, UrgentWatchWorkflow, DigestWorkflow],
        activities=[
            recorder.record_changes,
            dispatcher.deliver_notifications,
            followup.send_checkin_reminder,
            followup.renotify_urgent,
            followup.send_digests,
        ],
        activity_executor=executor,
        workflow_runner=WORKFLOW_RUNNER,
        max_cached_workflows=max_cached_workflows,
        max_concurrent_activities=max_concurrent_activities,
    )


def worker_from_settings(client: Client, engine: Engine, settings: Settings, executor: ThreadPoolExecutor) -> Worker:
    """The production worker as settings configure it (``carepath worker`` and ``carepath dev``)."""
    return build_worker(
        client,
        engine,
        settings.task_queue,
        executor,
        channels.sink(settings),
        settings.max_cached_workflows,
        settings.max_concurrent_activities,
        settings.public_url,
    )


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    register_shipped()
    fill_kept_facts_in_background(engine, pathways())  # episodes stored before the measures' facts
    client = await connect(
        settings.temporal_address,
        settings.temporal_namespace,
        runtime=worker_runtime(settings.worker_metrics_address),  # Prometheus /metrics when set
        converter=settings.data_converter(),
        interceptors=tracing_interceptors(settings.otel_exporter),
    )
    await ensure_schedules(client, settings.task_queue, settings.clinic_timezone or None)
    with ThreadPoolExecutor(max_workers=settings.max_concurrent_activities) as executor:
        worker = worker_from_settings(client, engine, settings, executor)
        async with worker:
            logging.info("worker polling %s on %s", settings.task_queue, settings.temporal_address)
            await stop.wait()
    engine.dispose()


def main() -> None:
    settings = load_settings()
    configure_logging(settings.log_format)

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, stop)

    asyncio.run(_main())


if __name__ == "__main__":
    main()
