"""What an export of one episode reads: the episode with its tasks and recorded events (the FHIR
Bundle), and the episode with its audit trail (the AuditEvents)."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from db.audit import audit_trail
from db.models import AuditRow, EpisodeRow, EventRow, TaskRow


class EpisodeRecords(NamedTuple):
    episode: EpisodeRow
    tasks: list[TaskRow]  # in the order they were raised
    events: list[EventRow]  # by the day they occurred, then when they were recorded


def _episode(session: Session, episode_id: str) -> EpisodeRow:
    episode = session.get(EpisodeRow, episode_id)
    if episode is None:
        raise LookupError(f"no episode {episode_id}")
    return episode


def episode_records(engine: Engine, episode_id: str) -> EpisodeRecords:
    """The episode, its tasks and its events; LookupError if there is no such episode."""
    with Session(engine) as session:
        episode = _episode(session, episode_id)
        tasks = session.scalars(select(TaskRow).where(TaskRow.episode_id == episode_id).order_by(TaskRow.id)).all()
        events = session.scalars(
            select(EventRow)
            .where(EventRow.episode_id == episode_id)
            .order_by(EventRow.occurred_on, EventRow.recorded_at)
        ).all()
    return EpisodeRecords(episode, list(tasks), list(events))


def episode_audit(engine: Engine, episode_id: str) -> tuple[EpisodeRow, list[AuditRow]]:
    """The episode and its audit entries, oldest first; LookupError if there is no such episode."""
    with Session(engine) as session:
        episode = _episode(session, episode_id)
    return episode, audit_trail(engine, episode_id)
