"""The rows a recording writes (``activities.recording``): each keyed by its natural key, so a
retried recording writes nothing twice.

Plain INSERT .. ON CONFLICT DO NOTHING statements on each row's natural key rather than ORM
look-ups before every insert: one statement per row (a network round trip each on PostgreSQL),
measured ~12% of a simulated patient-year's worker CPU saved on SQLite. Core statements straight
on the transaction's connection: through Session.execute each would also go through the ORM's
statement layer (measured ~5% of worker CPU for one UPDATE).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, Row, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from carepath.engine.items import TaskClosure
from db.models import ComingItemRow, EpisodeRow, EventRow, NotificationRow, TaskRow, TimelineItemRow

EPISODES = EpisodeRow.__table__
TASKS = TaskRow.__table__
COMING = ComingItemRow.__table__
ITEMS = TimelineItemRow.__table__


class ReservationReleased(Exception):
    """The episode's row was released (abandoned) before its workflow recorded it."""


class Inserts(NamedTuple):
    """Inserts that skip a row whose natural key is already there (the idempotency keys)."""

    upsert: Any  # the dialect's insert (for statements built elsewhere, e.g. check-ins)
    episode: Any
    event: Any
    items: Any
    task: Any
    notification: Any


@cache
def statements(dialect: str) -> Inserts:
    # ON CONFLICT is dialect syntax; SQLite and PostgreSQL spell it the same way.
    upsert = {"sqlite": sqlite_insert, "postgresql": postgresql_insert}.get(dialect)
    if upsert is None:
        raise RuntimeError(f"unsupported database dialect {dialect!r} (SQLite or PostgreSQL)")
    return Inserts(
        upsert=upsert,
        episode=upsert(EPISODES).on_conflict_do_nothing(index_elements=["id"]),
        event=upsert(EventRow.__table__).on_conflict_do_nothing(index_elements=["id"]),
        items=upsert(ITEMS)
        .on_conflict_do_nothing(index_elements=["episode_id", "code", "occasion"])
        .returning(ITEMS.c.id, ITEMS.c.code, ITEMS.c.occasion),
        task=upsert(TASKS).on_conflict_do_nothing(index_elements=["episode_id", "code", "occasion"]),
        notification=upsert(NotificationRow.__table__).on_conflict_do_nothing(index_elements=["dedupe_key"]),
    )


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One recording's transaction: committed when the block ends, rolled back if it raises."""
    with engine.begin() as db:
        yield db


def connection_of(db: Connection | Session) -> Connection:
    """The connection of a caller's transaction (reconcile and tests hand a Session)."""
    return db.connection() if isinstance(db, Session) else db


def open_episode(db: Connection, sql: Inserts, row: dict[str, Any]) -> None:
    """The episode's row, unless it is there (the service's reservation, or a retry)."""
    db.execute(sql.episode, row)


def update_episode(db: Connection, episode_id: str, values: dict[str, Any]) -> Row[Any]:
    """Set ``values`` on the episode; returns its pathway id, version and whether it is simulated.

    An abandoned reservation stays abandoned: its workflow started too late (the enrollment was
    released or replaced meanwhile), so it records nothing (``ReservationReleased``). The row lock
    makes this and the release's conditional update exclusive: one of them wins."""
    written = db.execute(
        update(EPISODES)
        .where(EPISODES.c.id == episode_id, EPISODES.c.status != "abandoned")
        .values(values)
        .returning(EPISODES.c.pathway_id, EPISODES.c.pathway_version, EPISODES.c.simulated)
    ).first()
    if written is not None:
        return written
    if db.execute(select(EPISODES.c.id).where(EPISODES.c.id == episode_id)).first() is not None:
        raise ReservationReleased(f"episode {episode_id}'s enrollment was released before it was recorded")
    raise LookupError(f"episode {episode_id} was never opened")


def add_event(db: Connection, sql: Inserts, row: dict[str, Any]) -> None:
    db.execute(sql.event, row)


def add_items(
    db: Connection, sql: Inserts, rows: list[dict[str, Any]], repair: bool
) -> dict[tuple[str, str], tuple[int, bool]]:
    """The timeline rows, in one statement: (id, whether new) by (code, occasion) of those written
    now; with ``repair`` (carepath reconcile) also of those that were already there."""
    written = {(row.code, row.occasion): (row.id, True) for row in db.execute(sql.items, rows)}
    for row in rows if repair else []:
        key = (row["code"], row["occasion"])
        if key not in written:
            found = db.execute(
                select(ITEMS.c.id).where(
                    ITEMS.c.episode_id == row["episode_id"], ITEMS.c.code == key[0], ITEMS.c.occasion == key[1]
                )
            ).scalar_one()
            written[key] = (found, False)
    return written


def add_tasks(db: Connection, sql: Inserts, rows: list[dict[str, Any]]) -> None:
    """The items' tasks in one statement (one already there is kept)."""
    if rows:
        db.execute(sql.task, rows)


def add_notification(db: Connection, sql: Inserts, row: dict[str, Any]) -> None:
    db.execute(sql.notification, row)


def close_tasks(db: Connection, episode_id: str, closures: Sequence[TaskClosure], at: datetime) -> None:
    """Close the open tasks named by ``closures`` (a closed one stays as it was closed)."""
    for closure in closures:
        db.execute(
            update(TASKS)
            .where(
                TASKS.c.episode_id == episode_id,
                TASKS.c.code == closure.code,
                TASKS.c.occasion == closure.milestone,
                TASKS.c.status == "open",
            )
            .values(status=closure.status, closed_at=at, close_reason=closure.reason)
        )


def replace_coming(db: Connection, episode_id: str, rows: list[dict[str, Any]]) -> None:
    """The episode's projection as of this record (a retry writes the same rows again)."""
    db.execute(delete(COMING).where(COMING.c.episode_id == episode_id))
    if rows:
        db.execute(insert(COMING), [{"episode_id": episode_id, **row} for row in rows])
