"""Patient check-in links: issued with the item a pathway follows up by a check-in (ovcf-lumbar:
PAIN_REASSESSMENT; ``Pathway.check_in``), answered on a page without signing in. The questions,
the messages' words and the days are the pathway's data (``carepath.engine.presentation.CheckIn``).

Why the link is safe to send by SMS or e-mail:

- The token is ``secrets.token_urlsafe(32)`` (256 random bits): it cannot be guessed, and the URL
  carries nothing else (no episode id, no patient data), so a leaked URL names no one.
- Only its SHA-256 is stored, so a copy of the database opens no check-in. The token exists in
  the outbox body until the message is delivered, then the body is scrubbed.
- It is scoped to one episode and one reassessment occasion (``week4`` ...), single-use (the
  claim is one conditional UPDATE, so two submissions cannot both apply), and dead once the
  reassessment is answered, closed, or overdue (``expires_on``, the day the overdue escalation
  goes to the coordinator).
- Tries are rate-limited per token and per client address; a used, expired or unknown link gets
  the same plain page and changes nothing. The answer is recorded through the episode's workflow
  with the same validation as a clinician's, by actor ``patient:checkin:<id>``.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, or_, select, update
from sqlalchemy.orm import Session

from carepath.engine.definition import DefinitionCore
from carepath.engine.pathway import Pathway
from carepath.engine.presentation import CheckIn
from carepath.engine.registry import pathway_for
from carepath.errors import InvalidInput
from carepath.messages import patient_checkin_message, patient_outbox
from db.audit import write_audit
from db.models import CheckInRow, EpisodeRow, NotificationRow, TaskRow

CHECKIN_CODE = "CHECKIN"
REMINDER_CODE = "CHECKIN_REMINDER"
PATIENT = "patient"

ON_REQUEST = "asked-"  # the occasion of a check-in a person sent (asked-<day>-<n>): no task behind it
CHECKINS = CheckInRow.__table__
NOTIFICATIONS = NotificationRow.__table__


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


def link(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/checkin/{token}"


@dataclass(frozen=True)
class Plan:
    """A check-in as its episode's pathway declares it, with the pathway and definition it is of."""

    check_in: CheckIn
    pathway: Pathway
    definition: DefinitionCore


def check_in_codes(pathway: Pathway, definition: DefinitionCore) -> list[str]:
    """The codes whose raising the pathway follows up with a patient check-in."""
    return [code for code in definition.actions if pathway.check_in(definition, code) is not None]


def _plan(session: Session, episode_id: str, occasion: str) -> tuple[Plan, str] | None:
    """The check-in of the episode's occasion and the status of the task it answers."""
    episode = session.execute(
        select(EpisodeRow.pathway_id, EpisodeRow.pathway_version, EpisodeRow.status).where(EpisodeRow.id == episode_id)
    ).first()
    if episode is None or episode.status != "active":
        return None
    pathway = pathway_for(episode.pathway_id)
    definition = pathway.definition(episode.pathway_version)
    if occasion.startswith(ON_REQUEST):  # sent by a person: the pathway's check-in, no task to wait on
        codes = check_in_codes(pathway, definition)
        plan = pathway.check_in(definition, codes[0]) if codes else None
        return (Plan(plan, pathway, definition), "open") if plan is not None else None
    task = session.execute(
        select(TaskRow.code, TaskRow.status).where(
            TaskRow.episode_id == episode_id,
            TaskRow.code.in_(check_in_codes(pathway, definition)),
            TaskRow.occasion == occasion,
        )
    ).first()
    if task is None:
        return None
    check_in = pathway.check_in(definition, task.code)
    assert check_in is not None  # its code was one of check_in_codes
    return Plan(check_in, pathway, definition), task.status


def issue(
    db: Connection,
    upsert: Any,
    plan: CheckIn,
    episode_id: str,
    occasion: str,
    raised_on: date,
    at: datetime,
    public_url: str,
) -> None:
    """Inside the recording transaction: a check-in and its patient message for one raised item.

    Called only where the item's task row was really inserted (and never for a story: nobody to
    ask), so a retried recording issues nothing twice (the unique (episode, occasion) would refuse
    it anyway).
    """
    expires_on = raised_on + timedelta(days=plan.expires_after_days)
    token, digest = new_token()
    created = db.execute(
        upsert(CHECKINS).on_conflict_do_nothing(index_elements=["episode_id", "occasion"]).returning(CHECKINS.c.id),
        {
            "episode_id": episode_id,
            "occasion": occasion,
            "token_hash": digest,
            "expires_on": expires_on,
            "remind_after_days": plan.remind_after_days,
            "created_at": at,
        },
    ).scalar()
    if created is None:
        return
    subject, body = patient_checkin_message(plan, link(public_url, token), expires_on, reminder=False)
    db.execute(
        upsert(NOTIFICATIONS).on_conflict_do_nothing(index_elements=["dedupe_key"]),
        patient_outbox(episode_id, CHECKIN_CODE, occasion, subject, body, at),
    )


@dataclass(frozen=True)
class Sent:
    occasion: str
    expires_on: date  # the first day it no longer works


def send_now(engine: Engine, episode_id: str, now: datetime, today: date, public_url: str, actor: str) -> Sent:
    """A check-in link sent at a person's request (the patient asked, or a link expired), with its
    patient message and an audit entry, in one transaction. It asks the pathway's check-in
    questions and, answered, records their event (which closes an open reassessment as any would)."""
    with Session(engine) as session, session.begin():
        episode = session.get(EpisodeRow, episode_id)
        if episode is None or episode.status != "active":
            what = "no such episode" if episode is None else f"the episode is {episode.status}"
            raise InvalidInput.one("episode", f"{what}: no check-in can be sent")
        if episode.simulated:
            raise InvalidInput.one("episode", "a simulated story has no patient to ask")
        pathway = pathway_for(episode.pathway_id)
        definition = pathway.definition(episode.pathway_version)
        codes = check_in_codes(pathway, definition)
        plan = pathway.check_in(definition, codes[0]) if codes else None
        if plan is None:
            raise InvalidInput.one("episode", "this episode's pathway asks no check-in questions")
        taken = session.scalars(select(CheckInRow.occasion).where(CheckInRow.episode_id == episode_id)).all()
        n = 1 + sum(1 for o in taken if o.startswith(f"{ON_REQUEST}{today.isoformat()}"))
        occasion = f"{ON_REQUEST}{today.isoformat()}-{n}"
        expires_on = today + timedelta(days=plan.expires_after_days)
        token, digest = new_token()
        session.add(
            CheckInRow(
                episode_id=episode_id,
                occasion=occasion,
                token_hash=digest,
                expires_on=expires_on,
                remind_after_days=plan.remind_after_days,
                created_at=now,
            )
        )
        subject, body = patient_checkin_message(plan, link(public_url, token), expires_on, reminder=False)
        session.add(NotificationRow(**patient_outbox(episode_id, CHECKIN_CODE, occasion, subject, body, now)))
        write_audit(
            session,
            change_id=f"{episode_id}/checkin-{occasion}",
            episode_id=episode_id,
            at=now,
            actor=actor,
            action="checkin:sent",
            detail={"reason": f"check-in link sent to the patient, valid until {last_day(expires_on)}"},
        )
    return Sent(occasion, expires_on)


def last_day(expires_on: date) -> str:
    """The last day a link works, as every page and message says it (it dies on ``expires_on``)."""
    return (expires_on - timedelta(days=1)).isoformat()


def waiting_reminders(engine: Engine, episode_id: str) -> list[tuple[int, int]]:
    """The episode's check-ins still waiting for an answer and not yet reminded: (id, days to wait)."""
    with Session(engine) as session:
        rows = session.execute(
            select(CheckInRow.id, CheckInRow.remind_after_days).where(
                CheckInRow.episode_id == episode_id, CheckInRow.answered_at.is_(None), CheckInRow.reminded_at.is_(None)
            )
        )
        return [(row.id, row.remind_after_days) for row in rows]


def _still_open(session: Session, row: CheckInRow, today: date) -> Plan | None:
    """Its plan if unanswered, before its overdue day, its task still open and the episode active."""
    if row.answered_at is not None or today >= row.expires_on:
        return None
    found = _plan(session, row.episode_id, row.occasion)
    return found[0] if found is not None and found[1] == "open" else None


def remind(engine: Engine, checkin_id: int, now: datetime, public_url: str) -> str | None:
    """Write the one reminder for an unanswered check-in (a fresh token for the same check-in).

    Returns the episode id when a reminder is (or already was) in the outbox, None when there is
    nothing to remind of (answered, closed, expired). A retry after commit finds ``reminded_at``
    set and writes nothing again.
    """
    with Session(engine) as session, session.begin():
        row = session.get(CheckInRow, checkin_id)
        if row is None:
            return None
        if row.reminded_at is not None:
            return row.episode_id
        plan = _still_open(session, row, now.date())
        if plan is None:
            return None
        token, digest = new_token()
        claimed = session.execute(
            update(CheckInRow)
            .where(CheckInRow.id == checkin_id, CheckInRow.reminded_at.is_(None))
            .values(reminded_at=now, reminder_token_hash=digest)
        )
        if claimed.rowcount == 0:
            return row.episode_id
        subject, body = patient_checkin_message(plan.check_in, link(public_url, token), row.expires_on, reminder=True)
        session.add(NotificationRow(**patient_outbox(row.episode_id, REMINDER_CODE, row.occasion, subject, body, now)))
        return row.episode_id


# ---- the page's side ------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """What a token opens: ``state`` is valid | unusable (used, expired, closed or unknown)."""

    state: str
    checkin_id: int | None = None
    episode_id: str | None = None
    occasion: str | None = None
    plan: Plan | None = None  # the questions to ask, and the pathway that turns answers into an event


UNUSABLE = Found("unusable")


def find(engine: Engine, token: str, today: date) -> Found:
    if not token or len(token) > 100:
        return UNUSABLE
    digest = hash_token(token)
    with Session(engine) as session:
        row = session.scalar(
            select(CheckInRow).where(or_(CheckInRow.token_hash == digest, CheckInRow.reminder_token_hash == digest))
        )
        plan = None if row is None else _still_open(session, row, today)
        if row is None or plan is None:
            return UNUSABLE
        return Found("valid", row.id, row.episode_id, row.occasion, plan)


def mark_opened(engine: Engine, checkin_id: int, now: datetime) -> None:
    with Session(engine) as session, session.begin():
        session.execute(
            update(CheckInRow).where(CheckInRow.id == checkin_id, CheckInRow.opened_at.is_(None)).values(opened_at=now)
        )


def claim(engine: Engine, checkin_id: int, now: datetime) -> bool:
    """Take the single use: one conditional UPDATE, so of two submissions only one wins."""
    with Session(engine) as session, session.begin():
        won = session.execute(
            update(CheckInRow)
            .where(CheckInRow.id == checkin_id, CheckInRow.answered_at.is_(None))
            .values(answered_at=now)
        )
        return won.rowcount == 1


def settle(engine: Engine, checkin_id: int, event_id: str | None) -> None:
    """After recording: keep the claim with its event, or (refused) give the link back."""
    with Session(engine) as session, session.begin():
        values: dict[str, Any] = {"event_id": event_id} if event_id else {"answered_at": None}
        session.execute(update(CheckInRow).where(CheckInRow.id == checkin_id).values(values))


def summary(engine: Engine, episode_id: str) -> list[dict[str, Any]]:
    """Per check-in: when it was sent, opened, reminded and answered (the episode page's section)."""
    with Session(engine) as session:
        rows = session.scalars(select(CheckInRow).where(CheckInRow.episode_id == episode_id).order_by(CheckInRow.id))
        return [
            {
                "occasion": r.occasion,
                "sent_at": r.created_at,
                "opened_at": r.opened_at,
                "reminded_at": r.reminded_at,
                "answered_at": r.answered_at if r.event_id else None,
                "expires_on": r.expires_on,
                "valid_until": last_day(r.expires_on),
                "occasion_words": "sent on request" if r.occasion.startswith(ON_REQUEST) else "sent by the pathway",
            }
            for r in rows
        ]


def utcnow() -> datetime:
    return datetime.now(UTC)
