"""Hypothesis-generated bad and boundary inputs: always a 4xx (or exit 2) naming a field,
never a 500 or a traceback, and nothing changes."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import AuditRow, EpisodeRow
from tests.support.live import api_client, sqlite_url, start_dev_server

ROOT = Path(__file__).resolve().parent.parent
TODAY = date.today()

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.just(""),
    st.just("L6"),
    st.just("2999-01-01"),
    st.just(TODAY.isoformat()),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def valid_enrollment() -> dict:
    return {
        "identified_on": TODAY.isoformat(),
        "patient": {"ref": "fuzz-1", "age": 70, "sex": "female"},
        "fracture": {"levels": ["L2"], "acute_injury": False, "correlating_symptoms": False},
        "pain_nrs": 5,
        "analgesics": ["nsaid"],
    }


@st.composite
def broken_enrollments(draw) -> dict:
    """A valid enrollment with one field (at any depth) replaced, dropped or added."""
    body = valid_enrollment()
    target = body
    path = draw(st.sampled_from([[], ["patient"], ["fracture"]]))
    for key in path:
        target = target[key]
    key = draw(st.sampled_from([*target.keys(), "unexpected"]))
    action = draw(st.sampled_from(["replace", "drop"]))
    if action == "drop" and key != "unexpected":
        del target[key]
    else:
        target[key] = draw(json_values)
    return body


boundary_values = {
    "pain_nrs": st.sampled_from([-1, 11, 4.5, "4", True, None, 10**20]),
    "identified_on": st.sampled_from(
        [(TODAY + timedelta(days=1)).isoformat(), (TODAY - timedelta(days=365)).isoformat(), "2026-02-30", ""]
    ),
}


@pytest.fixture(scope="module")
async def live(tmp_path_factory):
    env = await start_dev_server()
    async with api_client(env, sqlite_url(tmp_path_factory.mktemp("fuzz"))) as api:
        yield api
    await env.shutdown()


def _counts(service) -> tuple[int, int]:
    with Session(service.engine) as session:
        return (
            session.scalar(select(func.count()).select_from(EpisodeRow)),
            session.scalar(select(func.count()).select_from(AuditRow)),
        )


def _named(response) -> bool:
    detail = response.json()["detail"]
    return bool(detail) and all(isinstance(d.get("field"), str) and d.get("message") for d in detail)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=broken_enrollments())
async def test_broken_enrollments_are_refused_clearly(live, body):
    before = _counts(live.service)
    response = await live.client.post("/episodes", json=body)
    if response.status_code == 201:  # the mutation happened to keep it valid (e.g. a bool flag)
        await live.client.post(f"/episodes/{response.json()['episode_id']}/withdraw", json={"reason": "other"})
        return
    assert response.status_code in (409, 422), response.text
    assert _named(response)
    assert _counts(live.service) == before


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(sorted(boundary_values)), data=st.data())
async def test_boundary_values_name_their_field(live, field, data):
    body = valid_enrollment() | {field: data.draw(boundary_values[field])}
    before = _counts(live.service)
    response = await live.client.post("/episodes", json=body)
    assert response.status_code == 422
    assert [d["field"] for d in response.json()["detail"]] == [field]
    assert _counts(live.service) == before


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    event=st.dictionaries(
        st.sampled_from(
            [
                "type",
                "occurred_on",
                "nrs",
                "agent",
                "flag",
                "analgesics",
                "reason",
                "text",
                "author",
                "mobility",
                "close_task",
            ]
        ),
        json_values,
        max_size=6,
    )
    | st.fixed_dictionaries(
        {
            "type": st.sampled_from(["pain_assessment", "medication_started", "red_flag"]),
            "occurred_on": st.just(TODAY.isoformat()),
        },
        optional={"nrs": json_values, "agent": json_values},
    )
)
async def test_random_events_never_500_and_change_nothing_when_refused(live, event):
    episode = getattr(live, "fuzz_episode", None)
    if episode is None:
        created = await live.client.post(
            "/episodes", json=valid_enrollment() | {"patient": {"ref": "fuzz-events", "age": 70, "sex": "male"}}
        )
        episode = live.fuzz_episode = created.json()["episode_id"]
    before = (await live.client.get(f"/episodes/{episode}")).json()
    response = await live.client.post(f"/episodes/{episode}/events", json=event)
    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        assert _named(response)
        assert (await live.client.get(f"/episodes/{episode}")).json() == before


@settings(max_examples=15, deadline=None)
@given(body=broken_enrollments())
def test_cli_refuses_bad_scenarios_without_a_traceback(tmp_path_factory, body):
    folder = tmp_path_factory.mktemp("cli")
    enrollment = {k: v for k, v in body.items() if k != "identified_on"}
    scenario = folder / "story.json"
    scenario.write_text(json.dumps({"name": "fuzz", "enrollment": enrollment, "until_day": 1}))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "carepath.cli",
            "simulate",
            "--json",
            "--database-url",
            f"sqlite:///{folder / 'never.db'}",
            str(scenario),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    if run.returncode == 0:
        return  # still a valid story
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and "enrollment" in run.stderr
    assert not (folder / "never.db").exists()
