"""The notification outbox's rows as the dispatcher (``activities.notifications``) and the
follow-up activities (``activities.followup``) read and write them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, select, update
from sqlalchemy.orm import Session

from db.models import EpisodeRow, NotificationRow, TaskRow

UNDELIVERED = ("pending", "failed")


def undelivered(engine: Engine, condition: ColumnElement[bool]) -> list[tuple[NotificationRow, str | None, Any]]:
    """Undelivered rows matching ``condition``, oldest first, each with its patient's reference and
    its task's due date (None when it has no task)."""
    with Session(engine, expire_on_commit=False) as session:
        rows = session.execute(
            select(NotificationRow, EpisodeRow.patient_ref, TaskRow.due_on)
            .outerjoin(EpisodeRow, EpisodeRow.id == NotificationRow.episode_id)
            .outerjoin(
                TaskRow,
                and_(
                    TaskRow.episode_id == NotificationRow.episode_id,
                    TaskRow.code == NotificationRow.code,
                    TaskRow.occasion == NotificationRow.occasion,
                ),
            )
            .where(condition, NotificationRow.status.in_(UNDELIVERED))
            .order_by(NotificationRow.id)
        ).all()
        session.expunge_all()
        return [(row, ref, due) for row, ref, due in rows]


def count_attempt(engine: Engine, ids: list[int]) -> None:
    """One more delivery attempt for each of ``ids`` (one transaction for the batch)."""
    with Session(engine) as session, session.begin():
        session.execute(
            update(NotificationRow).where(NotificationRow.id.in_(ids)).values(attempts=NotificationRow.attempts + 1)
        )


def mark_delivered(engine: Engine, ids: list[int], link_codes: tuple[str, ...], scrubbed_body: str) -> int:
    """Mark the undelivered ones of ``ids`` delivered; bodies of ``link_codes`` rows become
    ``scrubbed_body``. Returns how many were marked (a repeat marks none)."""
    if not ids:
        return 0
    with Session(engine) as session, session.begin():
        now = datetime.now(UTC)
        still = and_(NotificationRow.id.in_(ids), NotificationRow.status.in_(UNDELIVERED))
        scrubbed = session.execute(
            update(NotificationRow)
            .where(still, NotificationRow.code.in_(link_codes))
            .values(status="delivered", delivered_at=now, body=scrubbed_body, last_error=None)
        )
        marked = session.execute(
            update(NotificationRow).where(still).values(status="delivered", delivered_at=now, last_error=None)
        )
        return scrubbed.rowcount + marked.rowcount


def mark_failed(engine: Engine, row_id: int, error: str) -> None:
    with Session(engine) as session, session.begin():
        session.execute(
            update(NotificationRow)
            .where(NotificationRow.id == row_id, NotificationRow.status.in_(UNDELIVERED))
            .values(status="failed", last_error=error[:1000])
        )


# Which rows a delivery takes (``NotificationDispatcher.deliver_where``).


def of_episode(episode_id: str) -> ColumnElement[bool]:
    return NotificationRow.episode_id == episode_id


def keyed(dedupe_key: str) -> ColumnElement[bool]:
    return NotificationRow.dedupe_key == dedupe_key


def of_episode_code(episode_id: str, code: str) -> ColumnElement[bool]:
    return and_(NotificationRow.episode_id == episode_id, NotificationRow.code == code)


def of_code_occasion(code: str, occasion: str) -> ColumnElement[bool]:
    return and_(NotificationRow.code == code, NotificationRow.occasion == occasion)


def real_episodes_older_than(before: datetime) -> ColumnElement[bool]:
    """Rows of real episodes (never a story's) written before ``before``."""
    real = select(EpisodeRow.id).where(EpisodeRow.simulated.is_(False))
    return and_(NotificationRow.episode_id.in_(real), NotificationRow.created_at < before)
