"""Urgent items still open: which of an episode's open tasks want a second notification, when."""

from __future__ import annotations

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from carepath.engine.registry import pathway_for
from db.models import EpisodeRow, TaskRow


def urgent_watches(engine: Engine, episode_id: str) -> list[tuple[int, int]]:
    """(task id, hours) for each open task of a real episode whose action renotifies after ``hours``."""
    with Session(engine) as session:
        episode = session.get(EpisodeRow, episode_id)
        if episode is None or episode.simulated:
            return []
        try:
            actions = pathway_for(episode.pathway_id).definition(episode.pathway_version).actions
        except LookupError:  # a pathway this worker does not ship: nothing to watch
            return []
        tasks = session.scalars(select(TaskRow).where(TaskRow.episode_id == episode_id, TaskRow.status == "open"))
        return [
            (task.id, hours)
            for task in tasks
            if task.code in actions and (hours := actions[task.code].renotify_after_hours)
        ]
