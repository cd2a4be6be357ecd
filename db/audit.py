"""The audit trail: the one place its entries are written, and read back.

Every writer (the recorder, a released reservation, a task closed after its workflow, a task's
owner, a check-in sent at a person's request, an intake candidate) calls ``write_audit`` inside its
own transaction, so an entry lands together with the change it records, in one format.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, Engine, Insert, insert, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from db.models import AuditRow

AUDIT = AuditRow.__table__


@cache
def _insert(dialect: str, keep_written: bool) -> Insert:
    if not keep_written:
        return insert(AUDIT)
    # ON CONFLICT is dialect syntax; SQLite and PostgreSQL spell it the same way.
    upsert = {"sqlite": sqlite_insert, "postgresql": postgresql_insert}.get(dialect)
    if upsert is None:
        raise RuntimeError(f"unsupported database dialect {dialect!r} (SQLite or PostgreSQL)")
    return upsert(AUDIT).on_conflict_do_nothing(index_elements=["change_id"])


def write_audit(
    db: Connection | Session,
    *,
    change_id: str,
    episode_id: str,
    at: datetime,
    actor: str,
    action: str,
    detail: dict[str, Any],
    keep_written: bool = False,
) -> None:
    """Add one entry to the episode's trail, in ``db``'s transaction.

    ``change_id`` identifies the change the entry records (unique across the trail). A second entry
    under a change id already written is refused (IntegrityError), unless ``keep_written``: then the
    first is kept and nothing is written (a retried recording writes the same change again).
    """
    dialect = db.dialect if isinstance(db, Connection) else db.get_bind().dialect
    row = {"change_id": change_id, "episode_id": episode_id, "at": at, "actor": actor, "action": action}
    db.execute(_insert(dialect.name, keep_written), {**row, "detail": detail})


def audit_trail(engine: Engine, episode_id: str) -> list[AuditRow]:
    """The episode's entries, oldest first."""
    with Session(engine) as session:
        return list(session.scalars(select(AuditRow).where(AuditRow.episode_id == episode_id).order_by(AuditRow.id)))
