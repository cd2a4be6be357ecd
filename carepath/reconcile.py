"""Reconciliation: the enrollment sweep, and the database re-recorded from the workflows.

The sweep releases reservations that no workflow backs (``CarepathService.reconcile_enrollments``).

``carepath api`` and ``carepath dev`` run it every ``CAREPATH_RECONCILE_EVERY_SECONDS`` (60 s);
``carepath reconcile-enrollments`` runs it once. A reservation younger than
``CAREPATH_RESERVATION_TIMEOUT_SECONDS`` (120 s) is left alone: its request may still be about to
start the workflow.

``carepath reconcile`` (``reconcile_episodes``) repairs the database after a restore from a backup
older than Temporal's state, or lost rows: it replays every running episode's recorded decisions
(the ``record_changes`` inputs in its history, or what a local one returned) through the same
idempotent ``write_changes``, then runs the enrollment sweep. It also fills what a recording made
before migration 0013 did not write: the enrollment the workflow was started with (from its first
run's input, parsed as the workflow parses it) and the running episode's coming items (from its
state, as the clock runs).
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError

from activities.notifications import NotificationDispatcher, NotificationSink
from activities.recording import ChangeRecord, ComingItem, episode_status, write_changes
from carepath.engine.registry import pathway_for
from carepath.engine.state import EpisodeCore
from carepath.service import CarepathService, Reconciled
from carepath.settings import Settings
from db.repair import rewrite
from workflows.contracts import EpisodeStart

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)
# The marker Temporal's core SDK writes for a local activity: its result, not its input.
LOCAL_ACTIVITY_MARKER = "core_local_activity"


async def reconcile_periodically(service: CarepathService, every: float, older_than: timedelta) -> None:
    """Sweep now and every ``every`` seconds until cancelled; a failed sweep is retried next time."""
    while True:
        try:
            report = await service.reconcile_enrollments(older_than)
        except Exception as exc:  # Temporal or the database unreachable: nothing is lost by waiting
            log.warning("enrollment sweep failed (%s); next try in %.0f s", _cause(exc), every)
        else:
            for episode_id in report.released:
                log.warning("released enrollment reservation %s: no workflow backed it", episode_id)
        await asyncio.sleep(every)


async def drain_periodically(service: CarepathService, every: float) -> None:
    """Send the events left in the outbox (their request's process died, or gave up) every
    ``every`` seconds until cancelled; each is sent until its workflow answers."""
    while True:
        try:
            landed = await service.drain_outbox()
        except Exception as exc:
            log.warning("outbox sweep failed (%s); next try in %.0f s", _cause(exc), every)
        else:
            if landed:
                log.warning("outbox: %d event(s) left unsent by an earlier request are recorded now", landed)
        await asyncio.sleep(every)


def _cause(exc: Exception) -> str:
    """One line, no traceback: an outage is expected, its stack says nothing."""
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"


def sweep_schedule(settings: Settings) -> tuple[float, timedelta]:
    return settings.reconcile_every_seconds, timedelta(seconds=settings.reservation_timeout_seconds)


# ---- carepath reconcile: the database re-recorded from the workflows ----------------------------

RUNNING = 'WorkflowType="Episode" AND ExecutionStatus="Running"'
ANY_STATUS = 'WorkflowType="Episode"'


class EpisodesReconciled(BaseModel):
    episodes: int = 0  # workflows whose records were replayed
    changed: list[str] = []  # episodes that had something missing
    restored: dict[str, int] = {}  # rows written back, by table
    delivered: int = 0  # restored notifications delivered again (same delivery id: receivers dedupe)
    skipped: dict[str, str] = {}  # episode id -> why its records were not written
    enrollments: Reconciled = Reconciled()


async def recorded_history(client: Client, workflow: str) -> tuple[list[ChangeRecord], EpisodeStart | None]:
    """Every ``record_changes`` input of the workflow, oldest first, across its continue-as-new runs,
    and the oldest run's input (the enrollment it was started with).

    These are exactly what the workflow asked to be recorded (the rules' decisions, events, closures,
    audit entries); replaying them through ``write_changes`` is idempotent by each row's natural key.
    """
    runs: list[list[ChangeRecord]] = []
    run_id: str | None = None
    first: EpisodeStart | None = None  # the oldest run's input: the enrollment it was started with
    while True:
        records: list[ChangeRecord] = []
        previous = ""
        async for event in client.get_workflow_handle(workflow, run_id=run_id).fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
                started = event.workflow_execution_started_event_attributes
                previous = started.continued_execution_run_id
                (first,) = await client.data_converter.decode(started.input.payloads, [EpisodeStart])
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                scheduled = event.activity_task_scheduled_event_attributes
                if scheduled.activity_type.name == "record_changes":
                    records += await client.data_converter.decode(scheduled.input.payloads, [ChangeRecord])
            elif event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
                kept = _locally_recorded(event.marker_recorded_event_attributes)
                if kept is not None:
                    records += await client.data_converter.decode(kept, [ChangeRecord])
        runs.append(records)
        if not previous:
            break
        run_id = previous
    return [record for run in reversed(runs) for record in run], first


def with_stored_since(
    records: list[ChangeRecord], start: EpisodeStart | None, state: EpisodeCore | None, now: datetime
) -> list[ChangeRecord]:
    """``records`` with what recordings made before migration 0013 did not carry: the parsed
    enrollment on the record that opened the episode, and on the last record the running
    episode's coming items from its state (the projection the workflow would record now)."""
    if start is not None and start.enrollment is not None and start.definition is not None:
        pathway = pathway_for(start.definition.id)
        parsed = pathway.parse_enrollment(start.enrollment, "enrollment").model_dump(mode="json")
        records = [
            r.model_copy(update={"opened": r.opened.model_copy(update={"enrollment": parsed})})
            if r.opened is not None and r.opened.enrollment is None
            else r
            for r in records
        ]
    if records and state is not None and not (start is not None and start.simulated):
        items = pathway_for(state.definition.id).coming(state, now)
        coming = [ComingItem(due_on=i.on, code=i.code, assignee=i.assignee or "") for i in items]
        records = [*records[:-1], records[-1].model_copy(update={"coming": coming})]
    return records


def _locally_recorded(marker: Any) -> Any:
    """The record a successful local ``record_changes`` returned (its input is not in history)."""
    if marker.marker_name != LOCAL_ACTIVITY_MARKER or "result" not in marker.details:
        return None
    data = marker.details["data"].payloads
    if not data or json.loads(data[0].data).get("activity_type") != "record_changes":
        return None
    return marker.details["result"].payloads


def _rerecord(
    engine: Engine, episode_id: str, records: list[ChangeRecord], state: EpisodeCore | None
) -> dict[str, int]:
    """Write ``records`` again in one transaction; returns the rows that were missing, by table."""

    def write(session: Session) -> None:
        for record in records:
            write_changes(session, record, repair=True)

    # A decision that changed the phase alone records no items: take it from the workflow.
    phase = (state.phase, episode_status(state.phase)) if state is not None else None
    return rewrite(engine, episode_id, write, phase)


async def reconcile_episodes(
    service: CarepathService, include_closed: bool = False, sink: NotificationSink | None = None
) -> EpisodesReconciled:
    """Re-record every running episode (and closed ones still in Temporal, if asked) from its workflow.

    What is in the database stays, what is missing comes back, nothing doubles (a second run restores
    nothing). Restored notifications are delivered again through ``sink`` if one is given.
    """
    client, engine = service.client, service.engine
    report = EpisodesReconciled()
    async for execution in client.list_workflows(ANY_STATUS if include_closed else RUNNING):
        episode_id = execution.id.removeprefix("episode-")
        try:
            records, start = await recorded_history(client, execution.id)
            state = None
            if execution.status == WorkflowExecutionStatus.RUNNING:
                state = await service.episodes.state(episode_id)
            records = with_stored_since(records, start, state, service.clock())
            restored = await asyncio.to_thread(_rerecord, engine, episode_id, records, state)
        except ApplicationError as exc:  # its reservation was released: the workflow records nothing
            report.skipped[episode_id] = str(exc)
            continue
        except (IntegrityError, LookupError) as exc:  # e.g. the patient holds another active episode
            report.skipped[episode_id] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            continue
        report.episodes += 1
        if restored:
            report.changed.append(episode_id)
            for table, count in restored.items():
                report.restored[table] = report.restored.get(table, 0) + count
            if sink is not None and restored.get("notifications"):
                dispatcher = NotificationDispatcher(engine, sink)
                report.delivered += await asyncio.to_thread(dispatcher.deliver_episode, episode_id)
    return report
