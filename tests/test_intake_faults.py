"""The listener dies between receiving a report and acknowledging it; the sender, having no ACK,
sends the report again (as interface engines do) to a restarted listener: exactly one candidate.

The restart is the production command, ``carepath intake``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from db.engine import make_engine
from db.intake import candidates, messages
from db.migrate import upgrade
from tests.support.hl7_messages import ack_code, mllp, oru

ROOT = Path(__file__).resolve().parent.parent
REPORT = oru("KILL-1", "MRN-K", "Acute osteoporotic compression fracture of L3.")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(command: list[str], database_url: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREPATH_")}
    env["CAREPATH_DATABASE_URL"] = database_url
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    assert "listening" in line or "MLLP" in line, line + process.stdout.read()
    return process


@pytest.mark.parametrize("point", ["before-commit", "after-commit"])
async def test_killed_between_receiving_and_acknowledging_the_retry_yields_one_candidate(tmp_path, point):
    url = f"sqlite:///{tmp_path / 'intake.db'}"
    upgrade(url)
    port = _free_port()
    dying = _start(
        [
            sys.executable,
            "-m",
            "tests.support.intake_process",
            "--database-url",
            url,
            "--port",
            str(port),
            "--crash-at",
            point,
        ],
        url,
    )
    async with mllp(port) as client:
        with pytest.raises(asyncio.IncompleteReadError):  # the line drops: no ACK
            await client.send(REPORT)
    assert dying.wait(timeout=30) == -signal.SIGKILL
    engine = make_engine(url)
    stored = len(candidates(engine))
    assert stored == (1 if point == "after-commit" else 0)  # committed or not, nothing was acknowledged

    carepath = str(Path(sys.executable).parent / "carepath")
    listener = _start([carepath, "intake", "--host", "127.0.0.1", "--port", str(port)], url)
    try:
        async with mllp(port) as client:
            assert ack_code(await client.send(REPORT)) == "AA"  # the sender's retry
            assert ack_code(await client.send(REPORT)) == "AA"  # and once more, for good measure
    finally:
        listener.send_signal(signal.SIGTERM)
        listener.wait(timeout=30)
    (candidate,) = candidates(engine)
    assert (candidate.patient_ref, candidate.levels, candidate.messages) == ("MRN-K", ["L3"], 1)
    assert [m.control_id for m in messages(engine)] == ["KILL-1"]
    engine.dispose()
