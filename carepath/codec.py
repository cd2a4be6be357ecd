"""Encrypt every Temporal payload (workflow inputs, updates, query results, activity data).

AES-256-GCM with a random 96-bit nonce per payload. Each encrypted payload names the key id it
was sealed with, so keys can be rotated: new payloads use the active key, old histories still
decrypt as long as their key stays in the key ring. An unknown key id is an error, never a
silent pass-through.

Key ring sources (settings): ``CAREPATH_KEY_FILE`` (JSON ``{"active": "k2", "keys": {"k1": "<base64>",
"k2": "<base64>"}}``) or ``CAREPATH_ENCRYPTION_KEYS`` (``k1:<base64>,k2:<base64>``, the first is
active unless ``CAREPATH_ENCRYPTION_KEY_ID`` says otherwise).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
_NONCE = 12


class KeyRingError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class KeyRing:
    active: str
    keys: dict[str, bytes]

    def __post_init__(self) -> None:
        if self.active not in self.keys:
            raise KeyRingError(f"active key id {self.active!r} is not in the key ring")
        for key_id, key in self.keys.items():
            if len(key) != 32:
                raise KeyRingError(f"key {key_id!r} must be 32 bytes (AES-256), not {len(key)}")

    @classmethod
    def generate(cls, key_id: str = "k1") -> KeyRing:
        return cls(active=key_id, keys={key_id: secrets.token_bytes(32)})

    def rotated(self, new_id: str) -> KeyRing:
        """A ring with a fresh active key; every old key stays for decrypting old histories."""
        if new_id in self.keys:
            raise KeyRingError(f"key id {new_id!r} already exists")
        return KeyRing(active=new_id, keys={**self.keys, new_id: secrets.token_bytes(32)})

    def to_json(self) -> str:
        keys = {k: base64.b64encode(v).decode() for k, v in self.keys.items()}
        return json.dumps({"active": self.active, "keys": keys}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> KeyRing:
        try:
            data = json.loads(text)
            keys = {k: base64.b64decode(v, validate=True) for k, v in data["keys"].items()}
            return cls(active=data["active"], keys=keys)
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyRingError(f"not a carepath key file: {exc}") from None

    @classmethod
    def from_env_value(cls, value: str, active: str | None = None) -> KeyRing:
        keys: dict[str, bytes] = {}
        for entry in filter(None, (part.strip() for part in value.split(","))):
            key_id, sep, encoded = entry.partition(":")
            if not sep:
                raise KeyRingError("CAREPATH_ENCRYPTION_KEYS entries look like id:<base64 key>")
            try:
                keys[key_id] = base64.b64decode(encoded, validate=True)
            except ValueError:
                raise KeyRingError(f"key {key_id!r} is not valid base64") from None
        if not keys:
            raise KeyRingError("CAREPATH_ENCRYPTION_KEYS holds no keys")
        return cls(active=active or next(iter(keys)), keys=keys)

    def save(self, path: Path) -> None:
        """Write the ring readable by its owner only."""
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(self.to_json())


class EncryptionCodec(PayloadCodec):
    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring
        self._ciphers = {key_id: AESGCM(key) for key_id, key in ring.keys.items()}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        nonce = secrets.token_bytes(_NONCE)
        sealed = self._ciphers[self.ring.active].encrypt(nonce, payload.SerializeToString(), None)
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID: self.ring.active.encode()},
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID, b"").decode()
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise KeyRingError(f"payload sealed with unknown key id {key_id!r}")
        plain = cipher.decrypt(payload.data[:_NONCE], payload.data[_NONCE:], None)
        return Payload.FromString(plain)


def encrypted_converter(base: DataConverter, ring: KeyRing) -> DataConverter:
    """``base`` with every payload encrypted, failure messages included."""
    return dataclasses.replace(
        base,
        payload_codec=EncryptionCodec(ring),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
