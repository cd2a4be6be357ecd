"""Cohort quality measures (the pathway's measures.json): a cohort of stories whose measures are
worked out by hand below, run through ``carepath simulate --measures``; the empty cohort.

Each story is enrolled at 08:00 on its ``enroll_day``; milestones and due checks run at 09:00,
events at 12:00 (SCENARIOS.md). E is each story's end day: its ``until_day``, or its withdrawal.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from carepath.measures import as_csv, report
from carepath.pathways.ovcf_lumbar import OVCF_LUMBAR
from carepath.simulate.cohort import run_with_measures
from carepath.simulate.runner import run_files
from db.engine import make_engine
from db.measures import Observed, Period

NSAID = ["nsaid"]


def assess(day: int, nrs: int, analgesics: list[str], **fields: Any) -> dict[str, Any]:
    return {"day": day, "type": "pain_assessment", "nrs": nrs, "analgesics": analgesics, **fields}


def story(name: str, until: int, events: list[dict[str, Any]], enroll_day: int = 0, **enrollment: Any) -> dict:
    return {
        "name": name,
        "enroll_day": enroll_day,
        "until_day": until,
        "enrollment": {
            "patient": {"ref": f"m-{name}", "age": 70, "sex": "female"},
            "fracture": {"levels": ["L2"], "acute_injury": False, "correlating_symptoms": False},
            "pain_nrs": 6,
            "analgesics": NSAID,
            "contraindications": [],
            "osteoporosis_therapy": None,
            "calcium_vitamin_d": False,
            "imaging": [{"day": 0, "modality": "xray"}],
            "red_flags": [],
        }
        | enrollment,
        "events": events,
    }


def on(agent: str, day: int) -> dict[str, Any]:
    return {"day": day, "type": "medication_started", "agent": agent}


# What each story contributes, by hand (E = end day; "item dN" = raised on day N):
COHORT = [
    # S1 E=200. Risedronate day 3 (watchdog disarmed). week4 d28 answered d29 with NRS 1 and no
    # analgesics -> resolved; week6..month3 skipped (no reassessments). Latest NRS by d98: 1.
    story("resolved", 200, [on("risedronate", 3), assess(29, 1, [])]),
    # S2 withdrawn d50 -> E=50: not eligible for 112 days. Watchdog fires d7. week4 d28 overdue
    # d35, week6 d42 overdue d49 (<= 50): two eligible reassessments, neither on time.
    story("withdrawn", 200, [{"day": 50, "type": "withdraw", "reason": "declined"}]),
    # S3 enrolled on day 100 on alendronate (met at enrollment; no watchdog). Month3 skipped, so
    # evaluated at enrollment: NRS 7 on an NSAID -> AUGMENTATION_REVIEW; imaging from day 0 is
    # 100 days old -> OBTAIN_MRI d100, answered by an MRI on d110. No NRS on a day <= 98 (the
    # enrollment's is on day 100): not in the pain median.
    story(
        "late-enrolled",
        200,
        [{"day": 110, "type": "imaging", "modality": "mri"}],
        enroll_day=100,
        pain_nrs=7,
        osteoporosis_therapy={"agent": "alendronate"},
    ),
    # S4 refractory: zoledronic acid d2; every reassessment answered the next day with NRS 6-7 on
    # an NSAID; month3 answered d92 (oral analgesia inadequate) -> AUGMENTATION_REVIEW, and
    # OBTAIN_MRI d92 (imaging 92 days old) never followed by an MRI. Latest NRS by d98: 6.
    story(
        "refractory",
        200,
        [
            on("zoledronic_acid", 2),
            assess(29, 7, NSAID),
            assess(43, 7, NSAID),
            assess(57, 6, NSAID),
            assess(92, 6, NSAID, oral_analgesia_adequate=False),
        ],
    ),
    # S5 observed to day 200, risedronate at enrollment: week4 answered, week6 unanswered (overdue
    # d49), week8 and month3 answered; NRS 2 on acetaminophen at d95 -> conservative_success.
    story(
        "conservative-success",
        200,
        [assess(30, 3, ["acetaminophen"]), assess(58, 3, ["acetaminophen"]), assess(95, 2, ["acetaminophen"])],
        osteoporosis_therapy={"agent": "risedronate"},
    ),
    # S6 new fracture: alendronate only on d120 (> 112: not in time; watchdog d7). No assessment
    # ever: all four reassessments overdue; the month3 evaluation at d98 (overdue) raises OBTAIN_MRI
    # and AUGMENTATION_REVIEW; an x-ray (not an MRI) on d150 shows a new fracture. E=200 < 365 but
    # the fracture counts it in. Latest NRS by d98: the enrollment's 6.
    story(
        "new-fracture",
        200,
        [on("alendronate", 120), {"day": 150, "type": "imaging", "modality": "xray", "new_fracture": True}],
    ),
    # S7 followed for the year (E=370): ibandronate at enrollment, NRS 2 with nothing; resolved at
    # d29 (NRS 0); month12 completes it. In the 12-month population, no new fracture. NRS by d98: 0.
    story(
        "year",
        370,
        [assess(29, 0, [])],
        pain_nrs=2,
        analgesics=[],
        osteoporosis_therapy={"agent": "ibandronate"},
    ),
    # S8 just enrolled, E=5: eligible for nothing.
    story("just-enrolled", 5, []),
    # S9 withdrawn d30: watchdog d7 fired (eligible for "without delay", not met); week4 d28 has
    # not had its 7 days (E=30 < 35): not eligible.
    story("withdrawn-early", 200, [{"day": 30, "type": "withdraw", "reason": "transferred"}]),
]

EXPECTED = {
    # eligible E >= 112: S1 S3 S4 S5 S6 S7; met: all but S6 (d120). Not eligible: S2 S8 S9.
    "therapy_16w": {"numerator": 5, "denominator": 6, "not_eligible": 3, "rate": 5 / 6, "band": "green"},
    # eligible E >= enrolled + 7: all but S8; watchdog escalations in S2 S6 S9.
    "therapy_without_delay": {"numerator": 5, "denominator": 8, "not_eligible": 1, "rate": 5 / 8, "band": "amber"},
    # items: S1 1/1, S2 0/2, S4 4/4, S5 3/4, S6 0/4, S7 1/1; S9's week4 not eligible.
    "reassessment_on_time": {"numerator": 9, "denominator": 16, "not_eligible": 1, "rate": 9 / 16, "band": "amber"},
    # OBTAIN_MRI: S3 (MRI d110, met), S4 and S6 (none).
    "mri_when_indicated": {"numerator": 1, "denominator": 3, "not_eligible": 0, "rate": 1 / 3, "band": "red"},
    # evaluated: S3 S4 S6 (augmentation review) and S5 (conservative success).
    "augmentation_review_rate": {"numerator": 3, "population": 4, "not_eligible": 5, "rate": 0.75},
    # S7 (E >= 365) and S6 (new fracture d150 <= min(E, 365)).
    "new_fracture_12m": {"numerator": 1, "population": 2, "not_eligible": 7, "rate": 0.5},
    # S1 1, S4 6, S5 2, S6 6, S7 0 -> [0, 1, 2, 6, 6].
    "pain_month3_median": {"median": 2.0, "population": 5, "not_eligible": 4},
}


def write_cohort(folder: Path) -> list[str]:
    paths = []
    for n, scenario in enumerate(COHORT):
        path = folder / f"{n}-{scenario['name']}.json"
        path.write_text(json.dumps(scenario))
        paths.append(str(path))
    return paths


def numbers(measures: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: {f: v for f, v in m.items() if f not in ("title", "scoring", "unit")} for k, m in measures.items()}


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str], list[dict], dict]:
    folder = tmp_path_factory.mktemp("cohort")
    url = f"sqlite:///{folder / 'sim.db'}"
    paths = write_cohort(folder)
    results, measures = run_with_measures(run_files, paths, url, processes=1, lanes=1)
    return url, paths, results, measures


def test_hand_computed_cohort_measures(simulated) -> None:
    _, _, results, measures = simulated
    assert [r["rejected"] for r in results] == [[]] * len(COHORT)
    assert numbers(measures) == EXPECTED
    assert measures["therapy_16w"]["scoring"] == "proportion" and measures["pain_month3_median"]["scoring"] == "median"


def test_simulated_episodes_are_not_in_the_live_report(simulated) -> None:
    url = simulated[0]
    engine = make_engine(url)
    try:
        found = report(engine, OVCF_LUMBAR, Period(as_of=date(2100, 1, 1))).totals()
    finally:
        engine.dispose()
    assert found["therapy_16w"]["denominator"] == 0 and found["therapy_16w"]["not_eligible"] == 0


def test_empty_cohort_gives_zero_denominators_and_null_rates(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        for which in (Period(as_of=date(2026, 12, 7)), Observed([])):
            found = report(engine, OVCF_LUMBAR, which)
            totals = found.totals()
            assert found.counts.cohort == 0 and found.months() == []
            for spec in OVCF_LUMBAR.measures().measures:
                values = totals[spec.id]
                if spec.scoring == "median":
                    assert (values["median"], values["population"], values["not_eligible"]) == (None, 0, 0)
                else:
                    assert values["numerator"] == 0 and values["rate"] is None and values["not_eligible"] == 0
                    assert values.get("denominator", values.get("population")) == 0
                    assert values.get("band") is None
            assert as_csv(found).splitlines()[1].startswith("all,therapy_16w,")
    finally:
        engine.dispose()


def test_drill_down_lists_exactly_what_did_not_meet_it(simulated) -> None:
    url, paths, results, _ = simulated
    from carepath.simulate.cohort import observed
    from db.measures import not_met

    engine = make_engine(url)
    try:
        missed = not_met(engine, OVCF_LUMBAR.measures(), observed(paths, results), "reassessment_on_time")
        therapy = not_met(engine, OVCF_LUMBAR.measures(), observed(paths, results), "therapy_16w")
    finally:
        engine.dispose()
    got = sorted((row["patient_ref"], row["occasion"]) for row in missed)
    assert got == [
        ("m-conservative-success", "week6"),
        ("m-new-fracture", "month3"),
        ("m-new-fracture", "week4"),
        ("m-new-fracture", "week6"),
        ("m-new-fracture", "week8"),
        ("m-withdrawn", "week4"),
        ("m-withdrawn", "week6"),
    ]
    assert [row["patient_ref"] for row in therapy] == ["m-new-fracture"]


def test_median_of_an_even_count_is_the_mean_of_the_middle_two() -> None:
    from db.measures import _median_of

    assert _median_of({0: 1, 1: 1, 2: 1, 6: 2}) == 2.0  # 0 1 2 6 6
    assert _median_of({3: 1, 4: 1}) == 3.5
    assert _median_of({5: 4}) == 5.0


def test_kept_facts_count_what_the_events_and_items_count(simulated) -> None:
    """The facts each recording keeps give the very counts the events and items give."""
    url, paths, results, _ = simulated
    from carepath.simulate.cohort import observed
    from db.measures import measure_counts

    engine = make_engine(url)
    try:
        which = observed(paths, results)
        kept = measure_counts(engine, OVCF_LUMBAR.measures(), which)
        counted = measure_counts(engine, OVCF_LUMBAR.measures(), which, kept=False)
    finally:
        engine.dispose()
    assert kept == counted


def test_facts_kept_by_recordings_equal_a_fill_from_the_stored_rows(tmp_path: Path) -> None:
    from sqlalchemy import delete, select

    from db.measure_facts import FACT_SETS, FACTS, fill

    url = f"sqlite:///{tmp_path / 'sim.db'}"
    run_files(write_cohort(tmp_path), url, processes=1, lanes=1)  # recordings only, no report yet
    engine = make_engine(url)
    try:
        with engine.begin() as db:
            recorded = sorted(db.execute(select(FACTS)).all())
            assert db.execute(select(FACT_SETS)).all() == []  # never filled: every fact is a recording's
            db.execute(delete(FACTS))
        assert fill(engine, OVCF_LUMBAR.measures()) == len(COHORT)
        with engine.connect() as db:
            assert sorted(db.execute(select(FACTS)).all()) == recorded
    finally:
        engine.dispose()
    assert len(recorded) > len(COHORT)  # several facts per episode


def _store_without_facts(simulated_url: str, copy: Path) -> tuple[Any, list[Any]]:
    """A copy of the simulated store as it was before facts were kept (migration 0015): its
    engine, and the facts its recordings had kept (which a fill must give back)."""
    import shutil

    from sqlalchemy import delete, select

    from db.measure_facts import FACT_SETS, FACTS

    shutil.copy(simulated_url.removeprefix("sqlite:///"), copy)
    engine = make_engine(f"sqlite:///{copy}")
    with engine.begin() as db:
        kept = sorted(db.execute(select(FACTS)).all())
        db.execute(delete(FACTS))
        db.execute(delete(FACT_SETS))
    return engine, kept


def test_episodes_stored_before_their_facts_get_them_from_the_first_report(simulated, tmp_path: Path) -> None:
    """Episodes written before facts were kept (migration 0015): the first report fills them
    from the stored events and items, and the measures are the hand-computed ones."""
    from sqlalchemy import select

    from carepath.simulate.cohort import cohort_measures
    from db.measure_facts import FACT_SETS, FACTS

    url, paths, results, _ = simulated
    copy = tmp_path / "before.db"
    engine, kept = _store_without_facts(url, copy)
    try:
        assert numbers(cohort_measures(f"sqlite:///{copy}", paths, results)) == EXPECTED
        with engine.connect() as db:
            assert sorted(db.execute(select(FACTS)).all()) == kept
            assert len(db.execute(select(FACT_SETS)).all()) == 1
    finally:
        engine.dispose()


def test_the_worker_fills_facts_of_episodes_stored_before_them_at_start(simulated, tmp_path: Path, caplog) -> None:
    """After an upgrade the worker fills the facts in the background, with progress in the log:
    every stored episode gets back the facts its recordings kept, and the set is marked filled."""
    import logging

    from sqlalchemy import select

    from carepath.measures import fill_kept_facts_in_background
    from db.measure_facts import FACTS, filled

    engine, kept = _store_without_facts(simulated[0], tmp_path / "upgraded.db")
    try:
        with caplog.at_level(logging.INFO, logger="carepath.measures"):
            fill_kept_facts_in_background(engine, [OVCF_LUMBAR]).join(timeout=60)
        assert f"facts filled for all {len(COHORT)} stored episodes" in caplog.text
        with engine.connect() as db:
            assert filled(db, OVCF_LUMBAR.measures())
            assert sorted(db.execute(select(FACTS)).all()) == kept
    finally:
        engine.dispose()
