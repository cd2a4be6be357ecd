"""A simulated cohort's measures: the stories' episodes, each observed to its ``until_day``
(stories run on the default pathway, so its measures are the ones counted).

The same SQL as the live report (``db.measures``) over the run's store; the cohort is the
stories' episodes rather than a period, and each one's as-of day is its story's end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from carepath.engine.registry import default_pathway
from carepath.measures import report
from carepath.simulate.scenario import load_scenario
from db.engine import make_engine
from db.measures import Observed


def observed(paths: list[str], results: list[dict[str, Any]]) -> Observed:
    """Each story's episode with its last observed day (day 0 + ``until_day``)."""
    limits = []
    for path, story in zip(paths, results, strict=True):
        until = load_scenario(Path(path)).until_day
        limits.append((story["episode_id"], date.fromisoformat(story["identified_on"]) + timedelta(days=until)))
    return Observed(limits)


def cohort_measures(database_url: str, paths: list[str], results: list[dict[str, Any]]) -> dict[str, Any]:
    engine = make_engine(database_url)
    try:
        return report(engine, default_pathway(), observed(paths, results)).totals()
    finally:
        engine.dispose()


def run_with_measures(
    run_files: Callable[..., list[dict[str, Any]]], paths: list[str], database_url: str | None, **options: Any
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Simulate ``paths`` with ``run_files`` (``carepath.simulate.runner.run_files``, handed in by the
    command line: it composes a worker) and measure the cohort they make."""
    scratch = None
    if database_url is None:
        folder = Path(os.environ.get("TMPDIR", "/tmp"))
        scratch = folder / f"carepath-sim-{uuid.uuid4().hex}.db"
        database_url = f"sqlite:///{scratch}"
    try:
        results = run_files(paths, database_url, **options)
        return results, cohort_measures(database_url, paths, results)
    finally:
        if scratch is not None:
            scratch.unlink(missing_ok=True)
