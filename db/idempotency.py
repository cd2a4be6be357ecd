"""Idempotency-Key claims (IETF httpapi Idempotency-Key draft), scoped per episode.

A key is claimed with INSERT .. ON CONFLICT DO NOTHING on its (episode, key) primary key before
anything is applied, so of two concurrent requests exactly one applies; the other finds the
claim and gets the stored answer (or waits for it). Keys are forgotten after ``KEY_LIFETIME``.

The event id is chosen with the claim (derived from the episode, the key and a nonce) and kept
in it: a request that failed without a definite answer leaves its claim in progress, and the
retry that resumes it sends the same event id, which Temporal's update id deduplicates.

The claim is also the event's outbox: it keeps the event's JSON and who sent it (``request``,
``actor``) until the workflow answers, so a write answered 503 is sent again by the API's sweep
(carepath/outbox.py) even after its process died; an unanswered claim is never expired.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, null, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from db.models import IdempotencyKeyRow

KEY_LIFETIME = timedelta(hours=24)
IN_PROGRESS = "in_progress"
DONE = "done"
KEYS = IdempotencyKeyRow.__table__


def fingerprint(body: Any) -> str:
    """SHA-256 of the canonical JSON of ``body`` (sorted keys, no spaces)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Claim:
    mine: bool  # this request holds the key now and must apply the event
    event_id: str
    fingerprint: str
    status: str
    response: dict[str, Any] | None
    created_at: datetime


@dataclass(frozen=True)
class Pending:
    """An outbox entry: a claimed event not yet answered by its workflow."""

    episode_id: str
    key: str
    event_id: str
    request: dict[str, Any]
    actor: str


def claim(
    engine: Engine,
    episode_id: str,
    key: str,
    print_: str,
    now: datetime,
    request: dict[str, Any] | None = None,
    actor: str | None = None,
) -> Claim:
    """Claim ``key`` for ``episode_id`` (keeping ``request`` to send), or return the claim that holds it."""
    with Session(engine) as session, session.begin():
        db = session.connection()
        expired = KEYS.c.created_at < now - KEY_LIFETIME
        db.execute(delete(KEYS).where(expired, or_(KEYS.c.status == DONE, KEYS.c.request.is_(None))))
        upsert = postgresql_insert if db.dialect.name == "postgresql" else sqlite_insert
        # A new event id per claim: a key reused after it expired must not meet the old update's id.
        event_id = "k-" + hashlib.sha256(f"{episode_id}\n{key}\n{secrets.token_hex(8)}".encode()).hexdigest()[:40]
        values = {"event_id": event_id, "fingerprint": print_, "status": IN_PROGRESS, "created_at": now}
        inserted = db.execute(
            upsert(KEYS)
            .values(
                episode_id=episode_id, key=key, request=null() if request is None else request, actor=actor, **values
            )
            .on_conflict_do_nothing(index_elements=["episode_id", "key"])
            .returning(KEYS.c.key)
        ).scalar()
        if inserted is not None:
            return Claim(mine=True, response=None, **values)
        # On PostgreSQL the INSERT waited for a concurrent claimant to commit; this reads its row.
        held = db.execute(select(KEYS).where(KEYS.c.episode_id == episode_id, KEYS.c.key == key)).one_or_none()
    if held is None:  # released between the two statements: try again
        return claim(engine, episode_id, key, print_, now)
    return Claim(
        mine=False,
        event_id=held.event_id,
        fingerprint=held.fingerprint,
        status=held.status,
        response=held.response,
        created_at=held.created_at,
    )


def complete(engine: Engine, episode_id: str, key: str, response: dict[str, Any]) -> None:
    with Session(engine) as session, session.begin():
        session.execute(
            update(KEYS)
            .where(KEYS.c.episode_id == episode_id, KEYS.c.key == key)
            .values(status=DONE, response=response, request=null(), last_cause=None)  # SQL NULL, not JSON null
        )


def note_cause(engine: Engine, episode_id: str, key: str, cause: str) -> None:
    """Why the claim's event has not landed yet (shown by ``carepath`` ops and the sweep's log)."""
    with Session(engine) as session, session.begin():
        session.execute(
            update(KEYS)
            .where(KEYS.c.episode_id == episode_id, KEYS.c.key == key, KEYS.c.status == IN_PROGRESS)
            .values(last_cause=cause[:300])
        )


def pending(engine: Engine, older_than: datetime, limit: int = 200) -> list[Pending]:
    """Unanswered claims with something to send, created before ``older_than``, oldest first."""
    with Session(engine) as session:
        rows = session.execute(
            select(KEYS.c.episode_id, KEYS.c.key, KEYS.c.event_id, KEYS.c.request, KEYS.c.actor)
            .where(KEYS.c.status == IN_PROGRESS, KEYS.c.request.is_not(None), KEYS.c.created_at < older_than)
            .order_by(KEYS.c.created_at)
            .limit(limit)
        ).all()
    return [Pending(r.episode_id, r.key, r.event_id, r.request, r.actor or "system") for r in rows]


def release(engine: Engine, episode_id: str, key: str) -> None:
    """Give up an unfinished claim (the request failed), so the key records nothing."""
    with Session(engine) as session, session.begin():
        session.execute(
            delete(KEYS).where(KEYS.c.episode_id == episode_id, KEYS.c.key == key, KEYS.c.status == IN_PROGRESS)
        )
