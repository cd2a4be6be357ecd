"""Follow-up beside the episode workflow: check-in reminders and the daily digest per role.

None of this changes what an episode decides: it reads the store the episode records into and
writes outbox rows of its own (patient reminders, digests), delivered by the same dispatcher.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Engine, and_, select
from sqlalchemy.orm import Session
from temporalio import activity

from activities.notifications import NotificationDispatcher
from carepath.engine.definition import local_date
from carepath.engine.registry import default_pathway
from carepath.messages import due_words, episode_link
from db import checkins as checkin
from db.models import EpisodeRow, NotificationRow, TaskRow, TimelineItemRow

DIGEST_ROLES = ("coordinator", "physician")
DIGEST_CODE = "DIGEST"


class ReminderStart(BaseModel):
    checkin_id: int
    remind_after_days: int


class ReminderDue(BaseModel):
    checkin_id: int
    now: datetime  # the workflow's clock (simulated time on a time-skipping server)


class DigestRequest(BaseModel):
    now: datetime


class Digest(BaseModel):
    role: str
    on: str
    new_urgent: int
    overdue: int
    due_today: int
    per_assignee: dict[str, int]


class FollowUp:
    """Activities bound to a database and the dispatcher (the reminders' workflows are started by
    ``workflows.reminders``, beside their workflow)."""

    def __init__(self, engine: Engine, dispatcher: NotificationDispatcher) -> None:
        self.engine = engine
        self.dispatcher = dispatcher

    @activity.defn(name="send_checkin_reminder")
    def send_checkin_reminder(self, due: ReminderDue) -> bool:
        """One reminder if the check-in is still unanswered; True if one is (now or before) in the outbox."""
        episode_id = checkin.remind(self.engine, due.checkin_id, due.now, self.dispatcher.public_url)
        if episode_id is None:
            return False
        self.dispatcher.deliver_where(
            and_(NotificationRow.episode_id == episode_id, NotificationRow.code == checkin.REMINDER_CODE)
        )
        return True

    @activity.defn(name="send_digests")
    def send_digests(self, request: DigestRequest) -> list[Digest]:
        """One digest per role for the clinic's day of ``now``: written once per day, then delivered."""
        definition = default_pathway().definition()  # the clinic's day: the default pathway's clock
        today = local_date(definition, request.now)
        since = request.now - timedelta(hours=24)
        with Session(self.engine) as session, session.begin():
            live = and_(EpisodeRow.status == "active", EpisodeRow.simulated.is_(False))
            open_tasks = session.execute(
                select(TaskRow, EpisodeRow.patient_ref)
                .join(EpisodeRow, EpisodeRow.id == TaskRow.episode_id)
                .where(live, TaskRow.status == "open")
                .order_by(TaskRow.due_on, TaskRow.id)
            ).all()
            urgent = session.execute(
                select(TimelineItemRow, EpisodeRow.patient_ref)
                .join(EpisodeRow, EpisodeRow.id == TimelineItemRow.episode_id)
                .where(live, TimelineItemRow.priority == "urgent", TimelineItemRow.created_at >= since)
                .order_by(TimelineItemRow.id)
            ).all()
            per_assignee = dict(Counter(task.assignee for task, _ in open_tasks))
            digests = []
            for role in DIGEST_ROLES:
                mine = [(t, ref) for t, ref in open_tasks if t.assignee == role]
                overdue = [(t, ref) for t, ref in mine if t.due_on is not None and t.due_on < today]
                due_today = [(t, ref) for t, ref in mine if t.due_on == today]
                new_urgent = [(i, ref) for i, ref in urgent if i.assignee == role]
                digest = Digest(
                    role=role,
                    on=today.isoformat(),
                    new_urgent=len(new_urgent),
                    overdue=len(overdue),
                    due_today=len(due_today),
                    per_assignee=per_assignee,
                )
                digests.append(digest)
                self._write_digest(session, digest, new_urgent, overdue, due_today, request.now)
        self.dispatcher.deliver_where(
            and_(NotificationRow.code == DIGEST_CODE, NotificationRow.occasion == today.isoformat())
        )
        # Once a day, also what no episode delivery picked up (a patient task raised by a recording
        # that notified nobody else): real episodes only, never a story's, and only rows an hour
        # old, so as not to race an episode's own delivery (which would send one twice).
        real = select(EpisodeRow.id).where(EpisodeRow.simulated.is_(False))
        old = NotificationRow.created_at < request.now - timedelta(hours=1)
        self.dispatcher.deliver_where(and_(NotificationRow.episode_id.in_(real), old))
        return digests

    def _write_digest(
        self, session: Session, digest: Digest, urgent: list[Any], overdue: list[Any], due: list[Any], now: datetime
    ) -> None:
        key = f"digest:{digest.role}:{digest.on}"
        if session.scalar(select(NotificationRow.id).where(NotificationRow.dedupe_key == key)) is not None:
            return  # one digest per role and day, however often the schedule is triggered
        url = self.dispatcher.public_url

        def lines(title: str, rows: list[Any], due_on: bool) -> list[str]:
            out = [f"{title} ({len(rows)})"]
            for row, ref in rows:
                when = due_words(row.due_on) if due_on else ""
                out.append(f"- {ref}: {row.title}{when} {episode_link(url, row.episode_id)}")
            return [*out, ""]

        counts = ", ".join(f"{who} {n}" for who, n in sorted(digest.per_assignee.items())) or "none"
        body = "\n".join(
            lines("New urgent items (last 24 h)", urgent, False)
            + lines("Overdue tasks", overdue, True)
            + lines("Due today", due, True)
            + [f"Open tasks per assignee: {counts}"]
        )
        session.add(
            NotificationRow(
                dedupe_key=key,
                episode_id=None,
                code=DIGEST_CODE,
                occasion=digest.on,
                recipient_role=digest.role,
                subject=(
                    f"[digest] {digest.role} {digest.on}: {digest.new_urgent} new urgent, "
                    f"{digest.overdue} overdue, {digest.due_today} due today"
                ),
                body=body,
                created_at=now,
                status="pending",
                attempts=0,
            )
        )
