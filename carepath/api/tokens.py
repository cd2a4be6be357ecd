"""API tokens (admins only). Plain ``def`` routes: their database calls run in the threadpool."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from carepath.api.deps import Admin, RowId, Service
from carepath.service import NotFound
from db.tokens import create_token, list_tokens, revoke

router = APIRouter(prefix="/tokens", tags=["admin"])


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    role: Literal["viewer", "coordinator", "physician", "admin"]


class TokenCreated(BaseModel):
    id: int
    name: str
    role: str
    token: str = Field(description="shown once; only its hash is stored")


class TokenInfo(BaseModel):
    id: int
    name: str
    role: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


@router.post("", status_code=201)
def create_api_token(body: TokenRequest, who: Admin, service: Service) -> TokenCreated:
    """Create an API token; the token is in this answer only."""
    token_id, token = create_token(service.engine, body.name, body.role, who.actor)
    return TokenCreated(id=token_id, name=body.name, role=body.role, token=token)


@router.get("")
def api_tokens(_: Admin, service: Service) -> list[TokenInfo]:
    return [TokenInfo.model_validate(row, from_attributes=True) for row in list_tokens(service.engine)]


@router.post("/{token_id}/revoke")
def revoke_api_token(token_id: RowId, _: Admin, service: Service) -> dict[str, Any]:
    if not revoke(service.engine, token_id):
        raise NotFound(f"no active token {token_id}", field="token_id")
    return {"id": token_id, "revoked": True}
