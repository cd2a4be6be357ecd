"""A running episode recorded on the old rules gets the amended SPEC section 8 on the new worker.

The first part of the story runs on the engine release that was in production before the
amendment (tests/legacy/engine-a1894a0.tar.gz, its own `python worker.py`, its own migrations);
then that worker stops, the store is migrated, and the current worker takes the same running
episode over from its history: replaying it raises no non-determinism error, and from its next
decision on it follows the new rules.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tarfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from temporalio.api.enums.v1 import EventType
from temporalio.worker import Replayer

from carepath.pathways.ovcf_lumbar.state import RULES_REVISION
from carepath.temporal import DATA_CONVERTER
from db.engine import make_engine
from db.migrate import upgrade
from db.models import TaskRow
from tests.support.live import start_dev_server
from tests.support.story import base_enrollment
from tests.support.temporal import TASK_QUEUE, running_worker
from workflows.contracts import EpisodeView, workflow_id
from workflows.episode import RULES_PATCH, EpisodeWorkflow

LEGACY = Path(__file__).resolve().parent / "legacy" / "engine-a1894a0.tar.gz"


class LegacyWorker:
    """`python worker.py` of the old release, in a process of its own."""

    def __init__(self, tree: Path, address: str, database_url: str, log: Path) -> None:
        environment = {
            **os.environ,
            "PYTHONPATH": str(tree),  # the old packages, ahead of the installed (current) ones
            "CAREPATH_TEMPORAL_ADDRESS": address,
            "CAREPATH_TASK_QUEUE": TASK_QUEUE,
            "CAREPATH_DATABASE_URL": database_url,
            "CAREPATH_ALLOW_UNENCRYPTED": "true",
            "CAREPATH_NOTIFICATION_FILE": str(tree / "notifications.jsonl"),
        }
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "worker.py"], cwd=tree, env=environment, stdout=log.open("w"), stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 60
        while "worker polling" not in log.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                raise RuntimeError(f"the legacy worker did not start:\n{log.read_text()}")
            time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _legacy_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "engine-a1894a0"
    with tarfile.open(LEGACY) as archive:
        archive.extractall(tree, filter="data")
    return tree


def _event(day0: date, day: int, **fields: Any) -> dict[str, Any]:
    # Raw JSON, as the old release's client sent it: the old worker knows nothing newer.
    occurred_on = (day0 + timedelta(days=day)).isoformat()
    return {"event": {"occurred_on": occurred_on, **fields}, "event_id": uuid.uuid4().hex, "actor": "test"}


async def test_an_episode_started_on_the_old_rules_raises_the_second_consultation_on_the_new_worker(tmp_path: Path):
    # A dev server on the wall clock (the time-skipping server never hands a task on from a dead
    # worker's sticky queue): the patient is enrolled back-dated to day 260, and the story's
    # events carry their own past dates, as the API allows.
    tree = _legacy_tree(tmp_path)
    url = f"sqlite:///{tmp_path / 'carepath.db'}"
    day0 = datetime.now(UTC).date() - timedelta(days=260)
    env = await start_dev_server()
    try:
        address = env.client.service_client.config.target_host
        legacy = LegacyWorker(tree, address, url, tmp_path / "legacy-worker.log")
        try:
            episode_id = uuid.uuid4().hex
            old_definition = json.loads((tree / "carepath/pathway/definitions/ovcf-lumbar.v1.json").read_text())
            start = {
                "episode_id": episode_id,
                "enrollment": base_enrollment(
                    identified_on=day0.isoformat(), pain_nrs=3, analgesics=["acetaminophen"], osteoporosis_therapy=None
                ),
                "definition": old_definition,
                "actor": "test",
            }
            handle = await env.client.start_workflow(
                "Episode", start, id=workflow_id(episode_id), task_queue=TASK_QUEUE
            )
            await handle.execute_update("catch_up", result_type=dict)
            for day, fields in [
                (100, {"type": "red_flag", "flag": "neurological_deficit"}),
                (
                    110,
                    {"type": "override", "author": "Dr Ames", "reason": "seen", "close_task": "SURGICAL_CONSULTATION"},
                ),
            ]:
                await handle.execute_update("record_event", _event(day0, day, **fields), result_type=dict)
            outcome = await handle.execute_update(
                "record_event", _event(day0, 250, type="red_flag", flag="cord_compression"), result_type=dict
            )
            assert outcome["raised"] == []  # the defect, as the old rules recorded it
            await _settled(handle)
        finally:
            legacy.stop()

        upgrade(url)  # the deployment migrates the store before the new worker starts
        engine = make_engine(url)
        try:
            async with running_worker(env, engine):
                outcome = await handle.execute_update(
                    "record_event", _event(day0, 255, type="red_flag", flag="cord_compression"), result_type=dict
                )
                assert outcome["raised"] == ["SURGICAL_CONSULTATION@red_flag-day255"]
                view = await handle.query(EpisodeWorkflow.view, result_type=EpisodeView)
                assert view.rules_revision == RULES_REVISION  # revision 1 moves straight to the newest
                # Not duplicated while it is open, now that the new rules decide.
                again = await handle.execute_update(
                    "record_event", _event(day0, 256, type="red_flag", flag="cord_compression"), result_type=dict
                )
                assert again["raised"] == []
                await _settled(handle)
                history = await handle.fetch_history()
                await handle.terminate()
            with Session(engine) as session:
                consultations = session.execute(
                    select(TaskRow.occasion, TaskRow.status).where(
                        TaskRow.episode_id == episode_id, TaskRow.code == "SURGICAL_CONSULTATION"
                    )
                ).all()
            assert sorted(consultations) == [("month3", "cancelled"), ("red_flag-day255", "open")]
        finally:
            engine.dispose()
    finally:
        await env.shutdown()

    # Exactly one marker, at the first decision the new worker made; the whole history replays.
    markers = [
        e.marker_recorded_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
    ]
    assert len(markers) == 1
    assert f"{RULES_PATCH}3@".encode() in markers[0].SerializeToString(), markers[0]  # r1 jumps to the newest
    replayed = await Replayer(workflows=[EpisodeWorkflow], data_converter=DATA_CONVERTER).replay_workflow(
        history, raise_on_replay_failure=False
    )
    assert replayed.replay_failure is None, replayed.replay_failure


async def _settled(handle: Any) -> None:
    """Wait until the episode's notification deliveries are done (none left to a stopped worker)."""
    for _ in range(300):
        view = await handle.query("view", result_type=dict)
        if not view["delivering"]:
            return
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("name", ["midlife-rules-r1"])
async def test_the_checked_in_old_rules_history_replays_without_a_marker(name: str):
    from temporalio.client import WorkflowHistory

    from tests.support.record_history import HISTORIES

    history = WorkflowHistory.from_json(name, (HISTORIES / f"{name}.json").read_text())
    assert not [e for e in history.events if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED]
    result = await Replayer(workflows=[EpisodeWorkflow], data_converter=DATA_CONVERTER).replay_workflow(
        history, raise_on_replay_failure=False
    )
    assert result.replay_failure is None, result.replay_failure
