"""One small workflow per patient check-in: a durable timer, then at most one reminder.

Beside the episode workflow, not in it: what an episode decides is unchanged (its histories
replay as before); the coordinator's PAIN_REASSESSMENT_OVERDUE escalation stays the episode's.
Its id is ``checkin-<check-in id>``, so starting it twice starts it once.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.followup import FollowUp, ReminderDue, ReminderStart, UrgentDue, UrgentWatch
    from activities.notifications import NotificationDispatcher

# A sink outage must not lose the reminder: retry with backoff as the episode's deliveries do.
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(minutes=1)
)


@workflow.defn(name="CheckInReminder")
class CheckInReminderWorkflow:
    @workflow.run
    async def run(self, start: ReminderStart) -> bool:
        await workflow.sleep(timedelta(days=start.remind_after_days))
        return await workflow.execute_activity_method(
            FollowUp.send_checkin_reminder,
            ReminderDue(checkin_id=start.checkin_id, now=workflow.now()),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RETRY,
        )


@workflow.defn(name="CheckInSent")
class CheckInSentWorkflow:
    """A check-in link a person sent: deliver its message now (which also starts its reminder),
    beside the episode, whose history it never touches. Its id names the check-in, so it runs once."""

    @workflow.run
    async def run(self, episode_id: str) -> int:
        return await workflow.execute_activity_method(
            NotificationDispatcher.deliver_notifications,
            episode_id,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RETRY,
        )


@workflow.defn(name="UrgentWatch")
class UrgentWatchWorkflow:
    """An urgent item's second notification: a durable timer of the action's
    ``renotify_after_hours``, then one more message to its role if it is still open. Beside the
    episode (its history and timeline codes are untouched); id ``urgent-<task id>``, started once."""

    @workflow.run
    async def run(self, watch: UrgentWatch) -> bool:
        await workflow.sleep(timedelta(hours=watch.after_hours))
        return await workflow.execute_activity_method(
            FollowUp.renotify_urgent,
            UrgentDue(task_id=watch.task_id, after_hours=watch.after_hours, now=workflow.now()),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RETRY,
        )
