"""One computation for every consumer: the same cohort through the live API (a real Temporal dev
server, the production worker, SQLite and PostgreSQL) gives what ``carepath simulate
--measures`` gives; the FHIR forms validate; the drill-down is for clinicians; the forecast is
the running episodes' own due points.

Live enrollments cannot wait months, so each story here happens on one day: enrolled on day X
(back-dated) with its events on that day, observed to day X (``until_day`` = X, and as of
today live). No X is a milestone day, so enrolling at 08:00 (simulate) or now (live) runs the
same rules.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.R4B.bundle import Bundle

from carepath.pathways.ovcf_lumbar import OVCF_LUMBAR
from tests.support.live import api_client, start_dev_server
from tests.test_measures import numbers, story

TODAY = date.today()

STORIES = [
    # day 130, alendronate only now (after day 112): evaluated at enrollment -> augmentation review.
    story("late-therapy", 130, [{"day": 130, "type": "medication_started", "agent": "alendronate"}], enroll_day=130),
    # day 150 on risedronate, little pain: conservative success; an MRI that day.
    story(
        "treated",
        150,
        [{"day": 150, "type": "imaging", "modality": "mri"}],
        enroll_day=150,
        pain_nrs=2,
        analgesics=[],
        osteoporosis_therapy={"agent": "risedronate"},
    ),
    # day 200: a new fracture on x-ray, then withdrawn the same day.
    story(
        "fracture-withdrawn",
        200,
        [
            {"day": 200, "type": "imaging", "modality": "xray", "new_fracture": True},
            {"day": 200, "type": "withdraw", "reason": "transferred"},
        ],
        enroll_day=200,
    ),
    # day 40, a pain assessment: running into week6 and on (the forecast's episode).
    story("day-40", 40, [{"day": 40, "type": "pain_assessment", "nrs": 5, "analgesics": ["nsaid"]}], enroll_day=40),
    # enrolled today on day 0.
    story("fresh", 0, []),
    # day 300 on denosumab, last dose on day 120: the reminder for day 302 is raised at enrollment.
    story(
        "denosumab",
        300,
        [],
        enroll_day=300,
        osteoporosis_therapy={"agent": "denosumab", "last_dose_day": 120},
    ),
]


def dated(scenario: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The scenario in the live API's terms: dates instead of days."""
    day0 = TODAY - timedelta(days=scenario["enroll_day"])

    def on(day: int) -> str:
        return (day0 + timedelta(days=day)).isoformat()

    enrollment = dict(scenario["enrollment"], identified_on=day0.isoformat())
    enrollment["imaging"] = [{"performed_on": on(i["day"]), "modality": i["modality"]} for i in enrollment["imaging"]]
    therapy = enrollment["osteoporosis_therapy"]
    if therapy is not None:
        last = therapy.get("last_dose_day")
        last_on = None if last is None else on(last)
        enrollment["osteoporosis_therapy"] = {"agent": therapy["agent"], "last_dose_on": last_on}
    events = [{k: v for k, v in e.items() if k != "day"} | {"occurred_on": on(e["day"])} for e in scenario["events"]]
    return enrollment, events


@pytest.fixture(scope="module")
async def dev_env():
    env = await start_dev_server()
    yield env
    await env.shutdown()


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("stories")
    paths = []
    for n, scenario in enumerate(STORIES):
        path = folder / f"{n}.json"
        path.write_text(json.dumps(scenario))
        paths.append(str(path))
    command = [str(Path(sys.executable).parent / "carepath"), "simulate", "--measures", "--processes", "1", *paths]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.fixture
async def cohort(dev_env, database_url):
    async with api_client(dev_env, database_url) as live:
        ids = {}
        for scenario in STORIES:
            enrollment, events = dated(scenario)
            answer = await live.client.post("/episodes", json=enrollment)
            assert answer.status_code == 201, answer.text
            episode_id = ids[scenario["name"]] = answer.json()["episode_id"]
            for event in events:
                if event["type"] == "withdraw":
                    withdrawal = {"reason": event["reason"]}
                    answer = await live.client.post(f"/episodes/{episode_id}/withdraw", json=withdrawal)
                else:
                    answer = await live.client.post(f"/episodes/{episode_id}/events", json=event)
                assert answer.status_code == 200, answer.text
        yield live, ids


async def test_live_measures_equal_simulate_measures(cohort, simulated) -> None:
    live, _ = cohort
    answer = await live.client.get("/measures", params={"as_of": TODAY.isoformat()})
    assert answer.status_code == 200, answer.text
    assert answer.json() == simulated
    # What these one-day stories give, so that the equality is not of two empty reports.
    assert numbers(simulated)["therapy_16w"] == {
        "numerator": 2,
        "denominator": 4,
        "not_eligible": 2,
        "rate": 0.5,
        "band": "amber",
    }
    assert numbers(simulated)["new_fracture_12m"] == {"numerator": 1, "population": 1, "not_eligible": 5, "rate": 1.0}
    # A period that holds no day 0 is an empty cohort, not an error.
    empty = (await live.client.get("/measures", params={"from": "2000-01-01", "to": "2000-12-31"})).json()
    assert empty["therapy_16w"]["denominator"] == 0 and empty["therapy_16w"]["rate"] is None
    months = (await live.client.get("/measures", params={"by": "month"})).json()
    assert sum(m["episodes"] for m in months["months"]) == len(STORIES)


async def test_bad_report_parameters_are_422_naming_them(cohort) -> None:
    live, _ = cohort
    for params, field in (({"as_of": "2026-13-01"}, "as_of"), ({"from": "2026-05-01", "to": "2026-01-01"}, "to")):
        answer = await live.client.get("/measures", params=params)
        assert answer.status_code == 422 and answer.json()["detail"][0]["field"] == field, answer.text
    for weeks, words in ((0, "must be at least 1"), (53, "must be at most 52")):
        answer = await live.client.get("/forecast", params={"weeks": weeks})
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"] == [{"field": "weeks", "message": words}]


async def test_fhir_measure_reports_and_measures_validate(cohort, simulated) -> None:
    live, _ = cohort
    bundle = (await live.client.get("/measures/fhir")).json()
    Bundle.model_validate(bundle)
    reports = {e["resource"]["measure"].rsplit("/", 1)[1]: e["resource"] for e in bundle["entry"]}
    assert set(reports) == set(simulated)
    therapy = reports["therapy_16w"]
    assert therapy["type"] == "summary" and therapy["status"] == "complete"
    counts = {p["code"]["coding"][0]["code"]: p["count"] for p in therapy["group"][0]["population"]}
    assert counts == {"initial-population": 6, "denominator": 4, "numerator": 2}
    assert therapy["group"][0]["measureScore"]["value"] == 0.5
    assert "measureScore" not in reports["pain_month3_median"]["group"][0]  # nobody observed to day 98 with a value
    definitions = (await live.client.get("/measures/fhir/Measure")).json()
    Bundle.model_validate(definitions)
    urls = {e["resource"]["url"] for e in definitions["entry"]}
    assert {r["measure"] for r in reports.values()} == urls


async def test_drill_down_names_who_did_not_meet_it_for_clinicians_only(cohort) -> None:
    live, _ = cohort
    refs = {e["patient_ref"] for e in (await live.client.get("/measures/therapy_16w/not-met")).json()}
    assert refs == {"m-late-therapy", "m-fracture-withdrawn"}  # day 130 is after 112; never
    answer = await live.client.get("/measures/therapy_16w/not-met", headers=live.auth("viewer"))
    assert answer.status_code == 403
    answer = await live.client.get("/measures/no_such/not-met")
    assert answer.status_code == 422 and answer.json()["detail"][0]["field"] == "measure"


async def test_csv_download_has_every_measure(cohort, simulated) -> None:
    live, _ = cohort
    answer = await live.client.get("/measures.csv")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    whole = {r["measure"]: r for r in rows if r["month"] == "all"}
    assert set(whole) == set(simulated)
    assert whole["therapy_16w"]["denominator"] == "4" and whole["therapy_16w"]["band"] == "amber"


async def test_forecast_is_the_running_episodes_own_due_points(cohort) -> None:
    live, ids = cohort
    rows = (await live.client.get("/forecast", params={"weeks": 12})).json()
    got = Counter({(r["week_start"], r["code"], r["assignee"]): r["count"] for r in rows})
    # The same projection from each running episode's live state, bucketed by hand.
    expected: Counter[tuple[str, str, str]] = Counter()
    now = datetime.now(ZoneInfo("UTC"))
    for name, episode_id in ids.items():
        if name == "fracture-withdrawn":
            continue
        state = await live.service.episodes.state(episode_id)
        for item in OVCF_LUMBAR.coming(state, now):
            week = (item.on - TODAY).days // 7
            if 0 <= week < 12:
                expected[((TODAY + timedelta(days=7 * week)).isoformat(), item.code, item.assignee)] += 1
    assert got == expected
    # By hand: the fresh episode's and the day-40 one's watchdogs fall in week 2 (no agent yet).
    assert got[((TODAY + timedelta(days=7)).isoformat(), "PHARMACOTHERAPY_OVERDUE", "physician")] == 2
    # The fresh episode's week4 reassessment on day 28, for the coordinator.
    assert got[((TODAY + timedelta(days=28)).isoformat(), "PAIN_REASSESSMENT", "coordinator")] == 1
    # The withdrawn episode has nothing coming.
    assert all(r["count"] > 0 for r in rows)


async def test_carepath_forecast_adds_new_patients_to_the_running_load(cohort, monkeypatch) -> None:
    import asyncio

    from carepath.simulate.runner import run_files
    from carepath.simulate.whatif import forecast_command
    from tests.support.live import served

    live, _ = cohort
    running = (await live.client.get("/forecast", params={"weeks": 2})).json()
    monkeypatch.setenv("CAREPATH_TOKEN", live.tokens["viewer"])
    async with served(live.app) as base:
        rows = json.loads(await asyncio.to_thread(forecast_command, base, 2, 4, True, run_files))
    by_key = {(r["week_start"], r["code"], r["assignee"]): r for r in rows}
    for r in running:  # the running load is all there
        assert by_key[(r["week_start"], r["code"], r["assignee"])]["running"] == r["count"]
    # 4 new patients in week 1, 4 more in week 2: each gets CALCIUM_VITAMIN_D at enrollment.
    calcium = [by_key[(w, "CALCIUM_VITAMIN_D", "coordinator")]["new"] for w in sorted({r["week_start"] for r in rows})]
    assert calcium == [4.0, 4.0]


async def test_the_report_follows_what_is_recorded(cohort) -> None:
    live, ids = cohort
    before = (await live.client.get("/measures")).json()["new_fracture_12m"]
    fracture = {"type": "imaging", "occurred_on": TODAY.isoformat(), "modality": "xray", "new_fracture": True}
    answer = await live.client.post(f"/episodes/{ids['day-40']}/events", json=fracture)
    assert answer.status_code == 200, answer.text
    after = (await live.client.get("/measures")).json()["new_fracture_12m"]
    assert (before["numerator"], before["population"]) == (1, 1)
    assert (after["numerator"], after["population"]) == (2, 2)
