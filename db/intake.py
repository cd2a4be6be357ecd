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
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from db.models import AuditRow, CandidateAuditRow, CandidateRow, EpisodeRow, IntakeMessageRow

ACCEPTED, REFUSED = "accepted", "refused"
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
    """Store each message (once) and apply its candidates, all in one transaction."""
    with Session(engine) as session, session.begin():
        keys = [message.dedupe_key for message, _ in batch]
        known = dict(
            session.execute(
                select(IntakeMessageRow.dedupe_key, IntakeMessageRow.id).where(IntakeMessageRow.dedupe_key.in_(keys))
            ).all()
        )
        refs = {message.patient_ref for message, _ in batch if message.patient_ref}
        episodes = _live_episodes(session, refs)
        results = []
        for message, planner in batch:
            if message.dedupe_key in known:
                results.append(Stored(known[message.dedupe_key], duplicate=True))
                continue
            row = _message_row(message)
            session.add(row)
            session.flush()
            known[message.dedupe_key] = row.id
            stored = Stored(row.id, duplicate=False)
            if message.status == ACCEPTED and message.patient_ref:
                plans, demographics = planner(episodes.get(message.patient_ref, []))
                stored.candidate_ids = [_apply(session, row, plan, now) for plan in plans]
                if demographics is not None:
                    _update_open(session, message.patient_ref, demographics, now)
            results.append(stored)
    return results


def _message_row(message: IncomingMessage) -> IntakeMessageRow:
    return IntakeMessageRow(
        dedupe_key=message.dedupe_key,
        source=message.source,
        kind=message.kind[:40],
        control_id=(message.control_id or None) and message.control_id[:200],
        sender=message.sender[:200],
        patient_ref=(message.patient_ref or None) and message.patient_ref[:200],
        status=message.status,
        error=message.error,
        size=message.size,
        body=message.body,
        findings=message.findings,
        received_at=message.received_at,
    )


def _live_episodes(session: Session, refs: set[str]) -> dict[str, list[ActiveEpisode]]:
    found: dict[str, list[ActiveEpisode]] = {}
    if not refs:
        return found
    rows = session.execute(
        select(EpisodeRow.patient_ref, EpisodeRow.id, EpisodeRow.pathway_id).where(
            EpisodeRow.patient_ref.in_(refs), EpisodeRow.status.in_(LIVE_EPISODE), EpisodeRow.simulated.is_(False)
        )
    )
    for ref, episode_id, pathway_id in rows:
        found.setdefault(ref, []).append(ActiveEpisode(episode_id, pathway_id))
    return found


def _audit(session: Session, candidate_id: int, actor: str, action: str, now: datetime, **detail: Any) -> None:
    session.add(CandidateAuditRow(candidate_id=candidate_id, at=now, actor=actor, action=action, detail=detail))


def _merged(old: list[str], new: list[str]) -> list[str]:
    return old + [value for value in new if value not in old]


def _apply(session: Session, message: IntakeMessageRow, plan: CandidatePlan, now: datetime) -> int:
    """Raise the plan's candidate, or add the message to the one that already stands for it."""
    same = (
        CandidateRow.patient_ref == message.patient_ref,
        CandidateRow.pathway_id == plan.pathway_id,
        CandidateRow.subject == plan.subject,
    )
    held = session.scalar(select(CandidateRow).where(*same, CandidateRow.status == OPEN))
    if held is None and plan.kind == "enrollment":
        # A fracture already dismissed or enrolled is the same fracture when it names no new level.
        closed = session.scalar(
            select(CandidateRow).where(*same, CandidateRow.status != OPEN).order_by(CandidateRow.id.desc()).limit(1)
        )
        if closed is not None and set(plan.levels) <= set(closed.levels):
            held = closed
    if held is not None:
        held.messages += 1
        held.levels = _merged(held.levels, plan.levels)
        held.noted = _merged(held.noted, plan.noted)
        _fill(held, plan.demographics)
        held.updated_at = now
        _audit(session, held.id, "carepath:intake", "named_again", now, message_id=message.id, sentence=plan.sentence)
        return held.id
    row = CandidateRow(
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
    session.add(row)
    session.flush()
    _audit(session, row.id, "carepath:intake", "raised", now, message_id=message.id, sentence=plan.sentence)
    return row.id


def _fill(row: CandidateRow, demographics: Demographics) -> None:
    for name in ("birth_date", "age", "sex"):
        value = getattr(demographics, name)
        if value is not None:
            setattr(row, name, value)


def _update_open(session: Session, patient_ref: str, demographics: Demographics, now: datetime) -> None:
    """A patient update (ADT) corrects what open candidates show about the patient."""
    for row in session.scalars(
        select(CandidateRow).where(CandidateRow.patient_ref == patient_ref, CandidateRow.status == OPEN)
    ):
        _fill(row, demographics)
        row.updated_at = now


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
            session.add(
                AuditRow(
                    change_id=f"{episode_id}/candidate-{candidate_id}-{status}",
                    episode_id=episode_id,
                    at=now,
                    actor=actor,
                    action=f"intake:{status}",
                    detail={"candidate": candidate_id},
                )
            )
    return True
