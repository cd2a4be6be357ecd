"""What the store's Prometheus gauges count, counted when they are scraped (always current, no
state): enrolled episodes by phase, reservations, open and overdue tasks by code, notifications."""

from __future__ import annotations

from datetime import date
from typing import Any, NamedTuple

from sqlalchemy import Engine, case, func, select
from sqlalchemy.orm import Session

from db.models import EpisodeRow, NotificationRow, TaskRow


class StoreCounts(NamedTuple):
    phases: list[Any]  # (phase, episodes), real enrolled episodes
    reservations: list[Any]  # (status, rows): reserving or abandoned
    open_tasks: list[Any]  # (code, tasks)
    overdue_tasks: list[Any]  # (code, open tasks due before today)
    notifications: list[Any]  # (status, notifications, attempts after each one's first)


def store_counts(engine: Engine, today: date) -> StoreCounts:
    real = EpisodeRow.simulated.is_(False)
    with Session(engine) as session:
        phases = session.execute(
            select(EpisodeRow.phase, func.count())
            .where(real, EpisodeRow.status.not_in(("reserving", "abandoned")))
            .group_by(EpisodeRow.phase)
        ).all()
        reservations = session.execute(
            select(EpisodeRow.status, func.count())
            .where(real, EpisodeRow.status.in_(("reserving", "abandoned")))
            .group_by(EpisodeRow.status)
        ).all()
        open_tasks = select(TaskRow.code, func.count()).join(EpisodeRow).where(real, TaskRow.status == "open")
        opened = session.execute(open_tasks.group_by(TaskRow.code)).all()
        overdue = session.execute(open_tasks.where(TaskRow.due_on < today).group_by(TaskRow.code)).all()
        notes = session.execute(
            select(
                NotificationRow.status,
                func.count(),
                # Attempts after each one's first: the deliveries that failed and were retried.
                func.coalesce(func.sum(case((NotificationRow.attempts > 1, NotificationRow.attempts - 1), else_=0)), 0),
            ).group_by(NotificationRow.status)
        ).all()
    return StoreCounts(list(phases), list(reservations), list(opened), list(overdue), list(notes))
