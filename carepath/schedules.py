"""Temporal Schedules carepath owns: the daily digest at 08:00 clinic time.

``ensure_schedules`` creates the schedule or updates it to this spec, so running it from every
worker start, ``carepath dev`` and ``carepath schedules`` is idempotent.
"""

from __future__ import annotations

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from carepath.engine.registry import default_pathway
from workflows.digest import DigestWorkflow

DIGEST_SCHEDULE = "carepath-daily-digest"
DIGEST_HOUR = 8


def digest_schedule(task_queue: str, timezone: str | None = None) -> Schedule:
    # Clinic time: the pathway's clock (where 09:00 milestones run), unless a setting says otherwise.
    zone = timezone or default_pathway().definition().clock.timezone
    return Schedule(
        action=ScheduleActionStartWorkflow(DigestWorkflow.run, id="digest", task_queue=task_queue),
        spec=ScheduleSpec(
            calendars=[
                ScheduleCalendarSpec(
                    hour=[ScheduleRange(DIGEST_HOUR)], minute=[ScheduleRange(0)], second=[ScheduleRange(0)]
                )
            ],
            time_zone_name=zone,
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_schedules(client: Client, task_queue: str, timezone: str | None = None) -> str:
    """Create the digest schedule, or update the existing one to this spec; returns its id."""
    schedule = digest_schedule(task_queue, timezone)
    try:
        await client.create_schedule(DIGEST_SCHEDULE, schedule)
    except ScheduleAlreadyRunningError:

        def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(DIGEST_SCHEDULE).update(replace)
    return DIGEST_SCHEDULE
