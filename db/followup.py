"""What the follow-up activities (``activities.followup``) read and write: an urgent item's
second notification, and the daily digest's rows."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, select
from sqlalchemy.orm import Session

from db.models import EpisodeRow, NotificationRow, TaskRow, TimelineItemRow


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One follow-up's transaction, on ORM rows."""
    with Session(engine) as session, session.begin():
        yield session


def open_urgent_task(session: Session, task_id: int) -> tuple[TaskRow, str] | None:
    """The task, if still open on an active episode, with its patient's reference."""
    row = session.execute(
        select(TaskRow, EpisodeRow.patient_ref)
        .join(EpisodeRow, EpisodeRow.id == TaskRow.episode_id)
        .where(TaskRow.id == task_id, TaskRow.status == "open", EpisodeRow.status == "active")
    ).first()
    return None if row is None else (row[0], row[1])


def has_notification(session: Session, dedupe_key: str) -> bool:
    return session.scalar(select(NotificationRow.id).where(NotificationRow.dedupe_key == dedupe_key)) is not None


def add_notification(session: Session, **values: Any) -> None:
    """A pending outbox row (its caller checked its key with ``has_notification``)."""
    session.add(NotificationRow(status="pending", attempts=0, **values))


def _live() -> Any:
    return and_(EpisodeRow.status == "active", EpisodeRow.simulated.is_(False))


def open_tasks(session: Session) -> list[Any]:
    """(task, patient ref) of every open task of a real active episode, soonest due first."""
    return list(
        session.execute(
            select(TaskRow, EpisodeRow.patient_ref)
            .join(EpisodeRow, EpisodeRow.id == TaskRow.episode_id)
            .where(_live(), TaskRow.status == "open")
            .order_by(TaskRow.due_on, TaskRow.id)
        ).all()
    )


def urgent_items_since(session: Session, since: datetime) -> list[Any]:
    """(timeline item, patient ref) of the urgent items raised since ``since`` on real episodes."""
    return list(
        session.execute(
            select(TimelineItemRow, EpisodeRow.patient_ref)
            .join(EpisodeRow, EpisodeRow.id == TimelineItemRow.episode_id)
            .where(_live(), TimelineItemRow.priority == "urgent", TimelineItemRow.created_at >= since)
            .order_by(TimelineItemRow.id)
        ).all()
    )


def still_open_urgent(session: Session, hours: dict[str, int], now: datetime) -> list[Any]:
    """(task, patient ref) of open tasks whose code renotifies after ``hours[code]``, raised
    longer ago than that."""
    rows = session.execute(
        select(TaskRow, EpisodeRow.patient_ref, TimelineItemRow.created_at)
        .join(EpisodeRow, EpisodeRow.id == TaskRow.episode_id)
        .join(TimelineItemRow, TimelineItemRow.id == TaskRow.timeline_item_id)
        .where(_live(), TaskRow.status == "open", TaskRow.code.in_(list(hours)))
        .order_by(TimelineItemRow.created_at, TaskRow.id)
    ).all()
    return [(task, ref) for task, ref, at in rows if at <= now - timedelta(hours=hours[task.code])]
