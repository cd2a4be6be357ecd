"""Determinism: recorded histories must replay against the current workflow code.

A change that would break running episodes (reordering activities, new timers without
``workflow.patched``) fails here instead of in production.
"""

import json
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from carepath.temporal import DATA_CONVERTER
from tests.support.record_history import HISTORIES, record
from workflows.episode import LOCAL_RECORD_PATCH, EpisodeWorkflow

CHECKED_IN = sorted(HISTORIES.glob("*.json"))
# Recorded on the code that recorded locally (LOCAL_RECORD_PATCH); every other one before it.
RECORDED_LOCALLY = HISTORIES / "episode-year-local.json"


def _replayer() -> Replayer:
    return Replayer(workflows=[EpisodeWorkflow], data_converter=DATA_CONVERTER)


def test_histories_are_checked_in():
    assert CHECKED_IN, "tests/histories/ must hold at least one recorded history"


@pytest.mark.parametrize("path", CHECKED_IN, ids=lambda p: p.stem)
async def test_checked_in_history_replays(path: Path):
    history = WorkflowHistory.from_json("episode-replay", path.read_text())
    result = await _replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


async def test_fresh_history_replays(tmp_path: Path):
    path = tmp_path / "fresh.json"
    await record(path)
    history = WorkflowHistory.from_json("episode-fresh", path.read_text())
    result = await _replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


def _recordings(history: WorkflowHistory) -> tuple[bool, int, int]:
    """Whether the run took the local recording patch; its scheduled and its local recordings."""
    patched, scheduled, local = False, 0, 0
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled += event.activity_task_scheduled_event_attributes.activity_type.name == "record_changes"
        elif event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            details = event.marker_recorded_event_attributes.details
            for name in ("patch-data", "data"):
                for payload in details[name].payloads if name in details else []:
                    data = json.loads(payload.data)
                    patched |= data.get("id") == LOCAL_RECORD_PATCH
                    local += data.get("activity_type") == "record_changes"
    return patched, scheduled, local


@pytest.mark.parametrize("path", [p for p in CHECKED_IN if p != RECORDED_LOCALLY], ids=lambda p: p.stem)
def test_a_history_recorded_before_local_recording_keeps_scheduling_it(path: Path):
    """Runs begun before the patch replay on their scheduled recordings (test_checked_in_history_replays)."""
    patched, scheduled, local = _recordings(WorkflowHistory.from_json("before", path.read_text()))
    assert (patched, local) == (False, 0) and scheduled > 0


def test_a_run_begun_on_this_code_records_in_its_workflow_task():
    patched, scheduled, local = _recordings(WorkflowHistory.from_json("local", RECORDED_LOCALLY.read_text()))
    assert patched and local > 0 and scheduled == 0
