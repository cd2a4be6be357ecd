"""Hypothesis-generated bad and boundary inputs: always a 4xx (or exit 2) naming a field,
never a 500 or a traceback, and nothing changes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from carepath.access import COOKIE
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


# ---- every route, every role, at once -----------------------------------------------------------

ROUTES = [
    ("GET", "/episodes/{episode_id}"),
    ("POST", "/episodes"),
    ("POST", "/episodes/{episode_id}/events"),
    ("POST", "/episodes/{episode_id}/withdraw"),
    ("POST", "/episodes/{episode_id}/migrate"),
    ("GET", "/episodes/{episode_id}/fhir"),
    ("GET", "/episodes/{episode_id}/audit"),
    ("GET", "/episodes/{episode_id}/audit/fhir"),
    ("GET", "/tasks"),
    ("POST", "/tasks/{task_id}/complete"),
    ("POST", "/tasks/{task_id}/cancel"),
    ("GET", "/definitions"),
    ("GET", "/definitions/ovcf-lumbar/{task_id}"),
    ("POST", "/tokens"),
    ("GET", "/tokens"),
    ("POST", "/tokens/{task_id}/revoke"),
    ("POST", "/codec/decode"),
    ("GET", "/"),
    ("GET", "/ui/episodes/{episode_id}"),
    ("POST", "/login"),
    ("POST", "/logout"),
]
CALLERS = [None, "viewer", "coordinator", "physician", "admin", "cookie"]
PLAUSIBLE = [
    {"type": "note", "occurred_on": TODAY.isoformat(), "text": "fuzz note", "author": "f"},
    {"type": "red_flag", "occurred_on": TODAY.isoformat(), "flag": "instability"},
    {"type": "override", "occurred_on": TODAY.isoformat(), "author": "a", "reason": "r", "close_task": "X"},
    {"reason": "transferred"},
    {"reason": "done"},
    {"version": 2, "reason": "x"},
    {"name": "n", "role": "viewer"},
]
path_ids = st.one_of(
    st.just("REAL"),
    st.integers(-(2**70), 2**70).map(str),
    st.text(max_size=80).map(lambda t: quote(t, safe="")),
)
calls = st.tuples(
    st.sampled_from(ROUTES),
    st.sampled_from(CALLERS),
    st.one_of(st.none(), json_values, st.sampled_from(PLAUSIBLE)),
    path_ids,
    st.sampled_from([None, "fuzz-key-1", "fuzz-key-2"]),
)
PAGES = ("/", "/ui/episodes/{episode_id}")
PATIENT_KEYS = ('"patient_ref":', '"patient":{', '"age":', '"open_tasks":', '"timeline":')


async def _fuzz_patient(live) -> dict:
    known = getattr(live, "fuzz_patient", None)
    if known is None:
        ref = "fuzz-secret-ref"
        created = await live.client.post(
            "/episodes", json=valid_enrollment() | {"patient": {"ref": ref, "age": 70, "sex": "male"}}
        )
        episode_id = created.json()["episode_id"]
        note = "fuzz secret note text"
        await live.client.post(
            f"/episodes/{episode_id}/events",
            json={"type": "note", "occurred_on": TODAY.isoformat(), "text": note, "author": "f"},
        )
        task = (await live.client.get(f"/episodes/{episode_id}")).json()["open_tasks"][0]["id"]
        known = live.fuzz_patient = {"episode_id": episode_id, "task_id": str(task), "secrets": [ref, note]}
    return known


def _headers(live, caller: str | None, key: str | None) -> dict[str, str]:
    headers = {"Authorization": ""}
    if caller == "cookie":  # the sign-in cookie of a physician, as a forging browser would send it
        headers["cookie"] = f"{COOKIE}={live.tokens['physician']}"
    elif caller is not None:
        headers = live.auth(caller)
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(calls, min_size=1, max_size=6))
async def test_concurrent_requests_on_every_route_never_500_nor_leak(live, batch):
    patient = await _fuzz_patient(live)
    requests = []
    for (method, template), caller, body, raw_id, key in batch:
        real = {"episode_id": patient["episode_id"], "task_id": patient["task_id"]}
        path = template.format(**{name: real[name] if raw_id == "REAL" else raw_id for name in real})
        requests.append(live.client.request(method, path, json=body, headers=_headers(live, caller, key)))
    answers = await asyncio.gather(*requests)
    for ((method, template), caller, _, _, _), answer in zip(batch, answers, strict=True):
        where = (method, template, caller, answer.status_code, answer.text[:300])
        assert answer.status_code < 500, where
        assert "Traceback" not in answer.text, where
        # No patient data for strangers and admins, whatever the route; the cookie reads pages only.
        if caller in (None, "admin") or (caller == "cookie" and template not in PAGES):
            assert not [s for s in patient["secrets"] if s in answer.text], where
            assert not [k for k in PATIENT_KEYS if k in answer.text], where
        if answer.status_code >= 400 and answer.headers["content-type"].startswith("application/json"):
            assert _named(answer), where
