"""The HTTP API against a real Temporal dev server, the production worker and the store."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from carepath.api.deps import MAX_ID
from db.models import AuditRow, EpisodeRow, EventRow
from tests.support.live import api_client, start_dev_server

TODAY = date.today()


@pytest.fixture(scope="module")
async def dev_env():
    env = await start_dev_server()
    yield env
    await env.shutdown()


@pytest.fixture
async def api(dev_env, database_url):
    # database_url: every test here runs on SQLite and on a real PostgreSQL server.
    async with api_client(dev_env, database_url) as live:
        yield live.client, live.service


def enrollment(ref: str | None = None, days_ago: int = 0, **overrides):
    body = {
        "identified_on": (TODAY - timedelta(days=days_ago)).isoformat(),
        "patient": {"ref": ref or f"p-{uuid.uuid4().hex[:8]}", "age": 72, "sex": "female"},
        "fracture": {"levels": ["L2"], "acute_injury": False, "correlating_symptoms": False},
        "pain_nrs": 6,
        "analgesics": ["nsaid"],
        "contraindications": [],
        "osteoporosis_therapy": None,
        "calcium_vitamin_d": False,
        "imaging": [{"performed_on": TODAY.isoformat(), "modality": "xray"}],
        "red_flags": [],
    }
    body.update(overrides)
    return body


def fields(response) -> list[str]:
    return [e["field"] for e in response.json()["detail"]]


def episodes(service) -> int:
    with Session(service.engine) as session:
        return session.scalar(select(func.count()).select_from(EpisodeRow))


async def test_enrollment_appears_on_the_worklist(api):
    client, _ = api
    response = await client.post("/episodes", json=enrollment(ref="alice"))
    assert response.status_code == 201, response.text
    episode_id = response.json()["episode_id"]
    assert response.json()["pathway"] == "ovcf-lumbar.v2"  # the newest version
    worklist = (await client.get("/tasks")).json()
    mine = [t for t in worklist if t["episode_id"] == episode_id]
    assert {t["code"] for t in mine} >= {"START_OSTEOPOROSIS_THERAPY", "CALCIUM_VITAMIN_D", "AVOID_BED_REST"}
    assert all(t["patient_ref"] == "alice" for t in mine)
    ranks = [{"urgent": 0, "high": 1, "routine": 2}[t["priority"]] for t in worklist]
    assert ranks == sorted(ranks)
    physician = (await client.get("/tasks", params={"assignee": "physician"})).json()
    assert physician and all(t["assignee"] == "physician" for t in physician)
    detail = (await client.get(f"/episodes/{episode_id}")).json()
    assert detail["phase"] == "acute" and detail["pathway"] == "ovcf-lumbar.v2"
    assert any(i["code"] == "AVOID_BED_REST" for i in detail["timeline"])


async def test_second_active_episode_for_a_patient_is_409(api):
    client, service = api
    assert (await client.post("/episodes", json=enrollment(ref="bob"))).status_code == 201
    again = await client.post("/episodes", json=enrollment(ref="bob"))
    assert again.status_code == 409
    assert fields(again) == ["patient.ref"]
    assert episodes(service) == 1


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"patient": {"ref": "c", "age": 12, "sex": "female"}}, ["patient.age"]),
        ({"fracture": {"levels": ["L6"]}}, ["fracture.levels[0]"]),
        ({"pain_nrs": 11}, ["pain_nrs"]),
        ({"pain_nrs": 4.5}, ["pain_nrs"]),
        ({"analgesics": ["aspirin"]}, ["analgesics[0]"]),
        ({"identified_on": (TODAY + timedelta(days=1)).isoformat()}, ["identified_on"]),
        ({"identified_on": (TODAY - timedelta(days=365)).isoformat()}, ["identified_on"]),
        ({"nickname": "x"}, ["nickname"]),
    ],
)
async def test_bad_enrollment_is_422_naming_the_field_and_creates_nothing(api, overrides, expected):
    client, service = api
    response = await client.post("/episodes", json=enrollment(**overrides))
    assert response.status_code == 422, response.text
    assert fields(response) == expected
    assert episodes(service) == 0


async def test_events_are_accepted_or_rejected_naming_the_field(api):
    client, _ = api
    episode_id = (await client.post("/episodes", json=enrollment(days_ago=3))).json()["episode_id"]
    before = (await client.get(f"/episodes/{episode_id}")).json()
    bad = await client.post(
        f"/episodes/{episode_id}/events",
        json={"type": "pain_assessment", "occurred_on": TODAY.isoformat(), "nrs": 12},
    )
    assert bad.status_code == 422 and fields(bad) == ["nrs"]
    future = await client.post(
        f"/episodes/{episode_id}/events",
        json={"type": "medication_started", "occurred_on": (TODAY + timedelta(days=2)).isoformat(), "agent": "nsaid"},
    )
    assert future.status_code == 422 and fields(future) == ["occurred_on"]
    unknown = await client.post(f"/episodes/{episode_id}/events", json={"type": "x", "occurred_on": "2026-01-01"})
    assert unknown.status_code == 422 and fields(unknown) == ["type"]
    assert (await client.get(f"/episodes/{episode_id}")).json() == before
    good = await client.post(
        f"/episodes/{episode_id}/events",
        json={"type": "medication_started", "occurred_on": TODAY.isoformat(), "agent": "alendronate"},
    )
    assert good.status_code == 200, good.text
    assert good.json()["closed"] == ["START_OSTEOPOROSIS_THERAPY@enrollment"]


RED_FLAG = {"type": "red_flag", "occurred_on": TODAY.isoformat(), "flag": "instability"}
OTHER_FLAG = RED_FLAG | {"flag": "cord_compression"}


def event_rows(service) -> list[EventRow]:
    with Session(service.engine) as session:
        return list(session.scalars(select(EventRow)))


def audit_rows(service) -> int:
    with Session(service.engine) as session:
        return session.scalar(select(func.count()).select_from(AuditRow))


async def test_same_idempotency_key_applies_the_event_once(api):
    client, service = api
    episode_id = (await client.post("/episodes", json=enrollment())).json()["episode_id"]
    headers = {"Idempotency-Key": "retry-me-1"}
    first = await client.post(f"/episodes/{episode_id}/events", json=RED_FLAG, headers=headers)
    second = await client.post(f"/episodes/{episode_id}/events", json=RED_FLAG, headers=headers)
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()  # the first answer, replayed
    assert "SURGICAL_CONSULTATION@red_flag-day0" in first.json()["raised"]
    assert [e.id for e in event_rows(service)] == [first.json()["event_id"]]
    timeline = (await client.get(f"/episodes/{episode_id}")).json()["timeline"]
    assert [i["code"] for i in timeline].count("SURGICAL_CONSULTATION") == 1


async def test_one_key_sent_to_two_episodes_at_once_is_two_keys(api):
    client, service = api
    episodes = [(await client.post("/episodes", json=enrollment())).json()["episode_id"] for _ in range(2)]
    headers = {"Idempotency-Key": "shared-key"}
    answers = await asyncio.gather(
        *(client.post(f"/episodes/{e}/events", json=RED_FLAG, headers=headers) for e in episodes)
    )
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    rows = {row.episode_id: row for row in event_rows(service)}
    assert set(rows) == set(episodes)  # one event row each
    for episode_id, answer in zip(episodes, answers, strict=True):
        assert answer.json()["event_id"] == rows[episode_id].id
        audit = (await client.get(f"/episodes/{episode_id}/audit")).json()
        assert audit[-1]["action"] == "event:red_flag"
        assert audit[-1]["detail"]["event_id"] == rows[episode_id].id  # its own event, not the other's
        timeline = (await client.get(f"/episodes/{episode_id}")).json()["timeline"]
        assert [i["code"] for i in timeline].count("SURGICAL_CONSULTATION") == 1


async def test_one_key_sent_to_one_episode_at_once_applies_once(api):
    client, service = api
    episode_id = (await client.post("/episodes", json=enrollment())).json()["episode_id"]
    headers = {"Idempotency-Key": "burst"}
    answers = await asyncio.gather(
        *(client.post(f"/episodes/{episode_id}/events", json=RED_FLAG, headers=headers) for _ in range(4))
    )
    done = [a for a in answers if a.status_code == 200]
    busy = [a for a in answers if a.status_code == 409]
    assert len(done) + len(busy) == 4 and done, [a.text for a in answers]
    assert all(a.headers["retry-after"] and fields(a) == ["Idempotency-Key"] for a in busy)
    assert len({a.json()["event_id"] for a in done}) == 1
    assert len(event_rows(service)) == 1
    audit = (await client.get(f"/episodes/{episode_id}/audit")).json()
    assert [a["action"] for a in audit].count("event:red_flag") == 1


async def test_one_key_with_another_body_is_422_and_records_nothing(api):
    client, service = api
    episode_id = (await client.post("/episodes", json=enrollment())).json()["episode_id"]
    headers = {"Idempotency-Key": "k-1"}
    assert (await client.post(f"/episodes/{episode_id}/events", json=RED_FLAG, headers=headers)).status_code == 200
    before = (len(event_rows(service)), audit_rows(service))
    other = await client.post(f"/episodes/{episode_id}/events", json=OTHER_FLAG, headers=headers)
    assert other.status_code == 422 and fields(other) == ["Idempotency-Key"], other.text
    assert (len(event_rows(service)), audit_rows(service)) == before
    for bad in ("", "x" * 65):
        refused = await client.post(f"/episodes/{episode_id}/events", json=RED_FLAG, headers={"Idempotency-Key": bad})
        assert refused.status_code == 422 and fields(refused) == ["Idempotency-Key"], refused.text


async def test_a_refused_event_leaves_its_key_unused(api):
    client, service = api
    episode_id = (await client.post("/episodes", json=enrollment())).json()["episode_id"]
    headers = {"Idempotency-Key": "fix-and-retry"}
    refused = await client.post(f"/episodes/{episode_id}/events", json=RED_FLAG | {"flag": "x"}, headers=headers)
    assert refused.status_code == 422 and fields(refused) == ["flag"]
    fixed = await client.post(f"/episodes/{episode_id}/events", json=RED_FLAG, headers=headers)
    assert fixed.status_code == 200 and len(event_rows(service)) == 1


async def test_idempotency_keys_expire_after_a_day(api):
    client, service = api
    from db.models import IdempotencyKeyRow

    episode_id = (await client.post("/episodes", json=enrollment())).json()["episode_id"]
    headers = {"Idempotency-Key": "old"}
    first = await client.post(f"/episodes/{episode_id}/events", json=RED_FLAG, headers=headers)
    with Session(service.engine) as session, session.begin():
        row = session.get(IdempotencyKeyRow, (episode_id, "old"))
        row.created_at -= timedelta(hours=24, seconds=1)
    again = await client.post(f"/episodes/{episode_id}/events", json=OTHER_FLAG, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json()["event_id"] != first.json()["event_id"]  # a new key: a new event


async def test_tasks_are_completed_and_cancelled_through_the_workflow(api):
    client, _ = api
    episode_id = (await client.post("/episodes", json=enrollment())).json()["episode_id"]
    tasks = {t["code"]: t for t in (await client.get("/tasks")).json() if t["episode_id"] == episode_id}
    done = await client.post(f"/tasks/{tasks['CALCIUM_VITAMIN_D']['id']}/complete", json={"reason": "started"})
    assert done.status_code == 200 and done.json()["status"] == "completed"
    again = await client.post(f"/tasks/{tasks['CALCIUM_VITAMIN_D']['id']}/complete")
    assert again.status_code == 409 and fields(again) == ["task"]
    no_reason = await client.post(f"/tasks/{tasks['AVOID_BED_REST']['id']}/cancel", json={})
    assert no_reason.status_code == 422 and fields(no_reason) == ["reason"]
    cancelled = await client.post(f"/tasks/{tasks['AVOID_BED_REST']['id']}/cancel", json={"reason": "in hospital"})
    assert cancelled.json()["status"] == "cancelled"
    completed = (await client.get("/tasks", params={"status": "completed"})).json()
    assert [t["code"] for t in completed if t["episode_id"] == episode_id] == ["CALCIUM_VITAMIN_D"]


async def test_a_task_left_open_by_an_ended_workflow_is_closed_in_the_store_on_the_record(api):
    """E.g. the 12-month review after completion: no workflow is left to ask, so the store is updated."""
    client, service = api
    episode_id = (await client.post("/episodes", json=enrollment())).json()["episode_id"]
    tasks = {t["code"]: t for t in (await client.get("/tasks")).json() if t["episode_id"] == episode_id}
    await service.episodes.handle(episode_id).terminate("the workflow ended with the task open")
    task_id = tasks["CALCIUM_VITAMIN_D"]["id"]
    done = await client.post(f"/tasks/{task_id}/complete", json={"reason": "started at the GP"})
    assert done.status_code == 200 and done.json()["status"] == "completed", done.text
    again = await client.post(f"/tasks/{task_id}/complete", json={"reason": "again"})
    assert again.status_code == 409 and fields(again) == ["task"]
    trail = (await client.get(f"/episodes/{episode_id}/audit")).json()
    closed = [entry for entry in trail if entry["action"] == "task:completed"]
    assert [entry["detail"] for entry in closed] == [
        {"closed": ["CALCIUM_VITAMIN_D@enrollment:completed"], "reason": "started at the GP", "after_workflow": True}
    ]


async def test_withdraw_ends_the_episode_and_later_events_are_refused(api):
    client, _ = api
    episode_id = (await client.post("/episodes", json=enrollment())).json()["episode_id"]
    response = await client.post(f"/episodes/{episode_id}/withdraw", json={"reason": "transferred"})
    assert response.status_code == 200 and response.json()["phase"] == "withdrawn"
    detail = (await client.get(f"/episodes/{episode_id}")).json()
    assert detail["status"] == "withdrawn" and detail["open_tasks"] == []
    late = await client.post(
        f"/episodes/{episode_id}/events",
        json={"type": "note", "occurred_on": TODAY.isoformat(), "text": "x", "author": "y"},
    )
    assert late.status_code == 422 and fields(late) == ["episode"]
    assert (await client.post("/episodes", json=enrollment(ref=detail["patient_ref"]))).status_code == 201


async def test_unknown_things_are_404_and_bad_queries_422(api):
    client, _ = api
    assert (await client.get("/episodes/nope")).status_code == 404
    assert (await client.post("/tasks/999999/complete")).status_code == 404
    bad = await client.get("/tasks", params={"assignee": "nurse"})
    assert bad.status_code == 422 and fields(bad) == ["assignee"]
    assert (await client.get("/openapi.json")).json()["info"]["title"] == "carepath"
    assert (await client.get("/docs")).status_code == 200


async def test_running_episode_keeps_v1_until_migrated_on_the_record(api):
    client, service = api
    service.pathway_version = 1
    old = (await client.post("/episodes", json=enrollment())).json()["episode_id"]
    service.pathway_version = None  # new enrollments get the newest version
    new = (await client.post("/episodes", json=enrollment())).json()
    assert new["pathway"] == "ovcf-lumbar.v2"
    assert (await client.get(f"/episodes/{old}")).json()["pathway"] == "ovcf-lumbar.v1"
    migrated = await client.post(f"/episodes/{old}/migrate", json={"version": 2, "reason": "clinic adopted v2"})
    assert migrated.status_code == 200, migrated.text
    assert migrated.json() == {"episode_id": old, "pathway": "ovcf-lumbar.v2", "status": "active"}
    detail = (await client.get(f"/episodes/{old}")).json()
    assert detail["pathway"] == "ovcf-lumbar.v2"
    assert any(i["code"] == "PATHWAY_MIGRATED" and "clinic adopted v2" in i["title"] for i in detail["timeline"])
    audit = (await client.get(f"/episodes/{old}/audit")).json()
    assert audit[-1]["action"] == "migrate" and audit[-1]["detail"]["reason"] == "clinic adopted v2"
    again = await client.post(f"/episodes/{old}/migrate", json={"version": 2, "reason": "again"})
    assert again.status_code == 422 and fields(again) == ["version"]
    missing = await client.post(f"/episodes/{old}/migrate", json={"version": 9, "reason": "x"})
    assert missing.status_code == 422 and fields(missing) == ["version"]


@pytest.fixture
async def live(dev_env, database_url):
    async with api_client(dev_env, database_url) as live:
        yield live


# Every route with a path parameter, with what it is called and who may use it.
ID_ROUTES = [
    ("POST", "/tasks/{}/complete", "task_id", "physician"),
    ("POST", "/tasks/{}/cancel", "task_id", "physician"),
    ("POST", "/tokens/{}/revoke", "token_id", "admin"),
    ("GET", "/definitions/ovcf-lumbar/{}", "version", "physician"),
]
EPISODE_ROUTES = [
    ("GET", "/episodes/{}", None),
    ("POST", "/episodes/{}/events", RED_FLAG),
    ("POST", "/episodes/{}/withdraw", {"reason": "transferred"}),
    ("POST", "/episodes/{}/migrate", {"version": 2, "reason": "x"}),
    ("GET", "/episodes/{}/fhir", None),
    ("GET", "/episodes/{}/audit", None),
    ("GET", "/episodes/{}/audit/fhir", None),
]


async def test_absurd_path_ids_are_refused_naming_the_parameter(live):
    for method, template, name, role in ID_ROUTES:
        for value in (MAX_ID + 1, 2**63, 2**64, 10**40, 0, -1, 1.5):
            response = await live.client.request(
                method, template.format(value), json={"reason": "x"}, headers=live.auth(role)
            )
            assert response.status_code == 422, (template, value, response.text)
            assert fields(response) == [name], (template, value, response.text)
        biggest = await live.client.request(
            method, template.format(MAX_ID), json={"reason": "x"}, headers=live.auth(role)
        )
        assert biggest.status_code == 404 and fields(biggest) == [name], biggest.text
    for method, template, body in EPISODE_ROUTES:
        for value in ("%00", "a" * 65, "x%20y", "%F0%9F%92%A5", "9" * 40):
            path = template.format(value)
            response = await live.client.request(method, path, json=body, headers=live.auth("physician"))
            assert response.status_code == (404 if value == "9" * 40 else 422), (path, response.text)
            assert fields(response) == ["episode_id"], (path, response.text)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"imaging": [{"performed_on": TODAY.isoformat(), "modality": "pet"}]}, ["imaging[0].modality"]),
        ({"imaging": "xray"}, ["imaging"]),
        ({"fracture": {"levels": ["L2"], "acute_injury": "yes"}}, ["fracture.acute_injury"]),
        ({"fracture": {"levels": ["L2"], "correlating_symptoms": 1}}, ["fracture.correlating_symptoms"]),
        ({"calcium_vitamin_d": "true"}, ["calcium_vitamin_d"]),
        ({"identified_on": f"{TODAY.isoformat()}T00:00:00"}, ["identified_on"]),
        ({"identified_on": 20260101}, ["identified_on"]),
        ({"identified_on": 1.5e9}, ["identified_on"]),
        ({"imaging": [{"performed_on": 0, "modality": "xray"}]}, ["imaging[0].performed_on"]),
        (
            {"osteoporosis_therapy": {"agent": "alendronate", "last_dose_on": "2026-1-1"}},
            ["osteoporosis_therapy.last_dose_on"],
        ),
    ],
)
async def test_lax_or_misplaced_enrollment_values_are_named(api, overrides, expected):
    client, service = api
    response = await client.post("/episodes", json=enrollment(**overrides))
    assert response.status_code == 422, response.text
    assert fields(response) == expected, response.text
    assert episodes(service) == 0


async def test_every_malformed_request_gets_one_error_shape_naming_a_field(api):
    client, service = api
    json_headers = {"content-type": "application/json"}
    cases = [
        (await client.post("/episodes", content=b'{"patient": ', headers=json_headers), 422, ["body"]),
        (await client.post("/episodes", content=b"[" * 30_000 + b"]" * 30_000, headers=json_headers), 422, ["body"]),
        (await client.post("/episodes", content=b"not json", headers=json_headers), 422, ["body"]),
        (await client.post("/tasks/1/cancel"), 422, ["body"]),
        (await client.get("/no/such/route"), 404, ["path"]),
        (await client.delete("/tasks"), 405, ["method"]),
    ]
    for response, status, expected in cases:
        assert response.status_code == status, response.text
        assert fields(response) == expected, response.text
        assert all(d["message"] for d in response.json()["detail"])
    assert episodes(service) == 0


async def test_override_targets_are_named_after_the_role_check(live):
    client = live.client
    episode_id = (await client.post("/episodes", json=enrollment())).json()["episode_id"]
    base = {"type": "override", "occurred_on": TODAY.isoformat(), "author": "Dr A", "reason": "seen"}
    both = base | {"skip_milestone": "week4", "close_task": "AVOID_BED_REST"}
    for body in (base, both):
        as_coordinator = await client.post(
            f"/episodes/{episode_id}/events", json=body, headers=live.auth("coordinator")
        )
        assert as_coordinator.status_code == 403, as_coordinator.text
        as_physician = await client.post(f"/episodes/{episode_id}/events", json=body)
        assert as_physician.status_code == 422 and fields(as_physician) == ["close_task"], as_physician.text
    imaging = await client.post(
        f"/episodes/{episode_id}/events",
        json={"type": "imaging", "occurred_on": TODAY.isoformat(), "modality": "pet"},
    )
    assert imaging.status_code == 422 and fields(imaging) == ["modality"], imaging.text
    for lax in ({"new_fracture": "yes"}, {"occurred_on": f"{TODAY.isoformat()}T10:00:00"}, {"occurred_on": 5}):
        bad = await client.post(
            f"/episodes/{episode_id}/events",
            json={"type": "imaging", "occurred_on": TODAY.isoformat(), "modality": "mri"} | lax,
        )
        assert bad.status_code == 422 and fields(bad) == list(lax), bad.text
