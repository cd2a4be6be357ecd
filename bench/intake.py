"""HL7 v2 intake throughput: messages per second through MLLP to committed candidates, against a bare
MLLP echo (the same framing library, answering each frame at once, storing nothing) in the same run.

    .venv/bin/python bench/intake.py [--messages 2000] [--connections 8] [--database-url URL]

Each connection sends its share one message at a time, waiting for each ACK (as interface engines
do). Half the reports name a lumbar compression fracture (a candidate each, every patient new), half
do not. The intake run is checked afterwards: every message stored once, every positive a candidate.
Prints both rates, the ratio (target >= 0.5x) and a SUMMARY line.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hl7.mllp import open_hl7_connection, start_hl7_server

from carepath.intake.mllp import MllpServer
from carepath.pathways import register_shipped
from db.engine import make_engine
from db.intake import count_candidates, count_messages
from db.migrate import upgrade
from tests.support.hl7_messages import oru

POSITIVE = "FINDINGS: Acute wedge compression fracture of L2 with 30% height loss. No retropulsion."
NEGATIVE = "FINDINGS: Vertebral body heights are maintained. No compression fracture. Mild facet arthropathy."


def reports(n: int, run: str) -> list[bytes]:
    return [oru(f"{run}-{i}", f"B{run}{i}", POSITIVE if i % 2 == 0 else NEGATIVE).encode() for i in range(n)]


async def send_all(port: int, messages: list[bytes], connections: int) -> float:
    """Seconds to send every message over ``connections`` connections, each waiting for its ACKs."""

    async def one(share: list[bytes]) -> None:
        reader, writer = await open_hl7_connection("127.0.0.1", port)
        for message in share:
            writer.writeblock(message)
            await writer.drain()
            await reader.readblock()
        writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(one(messages[k::connections]) for k in range(connections)))
    return time.perf_counter() - began


async def bare_echo(messages: list[bytes], connections: int, parse: bool) -> float:
    """The library's MLLP server answering at once, storing nothing: with ``parse``, each message is
    parsed and answered with its ``create_ack()`` (a listener that acknowledges what it holds only in
    memory); without, the first bytes are echoed back (framing alone)."""

    async def echo(reader, writer) -> None:
        try:
            while True:
                if parse:
                    writer.writemessage((await reader.readmessage()).create_ack())
                else:
                    writer.writeblock((await reader.readblock())[:64])
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await start_hl7_server(echo, "127.0.0.1", 0)
    try:
        return await send_all(server.sockets[0].getsockname()[1], messages, connections)
    finally:
        server.close()


async def intake(database_url: str, messages: list[bytes], connections: int) -> float:
    """Seconds through the intake, checked: every message stored once, every positive a candidate."""
    engine = make_engine(database_url)
    try:
        stored, found = count_messages(engine, "accepted"), count_candidates(engine)
        async with MllpServer(engine, "127.0.0.1", 0) as server:
            seconds = await send_all(server.bound_port, messages, connections)
        stored, found = count_messages(engine, "accepted") - stored, count_candidates(engine) - found
        assert stored == len(messages), f"{stored} of {len(messages)} messages stored"
        assert found == (len(messages) + 1) // 2, f"{found} candidates for {(len(messages) + 1) // 2} positives"
        return seconds
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000, help="per round and kind (default 1000)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="kinds interleaved, medians reported (default 3)")
    parser.add_argument("--database-url", default=None, help="an empty database (default: a new SQLite file)")
    args = parser.parse_args()
    register_shipped()  # the boot list, as every entry point
    n, c = args.messages, args.connections
    rates: dict[str, list[float]] = {"framing": [], "bare": [], "intake": []}
    with tempfile.TemporaryDirectory() as folder:
        url = args.database_url or f"sqlite:///{folder}/bench.db"
        upgrade(url)
        for r in range(args.rounds):  # interleaved: a busy machine slows all three alike
            rates["framing"].append(n / asyncio.run(bare_echo(reports(n, f"F{r}"), c, parse=False)))
            rates["bare"].append(n / asyncio.run(bare_echo(reports(n, f"E{r}"), c, parse=True)))
            rates["intake"].append(n / asyncio.run(intake(url, reports(n, f"I{r}-{uuid.uuid4().hex[:6]}"), c)))
    framing, bare, ours = (statistics.median(rates[k]) for k in ("framing", "bare", "intake"))
    backend = url.split(":", 1)[0]
    print(f"{args.rounds} rounds of {n} messages each, {c} connections; medians")
    print(f"bare MLLP echo, framing only: {framing:,.0f} messages/s")
    print(f"bare MLLP echo, parse + ACK (hl7 create_ack), nothing stored: {bare:,.0f} messages/s")
    print(f"intake to committed candidates ({backend}): {ours:,.0f} messages/s ({n // 2} candidates a round)")
    ratios = [i / b for i, b in zip(rates["intake"], rates["bare"], strict=True)]
    print("rounds: intake/bare = " + ", ".join(f"{r:.2f}" for r in ratios))
    print(
        f"SUMMARY: intake {ours:,.0f}/s = {ours / bare:.2f}x the bare parse+ACK echo ({bare:,.0f}/s; target >= 0.5x), "
        f"{ours / framing:.3f}x framing alone ({framing:,.0f}/s)"
    )


if __name__ == "__main__":
    main()
