"""The MLLP listener: HL7 v2 messages in, an ACK out for each, only after the message is committed.

Framing and the socket server are the ``hl7`` package's (``hl7.mllp``). Per connection, messages
are handled one after another (a sender that does not wait for its ACKs is slowed down by TCP, not
answered out of order). What each answer means:

- ``AA``: stored (or stored before: the same MSH-10 from the same sender changes nothing).
- ``AE``/``AR`` with an ERR segment naming the segment and field: refused, kept for review.
- ``AE`` "busy": more connections than ``max_connections``; nothing stored, send it again.
- no answer (the connection closes): the database could not store it; send it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from hl7.mllp import start_hl7_server
from hl7.mllp.streams import CARRIAGE_RETURN, END_BLOCK, START_BLOCK
from sqlalchemy import Engine

from carepath.intake import hl7v2
from carepath.intake.message import Received, Refusal
from carepath.intake.receive import BatchWriter

log = logging.getLogger("carepath.intake")
FRAME_END = END_BLOCK + CARRIAGE_RETURN
HEAD_BYTES = 4096  # of an oversized message: enough for its MSH segment (who sent it, its id)


@dataclass(frozen=True)
class MllpLimits:
    max_bytes: int = 1_048_576  # one message
    max_connections: int = 32
    idle_seconds: float = 300.0  # a connection that sends nothing for this long is closed


@dataclass(frozen=True)
class _Frame:
    body: bytes
    oversized: int = 0  # the message's size when it was over the limit (``body`` is its head)
    framed: bool = True  # False: the bytes did not start with MLLP's start block


async def read_frame(reader: asyncio.StreamReader, limit: int) -> _Frame | None:
    """The next MLLP frame; None at the end of the stream (a frame cut short is not a message)."""
    try:
        block = await reader.readuntil(FRAME_END)
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError as over:
        return await _skip_oversized(reader, over.consumed)
    start = block.find(START_BLOCK)
    if start < 0:
        return _Frame(block[: -len(FRAME_END)], framed=False)
    return _Frame(block[start + 1 : -len(FRAME_END)])


async def _skip_oversized(reader: asyncio.StreamReader, consumed: int) -> _Frame | None:
    """Read past a frame longer than the limit, keeping its head for the refusal."""
    head = await reader.readexactly(consumed)
    size = len(head)
    while True:
        try:
            size += len(await reader.readuntil(FRAME_END))
            break
        except asyncio.LimitOverrunError as over:
            size += len(await reader.readexactly(over.consumed))
        except asyncio.IncompleteReadError:
            return None
    body = head[head.find(START_BLOCK) + 1 :] if START_BLOCK in head[:16] else head
    return _Frame(body[:HEAD_BYTES], oversized=size)


def _oversized(frame: _Frame, limit: int) -> Received:
    """A refusal for a message over the limit: its head names the sender; nothing of it is stored."""
    refusal = Refusal(f"the message is {frame.oversized} bytes; the limit is {limit}", "MSH", None, "AR", "207")
    received = hl7v2.parse(frame.body.split(b"\r", 1)[0] + b"\r")  # just its MSH segment
    received.refusal = refusal
    received.dedupe_key = f"refused:oversized:{received.sender}:{received.control_id or ''}:{frame.oversized}"
    received.body = b""
    received.patient = None
    return received


class MllpServer:
    """``async with MllpServer(engine, host, port):`` serves until the block ends."""

    def __init__(self, engine: Engine, host: str, port: int, limits: MllpLimits | None = None) -> None:
        self.host, self.port = host, port
        self.limits = limits or MllpLimits()
        self.writer = BatchWriter(engine)
        self._server: asyncio.AbstractServer | None = None
        self._connections = 0

    @property
    def bound_port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def __aenter__(self) -> MllpServer:
        await self.writer.__aenter__()
        self._server = await start_hl7_server(self._serve, self.host, self.port, limit=self.limits.max_bytes)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        await self.writer.__aexit__()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections += 1
        try:
            if self._connections > self.limits.max_connections:
                await self._refuse_busy(reader, writer)
                return
            while (frame := await self._next(reader)) is not None:
                answer = await self._answer(frame)
                if answer is None:
                    break  # not stored: no ACK, the sender sends it again
                writer.write(START_BLOCK + answer + FRAME_END)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections -= 1
            writer.close()

    async def _next(self, reader: asyncio.StreamReader) -> _Frame | None:
        try:
            return await asyncio.wait_for(read_frame(reader, self.limits.max_bytes), self.limits.idle_seconds)
        except TimeoutError:
            return None

    async def _refuse_busy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        frame = await self._next(reader)
        if frame is not None:
            busy = Refusal(f"busy: {self.limits.max_connections} connections are open; send it again", "", None)
            writer.write(START_BLOCK + hl7v2.ack(frame.body, "AE", busy) + FRAME_END)
            await writer.drain()

    async def _answer(self, frame: _Frame) -> bytes | None:
        try:
            received, _ = await self.writer.write(lambda: _read(frame, self.limits.max_bytes))
        except Exception:
            return None
        if received.refusal is not None:
            return hl7v2.ack(frame.body, received.refusal.ack_code, received.refusal)
        return hl7v2.ack(frame.body, "AA")


def _read(frame: _Frame, limit: int) -> Received:
    """What the frame holds: a message read (or refused), the refusal of one too large or unframed."""
    if frame.oversized:
        return _oversized(frame, limit)
    if not frame.framed:
        refusal = Refusal("the bytes do not start with MLLP's start block (0x0b)", "", None, "AR", "100")
        received = hl7v2.parse(b"")
        received.refusal, received.body = refusal, frame.body
        received.dedupe_key = hl7v2.refused_key(frame.body)
        return received
    return hl7v2.parse(frame.body)
