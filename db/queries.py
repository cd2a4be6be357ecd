"""Read models over the store: the timeline of an episode, its phase."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from db.models import EpisodeRow, TaskRow, TimelineItemRow


def timeline(engine: Engine, episode_id: str) -> list[dict[str, Any]]:
    """Timeline items by day, in the order raised within a day, with the status of those that are tasks."""
    with Session(engine) as session:
        rows = session.execute(
            select(TimelineItemRow, TaskRow.status, TaskRow.due_on)
            .outerjoin(TaskRow, TaskRow.timeline_item_id == TimelineItemRow.id)
            .where(TimelineItemRow.episode_id == episode_id)
            .order_by(TimelineItemRow.day, TimelineItemRow.id)
        ).all()
        return [
            {
                "day": item.day,
                "date": item.on_date.isoformat(),
                "code": item.code,
                "kind": item.kind,
                "priority": item.priority,
                "assignee": item.assignee,
                "title": item.title,
                "detail": item.detail,
                "evidence": list(item.evidence),
                "occasion": item.occasion,
                **({"status": status, "due_on": due_on.isoformat() if due_on else None} if status else {}),
            }
            for item, status, due_on in rows
        ]


def episode_phase(engine: Engine, episode_id: str) -> str:
    with Session(engine) as session:
        phase = session.scalar(select(EpisodeRow.phase).where(EpisodeRow.id == episode_id))
    if phase is None:
        raise LookupError(f"no episode {episode_id}")
    return phase
