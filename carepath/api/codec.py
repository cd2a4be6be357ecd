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

from carepath.access import READERS, Principal, allow
from carepath.codec import EncryptionCodec, KeyRingError
from carepath.errors import InvalidInput

router = APIRouter(prefix="/codec", tags=["codec"])
_readers = allow(*READERS)


def codec_reader(request: Request) -> Principal:
    """A reader's bearer token; or, under ``carepath dev`` only, the dev Temporal UI's own origin.

    The dev UI cannot send a token (its codec settings carry none, and it passes an access token
    only to an HTTPS endpoint). Trusting its origin there gives away nothing: the dev Temporal
    server has no authentication and the key ring is a local file. ``carepath api`` never does it.
    """
    trusted = getattr(request.app.state, "codec_trusted_origins", frozenset())
    if request.headers.get("origin") in trusted:
        return Principal(token_id=0, name="temporal-ui", role="viewer")
    return _readers(request)


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
    _: Annotated[Principal, Depends(codec_reader)],
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
    _: Annotated[Principal, Depends(codec_reader)],
) -> dict[str, Any]:
    encoded = await _codec(request).encode(_payloads(body).payloads)
    return json_format.MessageToDict(Payloads(payloads=encoded))
