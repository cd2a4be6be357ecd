"""The what-if forecast: the running load plus K new patients a week from the simulated mix."""

from __future__ import annotations

from datetime import date

from carepath.simulate.runner import run_files
from carepath.simulate.whatif import load_per_story_week, story_mix, with_new_patients

TODAY = date(2026, 12, 7)
BASELINE = {"AVOID_BED_REST", "CALCITONIN_ACUTE_PAIN", "CALCIUM_VITAMIN_D", "START_OSTEOPOROSIS_THERAPY"}


def test_the_mix_is_a_distribution() -> None:
    assert abs(sum(s["weight"] for s in story_mix()) - 1) < 1e-9


def test_new_patients_add_their_weekly_load_by_hand() -> None:
    per_patient = {(0, "CALCIUM_VITAMIN_D", "coordinator"): 1.0, (1, "PHARMACOTHERAPY_OVERDUE", "physician"): 0.25}
    running = [{"week_start": "2026-12-14", "code": "CALCIUM_VITAMIN_D", "assignee": "coordinator", "count": 2}]
    rows = with_new_patients(running, TODAY, 2, 3, per_patient)
    assert rows == [
        {
            "week_start": "2026-12-07",
            "code": "CALCIUM_VITAMIN_D",
            "assignee": "coordinator",
            "running": 0,
            "new": 3.0,
            "count": 3.0,
        },
        {
            "week_start": "2026-12-14",
            "code": "CALCIUM_VITAMIN_D",
            "assignee": "coordinator",
            "running": 2,
            "new": 3.0,
            "count": 5.0,
        },
        # week 2: the first week's 3 patients' watchdogs, a quarter of them without therapy yet
        {
            "week_start": "2026-12-14",
            "code": "PHARMACOTHERAPY_OVERDUE",
            "assignee": "physician",
            "running": 0,
            "new": 0.8,
            "count": 0.8,
        },
    ]


def test_the_mix_simulated_raises_the_baseline_at_once_and_reassessments_from_week_4() -> None:
    load = load_per_story_week(5, run_files)
    # every new patient: the baseline tasks in their first week (untreated at enrollment, NRS 6)
    assert {code for (week, code, _), n in load.items() if week == 0 and n == 1.0} == BASELINE
    # the watchdog fires for the stories without therapy by day 9: late therapy (0.2) and withdrawn (0.05)
    assert abs(load[(1, "PHARMACOTHERAPY_OVERDUE", "physician")] - 0.25) < 1e-9
    # week4 (day 28) is in the fourth week after enrollment on day 2 (days 23-29): everyone
    assert abs(load[(3, "PAIN_REASSESSMENT", "coordinator")] - 1.0) < 1e-9
    assert max(week for week, _, _ in load) < 5
