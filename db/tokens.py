"""API tokens: created with a role, stored hashed, verified, revoked."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from db.models import ApiTokenRow, SessionRow

ROLES = ("viewer", "coordinator", "physician", "admin")
PREFIX = "cpt_"


def digest(token: str) -> str:
    # Tokens are 256-bit random strings, so a fast hash is enough: there is nothing to guess.
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenHolder:
    id: int
    name: str
    role: str


def create_token(engine: Engine, name: str, role: str, created_by: str) -> tuple[int, str]:
    """A new token for ``name`` with ``role``; returns (id, token). The token is not stored."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    token = PREFIX + secrets.token_urlsafe(32)
    with Session(engine) as session, session.begin():
        row = ApiTokenRow(
            name=name, role=role, token_hash=digest(token), created_at=datetime.now(UTC), created_by=created_by
        )
        session.add(row)
        session.flush()
        return row.id, token


def token_names(engine: Engine) -> set[str]:
    """The names tokens were made for (revoked ones included)."""
    with Session(engine) as session:
        return set(session.scalars(select(ApiTokenRow.name)))


def verify(engine: Engine, token: str) -> TokenHolder | None:
    with Session(engine) as session:
        row = session.scalar(select(ApiTokenRow).where(ApiTokenRow.token_hash == digest(token)))
    if row is None or row.revoked_at is not None:
        return None
    return TokenHolder(id=row.id, name=row.name, role=row.role)


def revoke(engine: Engine, token_id: int) -> bool:
    """Revoke the token and, in the same transaction, end every sign-in session opened with it."""
    with Session(engine) as session, session.begin():
        row = session.get(ApiTokenRow, token_id)
        if row is None or row.revoked_at is not None:
            return False
        now = datetime.now(UTC)
        row.revoked_at = now
        session.execute(  # its sign-in sessions end with it (db/sessions.py)
            update(SessionRow)
            .where(SessionRow.token_id == token_id, SessionRow.ended_at.is_(None))
            .values(ended_at=now)
        )
        return True


def list_tokens(engine: Engine) -> list[ApiTokenRow]:
    with Session(engine) as session:
        return list(session.scalars(select(ApiTokenRow).order_by(ApiTokenRow.id)))


def count_tokens(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(ApiTokenRow)) or 0
