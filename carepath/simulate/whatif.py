"""What-if workload: the running episodes' coming work (``GET /forecast``) plus the expected load
of K new patients a week, from generated stories run through ``carepath simulate``.

The story mix is the pathway's ``forecast_mix.json`` (an assumption, documented in the README):
each story is simulated once for the forecast's weeks; K patients enrolled at the start of each
coming week then add, in week i, K x (weight x items raised in the story's week i - j) summed over
the stories and the enrollment weeks j <= i. Only items a person acts on count (tasks, flags,
escalations with an assignee).
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from collections.abc import Callable
from datetime import date, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from carepath.engine.registry import default_pathway
from carepath.engine.vocabulary import ACTIONABLE_KINDS

ENROLL_DAY = 2
Runner = Callable[..., list[dict[str, Any]]]
PATIENT = {"ref": "forecast", "age": 76, "sex": "female"}


def story_mix() -> list[dict[str, Any]]:
    """The default pathway's ``forecast_mix.json`` (stories run on the default pathway)."""
    package = default_pathway().files.package  # type: ignore[attr-defined]  # a PathwayRules
    path = resources.files(package) / "forecast_mix.json"
    if not path.is_file():
        raise LookupError(f"pathway {default_pathway().id} ships no forecast_mix.json")
    return json.loads(path.read_text(encoding="utf-8"))["stories"]


def _scenario(story: dict[str, Any], n: int, weeks: int) -> dict[str, Any]:
    return {
        "name": story["name"],
        "enroll_day": ENROLL_DAY,
        "until_day": ENROLL_DAY + 7 * weeks,
        "enrollment": {
            "patient": PATIENT | {"ref": f"forecast-{n}"},
            "fracture": {"levels": ["L2"], "acute_injury": False, "correlating_symptoms": False},
            "pain_nrs": 6,
            "analgesics": ["nsaid"],
            "imaging": [{"day": 0, "modality": "xray"}],
        },
        "events": story["events"],
    }


def load_per_story_week(weeks: int, run_files: Runner) -> dict[tuple[int, str, str], float]:
    """(week after enrollment, code, assignee) -> expected items for one new patient; the stories
    run by ``run_files`` (``carepath.simulate.runner.run_files``, handed in by the command line)."""
    mix = story_mix()
    with tempfile.TemporaryDirectory(prefix="carepath-forecast-") as folder:
        paths = []
        for n, story in enumerate(mix):
            path = Path(folder) / f"{n}.json"
            path.write_text(json.dumps(_scenario(story, n, weeks)))
            paths.append(str(path))
        # One process (two lanes): five stories are quick, and forking a process that already
        # runs threads (an API, a Temporal client) can hang.
        results = run_files(paths, None, processes=1, scratch=Path(folder))
    load: dict[tuple[int, str, str], float] = defaultdict(float)
    for story, result in zip(mix, results, strict=True):
        for item in result["timeline"]:
            if item["kind"] in ACTIONABLE_KINDS and item["assignee"]:
                week = (item["day"] - ENROLL_DAY) // 7
                if week < weeks:
                    load[(week, item["code"], item["assignee"])] += story["weight"]
    return load


Load = dict[tuple[int, str, str], float]


def with_new_patients(
    running: list[dict[str, Any]], today: date, weeks: int, per_week: int, per_patient: Load
) -> list[dict[str, Any]]:
    """Rows {week_start, code, assignee, running, new, count}: the running load plus K a week."""
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}

    def row(week_start: str, code: str, assignee: str) -> dict[str, Any]:
        return rows.setdefault(
            (week_start, assignee, code),
            {"week_start": week_start, "code": code, "assignee": assignee, "running": 0, "new": 0.0},
        )

    for r in running:
        row(r["week_start"], r["code"], r["assignee"])["running"] += r["count"]
    for week in range(weeks):
        start = (today + timedelta(days=7 * week)).isoformat()
        for (offset, code, assignee), expected in per_patient.items():
            if offset <= week:  # patients enrolled in each week j = week - offset
                row(start, code, assignee)["new"] += per_week * expected
    out = []
    for key in sorted(rows):
        r = rows[key]
        r["new"] = round(r["new"], 1)
        r["count"] = round(r["running"] + r["new"], 1)
        out.append(r)
    return out


def forecast_command(base: str, weeks: int, per_week: int, as_json: bool, run_files: Runner) -> str:
    """``carepath forecast``: the API's forecast for the running episodes plus K new a week."""
    from carepath.terminal import call, table

    running = call(base, "GET", "/forecast", params={"weeks": weeks})
    per_patient = load_per_story_week(weeks, run_files) if per_week else {}
    rows = with_new_patients(running, date.today(), weeks, per_week, per_patient)
    if as_json:
        return json.dumps(rows, indent=2)
    heading = f"coming {weeks} weeks: running episodes + {per_week} new patients a week (story mix: README)"
    columns = [("week_start", "week of"), ("assignee", "for"), ("code", "code"), ("running", "running")]
    columns += [("new", "new"), ("count", "total")]
    return heading + "\n" + table(rows, columns)
