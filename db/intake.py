"""The intake's SQL: messages as received, the candidates they raise, and what people did with them.

``store_messages`` writes a batch of messages and their candidates in one transaction: a message
is acknowledged only after it returns, so an acknowledged message is never lost, and a message
whose ``dedupe_key`` is already stored changes nothing (a resend, or a sender's retry after we
died between the commit and the ACK).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, Engine, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.audit import write_audit
from db.models import CandidateAuditRow, CandidateRow, EpisodeRow, IntakeMessageRow

ACCEPTED, REFUSED = "accepted", "refused"
MESSAGES, CANDIDATES = IntakeMessageRow.__table__, CandidateRow.__table__
# Built once: a batch runs them with new parameters only (statement construction is most of their cost).
_KEYS = bindparam("keys", expanding=True)
_KNOWN = select(MESSAGES.c.dedupe_key, MESSAGES.c.id).where(MESSAGES.c.dedupe_key.in_(_KEYS))
_INSERT_MESSAGES = insert(MESSAGES).returning(MESSAGES.c.id, sort_by_parameter_order=True)
_INSERT_CANDIDATES = insert(CANDIDATES).returning(CANDIDATES.c.id, sort_by_parameter_order=True)
_INSERT_AUDIT = insert(CandidateAuditRow.__table__)
OPEN = "open"
LIVE_EPISODE = ("reserving", "active")


@dataclass
class IncomingMessage:
    dedupe_key: str
    source: str
    kind: str
    control_id: str | None
    sender: str
    patient_ref: str | None
    status: str
    error: str | None
    size: int
    body: bytes
    received_at: datetime
    findings: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ActiveEpisode:
    id: str
    pathway_id: str


@dataclass
class Demographics:
    """What a message says about the patient; None is "not said" and changes nothing."""

    birth_date: date | None = None
    age: int | None = None
    sex: str | None = None


@dataclass
class CandidatePlan:
    kind: str  # enrollment | event
    pathway_id: str
    subject: str
    sentence: str = ""
    spans: list[list[int]] = field(default_factory=list)
    levels: list[str] = field(default_factory=list)
    noted: list[str] = field(default_factory=list)
    demographics: Demographics = field(default_factory=Demographics)
    reported_on: date | None = None
    modality: str | None = None
    event: dict[str, Any] | None = None
    episode_id: str | None = None


# What a message does, decided by the intake once the store has looked up the patient's episodes.
Planner = Callable[[list[ActiveEpisode]], tuple[list[CandidatePlan], Demographics | None]]


@dataclass
class Stored:
    message_id: int
    duplicate: bool
    candidate_ids: list[int] = field(default_factory=list)


def store_messages(engine: Engine, batch: Sequence[tuple[IncomingMessage, Planner]], now: datetime) -> list[Stored]:
    """Store each message (once) and apply its candidates, all in one transaction.

    A batch costs a few statements whatever its size: the messages' multi-row INSERT, a look-up each
    for live episodes and the patients' candidates, a multi-row INSERT each for the new candidates
    and the audit entries. Most batches hold no message received before, so the INSERT is tried
    first; when one was (its key is taken), the batch is stored again knowing which.
    """
    try:
        return _store(engine, batch, now, look_up_known=False)
    except IntegrityError:
        return _store(engine, batch, now, look_up_known=True)


def _store(
    engine: Engine, batch: Sequence[tuple[IncomingMessage, Planner]], now: datetime, look_up_known: bool
) -> list[Stored]:
    # Core statements: the ORM's bookkeeping costs more than the SQL here (it is used only to change
    # candidates that already exist).
    with engine.begin() as connection:
        known: dict[str, int] = {}
        if look_up_known:
            _lock_for_writing(connection)
            keys = [message.dedupe_key for message, _ in batch]
            known = dict(connection.execute(_KNOWN, {"keys": keys}).all())
        fresh: dict[str, tuple[IncomingMessage, Planner]] = {}
        for message, planner in batch:
            if message.dedupe_key not in known:
                fresh.setdefault(message.dedupe_key, (message, planner))
        # The first write of the transaction: on SQLite it takes the write lock before anything is read.
        ids = _insert_messages(connection, [message for message, _ in fresh.values()])
        # Only messages that can touch a candidate need the patient's episodes and candidates looked up.
        touching = {m.patient_ref for m, _ in batch if m.patient_ref and (m.findings or m.kind.startswith("ADT"))}
        admitted = {m.patient_ref for m, _ in batch if m.patient_ref and m.kind == "ADT^A01"}
        episodes = _live_episodes(connection, admitted)
        held = _Held(connection, touching)
        applied: dict[str, list[Candidate]] = {}
        for (message, planner), message_id in zip(fresh.values(), ids, strict=True):
            known[message.dedupe_key] = message_id
            stored = _Stored(message_id, message.patient_ref or "", message.source)
            plans = _plans(message, planner, episodes, held, now)
            applied[message.dedupe_key] = [held.apply(stored, plan, now) for plan in plans]
        held.insert_new()  # the new candidates: their ids, for the audit entries
        held.audit(now)
        held.flush()
        results = []
        for message, _ in batch:
            first = fresh.get(message.dedupe_key, (None,))[0] is message  # not a resend, nor a repeat in the batch
            made = applied.get(message.dedupe_key, []) if first else []
            results.append(Stored(known[message.dedupe_key], duplicate=not first, candidate_ids=[c.id for c in made]))
        return results


def _lock_for_writing(connection: Connection) -> None:
    """Two writers must not both read a candidate and then both write it (a lost update): SQLite
    takes its write lock at the first write, so write first (an UPDATE of nothing); PostgreSQL locks
    the candidate rows as they are read (``FOR UPDATE`` in ``_Held``)."""
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("UPDATE intake_messages SET id = id WHERE 0")


@dataclass(frozen=True)
class _Stored:
    """A message just inserted, as its candidates need it."""

    id: int
    patient_ref: str
    source: str


def _insert_messages(connection: Connection, messages: list[IncomingMessage]) -> list[int]:
    """One multi-row INSERT for the batch's new messages; their ids in order."""
    if not messages:
        return []
    return list(connection.execute(_INSERT_MESSAGES, [_message_values(m) for m in messages]).scalars())


def _plans(
    message: IncomingMessage,
    planner: Planner,
    episodes: dict[str, list[ActiveEpisode]],
    held: _Held,
    now: datetime,
) -> list[CandidatePlan]:
    if message.status != ACCEPTED or not message.patient_ref:
        return []
    plans, demographics = planner(episodes.get(message.patient_ref, []))
    if demographics is not None:
        held.update_open(message.patient_ref, demographics, now)
    return plans


def _message_values(message: IncomingMessage) -> dict[str, Any]:
    return {
        "dedupe_key": message.dedupe_key,
        "source": message.source,
        "kind": message.kind[:40],
        "control_id": (message.control_id or None) and message.control_id[:200],
        "sender": message.sender[:200],
        "patient_ref": (message.patient_ref or None) and message.patient_ref[:200],
        "status": message.status,
        "error": message.error,
        "size": message.size,
        "body": message.body,
        "findings": message.findings,
        "received_at": message.received_at,
    }


def _live_episodes(connection: Connection, refs: set[str]) -> dict[str, list[ActiveEpisode]]:
    found: dict[str, list[ActiveEpisode]] = {}
    if not refs:
        return found
    rows = connection.execute(
        select(EpisodeRow.patient_ref, EpisodeRow.id, EpisodeRow.pathway_id).where(
            EpisodeRow.patient_ref.in_(refs), EpisodeRow.status.in_(LIVE_EPISODE), EpisodeRow.simulated.is_(False)
        )
    )
    for ref, episode_id, pathway_id in rows:
        found.setdefault(ref, []).append(ActiveEpisode(episode_id, pathway_id))
    return found


def _merged(old: list[str], new: list[str]) -> list[str]:
    return old + [value for value in new if value not in old]


class _NewCandidate:
    """A candidate raised in this batch, inserted with the others in one statement (``id`` after)."""

    def __init__(self, **values: Any) -> None:
        self.id: int | None = None
        self.__dict__.update(values)

    def values(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "id"}


Candidate = CandidateRow | _NewCandidate


class _Held:
    """The batch's patients' candidates, loaded once; new ones join them as the batch is applied."""

    def __init__(self, connection: Connection, refs: set[str]) -> None:
        self.connection = connection
        # Existing candidates are changed through the ORM, in the connection's transaction.
        self.session = Session(bind=connection) if refs else None
        self.rows: dict[tuple[str, str, str], list[Candidate]] = {}
        self.new: list[_NewCandidate] = []
        self.pending: list[tuple[Candidate, str, _Stored, str]] = []  # audit entries to write
        if self.session is not None:
            query = (
                select(CandidateRow)
                .where(CandidateRow.patient_ref.in_(refs))
                .order_by(CandidateRow.id)
                .with_for_update()
            )
            for row in self.session.scalars(query):
                self.rows.setdefault((row.patient_ref, row.pathway_id, row.subject), []).append(row)

    def apply(self, message: _Stored, plan: CandidatePlan, now: datetime) -> Candidate:
        """Raise the plan's candidate, or add the message to the one that already stands for it."""
        same = self.rows.setdefault((message.patient_ref, plan.pathway_id, plan.subject), [])
        target = next((c for c in reversed(same) if c.status == OPEN), None)
        if target is None and plan.kind == "enrollment" and same:
            # A fracture already dismissed or enrolled is the same fracture when it names no new level.
            target = same[-1] if set(plan.levels) <= set(same[-1].levels) else None
        if target is not None:
            target.messages += 1
            target.levels = _merged(target.levels, plan.levels)
            target.noted = _merged(target.noted, plan.noted)
            _fill(target, plan.demographics)
            target.updated_at = now
            self.pending.append((target, "named_again", message, plan.sentence))
            return target
        row = _candidate_row(message, plan, now)
        self.new.append(row)
        same.append(row)
        self.pending.append((row, "raised", message, plan.sentence))
        return row

    def update_open(self, patient_ref: str, demographics: Demographics, now: datetime) -> None:
        """A patient update (ADT) corrects what open candidates show about the patient."""
        for (ref, _, _), rows in self.rows.items():
            for row in rows:
                if ref == patient_ref and row.status == OPEN:
                    _fill(row, demographics)
                    row.updated_at = now

    def insert_new(self) -> None:
        """One multi-row INSERT for the batch's new candidates; their ids."""
        if not self.new:
            return
        ids = self.connection.execute(_INSERT_CANDIDATES, [c.values() for c in self.new]).scalars()
        for row, new_id in zip(self.new, ids, strict=True):
            row.id = new_id

    def audit(self, now: datetime) -> None:
        if not self.pending:
            return
        rows = [
            {
                "candidate_id": row.id,
                "at": now,
                "actor": "carepath:intake",
                "action": action,
                "detail": {"message_id": message.id, "sentence": sentence},
            }
            for row, action, message, sentence in self.pending
        ]
        self.connection.execute(_INSERT_AUDIT, rows)

    def flush(self) -> None:
        """Write the changes to existing candidates (still inside the batch's transaction)."""
        if self.session is not None:
            self.session.flush()
            self.session.close()


def _audit(session: Session, candidate_id: int, actor: str, action: str, now: datetime, **detail: Any) -> None:
    session.add(CandidateAuditRow(candidate_id=candidate_id, at=now, actor=actor, action=action, detail=detail))


def _candidate_row(message: _Stored, plan: CandidatePlan, now: datetime) -> _NewCandidate:
    row = _NewCandidate(
        birth_date=None,
        age=None,
        sex=None,
        kind=plan.kind,
        pathway_id=plan.pathway_id,
        patient_ref=message.patient_ref,
        subject=plan.subject,
        status=OPEN,
        source=message.source,
        message_id=message.id,
        messages=1,
        sentence=plan.sentence,
        spans=plan.spans,
        levels=plan.levels,
        noted=plan.noted,
        reported_on=plan.reported_on,
        modality=plan.modality,
        event=plan.event,
        episode_id=plan.episode_id,
        created_at=now,
        updated_at=now,
    )
    _fill(row, plan.demographics)
    return row


def _fill(row: Candidate, demographics: Demographics) -> None:
    for name in ("birth_date", "age", "sex"):
        value = getattr(demographics, name)
        if value is not None:
            setattr(row, name, value)


# ---- reads --------------------------------------------------------------------------------------


class CandidateView(BaseModel):
    id: int
    kind: str
    pathway_id: str
    status: str
    patient_ref: str
    age: int | None
    sex: str | None
    birth_date: date | None
    levels: list[str]
    noted: list[str]
    sentence: str
    spans: list[list[int]]
    reported_on: date | None
    modality: str | None
    event: dict[str, Any] | None
    source: str
    message_kind: str
    control_id: str | None
    sender: str
    received_at: datetime
    messages: int
    episode_id: str | None  # the episode it made or is offered on
    active_episode_id: str | None  # the patient's episode running now, if any
    closed_at: datetime | None
    closed_by: str | None
    close_reason: str | None


def _views(session: Session, *where: Any, limit: int = 200) -> list[CandidateView]:
    live = (
        select(EpisodeRow.id)
        .where(
            EpisodeRow.patient_ref == CandidateRow.patient_ref,
            EpisodeRow.pathway_id == CandidateRow.pathway_id,
            EpisodeRow.status.in_(LIVE_EPISODE),
            EpisodeRow.simulated.is_(False),
        )
        .limit(1)
        .scalar_subquery()
    )
    query = (
        select(CandidateRow, IntakeMessageRow, live.label("active_episode_id"))
        .join(IntakeMessageRow, IntakeMessageRow.id == CandidateRow.message_id)
        .where(*where)
        .order_by(CandidateRow.id.desc())
        .limit(limit)
    )
    views = []
    for candidate, message, active in session.execute(query):
        data = {c.key: getattr(candidate, c.key) for c in CandidateRow.__table__.columns}
        views.append(
            CandidateView(
                **data,
                message_kind=message.kind,
                control_id=message.control_id,
                sender=message.sender,
                received_at=message.received_at,
                active_episode_id=active,
            )
        )
    return views


def candidates(engine: Engine, status: str | None = OPEN, limit: int = 200) -> list[CandidateView]:
    with Session(engine) as session:
        return _views(session, *([CandidateRow.status == status] if status else []), limit=limit)


def candidate(engine: Engine, candidate_id: int) -> CandidateView | None:
    with Session(engine) as session:
        found = _views(session, CandidateRow.id == candidate_id, limit=1)
    return found[0] if found else None


def candidate_audit(engine: Engine, candidate_id: int) -> list[dict[str, Any]]:
    with Session(engine) as session:
        rows = session.scalars(
            select(CandidateAuditRow)
            .where(CandidateAuditRow.candidate_id == candidate_id)
            .order_by(CandidateAuditRow.id)
        )
        return [{"at": r.at, "actor": r.actor, "action": r.action, "detail": r.detail} for r in rows]


class MessageView(BaseModel):
    id: int
    source: str
    kind: str
    control_id: str | None
    sender: str
    patient_ref: str | None
    status: str
    error: str | None
    size: int
    received_at: datetime
    text: str  # the body as text, undecodable bytes shown as U+FFFD


def messages(engine: Engine, status: str | None = None, limit: int = 100) -> list[MessageView]:
    with Session(engine) as session:
        query = select(IntakeMessageRow).order_by(IntakeMessageRow.id.desc()).limit(limit)
        if status:
            query = query.where(IntakeMessageRow.status == status)
        return [
            MessageView(
                **{k: getattr(row, k) for k in MessageView.model_fields if k != "text"},
                text=row.body.decode("utf-8", errors="replace"),
            )
            for row in session.scalars(query)
        ]


def count_messages(engine: Engine, status: str) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).where(IntakeMessageRow.status == status)) or 0


def count_candidates(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).where(CandidateRow.status == OPEN)) or 0


# ---- what people do with a candidate ----------------------------------------------------------


def close_candidate(
    engine: Engine,
    candidate_id: int,
    status: str,
    actor: str,
    now: datetime,
    reason: str | None = None,
    episode_id: str | None = None,
) -> bool:
    """Close an open candidate (enrolled, recorded or dismissed), audited; False if it was not open.

    Conditional on ``open``, so two people closing one candidate cannot both close it.
    """
    with Session(engine) as session, session.begin():
        closed = session.execute(
            update(CandidateRow)
            .where(CandidateRow.id == candidate_id, CandidateRow.status == OPEN)
            .values(status=status, closed_at=now, closed_by=actor, close_reason=reason, updated_at=now)
            .values(**({"episode_id": episode_id} if episode_id else {}))
        ).rowcount
        if not closed:
            return False
        _audit(session, candidate_id, actor, status, now, reason=reason, episode_id=episode_id)
        if episode_id:
            write_audit(
                session,
                change_id=f"{episode_id}/candidate-{candidate_id}-{status}",
                episode_id=episode_id,
                at=now,
                actor=actor,
                action=f"intake:{status}",
                detail={"candidate": candidate_id},
            )
    return True
