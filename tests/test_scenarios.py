"""Patients' stories with ``expect`` blocks through the real ``carepath simulate --json`` command.

tests/scenarios/ holds a story per SPEC rule; examples/ holds the shared pathway examples.
All valid stories run in one command, side by side, as a user would run them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.expect import judge

ROOT = Path(__file__).resolve().parent.parent
STORIES = sorted((ROOT / "tests" / "scenarios").glob("*.json")) + sorted((ROOT / "examples").glob("*.json"))
VALID = [p for p in STORIES if "invalid_enrollment" not in json.loads(p.read_text())["expect"]]
INVALID = [p for p in STORIES if p not in VALID]
CAREPATH = [sys.executable, "-m", "carepath.cli"]


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> dict[str, dict]:
    database = tmp_path_factory.mktemp("sim") / "stories.db"
    run = subprocess.run(
        [*CAREPATH, "simulate", "--json", "--database-url", f"sqlite:///{database}", *map(str, VALID)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads(run.stdout)
    assert len(results) == len(VALID)
    return {path.stem: result for path, result in zip(VALID, results, strict=True)}


def test_there_are_stories_for_every_rule():
    assert len(VALID) >= 40 and len(INVALID) >= 5


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_story_meets_its_expectations(simulated, path: Path):
    expect = json.loads(path.read_text())["expect"]
    result = simulated[path.stem]
    assert judge(expect, result) == []
    assert result["scenario"] == json.loads(path.read_text()).get("name", "")


def test_output_shape_is_the_contract(simulated):
    for result in simulated.values():
        assert set(result) >= {"scenario", "timeline", "rejected", "final_phase"}
        for item in result["timeline"]:
            assert set(item) >= {"day", "code", "kind", "priority", "assignee", "title", "evidence"}
            assert item["kind"] in {"task", "flag", "escalation", "info", "phase", "skipped"}
        for rejected in result["rejected"]:
            assert set(rejected) >= {"day", "type", "error"}


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_enrollment_exits_non_zero_naming_the_field_and_creates_nothing(tmp_path, path: Path):
    database = tmp_path / "never.db"
    run = subprocess.run(
        [*CAREPATH, "simulate", "--json", "--database-url", f"sqlite:///{database}", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    field = json.loads(path.read_text())["expect"]["invalid_enrollment"]
    assert run.returncode == 2
    assert field in run.stderr
    assert "Traceback" not in run.stderr and run.stdout == ""
    assert not database.exists()
