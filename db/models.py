"""Typed declarative models: episodes, timeline, tasks, events, notifications, audit trail.

Idempotency lives in the schema: a timeline item, task and notification are unique per
(episode, code, occasion), the occasion being what raised it (its milestone, its dose, the
enrollment, or an event such as ``red_flag-day250``); an event is unique by its id; an audit
entry by its change id.
A retried activity therefore cannot create a second task. A client's Idempotency-Key is claimed
in ``idempotency_keys`` (unique per episode and key) before its event is applied.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored as UTC and read back as aware UTC on every database.

    SQLite keeps no zone, so without this a value would come back naive there and aware on
    PostgreSQL.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: carepath stores aware UTC timestamps only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON, list[Any]: JSON}


ACTIVE_OR_RESERVING = "status IN ('reserving', 'active') AND NOT simulated"

# What an episode id can be (they are made as 32 hex characters); anything else names nothing.
EPISODE_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
# Row ids are INTEGER columns, 32-bit on PostgreSQL: a larger id names nothing, and the drivers
# would fail on it (SQLite: OverflowError past 2**63 - 1; PostgreSQL: out of range past 2**31 - 1).
MAX_ID = 2**31 - 1


class EpisodeRow(Base):
    __tablename__ = "episodes"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    patient_ref: Mapped[str] = mapped_column(String(64), index=True)
    pathway_id: Mapped[str] = mapped_column(String(64))
    pathway_version: Mapped[int] = mapped_column(Integer)
    identified_on: Mapped[date] = mapped_column(Date)
    enrolled_on: Mapped[date] = mapped_column(Date)
    phase: Mapped[str] = mapped_column(String(32))
    # reserving (claimed by an enrollment, baseline not yet recorded) | active | completed |
    # withdrawn | abandoned (a reservation released because no workflow backed it)
    status: Mapped[str] = mapped_column(String(16), default="active")
    # Stories run by `carepath simulate` are not patients' care: they never block a real
    # enrollment and never reach a worklist or a notification sink.
    simulated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # SHA-256 of the enrollment that reserved the row: tells a client's retry from a new request.
    enrollment_digest: Mapped[str | None] = mapped_column(String(64))
    # As of the last recorded change: the pathway's header facts and what comes next
    # ({"facts": [{label, value, short}], "upcoming": [due points]}), for rows that do not ask the workflow.
    facts: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The enrollment as the pathway parsed it (cohort measures read its facts, e.g. therapy and
    # pain at enrollment); None for episodes enrolled before migration 0013.
    # JSONB on PostgreSQL: the measures read its fields for every episode of a cohort.
    enrollment: Mapped[dict[str, Any] | None] = mapped_column(
        JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        # One active episode per patient (SPEC section 7); a pending reservation counts as one.
        Index(
            "uq_episodes_active_patient",
            "patient_ref",
            unique=True,
            sqlite_where=text(ACTIVE_OR_RESERVING),
            postgresql_where=text(ACTIVE_OR_RESERVING),
        ),
        # Cohorts of the measures report: episodes by day 0.
        Index("ix_episodes_identified_on", "identified_on"),
    )


class TimelineItemRow(Base):
    __tablename__ = "timeline_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    episode_id: Mapped[str] = mapped_column(ForeignKey("episodes.id"), index=True)
    code: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    priority: Mapped[str] = mapped_column(String(16))
    assignee: Mapped[str | None] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(200))
    detail: Mapped[str] = mapped_column(Text, default="")
    evidence: Mapped[list[str]] = mapped_column(default=list)
    day: Mapped[int] = mapped_column(Integer)
    on_date: Mapped[date] = mapped_column(Date)
    occasion: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("episode_id", "code", "occasion", name="uq_timeline_item_occasion"),
        # The measures look items up by code (db/measures.py), then by episode.
        Index("ix_timeline_items_code", "code", "episode_id", "occasion", "day"),
        # "Entered a phase" (a phase item's code ends with "->phase") reads the phase items only.
        Index("ix_timeline_items_kind", "kind", "code", "episode_id", "day"),
    )


class TaskRow(Base):
    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    episode_id: Mapped[str] = mapped_column(ForeignKey("episodes.id"), index=True)
    timeline_item_id: Mapped[int] = mapped_column(ForeignKey("timeline_items.id"), unique=True)
    code: Mapped[str] = mapped_column(String(64))
    occasion: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    priority: Mapped[str] = mapped_column(String(16))
    assignee: Mapped[str] = mapped_column(String(16), index=True)
    title: Mapped[str] = mapped_column(String(200))
    raised_on: Mapped[date] = mapped_column(Date)
    due_on: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)  # open|completed|cancelled
    # The named person who took it on (tasks belong to a role; a person may take one): null for none.
    owner: Mapped[str | None] = mapped_column(String(200), index=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    close_reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("episode_id", "code", "occasion", name="uq_task_occasion"),
        # The worklist's order within a status and priority, read by keyset (db/queries.task_page).
        Index("ix_tasks_worklist", "status", "priority", "due_on", "id"),
        # The same order within one role (the worklist's and GET /tasks' assignee filter): a page
        # of a rare role's tasks does not walk past every other role's.
        Index("ix_tasks_assignee_worklist", "status", "assignee", "priority", "due_on", "id"),
    )


class TaskCountRow(Base):
    """How many tasks there are per status, priority, role, owner, due date and simulated flag,
    as an append-only ledger: the database's triggers on ``tasks`` (migration 0016) add +1 for a
    task's new key and -1 for its old one on every insert, change of those columns and delete, so
    that no writing path can forget them and concurrent recordings never update a shared row. The
    worklist's counts are sums over it (db/task_counts.py), which folds it back to one row per key
    now and then."""

    __tablename__ = "task_counts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(16))
    priority: Mapped[str] = mapped_column(String(16))
    assignee: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str | None] = mapped_column(String(200))
    due_on: Mapped[date | None] = mapped_column(Date)
    simulated: Mapped[bool] = mapped_column(Boolean)
    n: Mapped[int] = mapped_column(Integer)


class EventRow(Base):
    __tablename__ = "events"

    # Random, or derived from (episode, Idempotency-Key): a key is scoped to its episode.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    episode_id: Mapped[str] = mapped_column(ForeignKey("episodes.id"), index=True)
    type: Mapped[str] = mapped_column(String(32))
    occurred_on: Mapped[date] = mapped_column(Date)
    payload: Mapped[dict[str, Any]] = mapped_column()
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_by: Mapped[str] = mapped_column(String(200))

    # The measures look events up by type (db/measures.py), then by episode.
    __table_args__ = (Index("ix_events_type", "type", "episode_id", "occurred_on"),)


class ComingItemRow(Base):
    """What the clock will raise for an episode if nothing else is recorded (the pathway's own
    projection of its due points), replaced at every recording: the workload forecast's rows."""

    __tablename__ = "coming_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    episode_id: Mapped[str] = mapped_column(ForeignKey("episodes.id"), index=True)
    due_on: Mapped[date] = mapped_column(Date)  # the day it will be raised
    code: Mapped[str] = mapped_column(String(64))
    assignee: Mapped[str] = mapped_column(String(16))

    __table_args__ = (Index("ix_coming_items_forecast", "due_on", "code", "assignee"),)


class MeasureFactRow(Base):
    """One fact per episode that a cohort measure reads (db/measures.py): the first day an event
    or item it names happened, or the latest value it reads with that value's day. Rewritten
    for the episode at every recording (in the recording's transaction), so a report reads one
    narrow indexed row per episode and fact instead of every event and item."""

    __tablename__ = "measure_facts"

    episode_id: Mapped[str] = mapped_column(ForeignKey("episodes.id"), primary_key=True)
    fact: Mapped[str] = mapped_column(String(32), primary_key=True)  # the condition's key
    day: Mapped[int] = mapped_column(Integer)  # days since day 0
    value: Mapped[int | None] = mapped_column(Integer)

    # A report reads one fact of every episode: from this index alone (an index-only scan).
    __table_args__ = (Index("ix_measure_facts_fact", "fact", "episode_id", "day", "value"),)


class MeasureFactSetRow(Base):
    """A set of facts (one pathway's declared measures) filled for every episode stored before
    it: until then a report counts from the events and items themselves."""

    __tablename__ = "measure_fact_sets"

    signature: Mapped[str] = mapped_column(String(32), primary_key=True)
    pathway_id: Mapped[str] = mapped_column(String(64))
    filled_at: Mapped[datetime] = mapped_column(UTCDateTime())


class IdempotencyKeyRow(Base):
    """A client's Idempotency-Key for one episode, claimed before anything is applied.

    The primary key is what makes two concurrent requests with one key race safely: only one
    INSERT wins. ``fingerprint`` (SHA-256 of the canonical body) tells a retry from a reuse.
    """

    __tablename__ = "idempotency_keys"

    episode_id: Mapped[str] = mapped_column(ForeignKey("episodes.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64))  # the event this claim applies
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # in_progress | done
    response: Mapped[dict[str, Any] | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)  # expiry sweeps by it
    # The outbox: what the claim sends (the event's JSON, by whom) until the workflow answers, so
    # a write answered 503 is sent again by the API's sweep even if its process died.
    request: Mapped[dict[str, Any] | None] = mapped_column()
    actor: Mapped[str | None] = mapped_column(String(200))
    last_cause: Mapped[str | None] = mapped_column(String(300))  # why the last sending did not land


class NotificationRow(Base):
    """Outbox: written with the task in one transaction, delivered later with retries."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    # None for messages about no one episode (the daily digests).
    episode_id: Mapped[str | None] = mapped_column(ForeignKey("episodes.id"), index=True)
    code: Mapped[str] = mapped_column(String(64))
    occasion: Mapped[str] = mapped_column(String(64))
    recipient_role: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # pending | failed (the last attempt failed; still retried with backoff) | delivered
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)


class CheckInRow(Base):
    """A patient's check-in link for one reassessment (episode + occasion).

    Only SHA-256 hashes of the links' tokens are kept: the token itself exists in the message
    sent to the patient (the outbox body is scrubbed once delivered). A reminder carries a second
    token for the same check-in; answering through either closes both.
    """

    __tablename__ = "checkins"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    episode_id: Mapped[str] = mapped_column(ForeignKey("episodes.id"))
    occasion: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    reminder_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    expires_on: Mapped[date] = mapped_column(Date)  # last day it can be answered (the reassessment's overdue day)
    remind_after_days: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    event_id: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (UniqueConstraint("episode_id", "occasion", name="uq_checkin_occasion"),)


class AuditRow(Base):
    """Append-only: who did what to an episode, when and why."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    change_id: Mapped[str] = mapped_column(String(200), unique=True)
    episode_id: Mapped[str] = mapped_column(ForeignKey("episodes.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column()


class ApiTokenRow(Base):
    """An API token: only its SHA-256 is stored; the token itself is shown once at creation."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))  # viewer | coordinator | physician | admin
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


# ---- intake: messages received (HL7 v2, FHIR) and the candidates they raised -------------------

OPEN_CANDIDATE = "status = 'open'"


class IntakeMessageRow(Base):
    """Every message the intake received, accepted or refused, kept as received.

    ``dedupe_key`` makes a resent message (same MSH-10 from the same sender, same FHIR resource
    identifier) change nothing: it is unique, and the message's effects are written in the same
    transaction as its row, before it is acknowledged. A refused message keys by its content's
    SHA-256, so sending the same bad bytes again adds no second row.
    """

    __tablename__ = "intake_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dedupe_key: Mapped[str] = mapped_column(String(300), unique=True)
    source: Mapped[str] = mapped_column(String(8))  # hl7 | fhir
    kind: Mapped[str] = mapped_column(String(40))  # ORU^R01, ADT^A01, DiagnosticReport, Condition, ...
    control_id: Mapped[str | None] = mapped_column(String(200))
    sender: Mapped[str] = mapped_column(String(200), default="")
    patient_ref: Mapped[str | None] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)  # accepted | refused
    error: Mapped[str | None] = mapped_column(Text)  # "PID-3: ..." for a refused message
    size: Mapped[int] = mapped_column(Integer)
    body: Mapped[bytes] = mapped_column(LargeBinary)  # exactly as received (empty only when over the size limit)
    findings: Mapped[list[Any]] = mapped_column(default=list)  # the detectors' findings (dicts)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CandidateRow(Base):
    """Someone a message suggests for a pathway (``kind`` enrollment) or an event to record on an
    active episode (``kind`` event, e.g. a hospital admission): offered to a coordinator, never
    acted on by itself. At most one open candidate per patient, pathway and subject."""

    __tablename__ = "candidates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # enrollment | event
    pathway_id: Mapped[str] = mapped_column(String(64))
    patient_ref: Mapped[str] = mapped_column(String(200), index=True)
    subject: Mapped[str] = mapped_column(String(100))  # "enroll", or the event and its day
    status: Mapped[str] = mapped_column(String(16), index=True)  # open | enrolled | recorded | dismissed
    source: Mapped[str] = mapped_column(String(8))  # of the first message: hl7 | fhir
    message_id: Mapped[int] = mapped_column(ForeignKey("intake_messages.id"))  # the first message
    messages: Mapped[int] = mapped_column(Integer, default=1)  # how many messages named it
    sentence: Mapped[str] = mapped_column(Text, default="")  # the first matched sentence (or code)
    spans: Mapped[list[Any]] = mapped_column(default=list)  # [start, end] pairs to highlight in it
    levels: Mapped[list[str]] = mapped_column(default=list)
    noted: Mapped[list[str]] = mapped_column(default=list)
    birth_date: Mapped[date | None] = mapped_column(Date)
    age: Mapped[int | None] = mapped_column(Integer)
    sex: Mapped[str | None] = mapped_column(String(16))
    reported_on: Mapped[date | None] = mapped_column(Date)
    modality: Mapped[str | None] = mapped_column(String(40))
    event: Mapped[dict[str, Any] | None] = mapped_column()  # the event offered (kind event)
    episode_id: Mapped[str | None] = mapped_column(ForeignKey("episodes.id"))  # made, or offered on
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_by: Mapped[str | None] = mapped_column(String(200))
    close_reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index(
            "uq_candidates_open",
            "patient_ref",
            "pathway_id",
            "subject",
            unique=True,
            sqlite_where=text(OPEN_CANDIDATE),
            postgresql_where=text(OPEN_CANDIDATE),
        ),
    )


class CandidateAuditRow(Base):
    """Append-only: what happened to a candidate, who did it and why (raised, named again,
    enrolled, recorded, dismissed)."""

    __tablename__ = "candidate_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column()


class SessionRow(Base):
    """A signed-in browser session: its own random id (only its SHA-256 stored), apart from the
    API token it was opened with; ended at logout, on expiry, or when the token is revoked."""

    __tablename__ = "sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
