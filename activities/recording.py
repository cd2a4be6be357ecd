"""Record what the rules decided: timeline items, tasks, notifications, events and audit.

One activity call is one database transaction, and every row it writes is keyed so that a
retried call (after a timeout, a crash, a lost connection) writes nothing twice.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from pydantic import BaseModel
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from carepath.engine.items import Changes, TimelineEntry
from carepath.engine.presentation import CheckIn
from carepath.engine.registry import pathway_for
from carepath.messages import DEFAULT_PUBLIC_URL, patient_words
from carepath.observability import count_recording_retry
from db import checkins as checkin
from db import recording as rows
from db.audit import write_audit
from db.measure_facts import record_facts

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

# The type of the non-retryable failure when an episode's reservation was released (see below).
RESERVATION_RELEASED = "ReservationReleased"
# The type of the (retried) failure when the database refused a recording.
DATABASE_ERROR = "DatabaseError"


class EpisodeOpened(BaseModel):
    patient_ref: str
    pathway_id: str
    pathway_version: int
    identified_on: date
    enrolled_on: date
    simulated: bool = False
    enrollment: dict[str, Any] | None = None  # as the pathway parsed it (the measures read it)


class ComingItem(BaseModel):
    """An item the clock will raise if nothing else is recorded (the workload forecast)."""

    due_on: date
    code: str
    assignee: str


class RecordedEvent(BaseModel):
    event_id: str
    type: str
    occurred_on: date
    payload: dict[str, Any]


class ChangeRecord(BaseModel):
    change_id: str  # deterministic per workflow step: the audit trail's idempotency key
    episode_id: str
    at: datetime
    phase: str
    actor: str
    action: str
    reason: str | None = None  # why a person did it (task closure, override, withdrawal)
    pathway_version: int | None = None  # set when the episode moved to another definition version
    opened: EpisodeOpened | None = None
    event: RecordedEvent | None = None
    changes: Changes
    # After this change: the pathway's header facts ("facts": [{label, value, short}]) and what
    # comes next ("upcoming": the first due points), kept on the episode row so that worklist and
    # patients rows show them without asking the workflow, and agree with the episode page.
    facts: dict[str, Any] | None = None
    # The episode's coming items, replacing those recorded before; None: leave them (simulated
    # episodes, and records made before the forecast existed).
    coming: list[ComingItem] | None = None


def episode_status(phase: str) -> str:
    return phase if phase in ("completed", "withdrawn") else "active"


class EpisodeRecorder:
    """Activities bound to one database engine."""

    def __init__(self, engine: Engine, public_url: str = DEFAULT_PUBLIC_URL) -> None:
        self.engine = engine
        self.public_url = public_url  # the base of the patients' check-in links

    @activity.defn(name="record_changes")
    def record_changes(self, record: ChangeRecord) -> dict[str, Any] | None:
        """Write ``record``. Run as a local activity it returns the record: a local activity's
        input is not kept in the workflow's history, its result is, and ``carepath reconcile``
        re-records an episode from what its history kept."""
        count_recording_retry()
        try:
            with rows.transaction(self.engine) as db:
                write_changes(db, record, public_url=self.public_url)
        except DBAPIError as exc:
            count_recording_retry(failed_try=True)
            # SQLAlchemy's message carries the SQL and its parameters (patient data, and big enough
            # for Temporal to replace the failure by "Failure exceeds size limit."): say the cause only.
            raise ApplicationError(database_cause(exc), type=DATABASE_ERROR) from None
        except Exception:
            count_recording_retry(failed_try=True)
            raise
        return record.model_dump(mode="json") if activity.in_activity() and activity.info().is_local else None


def database_cause(exc: DBAPIError) -> str:
    """The driver's own first line, e.g. "database unavailable (OperationalError): connection ... refused"."""
    driver = exc.orig if exc.orig is not None else exc
    lines = str(driver).strip().splitlines() or [""]
    what = "database unavailable" if exc.connection_invalidated or "connect" in lines[0].lower() else "database error"
    return f"{what} ({type(driver).__name__}): {lines[0][:300]}"


def write_changes(
    transaction: Connection | Session,
    record: ChangeRecord,
    repair: bool = False,
    public_url: str = DEFAULT_PUBLIC_URL,
) -> None:
    """Write ``record`` inside the caller's transaction; a second call is a no-op.

    ``repair`` (carepath reconcile) also brings back a task or notification deleted from beside an
    item that is still there; the activity skips that look-up, since it writes them together.
    """
    db = rows.connection_of(transaction)
    sql = rows.statements(db.dialect.name)
    written = _write_episode(db, sql, record)
    if record.event is not None:
        rows.add_event(db, sql, _event_row(record, record.event))
    follow = FollowUps(written.pathway_id, written.pathway_version, written.simulated, public_url)
    _add_items(db, sql, record, repair, follow)
    rows.close_tasks(db, record.episode_id, record.changes.closures, record.at)
    if record.coming is not None:
        rows.replace_coming(db, record.episode_id, [item.model_dump() for item in record.coming])
    record_facts(db, record.episode_id, written.pathway_id)  # what the cohort measures read, kept current
    write_audit(db, **_audit_entry(record), keep_written=True)  # a retried recording writes it once


def _write_episode(db: Connection, sql: rows.Inserts, record: ChangeRecord) -> Any:
    """The episode's row as of ``record``: opened by the enrollment, then updated."""
    at, status = record.at, episode_status(record.phase)
    values: dict[str, Any] = {"phase": record.phase, "status": status, "updated_at": at}
    if record.opened is not None:
        opened = record.opened.model_dump()
        rows.open_episode(db, sql, {"id": record.episode_id, "created_at": at, **values} | opened)
        if record.opened.enrollment is not None:
            values["enrollment"] = record.opened.enrollment  # the row may be the service's reservation
    if record.facts is not None:
        values["facts"] = record.facts
    if record.pathway_version is not None:
        values["pathway_version"] = record.pathway_version
    try:
        return rows.update_episode(db, record.episode_id, values)
    except rows.ReservationReleased as exc:
        raise ApplicationError(str(exc), type=RESERVATION_RELEASED, non_retryable=True) from None


def _event_row(record: ChangeRecord, event: RecordedEvent) -> dict[str, Any]:
    return {
        "id": event.event_id,
        "episode_id": record.episode_id,
        "type": event.type,
        "occurred_on": event.occurred_on,
        "payload": event.payload,
        "recorded_at": record.at,
        "recorded_by": record.actor,
    }


def _audit_entry(record: ChangeRecord) -> dict[str, Any]:
    return {
        "change_id": record.change_id,
        "episode_id": record.episode_id,
        "at": record.at,
        "actor": record.actor,
        "action": record.action,
        "detail": {
            "event_id": record.event.event_id if record.event else None,
            "reason": record.reason,
            "raised": [str(i.key) for i in record.changes.items],
            "closed": [f"{c.key}:{c.status}" for c in record.changes.closures],
            "phase": record.phase,
        },
    }


class FollowUps(NamedTuple):
    """What the episode's pathway does beside a raised item: a patient check-in, patient words."""

    pathway_id: str
    pathway_version: int
    simulated: bool  # stories are not patients: nobody to ask
    public_url: str  # the base of the patients' check-in links

    def check_in(self, code: str) -> CheckIn | None:
        if self.simulated:
            return None
        pathway = pathway_for(self.pathway_id)
        return pathway.check_in(pathway.definition(self.pathway_version), code)

    def patient_words(self, code: str, title: str) -> tuple[str, str]:
        pathway = pathway_for(self.pathway_id)
        return patient_words(pathway.patient_message(pathway.definition(self.pathway_version), code), title)


def _add_items(db: Connection, sql: rows.Inserts, record: ChangeRecord, repair: bool, follow: FollowUps) -> None:
    """The items' timeline rows in one statement, their tasks in one more, then each item's
    follow-up (check-in, patient words, notification) in the items' order."""
    firsts = {item.key: item for item in reversed(record.changes.items)}  # an item raised twice: its first
    items = [ItemRows(record.episode_id, item, record.at) for item in record.changes.items if firsts[item.key] is item]
    if not items:
        return
    ids = rows.add_items(db, sql, [item.timeline() for item in items], repair)
    written = [(item, ids[key]) for item in items if (key := (item.item.code, item.item.key.occasion)) in ids]
    rows.add_tasks(db, sql, [item.task(item_id) for item, (item_id, _) in written if item.item.actionable])
    for item_rows, (_, new) in written:
        _follow_up(db, sql, record, item_rows, new, follow)


def _follow_up(
    db: Connection,
    sql: rows.Inserts,
    record: ChangeRecord,
    rows_of: ItemRows,
    new: bool,
    follow: FollowUps,
) -> None:
    """Beside an item written now (or brought back by a repair), as its pathway declares: a check-in
    for a new task, the patient's words for a task of theirs, and the item's notification (all keyed,
    so a repair writes only what is missing)."""
    item = rows_of.item
    if item.actionable:
        plan = follow.check_in(item.code) if new else None
        if plan is not None:
            checkin.issue(
                db, sql.upsert, plan, record.episode_id, item.key.occasion, item.on, record.at, follow.public_url
            )
        if item.assignee == checkin.PATIENT and not item.notify:
            rows.add_notification(db, sql, rows_of.notification(*follow.patient_words(item.code, item.title)))
    if item.notify and item.assignee is not None:
        rows.add_notification(db, sql, rows_of.notification())


class ItemRows(NamedTuple):
    """One item's rows, from one mapping: the timeline row, its task, its notification, all
    keyed by the item's ``TaskKey`` (episode, code, occasion)."""

    episode_id: str
    item: TimelineEntry
    at: datetime

    def _shared(self) -> dict[str, Any]:
        item = self.item
        return {"episode_id": self.episode_id, "code": item.code, "occasion": item.key.occasion}

    def timeline(self) -> dict[str, Any]:
        item = self.item
        return self._shared() | {
            "kind": item.kind,
            "priority": item.priority,
            "assignee": item.assignee,
            "title": item.title,
            "detail": item.detail,
            "evidence": item.evidence,
            "day": item.day,
            "on_date": item.on,
            "created_at": self.at,
        }

    def task(self, timeline_item_id: int) -> dict[str, Any]:
        item = self.item
        return self._shared() | {
            "timeline_item_id": timeline_item_id,
            "kind": item.kind,
            "priority": item.priority,
            "assignee": item.assignee,
            "title": item.title,
            "raised_on": item.on,
            "due_on": item.due_on,
            "status": "open",
        }

    def notification(self, subject: str | None = None, body: str | None = None) -> dict[str, Any]:
        """The outbox row; ``subject`` and ``body`` default to the clinician's wording."""
        item = self.item
        return self._shared() | {
            "dedupe_key": f"{self.episode_id}:{item.key}",
            "recipient_role": item.assignee,
            "subject": subject or f"[{item.priority}] {item.title}",
            "body": item.detail if body is None else body,
            "created_at": self.at,
            "status": "pending",
            "attempts": 0,
        }
