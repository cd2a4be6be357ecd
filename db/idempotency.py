"""Idempotency-Key claims (IETF httpapi Idempotency-Key draft), scoped per episode.

A key is claimed with INSERT .. ON CONFLICT DO NOTHING on its (episode, key) primary key before
anything is applied, so of two concurrent requests exactly one applies; the other finds the
claim and gets the stored answer (or waits for it). Keys are forgotten after ``KEY_LIFETIME``.

The event id is chosen with the claim (derived from the episode, the key and a nonce) and kept
in it: a request that failed without a definite answer leaves its claim in progress, and the
retry that resumes it sends the same event id, which Temporal's update id deduplicates.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, select, update
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


def claim(engine: Engine, episode_id: str, key: str, print_: str, now: datetime) -> Claim:
    """Claim ``key`` for ``episode_id``, or return the claim that holds it already."""
    with Session(engine) as session, session.begin():
        db = session.connection()
        db.execute(delete(KEYS).where(KEYS.c.created_at < now - KEY_LIFETIME))
        upsert = postgresql_insert if db.dialect.name == "postgresql" else sqlite_insert
        # A new event id per claim: a key reused after it expired must not meet the old update's id.
        event_id = "k-" + hashlib.sha256(f"{episode_id}\n{key}\n{secrets.token_hex(8)}".encode()).hexdigest()[:40]
        values = {"event_id": event_id, "fingerprint": print_, "status": IN_PROGRESS, "created_at": now}
        inserted = db.execute(
            upsert(KEYS)
            .values(episode_id=episode_id, key=key, **values)
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
            .values(status=DONE, response=response)
        )


def release(engine: Engine, episode_id: str, key: str) -> None:
    """Give up an unfinished claim (the request failed), so the key records nothing."""
    with Session(engine) as session, session.begin():
        session.execute(
            delete(KEYS).where(KEYS.c.episode_id == episode_id, KEYS.c.key == key, KEYS.c.status == IN_PROGRESS)
        )
