"""Bulk import: durable starts that do not wait for the baseline, idempotent per patient, resumable.

On a dev server with the production worker: a JSON-lines file with good, bad and repeated lines
through ``carepath import``, a re-run (nothing doubles), a reservation left by a crashed import
(released and enrolled by the re-run), and ``POST /imports`` with its roles.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from carepath import cli
from carepath.importer import import_enrollments
from db.models import EpisodeRow, TimelineItemRow
from tests.support.live import api_client, sqlite_url, start_dev_server
from tests.test_api import enrollment
from tests.test_enrollment_reservations import ghost, statuses


@pytest.fixture(scope="module")
async def env():
    server = await start_dev_server()
    yield server
    await server.shutdown()


async def all_active(engine: Any, episode_ids: list[str]) -> None:
    """Until each episode's baseline is recorded (active with a timeline): the import did not wait."""
    for _ in range(300):
        with Session(engine) as session:
            active = session.scalar(
                select(func.count()).where(EpisodeRow.id.in_(episode_ids), EpisodeRow.status == "active")
            )
            items = session.scalar(
                select(func.count(func.distinct(TimelineItemRow.episode_id))).where(
                    TimelineItemRow.episode_id.in_(episode_ids)
                )
            )
        if active == items == len(episode_ids):
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("baselines never recorded")


async def test_import_command_reports_and_resumes(env, tmp_path, monkeypatch, capsys):
    url = sqlite_url(tmp_path)
    async with api_client(env, url) as live:
        api, service = live.client, live.service
        answer = await api.post("/episodes", json=enrollment("imp-already"))
        assert answer.status_code == 201
        already = answer.json()["episode_id"]
        crashed = ghost(service.engine, "imp-crashed")  # a reservation whose import died before its start
        lines = [
            json.dumps(enrollment("imp-1")),
            json.dumps(enrollment("imp-2", patient={"ref": "imp-2", "age": 130, "sex": "female"})),
            "",
            "{not json",
            json.dumps(enrollment("imp-already")),
            json.dumps(enrollment("imp-3", days_ago=40)),
            json.dumps(enrollment("imp-1")),  # the same patient twice in one file
            json.dumps(enrollment("imp-crashed")),
        ]
        path = tmp_path / "patients.jsonl"
        path.write_text("\n".join(lines) + "\n")
        for name, value in {
            "CAREPATH_TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
            "CAREPATH_DATABASE_URL": url,
            "CAREPATH_TASK_QUEUE": service.task_queue,
            "CAREPATH_ALLOW_UNENCRYPTED": "true",
            "CAREPATH_RESERVATION_TIMEOUT_SECONDS": "60",
        }.items():
            monkeypatch.setenv(name, value)

        assert await asyncio.to_thread(cli.main, ["import", str(path), "--json"]) == 2  # a line was rejected
        captured = capsys.readouterr()
        report = json.loads(captured.out)
        assert [e["line"] for e in report["enrolled"]] == [1, 6, 8], report
        assert [(e["line"], e["episode_id"]) for e in report["already_active"]] == [(5, already)], report
        rejected = [(e["line"], e["field"], e["message"]) for e in report["rejected"]]
        assert [r[:2] for r in rejected] == [(2, "patient.age"), (4, "line"), (7, "patient.ref")], report
        assert rejected[2][2] == "repeats line 1"
        assert report["failed"] == []
        assert "4/4" in captured.err and "patient/s" in captured.err  # the progress bar: 4 starts
        enrolled = [e["episode_id"] for e in report["enrolled"]]
        await all_active(service.engine, enrolled)
        assert statuses(service.engine, "imp-crashed")[crashed] == "abandoned"  # released, enrolled anew

        # A re-run: every patient is already active, nothing is started twice.
        assert await asyncio.to_thread(cli.main, ["import", str(path), "--no-progress"]) == 2
        out = capsys.readouterr().out
        assert "line 2: rejected: patient.age: must be between 18 and 120" in out, out
        assert out.strip().endswith("0 enrolled, 4 already active, 3 rejected, 0 failed"), out
        with Session(service.engine) as session:
            active = session.scalars(select(EpisodeRow.patient_ref).where(EpisodeRow.status == "active")).all()
        assert sorted(active) == ["imp-1", "imp-3", "imp-already", "imp-crashed"]

        # Bad input at the command line: exit 2 naming what.
        assert cli.main(["import", str(tmp_path / "missing.jsonl")]) == 2
        assert "FILE" in capsys.readouterr().err


async def test_imports_api(env, tmp_path):
    async with api_client(env, sqlite_url(tmp_path)) as live:
        body = "\n".join(json.dumps(enrollment(f"api-imp-{n}")) for n in range(3)) + "\n{}"
        headers = {"content-type": "application/x-ndjson"}
        answer = await live.client.post("/imports", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
        report = answer.json()
        assert [e["line"] for e in report["enrolled"]] == [1, 2, 3]
        assert {e["line"] for e in report["rejected"]} == {4} and report["rejected"][0]["field"], report
        await all_active(live.service.engine, [e["episode_id"] for e in report["enrolled"]])
        again = (await live.client.post("/imports", content=body, headers=headers)).json()
        assert again["enrolled"] == [] and len(again["already_active"]) == 3
        viewer = await live.client.post("/imports", content=body, headers={**headers, **live.auth("viewer")})
        assert viewer.status_code == 403
        bad = await live.client.post("/imports", content=b"\xff\xfe", headers=headers)
        assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "body"


async def test_import_is_concurrent_and_does_not_wait_for_baselines(env, tmp_path):
    """With no worker polling the import's queue, the import still finishes: starts are durable."""
    async with api_client(env, sqlite_url(tmp_path)) as live:
        service = live.service
        service.task_queue = "nobody-polls-this"
        lines = [json.dumps(enrollment(f"bulk-{n}")) for n in range(60)]
        report = await asyncio.wait_for(import_enrollments(service, lines, "test", concurrency=16), 60)
        assert len(report.enrolled) == 60 and not report.failed, report.summary()
        with Session(service.engine) as session:
            reserving = session.scalar(select(func.count()).where(EpisodeRow.status == "reserving"))
        assert reserving == 60  # backed by running workflows: their baselines wait for a worker
        for entry in report.enrolled[:3]:
            handle = service.client.get_workflow_handle(f"episode-{entry.episode_id}")
            assert (await handle.describe()).status.name == "RUNNING"
            await handle.terminate()
