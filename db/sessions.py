"""Sign-in sessions: a browser's own random id, apart from the API token it was opened with.

Only the id's SHA-256 is stored. A session ends at logout, after ``idle`` without a request,
``absolute`` after sign-in whatever its use, or when its token is revoked (``db.tokens.revoke``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from db.models import ApiTokenRow, SessionRow
from db.tokens import TokenHolder, digest

PREFIX = "cps_"
# A session's last-seen time is written at most this often (not on every page's request).
TOUCH_EVERY = timedelta(seconds=30)


@dataclass(frozen=True)
class SessionPolicy:
    idle: timedelta = timedelta(minutes=30)
    absolute: timedelta = timedelta(hours=12)


def open_session(engine: Engine, token_id: int, now: datetime) -> str:
    """A new session for the token; returns its id (the cookie's value), which is not stored."""
    session_id = PREFIX + secrets.token_urlsafe(32)
    with Session(engine) as db, db.begin():
        db.add(SessionRow(id_hash=digest(session_id), token_id=token_id, created_at=now, last_seen_at=now))
    return session_id


def session_holder(engine: Engine, session_id: str, now: datetime, policy: SessionPolicy) -> TokenHolder | None:
    """Who the live session ``session_id`` signs in; None if unknown, ended, expired or its token revoked."""
    with Session(engine) as db, db.begin():
        found = db.execute(
            select(SessionRow, ApiTokenRow)
            .join(ApiTokenRow, ApiTokenRow.id == SessionRow.token_id)
            .where(SessionRow.id_hash == digest(session_id))
        ).one_or_none()
        if found is None:
            return None
        row, token = found
        expired = now - row.last_seen_at > policy.idle or now - row.created_at > policy.absolute
        if row.ended_at is not None or token.revoked_at is not None or expired:
            if row.ended_at is None:
                row.ended_at = now  # ended for good: a later request cannot revive it
            return None
        if now - row.last_seen_at > TOUCH_EVERY:
            row.last_seen_at = now
        return TokenHolder(id=token.id, name=token.name, role=token.role)


def end_session(engine: Engine, session_id: str, now: datetime) -> None:
    with Session(engine) as db, db.begin():
        db.execute(
            update(SessionRow)
            .where(SessionRow.id_hash == digest(session_id), SessionRow.ended_at.is_(None))
            .values(ended_at=now)
        )
