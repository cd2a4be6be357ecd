"""Read models over the store: timelines, worklist and episode pages (keyset paging), recorded events."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import date, datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import Engine, Select, case, func, select, tuple_
from sqlalchemy.orm import Session

from carepath.engine.presentation import RecordedEvent
from carepath.engine.registry import pathway_for
from carepath.errors import InvalidInput
from db.models import EpisodeRow, EventRow, NotificationRow, TaskRow, TimelineItemRow
from db.task_counts import ledger_counts

V = TypeVar("V", bound=BaseModel)


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


# ---- typed read views for the API and the pages ---------------------------------------------

PRIORITY_RANK = {"urgent": 0, "high": 1, "routine": 2}


class TaskView(BaseModel):
    id: int
    episode_id: str
    patient_ref: str
    code: str
    occasion: str  # what raised it: its milestone, its dose, the enrollment, or an event
    kind: str
    priority: str
    assignee: str
    title: str
    detail: str
    evidence: list[str]
    raised_on: date
    due_on: date | None
    overdue_days: int
    status: str
    close_reason: str | None
    owner: str | None = None  # the named person who took it on
    day: int = 0  # days since day 0 (the fracture identified) on the day asked
    patient_facts: list[str] = []  # the patient in a few words, from the pathway ("81 y", "pain 8/10")


class TaskFilter(BaseModel):
    assignee: str | None = None
    status: str | None = "open"
    priority: str | None = None
    patient_ref: str | None = None  # a prefix, any case
    owner: str | None = None  # exactly this person's
    episode_id: str | None = None
    task_id: int | None = None
    include_simulated: bool = False


class Page(BaseModel, Generic[V]):
    items: list[V]
    next_cursor: str | None  # give it back as ?cursor= for the next page; None: this was the last


def encode_cursor(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, shape: tuple[type | tuple[type, ...], ...]) -> list[Any]:
    """The sort key a cursor carries; a cursor this server did not give is bad input naming ``cursor``."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if len(key) != len(shape) or not all(isinstance(v, t) for v, t in zip(key, shape, strict=True)):
            raise ValueError(cursor)
        return key
    except (ValueError, TypeError, binascii.Error, RecursionError):
        raise InvalidInput.one("cursor", "is not a cursor this server gave; start again without one") from None


def _like_prefix(column: Any, prefix: str) -> Any:
    """``lower(column) LIKE 'prefix%'`` with the pattern as one bound value (so that PostgreSQL can
    use ix_episodes_patient_ref_lower for it); the prefix's own % and _ are escaped."""
    escaped = prefix.strip().lower().replace("/", "//").replace("%", "/%").replace("_", "/_")
    return func.lower(column).like(escaped + "%", escape="/")


def _task_where(query: Select[Any], f: TaskFilter) -> Select[Any]:
    for column, value in (
        (TaskRow.assignee, f.assignee),
        (TaskRow.status, f.status),
        (TaskRow.priority, f.priority),
        (TaskRow.owner, f.owner),
        (TaskRow.episode_id, f.episode_id),
        (TaskRow.id, f.task_id),
    ):
        if value is not None:
            query = query.where(column == value)
    if f.patient_ref:
        query = query.where(_like_prefix(EpisodeRow.patient_ref, f.patient_ref))
    if not f.include_simulated:
        query = query.where(EpisodeRow.simulated.is_(False))
    return query


# The worklist's order: most urgent first, then earliest due (the most overdue) first, tasks with no
# due date last, then by id. A page is read as up to six index range scans of ix_tasks_worklist
# (status, priority, due_on, id), one per priority and due/no-due segment from the cursor on, each
# ending as soon as the page is full: page N costs what page 1 does, at any number of tasks (one
# ORDER BY over a computed rank would sort every open task for every page).
_SEGMENTS = [(rank, priority, no_due) for priority, rank in PRIORITY_RANK.items() for no_due in (False, True)]


def task_page(engine: Engine, today: date, f: TaskFilter, limit: int, cursor: str | None = None) -> Page[TaskView]:
    """One page of tasks in worklist order, by keyset."""
    after = decode_cursor(cursor, (int, (str, type(None)), int)) if cursor else None
    base = _task_where(
        select(
            TaskRow,
            EpisodeRow.patient_ref,
            TimelineItemRow.detail,
            TimelineItemRow.evidence,
            EpisodeRow.identified_on,
            EpisodeRow.facts,
        )
        .join(EpisodeRow, EpisodeRow.id == TaskRow.episode_id)
        .join(TimelineItemRow, TimelineItemRow.id == TaskRow.timeline_item_id),
        f,
    )
    rows: list[Any] = []
    with Session(engine) as session:
        for rank, priority, no_due in _SEGMENTS:
            if (f.priority and priority != f.priority) or (after and rank < after[0]):
                continue
            query = base.where(TaskRow.priority == priority)
            if no_due:
                # Ordered by due_on too (all NULL here): with ``ORDER BY id`` alone PostgreSQL walks
                # the primary key past every other task when this segment has none (0.3-0.8 s at
                # 980,000 tasks for a role's undated urgent ones); this way the index's range is it.
                query = query.where(TaskRow.due_on.is_(None)).order_by(TaskRow.due_on, TaskRow.id)
            else:
                query = query.where(TaskRow.due_on.is_not(None)).order_by(TaskRow.due_on, TaskRow.id)
            if after and rank == after[0]:
                _, due, task_id = after
                if due is None:  # the cursor is among this priority's undated tasks
                    if not no_due:
                        continue
                    query = query.where(TaskRow.id > task_id)
                elif not no_due:
                    query = query.where(tuple_(TaskRow.due_on, TaskRow.id) > tuple_(date.fromisoformat(due), task_id))
            rows += session.execute(query.limit(limit + 1 - len(rows))).all()
            if len(rows) > limit:
                break
    views = [_task_view(today, *row) for row in rows[:limit]]
    last = views[-1] if len(rows) > limit else None
    next_cursor = (
        encode_cursor([PRIORITY_RANK[last.priority], last.due_on.isoformat() if last.due_on else None, last.id])
        if last
        else None
    )
    return Page[TaskView](items=views, next_cursor=next_cursor)


def short_facts(stored: dict[str, Any] | None) -> list[str]:
    """The row-sized facts of an episode's stored snapshot."""
    return [f["short"] for f in (stored or {}).get("facts", []) if f.get("short")]


def _task_view(
    today: date,
    task: TaskRow,
    patient_ref: str,
    detail: str,
    evidence: list[str],
    identified_on: date | None = None,
    facts: dict[str, Any] | None = None,
) -> TaskView:
    return TaskView(
        id=task.id,
        episode_id=task.episode_id,
        patient_ref=patient_ref,
        code=task.code,
        occasion=task.occasion,
        kind=task.kind,
        priority=task.priority,
        assignee=task.assignee,
        title=task.title,
        detail=detail,
        evidence=list(evidence),
        raised_on=task.raised_on,
        due_on=task.due_on,
        overdue_days=max(0, (today - task.due_on).days) if task.due_on and task.status == "open" else 0,
        status=task.status,
        close_reason=task.close_reason,
        owner=task.owner,
        day=(today - identified_on).days if identified_on else 0,
        patient_facts=short_facts(facts),
    )


def task_counts(engine: Engine, today: date, f: TaskFilter) -> dict[str, dict[str, int]]:
    """Per priority: how many tasks match the filter, and how many of them are overdue. Without a
    patient, episode or task filter they are summed from the task ledger (db/task_counts.py):
    counting every open task is a scan of the worklist index (250 ms at 840,000 open tasks)."""
    if not (f.patient_ref or f.episode_id or f.task_id is not None):
        return ledger_counts(engine, today, f)
    overdue = func.sum(case((TaskRow.due_on < today, 1), else_=0))
    query = _task_where(
        select(TaskRow.priority, func.count(), overdue).join(EpisodeRow, EpisodeRow.id == TaskRow.episode_id), f
    )
    with Session(engine) as session:
        rows = session.execute(query.group_by(TaskRow.priority))
        return {p: {"total": n, "overdue": int(late or 0)} for p, n, late in rows}


class EpisodeFacts(BaseModel):
    """What every view of an episode says about it (list, detail)."""

    episode_id: str
    patient_ref: str
    pathway: str
    phase: str
    status: str
    identified_on: date
    enrolled_on: date


class EpisodeSummary(EpisodeFacts):
    next_due_on: date | None  # what comes next for an active episode (as its page's "Coming up" starts)
    next_due: str | None  # its name in words
    open_tasks: int
    day: int = 0  # days since day 0 on the day asked
    patient_facts: list[str] = []  # the patient in a few words, from the pathway


LISTED_STATUSES = ("reserving", "active", "completed", "withdrawn")


def episode_page(
    engine: Engine,
    today: date,
    limit: int,
    patient_ref: str | None = None,
    phase: str | None = None,
    status: str | None = None,
    cursor: str | None = None,
) -> Page[EpisodeSummary]:
    """Episodes by patient ref (active and finished; released reservations are left out)."""
    query = select(EpisodeRow).where(EpisodeRow.simulated.is_(False), EpisodeRow.status.in_(LISTED_STATUSES))
    if patient_ref:
        query = query.where(_like_prefix(EpisodeRow.patient_ref, patient_ref))
    if phase:
        query = query.where(EpisodeRow.phase == phase)
    if status:
        query = query.where(EpisodeRow.status == status)
    if cursor:
        ref, episode_id = decode_cursor(cursor, (str, str))
        query = query.where(tuple_(EpisodeRow.patient_ref, EpisodeRow.id) > tuple_(ref, episode_id))
    with Session(engine) as session:
        rows = session.scalars(query.order_by(EpisodeRow.patient_ref, EpisodeRow.id).limit(limit + 1)).all()
        # Open tasks counted for this page's episodes only (by the tasks' episode index), not for all.
        ids = [row.id for row in rows[:limit]]
        counts = dict(
            session.execute(
                select(TaskRow.episode_id, func.count())
                .where(TaskRow.episode_id.in_(ids), TaskRow.status == "open")
                .group_by(TaskRow.episode_id)
            ).all()
        )
    views = [_summary(today, row, counts.get(row.id, 0)) for row in rows[:limit]]
    last = views[-1] if len(rows) > limit else None
    return Page[EpisodeSummary](
        items=views, next_cursor=encode_cursor([last.patient_ref, last.episode_id]) if last else None
    )


def episode_facts(row: EpisodeRow) -> dict[str, Any]:
    """An ``EpisodeFacts``' fields from the row."""
    return {
        "episode_id": row.id,
        "patient_ref": row.patient_ref,
        "pathway": f"{row.pathway_id}.v{row.pathway_version}",
        "phase": row.phase,
        "status": row.status,
        "identified_on": row.identified_on,
        "enrolled_on": row.enrolled_on,
    }


def _summary(today: date, row: EpisodeRow, open_tasks: int) -> EpisodeSummary:
    due = next_due(row, today) if row.status == "active" else None
    return EpisodeSummary(
        **episode_facts(row),
        next_due_on=due[0] if due else None,
        next_due=due[1] if due else None,
        open_tasks=open_tasks,
        day=(today - row.identified_on).days,
        patient_facts=short_facts(row.facts),
    )


def next_due(row: EpisodeRow, today: date) -> tuple[date, str] | None:
    """What comes next: the first of the due points the workflow recorded with its last change
    (the episode page's "Coming up" list), or, when that has passed or was never recorded, the next
    milestone from the definition (cached per version)."""
    for point in (row.facts or {}).get("upcoming", []):
        on = date.fromisoformat(point["on"])
        if on >= today:
            return on, point["title"]
    pathway = pathway_for(row.pathway_id)
    ahead = pathway.planned(pathway.definition(row.pathway_version), row.identified_on, today)
    return (ahead[0].on, ahead[0].title) if ahead else None


class EventView(BaseModel):
    """A recorded event as the person entered it, with who recorded it and when."""

    id: str
    type: str
    occurred_on: date
    day: int
    recorded_at: datetime
    recorded_by: str
    summary: str  # what was recorded, in one line (NRS, agents, the note's text …)
    payload: dict[str, Any]


def events(engine: Engine, episode_id: str) -> list[EventView]:
    """The episode's recorded events, each summed up in one line by its pathway."""
    with Session(engine) as session:
        episode = session.execute(
            select(EpisodeRow.identified_on, EpisodeRow.pathway_id).where(EpisodeRow.id == episode_id)
        ).first()
        rows = session.scalars(
            select(EventRow)
            .where(EventRow.episode_id == episode_id)
            .order_by(EventRow.occurred_on, EventRow.recorded_at)
        ).all()
    if episode is None:
        return []
    pathway = pathway_for(episode.pathway_id)
    views = []
    for row in rows:
        day = (row.occurred_on - episode.identified_on).days
        shown = RecordedEvent(id=row.id, type=row.type, occurred_on=row.occurred_on, day=day, payload=row.payload)
        views.append(
            EventView(
                id=row.id,
                type=row.type,
                occurred_on=row.occurred_on,
                day=day,
                recorded_at=row.recorded_at,
                recorded_by=row.recorded_by,
                summary=pathway.event_summary(shown),
                payload=row.payload,
            )
        )
    return views


def notifications(engine: Engine, status: str | None, limit: int) -> list[NotificationRow]:
    """The outbox, newest first; ``status`` pending | failed | delivered, or all."""
    query = select(NotificationRow).order_by(NotificationRow.id.desc()).limit(limit)
    if status is not None:
        query = query.where(NotificationRow.status == status)
    with Session(engine) as session:
        return list(session.scalars(query))


def failed_count(engine: Engine) -> int:
    """How many deliveries failed and are being retried (the worklist tells coordinators)."""
    with Session(engine) as session:
        failed = select(func.count()).select_from(NotificationRow).where(NotificationRow.status == "failed")
        return session.scalar(failed) or 0
