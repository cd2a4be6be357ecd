"""Determinism: recorded histories must replay against the current workflow code.

A change that would break running episodes (reordering activities, new timers without
``workflow.patched``) fails here instead of in production.
"""

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from carepath.temporal import DATA_CONVERTER
from tests.support.record_history import HISTORIES, record
from workflows.episode import EpisodeWorkflow

CHECKED_IN = sorted(HISTORIES.glob("*.json"))


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
