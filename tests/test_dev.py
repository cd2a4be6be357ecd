"""`carepath dev` as a person runs it: start, enroll with plain HTTP, Ctrl-C, start again."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import httpx
import pytest
from google.protobuf import json_format

from carepath.codec import KeyRing, encrypted_converter
from carepath.temporal import DATA_CONVERTER, connect
from workflows.contracts import workflow_id
from workflows.episode import EpisodeWorkflow

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Dev:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.port, self.temporal_port, self.ui_port = _free_port(), _free_port(), _free_port()
        self.metrics_port = _free_port()  # the worker's Prometheus endpoint (CAREPATH_WORKER_METRICS_ADDRESS)
        self.process: subprocess.Popen[str] | None = None
        self.output = ""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAREPATH_")}
        env["CAREPATH_WORKER_METRICS_ADDRESS"] = f"127.0.0.1:{self.metrics_port}"
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
        instance.process.send_signal(signal.SIGINT)
        try:
            instance.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            instance.process.kill()  # its Temporal server follows (parent-death signal)


def test_killed_dev_takes_its_temporal_server_down(dev):
    dev.start()
    temporal_pid = int(
        subprocess.run(
            ["pgrep", "-f", "--", f"--port {dev.temporal_port}"], capture_output=True, text=True
        ).stdout.split()[0]
    )
    dev.process.kill()
    dev.process.wait(timeout=10)
    for _ in range(100):
        if not Path(f"/proc/{temporal_pid}").exists():
            break
        time.sleep(0.1)
    assert not Path(f"/proc/{temporal_pid}").exists(), "Temporal dev server outlived carepath dev"


def carepath(dev: Dev, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CAREPATH_API_URL": dev.base, "CAREPATH_TOKEN": token}
    return subprocess.run(
        [sys.executable, "-m", "carepath.cli", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60
    )


async def test_dev_serves_enrollments_and_keeps_them_across_a_restart(dev, tmp_path):
    dev.start()
    assert f"{dev.base}/" in dev.output and "Temporal UI" in dev.output
    # The worker's metrics endpoint the README documents, as `carepath worker` serves it.
    assert "temporal_" in httpx.get(f"http://127.0.0.1:{dev.metrics_port}/metrics", timeout=10).text
    admin = re.search(r"First admin token \(shown once, stored hashed\): (\S+)", dev.output).group(1)
    created_token = httpx.post(
        f"{dev.base}/tokens",
        json={"name": "carol", "role": "coordinator"},
        headers={"Authorization": f"Bearer {admin}"},
    )
    coordinator = {"Authorization": f"Bearer {created_token.json()['token']}"}
    enrollment = {
        "identified_on": date.today().isoformat(),
        "patient": {"ref": "dev-patient", "age": 81, "sex": "male"},
        "fracture": {"levels": ["L1"]},
        "pain_nrs": 7,
        "analgesics": ["opioid"],
    }
    assert httpx.post(f"{dev.base}/episodes", json=enrollment).status_code == 401
    created = httpx.post(f"{dev.base}/episodes", json=enrollment, headers=coordinator, timeout=60)
    assert created.status_code == 201, created.text
    episode_id = created.json()["episode_id"]
    tasks = httpx.get(f"{dev.base}/tasks", headers=coordinator).json()
    codes = {t["code"] for t in tasks if t["episode_id"] == episode_id}
    assert {"START_OSTEOPOROSIS_THERAPY", "OPIOID_CAUTION_ELDERLY"} <= codes
    await _temporal_ui_decrypts(dev, episode_id)
    dev.stop()

    dev.start()
    assert "First admin token" not in dev.output.split("stopped.")[-1]  # printed once, on the first start
    detail = httpx.get(f"{dev.base}/episodes/{episode_id}", headers=coordinator).json()
    assert detail["phase"] == "acute" and detail["patient_ref"] == "dev-patient"
    ring = KeyRing.from_json((dev.home / "keys.json").read_text())  # dev created it on first start
    client = await connect(f"127.0.0.1:{dev.temporal_port}", converter=encrypted_converter(DATA_CONVERTER, ring))
    handle = client.get_workflow_handle(workflow_id(episode_id))
    view = await asyncio.wait_for(handle.query(EpisodeWorkflow.view), 30)
    assert view.phase == "acute" and view.next_due is not None  # its timers survived the restart

    # The same operations from a terminal.
    token = created_token.json()["token"]
    again = carepath(dev, token, "enroll", _write(tmp_path / "enroll.json", enrollment))
    assert again.returncode == 2 and "409 patient.ref" in again.stderr and "Traceback" not in again.stderr
    worklist = carepath(dev, token, "worklist", "--assignee", "coordinator")
    assert worklist.returncode == 0 and "CALCIUM_VITAMIN_D" in worklist.stdout and "dev-patient" in worklist.stdout
    task_id = next(t["id"] for t in tasks if t["code"] == "CALCIUM_VITAMIN_D")
    done = carepath(dev, token, "complete", str(task_id), "--reason", "prescribed")
    assert done.returncode == 0 and "completed" in done.stdout
    bad = carepath(
        dev,
        token,
        "event",
        episode_id,
        _write(
            tmp_path / "event.json", {"type": "pain_assessment", "occurred_on": date.today().isoformat(), "nrs": 14}
        ),
    )
    assert bad.returncode == 2 and "nrs: must be between 0 and 10" in bad.stderr
    shown = carepath(dev, token, "show", episode_id)
    assert shown.returncode == 0 and "AVOID_BED_REST" in shown.stdout
    assert carepath(dev, "", "worklist").returncode == 2
    dev.stop()
    assert (dev.home / "temporal.db").exists() and (dev.home / "carepath.db").exists()


async def _temporal_ui_decrypts(dev: Dev, episode_id: str) -> None:
    """The requests the dev Temporal UI makes: its settings name our codec endpoint, then from its
    origin an OPTIONS preflight and POST /codec/decode with Content-Type and X-Namespace, no token."""
    ui = f"http://127.0.0.1:{dev.ui_port}"
    settings = httpx.get(f"{ui}/api/v1/settings", timeout=30).json()
    assert settings["Codec"]["Endpoint"] == f"{dev.base}/codec", settings["Codec"]
    raw = await connect(f"127.0.0.1:{dev.temporal_port}")  # no codec: the payloads as the UI receives them
    history = await raw.get_workflow_handle(workflow_id(episode_id)).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes.input
    body = json_format.MessageToDict(started)
    assert b"dev-patient" not in base64.b64decode(body["payloads"][0]["data"])  # encrypted at rest
    headers = {"Origin": ui, "X-Namespace": "default", "Content-Type": "application/json"}
    preflight = httpx.options(
        f"{dev.base}/codec/decode",
        headers={
            "Origin": ui,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace",
        },
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == ui
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert "content-type" in allowed and "x-namespace" in allowed
    decoded = httpx.post(f"{dev.base}/codec/decode", json=body, headers=headers)
    assert decoded.status_code == 200, decoded.text
    assert decoded.headers["access-control-allow-origin"] == ui
    plain = json.loads(base64.b64decode(decoded.json()["payloads"][0]["data"]))
    assert plain["episode_id"] == episode_id and plain["enrollment"]["patient"]["ref"] == "dev-patient"
    # Anyone else still needs a reader's token.
    for origin in ("http://127.0.0.1:1", None):
        other = {"Content-Type": "application/json", **({"Origin": origin} if origin else {})}
        assert httpx.post(f"{dev.base}/codec/decode", json=body, headers=other).status_code == 401


def _write(path: Path, data: dict) -> str:
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize("command", [["worker"], ["api"], ["dev"]])
def test_a_bad_setting_stops_the_service_naming_its_variable(command: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "CAREPATH_MAX_CACHED_WORKFLOWS": "lots", "CAREPATH_HOME": str(tmp_path)}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "carepath"), *command],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "CAREPATH_MAX_CACHED_WORKFLOWS" in result.stderr and "valid integer" in result.stderr
    assert "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir())  # nothing started, nothing written
