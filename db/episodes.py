"""An episode's row before and beside its workflow: the enrollment reservation (claimed, found,
released, swept) and the row by its id.

A patient has at most one active (or reserving) real episode, enforced by a partial unique index
(SPEC section 7): the reservation claims it before the workflow exists, and becomes ``active``
only in the workflow's first recording.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.audit import write_audit
from db.models import EpisodeRow

RESERVING, ABANDONED = "reserving", "abandoned"


def episode_row(engine: Engine, episode_id: str) -> EpisodeRow | None:
    with Session(engine) as session:
        return session.get(EpisodeRow, episode_id)


def reserve(engine: Engine, row: EpisodeRow) -> EpisodeRow | None:
    """Claim the patient's one active episode with ``row`` (status ``reserving``).

    Returns None once claimed, else the row that holds the patient.
    """
    try:
        with Session(engine) as session, session.begin():
            session.add(row)
    except IntegrityError:
        held = holder(engine, row.patient_ref)
        if held is None:  # it was released between our insert and this read
            return reserve(engine, row)
        return held
    return None


def holder(engine: Engine, patient_ref: str) -> EpisodeRow | None:
    """The patient's active (or reserving) real episode, if any."""
    with Session(engine) as session:
        return session.scalar(
            select(EpisodeRow).where(
                EpisodeRow.patient_ref == patient_ref,
                EpisodeRow.status.in_((RESERVING, "active")),
                EpisodeRow.simulated.is_(False),
            )
        )


def release(
    engine: Engine, episode_id: str, actor: str, why: str, now: datetime, replacement: EpisodeRow | None = None
) -> bool:
    """Mark a reservation abandoned, audited, and reserve ``replacement`` in the same transaction.

    False if it was no longer reserving (its workflow recorded the baseline, or someone else
    released it), or if another request reserved the patient in between. Conditional on the row's
    status, so this and the workflow's first recording exclude each other: a workflow that starts
    after the release fails instead.
    """
    try:
        with Session(engine) as session, session.begin():
            released = session.execute(
                update(EpisodeRow)
                .where(EpisodeRow.id == episode_id, EpisodeRow.status == RESERVING)
                .values(status=ABANDONED, updated_at=now)
            ).rowcount
            if not released:
                return False
            write_audit(
                session,
                change_id=f"{episode_id}/released",
                episode_id=episode_id,
                at=now,
                actor=actor,
                action="enroll:released",
                detail={"reason": why, "replaced_by": replacement.id if replacement else None},
            )
            if replacement is not None:
                session.flush()  # the old row leaves the one-active index before the new one enters
                session.add(replacement)
    except IntegrityError:
        return False
    return True


def reservations_made_before(engine: Engine, cutoff: datetime) -> list[str]:
    """Ids of the real reservations made at or before ``cutoff``, oldest first."""
    with Session(engine) as session:
        return list(
            session.scalars(
                select(EpisodeRow.id)
                .where(
                    EpisodeRow.status == RESERVING,
                    EpisodeRow.simulated.is_(False),
                    EpisodeRow.created_at <= cutoff,
                )
                .order_by(EpisodeRow.created_at)
            )
        )
