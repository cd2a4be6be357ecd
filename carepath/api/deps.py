"""Typed dependencies shared by the routers: who is asking, the service, bounded path ids."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from carepath.api.auth import ADMINS, CLINICIANS, EVERYONE, PHYSICIANS, READERS, Principal, allow
from carepath.service import CarepathService
from db.models import EPISODE_ID_PATTERN

Reader = Annotated[Principal, Depends(allow(*READERS))]
Clinician = Annotated[Principal, Depends(allow(*CLINICIANS))]
Admin = Annotated[Principal, Depends(allow(*ADMINS))]
Anyone = Annotated[Principal, Depends(allow(*EVERYONE))]
# Changing the rules a patient is followed by: the physician, or the admin who owns definitions.
Migrator = Annotated[Principal, Depends(allow(*PHYSICIANS, *ADMINS))]
# Row ids are INTEGER columns, 32-bit on PostgreSQL: a larger id names nothing, and the drivers
# would fail on it (SQLite: OverflowError past 2**63 - 1; PostgreSQL: out of range past 2**31 - 1).
MAX_ID = 2**31 - 1
RowId = Annotated[int, Path(ge=1, le=MAX_ID)]
# Episode ids are 32 hex characters; anything far from that shape (NUL bytes, huge strings) is
# refused before it reaches the database.
EpisodeId = Annotated[str, Path(pattern=EPISODE_ID_PATTERN)]
# Who may close a task depends on whom it is for (SPEC assignees).
CLOSERS = {"physician": PHYSICIANS, "coordinator": CLINICIANS, "patient": CLINICIANS}


def service_of(request: Request) -> CarepathService:
    return request.app.state.service


Service = Annotated[CarepathService, Depends(service_of)]
