"""``carepath import --json``: stdout is one JSON document in every outcome, Temporal going down
mid-import included (the SDK's retry warnings and all logs go to stderr)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.engine import make_engine
from db.migrate import upgrade
from db.models import EpisodeRow
from tests.support.temporal_process import TemporalProcess
from tests.test_api import enrollment


def _import(file: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "carepath.cli", "import", str(file), "--json", "--concurrency", "4"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _environment(database_url: str, address: str) -> dict[str, str]:
    return os.environ | {
        "CAREPATH_DATABASE_URL": database_url,
        "CAREPATH_TEMPORAL_ADDRESS": address,
        "CAREPATH_ALLOW_UNENCRYPTED": "true",
        "CAREPATH_UPDATE_WAIT_SECONDS": "2",
    }


async def test_import_json_stays_json_when_temporal_goes_down_mid_import(tmp_path: Path):
    temporal = TemporalProcess(tmp_path)
    await temporal.start()
    url = f"sqlite:///{tmp_path / 'carepath.db'}"
    upgrade(url)
    engine = make_engine(url)
    file = tmp_path / "patients.jsonl"
    file.write_text("\n".join(json.dumps(enrollment(f"json-{n}")) for n in range(400)) + "\n")
    try:
        process = _import(file, _environment(url, temporal.address))
        for _ in range(600):  # Temporal dies once the import is under way
            with Session(engine) as session:
                if (session.scalar(select(func.count()).select_from(EpisodeRow)) or 0) >= 10:
                    break
            await asyncio.sleep(0.05)
        temporal.kill()
        out, err = await asyncio.to_thread(process.communicate, timeout=180)
    finally:
        temporal.kill()
        engine.dispose()
    report = json.loads(out)  # the whole of stdout: nothing before or after the report
    assert report["enrolled"] and report["failed"], (len(report["enrolled"]), len(report["failed"]))
    assert len(report["enrolled"]) + len(report["failed"]) == 400
    assert any("Temporal is unreachable" in entry["message"] for entry in report["failed"]), report["failed"][:3]
    assert process.returncode == 1, err[-2000:]


def test_import_json_reports_an_unreachable_temporal_as_json(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'carepath.db'}"
    file = tmp_path / "patients.jsonl"
    file.write_text(json.dumps(enrollment("json-down")) + "\n")
    process = _import(file, _environment(url, "127.0.0.1:1"))
    out, _ = process.communicate(timeout=120)
    report = json.loads(out)
    assert report["imported"] is False and report["error"], report
    assert process.returncode == 1
