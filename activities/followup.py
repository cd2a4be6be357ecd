"""Follow-up beside the episode workflow: check-in reminders and the daily digest per role.

None of this changes what an episode decides: it reads the store the episode records into and
writes outbox rows of its own (patient reminders, digests), delivered by the same dispatcher.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from sqlalchemy import Engine
from temporalio import activity

from activities.notifications import NotificationDispatcher
from carepath.engine.definition import local_date
from carepath.engine.registry import default_pathway
from carepath.messages import due_words, episode_link
from db import checkins as checkin
from db import followup as store
from db import notifications as outbox

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

DIGEST_ROLES = ("coordinator", "physician")
DIGEST_CODE = "DIGEST"


class ReminderStart(BaseModel):
    checkin_id: int
    remind_after_days: int


class ReminderDue(BaseModel):
    checkin_id: int
    now: datetime  # the workflow's clock (simulated time on a time-skipping server)


class UrgentWatch(BaseModel):
    task_id: int
    after_hours: int


class UrgentDue(BaseModel):
    task_id: int
    after_hours: int
    now: datetime


STILL_OPEN = "still-open"  # the occasion suffix of an urgent item's second notification


class DigestRequest(BaseModel):
    now: datetime


class Digest(BaseModel):
    role: str
    on: str
    urgent_open: int = 0  # urgent items still open past their renotify time: the digest's head
    new_urgent: int
    overdue: int
    due_today: int
    per_assignee: dict[str, int]


class FollowUp:
    """Activities bound to a database and the dispatcher (the reminders' and urgent watches'
    workflows are started by ``workflows.reminders``, beside their workflow)."""

    def __init__(self, engine: Engine, dispatcher: NotificationDispatcher) -> None:
        self.engine = engine
        self.dispatcher = dispatcher

    @activity.defn(name="renotify_urgent")
    def renotify_urgent(self, due: UrgentDue) -> bool:
        """The second notification of an urgent item still open ``after_hours`` after it was raised,
        to its role; True if one is (now or before) in the outbox."""
        with store.transaction(self.engine) as session:
            found = store.open_urgent_task(session, due.task_id)
            if found is None:
                return False
            task, ref = found
            occasion = f"{task.occasion}:{STILL_OPEN}"[:64]
            key = f"{task.episode_id}:{task.code}@{occasion}"
            if not store.has_notification(session, key):
                store.add_notification(
                    session,
                    dedupe_key=key,
                    episode_id=task.episode_id,
                    code=task.code,
                    occasion=occasion,
                    recipient_role=task.assignee,
                    subject=f"[urgent] Still open after {due.after_hours} h: {task.title}",
                    body=(
                        f"Patient {ref}: {task.title}. Raised {task.raised_on.isoformat()} and nobody has "
                        f"acted on it for {due.after_hours} hours; it is due {task.raised_on.isoformat()}."
                    ),
                    created_at=due.now,
                )
        self.dispatcher.deliver_where(outbox.keyed(key))
        return True

    @activity.defn(name="send_checkin_reminder")
    def send_checkin_reminder(self, due: ReminderDue) -> bool:
        """One reminder if the check-in is still unanswered; True if one is (now or before) in the outbox."""
        episode_id = checkin.remind(self.engine, due.checkin_id, due.now, self.dispatcher.public_url)
        if episode_id is None:
            return False
        self.dispatcher.deliver_where(outbox.of_episode_code(episode_id, checkin.REMINDER_CODE))
        return True

    @activity.defn(name="send_digests")
    def send_digests(self, request: DigestRequest) -> list[Digest]:
        """One digest per role for the clinic's day of ``now``: written once per day, then delivered."""
        definition = default_pathway().definition()  # the clinic's day: the default pathway's clock
        today = local_date(definition, request.now)
        with store.transaction(self.engine) as session:
            open_tasks = store.open_tasks(session)
            urgent = store.urgent_items_since(session, request.now - timedelta(hours=24))
            per_assignee = dict(Counter(task.assignee for task, _ in open_tasks))
            hours = {code: a.renotify_after_hours for code, a in definition.actions.items() if a.renotify_after_hours}
            still_open = store.still_open_urgent(session, hours, request.now)
            digests = []
            for role in DIGEST_ROLES:
                sections = _sections(role, today, open_tasks, urgent, still_open)
                digest = Digest(
                    role=role,
                    on=today.isoformat(),
                    urgent_open=len(sections[0]),
                    new_urgent=len(sections[1]),
                    overdue=len(sections[2]),
                    due_today=len(sections[3]),
                    per_assignee=per_assignee,
                )
                digests.append(digest)
                self._write_digest(session, digest, sections, request.now)
        self.dispatcher.deliver_where(outbox.of_code_occasion(DIGEST_CODE, today.isoformat()))
        # Once a day, also what no episode delivery picked up (a patient task raised by a recording
        # that notified nobody else): real episodes only, never a story's, and only rows an hour
        # old, so as not to race an episode's own delivery (which would send one twice).
        self.dispatcher.deliver_where(outbox.real_episodes_older_than(request.now - timedelta(hours=1)))
        return digests

    def _write_digest(self, session: Session, digest: Digest, sections: list[list[Any]], now: datetime) -> None:
        """Urgent items still open past their renotify time head it; then new urgent items,
        overdue tasks and what is due today."""
        key = f"digest:{digest.role}:{digest.on}"
        if store.has_notification(session, key):
            return  # one digest per role and day, however often the schedule is triggered
        url = self.dispatcher.public_url

        def lines(title: str, rows: list[Any], due_on: bool) -> list[str]:
            out = [f"{title} ({len(rows)})"]
            for row, ref in rows:
                when = due_words(row.due_on) if due_on else ""
                out.append(f"- {ref}: {row.title}{when} {episode_link(url, row.episode_id)}")
            return [*out, ""]

        waiting, urgent, overdue, due = sections
        counts = ", ".join(f"{who} {n}" for who, n in sorted(digest.per_assignee.items())) or "none"
        body = "\n".join(
            (lines("URGENT AND STILL OPEN: act now", waiting, True) if waiting else [])
            + lines("New urgent items (last 24 h)", urgent, False)
            + lines("Overdue tasks", overdue, True)
            + lines("Due today", due, True)
            + [f"Open tasks per assignee: {counts}"]
        )
        head = f"{digest.urgent_open} URGENT STILL OPEN, " if digest.urgent_open else ""
        store.add_notification(
            session,
            dedupe_key=key,
            episode_id=None,
            code=DIGEST_CODE,
            occasion=digest.on,
            recipient_role=digest.role,
            subject=(
                f"[digest] {digest.role} {digest.on}: {head}{digest.new_urgent} new urgent, "
                f"{digest.overdue} overdue, {digest.due_today} due today"
            ),
            body=body,
            created_at=now,
        )


def _sections(role: str, today: date, open_tasks: list[Any], urgent: list[Any], still_open: list[Any]) -> list[Any]:
    """A role's digest sections: urgent and still open, new urgent, overdue, due today."""
    mine = [(t, ref) for t, ref in open_tasks if t.assignee == role]
    return [
        [(t, ref) for t, ref in still_open if t.assignee == role],
        [(i, ref) for i, ref in urgent if i.assignee == role],
        [(t, ref) for t, ref in mine if t.due_on is not None and t.due_on < today],
        [(t, ref) for t, ref in mine if t.due_on == today],
    ]
