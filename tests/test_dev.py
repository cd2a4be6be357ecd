"""`carepath dev` as a person runs it: start, enroll with plain HTTP, Ctrl-C, start again."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import httpx
import pytest

from carepath.codec import KeyRing, encrypted_converter
from carepath.temporal import DATA_CONVERTER, connect
from workflows.episode import EpisodeWorkflow, workflow_id

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Dev:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.port, self.temporal_port, self.ui_port = _free_port(), _free_port(), _free_port()
        self.process: subprocess.Popen[str] | None = None
        self.output = ""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAREPATH_")}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "carepath.cli",
                "dev",
                "--home",
                str(self.home),
                "--port",
                str(self.port),
                "--temporal-port",
                str(self.temporal_port),
                "--ui-port",
                str(self.ui_port),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 90
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            self.output += line
            if "Press Ctrl-C" in line:
                return
            if not line and self.process.poll() is not None:
                break
        pytest.fail(f"carepath dev did not start:\n{self.output}")

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        rest, _ = self.process.communicate(timeout=60)
        self.output += rest
        assert self.process.returncode == 0, self.output
        assert "stopped." in self.output


@pytest.fixture
def dev(tmp_path):
    instance = Dev(tmp_path / "home")
    yield instance
    if instance.process and instance.process.poll() is None:
        instance.process.kill()


async def test_dev_serves_enrollments_and_keeps_them_across_a_restart(dev):
    dev.start()
    assert f"{dev.base}/" in dev.output and "Temporal UI" in dev.output
    enrollment = {
        "identified_on": date.today().isoformat(),
        "patient": {"ref": "dev-patient", "age": 81, "sex": "male"},
        "fracture": {"levels": ["L1"]},
        "pain_nrs": 7,
        "analgesics": ["opioid"],
    }
    created = httpx.post(f"{dev.base}/episodes", json=enrollment, timeout=60)
    assert created.status_code == 201, created.text
    episode_id = created.json()["episode_id"]
    codes = {t["code"] for t in httpx.get(f"{dev.base}/tasks").json() if t["episode_id"] == episode_id}
    assert {"START_OSTEOPOROSIS_THERAPY", "OPIOID_CAUTION_ELDERLY"} <= codes
    dev.stop()

    dev.start()
    detail = httpx.get(f"{dev.base}/episodes/{episode_id}").json()
    assert detail["phase"] == "acute" and detail["patient_ref"] == "dev-patient"
    ring = KeyRing.from_json((dev.home / "keys.json").read_text())  # dev created it on first start
    client = await connect(f"127.0.0.1:{dev.temporal_port}", converter=encrypted_converter(DATA_CONVERTER, ring))
    handle = client.get_workflow_handle(workflow_id(episode_id))
    view = await asyncio.wait_for(handle.query(EpisodeWorkflow.view), 30)
    assert view.phase == "acute" and view.next_due is not None  # its timers survived the restart
    again = httpx.post(f"{dev.base}/episodes", json=enrollment, timeout=60)
    assert again.status_code == 409
    dev.stop()
    assert (dev.home / "temporal.db").exists() and (dev.home / "carepath.db").exists()
