"""Record what the rules decided: timeline items, tasks, notifications, events and audit.

One activity call is one database transaction, and every row it writes is keyed so that a
retried call (after a timeout, a crash, a lost connection) writes nothing twice.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session
from temporalio import activity

from carepath.pathway.state import Changes, TimelineEntry
from carepath.pathway.vocabulary import ACTIONABLE_KINDS, Phase
from db.models import AuditRow, EpisodeRow, EventRow, NotificationRow, TaskRow, TimelineItemRow


class EpisodeOpened(BaseModel):
    patient_ref: str
    pathway_id: str
    pathway_version: int
    identified_on: date
    enrolled_on: date
    simulated: bool = False


class RecordedEvent(BaseModel):
    event_id: str
    type: str
    occurred_on: date
    payload: dict[str, Any]


class ChangeRecord(BaseModel):
    change_id: str  # deterministic per workflow step: the audit trail's idempotency key
    episode_id: str
    at: datetime
    phase: Phase
    actor: str
    action: str
    reason: str | None = None  # why a person did it (task closure, override, withdrawal)
    pathway_version: int | None = None  # set when the episode moved to another definition version
    opened: EpisodeOpened | None = None
    event: RecordedEvent | None = None
    changes: Changes


def episode_status(phase: str) -> str:
    return phase if phase in ("completed", "withdrawn") else "active"


class EpisodeRecorder:
    """Activities bound to one database engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @activity.defn(name="record_changes")
    def record_changes(self, record: ChangeRecord) -> None:
        with Session(self.engine) as session, session.begin():
            write_changes(session, record)


def write_changes(session: Session, record: ChangeRecord) -> None:
    """Write ``record`` inside the caller's transaction; a second call is a no-op."""
    episode = session.get(EpisodeRow, record.episode_id)
    if episode is None:
        if record.opened is None:
            raise LookupError(f"episode {record.episode_id} was never opened")
        episode = EpisodeRow(
            id=record.episode_id,
            created_at=record.at,
            updated_at=record.at,
            phase=record.phase,
            status=episode_status(record.phase),
            **record.opened.model_dump(),
        )
        session.add(episode)
        session.flush()
    if record.event is not None and session.get(EventRow, record.event.event_id) is None:
        session.add(
            EventRow(
                id=record.event.event_id,
                episode_id=record.episode_id,
                type=record.event.type,
                occurred_on=record.event.occurred_on,
                payload=record.event.payload,
                recorded_at=record.at,
                recorded_by=record.actor,
            )
        )
    for item in record.changes.items:
        _add_item(session, record, item)
    for closure in record.changes.closures:
        session.execute(
            update(TaskRow)
            .where(
                TaskRow.episode_id == record.episode_id,
                TaskRow.code == closure.code,
                TaskRow.milestone == closure.milestone,
                TaskRow.status == "open",
            )
            .values(status=closure.status, closed_at=record.at, close_reason=closure.reason)
        )
    episode.phase = record.phase
    if record.pathway_version is not None:
        episode.pathway_version = record.pathway_version
    episode.status = episode_status(record.phase)
    episode.updated_at = record.at
    if session.scalar(select(AuditRow.id).where(AuditRow.change_id == record.change_id)) is None:
        session.add(
            AuditRow(
                change_id=record.change_id,
                episode_id=record.episode_id,
                at=record.at,
                actor=record.actor,
                action=record.action,
                detail={
                    "event_id": record.event.event_id if record.event else None,
                    "reason": record.reason,
                    "raised": [i.key for i in record.changes.items],
                    "closed": [f"{c.code}@{c.milestone}:{c.status}" for c in record.changes.closures],
                    "phase": record.phase,
                },
            )
        )


def _add_item(session: Session, record: ChangeRecord, item: TimelineEntry) -> None:
    exists = session.scalar(
        select(TimelineItemRow.id).where(
            TimelineItemRow.episode_id == record.episode_id,
            TimelineItemRow.code == item.code,
            TimelineItemRow.milestone == item.milestone,
        )
    )
    if exists is not None:
        return
    row = TimelineItemRow(
        episode_id=record.episode_id,
        code=item.code,
        kind=item.kind,
        priority=item.priority,
        assignee=item.assignee,
        title=item.title,
        detail=item.detail,
        evidence=item.evidence,
        day=item.day,
        on_date=item.on,
        milestone=item.milestone,
        created_at=record.at,
    )
    session.add(row)
    session.flush()
    if item.kind in ACTIONABLE_KINDS and item.assignee is not None:
        session.add(
            TaskRow(
                episode_id=record.episode_id,
                timeline_item_id=row.id,
                code=item.code,
                milestone=item.milestone,
                kind=item.kind,
                priority=item.priority,
                assignee=item.assignee,
                title=item.title,
                raised_on=item.on,
                due_on=item.due_on,
                status="open",
            )
        )
    if item.notify and item.assignee is not None:
        session.add(
            NotificationRow(
                dedupe_key=f"{record.episode_id}:{item.key}",
                episode_id=record.episode_id,
                code=item.code,
                milestone=item.milestone,
                recipient_role=item.assignee,
                subject=f"[{item.priority}] {item.title}",
                body=item.detail,
                created_at=record.at,
                status="pending",
            )
        )
