"""Patient check-in links: issued with a PAIN_REASSESSMENT, answered on a page without signing in.

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
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, or_, select, update
from sqlalchemy.orm import Session

from carepath.errors import FieldError, InvalidInput
from carepath.pathways.ovcf_lumbar.definition import PathwayDefinition, load_definition
from carepath.pathways.ovcf_lumbar.inputs import PainAssessment, parse_model
from db.models import AuditRow, CheckInRow, EpisodeRow, NotificationRow, TaskRow

CHECKIN_CODE = "CHECKIN"
REMINDER_CODE = "CHECKIN_REMINDER"
REASSESSMENT = "PAIN_REASSESSMENT"
PATIENT = "patient"
# Until the definition carries it (proposed: reassessment.patient_reminder_after_days), the one
# place the default lives.

ON_REQUEST = "asked-"  # the occasion of a check-in a person sent (asked-<day>-<n>)
CHECKINS = CheckInRow.__table__
NOTIFICATIONS = NotificationRow.__table__


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


def link(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/checkin/{token}"


def reminder_days(definition: PathwayDefinition) -> int:
    """Days without an answer before the patient gets one reminder (pathway data, default 2)."""
    return definition.reassessment.patient_reminder_after_days


def _patient_message(url: str, expires_on: date, reminder: bool) -> tuple[str, str]:
    if reminder:
        subject = "Reminder: how is your back pain?"
        opening = "A few days ago we asked how your back pain is. We have not heard from you yet."
    else:
        subject = "How is your back pain? A two-minute check-in"
        opening = "Your care team would like to know how your back pain is going."
    body = (
        f"{opening} Please answer a few short questions here:\n{url}\n"
        f"The link works once, until {last_day(expires_on)}. If you prefer, call your care team instead. "
        "If you have new weakness or numbness in your legs, or trouble controlling your bladder or "
        "bowels, call your doctor or emergency services now."
    )
    return subject, body


def _patient_outbox(episode_id: str, code: str, occasion: str, subject: str, body: str, at: datetime) -> dict[str, Any]:
    return {
        "dedupe_key": f"{episode_id}:{code}@{occasion}",
        "episode_id": episode_id,
        "code": code,
        "occasion": occasion,
        "recipient_role": PATIENT,
        "subject": subject,
        "body": body,
        "created_at": at,
        "status": "pending",
        "attempts": 0,
    }


def issue(
    db: Connection, upsert: Any, episode_id: str, occasion: str, raised_on: date, at: datetime, public_url: str
) -> None:
    """Inside the recording transaction: a check-in and its patient message for one reassessment.

    Called only where the PAIN_REASSESSMENT task row was really inserted, so a retried recording
    issues nothing twice (and the unique (episode, occasion) would refuse it anyway).
    """
    episode = db.execute(
        select(EpisodeRow.pathway_id, EpisodeRow.pathway_version, EpisodeRow.simulated).where(
            EpisodeRow.id == episode_id
        )
    ).one()
    if episode.simulated:  # stories are not patients: nobody to ask
        return
    definition = load_definition(episode.pathway_id, episode.pathway_version)
    expires_on = raised_on + timedelta(days=definition.reassessment.overdue_after_days)
    token, digest = new_token()
    created = db.execute(
        upsert(CHECKINS).on_conflict_do_nothing(index_elements=["episode_id", "occasion"]).returning(CHECKINS.c.id),
        {
            "episode_id": episode_id,
            "occasion": occasion,
            "token_hash": digest,
            "expires_on": expires_on,
            "remind_after_days": reminder_days(definition),
            "created_at": at,
        },
    ).scalar()
    if created is None:
        return
    subject, body = _patient_message(link(public_url, token), expires_on, reminder=False)
    db.execute(
        upsert(NOTIFICATIONS).on_conflict_do_nothing(index_elements=["dedupe_key"]),
        _patient_outbox(episode_id, CHECKIN_CODE, occasion, subject, body, at),
    )


@dataclass(frozen=True)
class Sent:
    occasion: str
    expires_on: date  # the first day it no longer works


def send_now(engine: Engine, episode_id: str, now: datetime, today: date, public_url: str, actor: str) -> Sent:
    """A check-in link sent at a person's request (the patient asked, or a link expired), with its
    patient message and an audit entry, in one transaction. It works like a reassessment's link
    and, answered, records a pain assessment (which closes an open reassessment as any would)."""
    with Session(engine) as session, session.begin():
        episode = session.get(EpisodeRow, episode_id)
        if episode is None or episode.status != "active":
            what = "no such episode" if episode is None else f"the episode is {episode.status}"
            raise InvalidInput.one("episode", f"{what}: no check-in can be sent")
        if episode.simulated:
            raise InvalidInput.one("episode", "a simulated story has no patient to ask")
        try:
            definition = load_definition(episode.pathway_id, episode.pathway_version)
        except LookupError:
            raise InvalidInput.one("episode", "this episode's pathway asks no check-in questions") from None
        taken = session.scalars(select(CheckInRow.occasion).where(CheckInRow.episode_id == episode_id)).all()
        n = 1 + sum(1 for o in taken if o.startswith(f"{ON_REQUEST}{today.isoformat()}"))
        occasion = f"{ON_REQUEST}{today.isoformat()}-{n}"
        expires_on = today + timedelta(days=definition.reassessment.overdue_after_days)
        token, digest = new_token()
        row = CheckInRow(
            episode_id=episode_id,
            occasion=occasion,
            token_hash=digest,
            expires_on=expires_on,
            remind_after_days=reminder_days(definition),
            created_at=now,
        )
        session.add(row)
        subject, body = _patient_message(link(public_url, token), expires_on, reminder=False)
        session.add(NotificationRow(**_patient_outbox(episode_id, CHECKIN_CODE, occasion, subject, body, now)))
        session.add(
            AuditRow(
                change_id=f"{episode_id}/checkin-{occasion}",
                episode_id=episode_id,
                at=now,
                actor=actor,
                action="checkin:sent",
                detail={"reason": f"check-in link sent to the patient, valid until {last_day(expires_on)}"},
            )
        )
    return Sent(occasion, expires_on)


def last_day(expires_on: date) -> str:
    """The last day a link works, as every page and message says it (it dies on ``expires_on``)."""
    return (expires_on - timedelta(days=1)).isoformat()


def open_reminder_due(session: Session, episode_id: str) -> list[CheckInRow]:
    """The episode's check-ins still waiting for an answer and not yet reminded."""
    return list(
        session.scalars(
            select(CheckInRow).where(
                CheckInRow.episode_id == episode_id, CheckInRow.answered_at.is_(None), CheckInRow.reminded_at.is_(None)
            )
        )
    )


def _still_open(session: Session, row: CheckInRow, today: date) -> bool:
    """Unanswered, before its overdue day, its reassessment still open (a check-in a person sent
    stands alone) and the episode active."""
    if row.answered_at is not None or today >= row.expires_on:
        return False
    status = session.scalar(select(EpisodeRow.status).where(EpisodeRow.id == row.episode_id))
    if row.occasion.startswith(ON_REQUEST):
        return status == "active"
    task = session.scalar(
        select(TaskRow.status).where(
            TaskRow.episode_id == row.episode_id, TaskRow.code == REASSESSMENT, TaskRow.occasion == row.occasion
        )
    )
    return task == "open" and status == "active"


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
        if not _still_open(session, row, now.date()):
            return None
        token, digest = new_token()
        claimed = session.execute(
            update(CheckInRow)
            .where(CheckInRow.id == checkin_id, CheckInRow.reminded_at.is_(None))
            .values(reminded_at=now, reminder_token_hash=digest)
        )
        if claimed.rowcount == 0:
            return row.episode_id
        subject, body = _patient_message(link(public_url, token), row.expires_on, reminder=True)
        session.add(NotificationRow(**_patient_outbox(row.episode_id, REMINDER_CODE, row.occasion, subject, body, now)))
        return row.episode_id


# ---- the page's side ------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """What a token opens: ``state`` is valid | unusable (used, expired, closed or unknown)."""

    state: str
    checkin_id: int | None = None
    episode_id: str | None = None
    occasion: str | None = None


UNUSABLE = Found("unusable")


def find(engine: Engine, token: str, today: date) -> Found:
    if not token or len(token) > 100:
        return UNUSABLE
    digest = hash_token(token)
    with Session(engine) as session:
        row = session.scalar(
            select(CheckInRow).where(or_(CheckInRow.token_hash == digest, CheckInRow.reminder_token_hash == digest))
        )
        if row is None or not _still_open(session, row, today):
            return UNUSABLE
        return Found("valid", row.id, row.episode_id, row.occasion)


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


def answer_event(form: dict[str, Any], today: date) -> PainAssessment:
    """The form's answers as a pain assessment; every missing or contradictory answer raises
    InvalidInput naming its question (``nrs``, ``analgesics``, ``adequate``, ``mobility``,
    ``symptoms_changed``) in the patient's words. Nothing is assumed for an unanswered question."""
    raw_nrs = str(form.get("nrs") or "").strip()
    analgesics = [a for a in form.get("analgesics") or [] if a]
    effects = [e for e in form.get("opioid_effects") or [] if e and e != "none"]
    adequate, symptoms = form.get("adequate"), form.get("symptoms_changed")
    errors: list[FieldError] = []
    if not raw_nrs.isdigit():
        errors.append(FieldError("nrs", "Please choose a number from 0 to 10."))
    if not analgesics:
        errors.append(FieldError("analgesics", "Please tick the painkillers you take, or tick None."))
    elif "none" in analgesics and len(analgesics) > 1:
        both = "You ticked None and a painkiller. Please tick only None, or only your painkillers."
        errors.append(FieldError("analgesics", both))
    taking = [a for a in analgesics if a != "none"]
    if taking and "none" not in analgesics and adequate not in ("yes", "no"):
        errors.append(FieldError("adequate", "Please say whether the painkillers help enough."))
    if form.get("mobility") not in ("ambulatory", "limited", "bed_rest"):
        errors.append(FieldError("mobility", "Please choose how well you can move around."))
    if symptoms not in ("yes", "no"):
        errors.append(FieldError("symptoms_changed", "Please answer yes or no."))
    if errors:
        raise InvalidInput(errors)
    payload: dict[str, Any] = {
        "type": "pain_assessment",
        "occurred_on": today.isoformat(),
        "nrs": int(raw_nrs),
        "analgesics": taking,
        "mobility": form["mobility"],
        "symptoms_changed": symptoms == "yes",
        "opioid_effects": effects,
    }
    if taking:  # with no painkillers there is nothing to be adequate: the answer stays absent
        payload["oral_analgesia_adequate"] = adequate == "yes"
    return parse_model(PainAssessment, payload)


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
                "occasion_words": "sent on request" if r.occasion.startswith(ON_REQUEST) else "pain reassessment",
            }
            for r in rows
        ]


class RateLimiter:
    """At most ``limit`` tries per key in a sliding ``window`` of seconds (one API process's memory:
    enough to make guessing pointless next to 256-bit tokens; several processes each count their own)."""

    def __init__(self, limit: int = 5, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._tries: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, *keys: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if len(self._tries) > 10_000:  # forget idle keys so a scan cannot grow this without bound
                self._tries = {k: q for k, q in self._tries.items() if q and q[-1] > now - self.window}
            queues = [self._tries.setdefault(k, deque()) for k in keys]
            for q in queues:
                while q and q[0] <= now - self.window:
                    q.popleft()
            if any(len(q) >= self.limit for q in queues):
                return False
            for q in queues:
                q.append(now)
            return True


def utcnow() -> datetime:
    return datetime.now(UTC)
