"""A Temporal codec server: lets the Temporal UI (or CLI) decrypt payloads for people allowed to
read patient data. Protocol: POST {"payloads": [Payload as protobuf JSON]} to /codec/decode or
/codec/encode; the answer has the same shape.
"""

from __future__ import annotations

from typing import Annotated, Any

from cryptography.exceptions import InvalidTag
from fastapi import APIRouter, Body, Depends, Request
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from carepath.api.auth import READERS, Principal, allow
from carepath.codec import EncryptionCodec, KeyRingError
from carepath.errors import InvalidInput

router = APIRouter(prefix="/codec", tags=["codec"])


def _codec(request: Request) -> EncryptionCodec:
    codec = getattr(request.app.state, "codec", None)
    if codec is None:
        raise InvalidInput.one("codec", "this server has no encryption keys configured")
    return codec


def _payloads(body: dict[str, Any]) -> Payloads:
    try:
        return json_format.ParseDict(body, Payloads())
    except json_format.ParseError as exc:
        raise InvalidInput.one("payloads", f"not Temporal payloads: {exc}") from None


@router.post("/decode")
async def decode(
    request: Request,
    body: Annotated[dict[str, Any], Body()],
    _: Annotated[Principal, Depends(allow(*READERS))],
) -> dict[str, Any]:
    try:
        decoded = await _codec(request).decode(_payloads(body).payloads)
    except (KeyRingError, ValueError, InvalidTag) as exc:
        raise InvalidInput.one("payloads", f"cannot decrypt: {exc}") from None
    return json_format.MessageToDict(Payloads(payloads=decoded))


@router.post("/encode")
async def encode(
    request: Request,
    body: Annotated[dict[str, Any], Body()],
    _: Annotated[Principal, Depends(allow(*READERS))],
) -> dict[str, Any]:
    encoded = await _codec(request).encode(_payloads(body).payloads)
    return json_format.MessageToDict(Payloads(payloads=encoded))
