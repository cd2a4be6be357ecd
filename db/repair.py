"""A repair of one episode's rows (``carepath reconcile``): its recorded changes written again in
one transaction, counting what came back. The rows are keyed, so what is there stays and nothing
doubles; the writing itself is the recorder's (passed in, since it lives above the store)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from db.models import AuditRow, EpisodeRow, EventRow, NotificationRow, TaskRow, TimelineItemRow

# Each row an episode owns, by table: what a repair counts as restored.
OWNED = {
    "episodes": (EpisodeRow, EpisodeRow.id),
    "events": (EventRow, EventRow.episode_id),
    "timeline_items": (TimelineItemRow, TimelineItemRow.episode_id),
    "tasks": (TaskRow, TaskRow.episode_id),
    "notifications": (NotificationRow, NotificationRow.episode_id),
    "audit_log": (AuditRow, AuditRow.episode_id),
}


def _counts(session: Session, episode_id: str) -> dict[str, int]:
    return {
        table: session.scalar(select(func.count()).select_from(model).where(column == episode_id)) or 0
        for table, (model, column) in OWNED.items()
    }


def rewrite(
    engine: Engine, episode_id: str, write: Callable[[Session], None], phase: tuple[str, str] | None = None
) -> dict[str, int]:
    """Run ``write`` in one transaction and, given ``phase`` (phase, status), set the episode's
    unless it was abandoned; returns the rows that were missing, by table."""
    with Session(engine) as session, session.begin():
        before = _counts(session, episode_id)
        write(session)
        if phase is not None:
            session.execute(
                update(EpisodeRow)
                .where(EpisodeRow.id == episode_id, EpisodeRow.status != "abandoned")
                .values(phase=phase[0], status=phase[1])
            )
        after = _counts(session, episode_id)
    return {table: after[table] - before[table] for table in after if after[table] > before[table]}
