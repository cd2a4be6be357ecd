"""HL7 v2 messages as an interface engine sends them, and an MLLP client that waits for each ACK."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from hl7.mllp import open_hl7_connection


def oru(
    control_id: str,
    mrn: str,
    text: str,
    born: str = "19450312",
    sex: str = "F",
    observed: str = "20261201080000",
    charset: str = "",
    service: str = "CR",
) -> str:
    """An ORU^R01 radiology report: PID-3 ``mrn``, OBR-7 ``observed``, OBX text ``text``."""
    return (
        f"MSH|^~\\&|RIS|GENERAL|CAREPATH|SPINE|20261201083000||ORU^R01^ORU_R01|{control_id}|P|2.5.1||||||{charset}\r"
        f"PID|1||{mrn}^^^GENERAL^MR||Doe^Jane||{born}|{sex}\r"
        f"OBR|1||ACC-{control_id}|72100^XR LUMBAR SPINE 2 VIEWS^CPT|||{observed}|||||||||||||||||{service}\r"
        f"OBX|1|TX|18782-3^Radiology study observation^LN||{text}||||||F\r"
    )


def adt(control_id: str, mrn: str, trigger: str = "A01", admitted: str = "20261203101500", sex: str = "F") -> str:
    return (
        f"MSH|^~\\&|ADT|GENERAL|CAREPATH|SPINE|20261203101600||ADT^{trigger}^ADT_A01|{control_id}|P|2.5.1\r"
        f"EVN|{trigger}|20261203101600\r"
        f"PID|1||{mrn}^^^GENERAL^MR||Doe^Jane||19450312|{sex}\r"
        f"PV1|1|I|WARD^12^1|||||||||||||||||||||||||||||||||||||||||{admitted}\r"
    )


class MllpClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, message: str | bytes, timeout: float = 30) -> str:
        """Send one message and return its ACK (text); IncompleteReadError if the line drops first."""
        self.writer.writeblock(message.encode() if isinstance(message, str) else message)
        await self.writer.drain()
        return (await asyncio.wait_for(self.reader.readblock(), timeout)).decode()

    async def close(self) -> None:
        self.writer.close()


@asynccontextmanager
async def mllp(port: int, host: str = "127.0.0.1") -> AsyncIterator[MllpClient]:
    reader, writer = await open_hl7_connection(host, port)
    client = MllpClient(reader, writer)
    try:
        yield client
    finally:
        await client.close()


def ack_code(ack: str) -> str:
    msa = next(segment for segment in ack.split("\r") if segment.startswith("MSA|"))
    return msa.split("|")[1]


def err_location(ack: str) -> str:
    err = next((segment for segment in ack.split("\r") if segment.startswith("ERR|")), "")
    return err.split("|")[2] if err else ""
