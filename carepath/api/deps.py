"""Typed dependencies shared by the routers: who is asking, the service, bounded path ids."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from carepath.access import ADMINS, CLINICIANS, CLOSERS, EVERYONE, PHYSICIANS, READERS, Principal, allow
from carepath.service import CarepathService
from db.models import EPISODE_ID_PATTERN, MAX_ID

Reader = Annotated[Principal, Depends(allow(*READERS))]
Clinician = Annotated[Principal, Depends(allow(*CLINICIANS))]
Admin = Annotated[Principal, Depends(allow(*ADMINS))]
Anyone = Annotated[Principal, Depends(allow(*EVERYONE))]
# Changing the rules a patient is followed by: the physician, or the admin who owns definitions.
Migrator = Annotated[Principal, Depends(allow(*PHYSICIANS, *ADMINS))]
RowId = Annotated[int, Path(ge=1, le=MAX_ID)]
# Episode ids are 32 hex characters; anything far from that shape (NUL bytes, huge strings) is
# refused before it reaches the database.
EpisodeId = Annotated[str, Path(pattern=EPISODE_ID_PATTERN)]
__all__ = ["CLOSERS", "MAX_ID", "Admin", "Anyone", "Clinician", "EpisodeId", "Migrator", "Reader", "RowId", "Service"]


def service_of(request: Request) -> CarepathService:
    return request.app.state.service


Service = Annotated[CarepathService, Depends(service_of)]
