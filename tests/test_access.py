"""Access control: every route tried with every role and with no token; audit trail; hardening."""

from __future__ import annotations

import asyncio
import base64
import re
import uuid
from datetime import date

import httpx
import pytest
from fastapi.routing import APIRoute

from carepath.access import COOKIE
from carepath.app import create_app
from carepath.codec import EncryptionCodec, KeyRing
from carepath.intake import hl7v2
from carepath.intake.receive import store
from tests.support.hl7_messages import adt, oru
from tests.support.live import api_client, sqlite_url, start_dev_server

ROLES = [None, "viewer", "coordinator", "physician", "admin"]
READERS = {"viewer", "coordinator", "physician"}
CLINICIANS = {"coordinator", "physician"}
PHYSICIAN = {"physician"}
ADMIN = {"admin"}
EVERYONE = {"viewer", "coordinator", "physician", "admin"}
PUBLIC = {None, *EVERYONE}
TODAY = date.today().isoformat()
CODEC = EncryptionCodec(KeyRing.generate())
PAYLOADS = {
    "payloads": [
        {
            "metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
            "data": base64.b64encode(b'"hello"').decode(),
        }
    ]
}

ENROLL_FORM = (
    f"identified_on={TODAY}&patient.ref={{ref}}&patient.age=70&patient.sex=male&fracture.levels=L2&pain_nrs=5"
    "&analgesics=nsaid"
)
FHIR_BUNDLE = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [
        {
            "resource": {
                "resourceType": "DiagnosticReport",
                "id": "access-report",
                "status": "final",
                "code": {"text": "XR lumbar spine"},
                "subject": {"identifier": {"value": "access-fhir"}},
                "conclusion": "Compression fracture of L2.",
            }
        }
    ],
}
FHIR_CONDITION = {
    "resourceType": "Condition",
    "id": "access-condition",
    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "42942008"}]},
    "subject": {"identifier": {"value": "access-fhir"}},
}
# (method, route#variant, who may, body). Path parameters are filled with things made fresh for
# every call (an episode, its physician or coordinator task, a token), so one role's success never
# changes another's answer.
MATRIX = [
    ("GET", "/health", PUBLIC, None),
    # Operations: no patient data (counts by phase, code and status), for probes and Prometheus.
    ("GET", "/metrics", PUBLIC, None),
    ("GET", "/ready", PUBLIC, None),
    # A JSON object is one JSON line: a one-line import (refused by field, answered 200).
    ("POST", "/imports", CLINICIANS, {"patient": {}}),
    ("POST", "/episodes", CLINICIANS, "enrollment"),
    ("GET", "/episodes", READERS, None),
    ("GET", "/episodes/{episode_id}", READERS, None),
    ("GET", "/episodes/{episode_id}/events", READERS, None),
    (
        "POST",
        "/episodes/{episode_id}/events",
        CLINICIANS,
        {"type": "note", "occurred_on": TODAY, "text": "called", "author": "x"},
    ),
    (
        "POST",
        "/episodes/{episode_id}/events#override",
        PHYSICIAN,
        {
            "type": "override",
            "occurred_on": TODAY,
            "author": "Dr A",
            "reason": "seen in clinic",
            "close_task": "AVOID_BED_REST",
        },
    ),
    ("POST", "/episodes/{episode_id}/withdraw", CLINICIANS, {"reason": "declined"}),
    ("POST", "/episodes/{episode_id}/checkins", CLINICIANS, None),
    ("GET", "/episodes/{episode_id}/fhir", READERS, None),
    ("GET", "/episodes/{episode_id}/audit", READERS, None),
    ("GET", "/episodes/{episode_id}/audit/fhir", READERS, None),
    ("POST", "/episodes/{episode_id}/migrate", PHYSICIAN | ADMIN, {"version": 2, "reason": "clinic policy"}),
    ("GET", "/tasks", READERS, None),
    ("POST", "/tasks/{task_id}/complete#physician", PHYSICIAN, {"reason": "done"}),
    ("POST", "/tasks/{task_id}/complete#coordinator", CLINICIANS, {"reason": "done"}),
    ("POST", "/tasks/{task_id}/cancel#physician", PHYSICIAN, {"reason": "not needed"}),
    ("POST", "/tasks/{task_id}/cancel#coordinator", CLINICIANS, {"reason": "not needed"}),
    ("POST", "/tasks/{task_id}/assign", CLINICIANS, {"owner": "Dana"}),
    ("GET", "/definitions", EVERYONE, None),
    ("GET", "/definitions/{pathway_id}/{version}", EVERYONE, None),
    ("POST", "/tokens", ADMIN, {"name": "new", "role": "viewer"}),
    ("GET", "/tokens", ADMIN, None),
    ("POST", "/tokens/{token_id}/revoke", ADMIN, None),
    ("POST", "/codec/decode", READERS, PAYLOADS),
    ("POST", "/codec/encode", READERS, PAYLOADS),
    # Pages: a person without a token is sent to sign in (303) rather than given a 401.
    ("GET", "/", READERS, None),
    ("GET", "/ui/episodes/{episode_id}", READERS, None),
    ("GET", "/ui/patients", READERS, None),
    ("GET", "/ui/evidence", READERS, None),
    ("GET", "/ui/episodes/{episode_id}/fhir", READERS, None),
    ("GET", "/ui/episodes/{episode_id}/audit/fhir", READERS, None),
    ("GET", "/ui/enroll", CLINICIANS, None),
    # Page forms (signed-in cookie, the page's CSRF token, this origin): 303 when done.
    ("POST", "/ui/enroll", CLINICIANS, "page:" + ENROLL_FORM),
    ("POST", "/ui/episodes/{episode_id}/events", CLINICIANS, f"page:type=note&occurred_on={TODAY}&author=x&text=hi"),
    (
        "POST",
        "/ui/episodes/{episode_id}/events#override",
        PHYSICIAN,
        f"page:type=override&occurred_on={TODAY}&author=Dr+A&reason=seen&close_task=AVOID_BED_REST",
    ),
    ("POST", "/ui/episodes/{episode_id}/withdraw", CLINICIANS, "page:reason=declined"),
    ("POST", "/ui/episodes/{episode_id}/checkins", CLINICIANS, "page:"),
    ("POST", "/ui/episodes/{episode_id}/migrate", PHYSICIAN, "page:version=2&reason=clinic+policy"),
    ("POST", "/ui/tasks/{task_id}/{action}#physician", PHYSICIAN, "page:reason=done"),
    ("POST", "/ui/tasks/{task_id}/{action}#coordinator", CLINICIANS, "page:reason=done"),
    ("GET", "/login", PUBLIC, None),
    ("POST", "/logout", PUBLIC, "form"),
    ("POST", "/login", PUBLIC, "form"),
    ("GET", "/static/carepath.css", PUBLIC, None),
    ("GET", "/notifications", CLINICIANS, None),
    # The patient's check-in page takes no token at all: an unknown link is a plain page for anyone.
    ("GET", "/checkin/{token}", PUBLIC, "link"),
    ("POST", "/checkin/{token}", PUBLIC, "link"),
    ("GET", "/checkin-static/checkin.css", PUBLIC, None),
    ("GET", "/docs", PUBLIC, None),
    # The intake: FHIR in (an interface engine holds a clinician's token), the candidates queue.
    ("POST", "/fhir", CLINICIANS, FHIR_BUNDLE),
    ("POST", "/fhir/DiagnosticReport", CLINICIANS, FHIR_BUNDLE["entry"][0]["resource"]),
    ("POST", "/fhir/Condition", CLINICIANS, FHIR_CONDITION),
    ("GET", "/candidates", READERS, None),
    ("GET", "/candidates/{candidate_id}", READERS, None),
    ("POST", "/candidates/{candidate_id}/enroll", CLINICIANS, {"pain_nrs": 5, "analgesics": ["nsaid"]}),
    ("POST", "/candidates/{candidate_id}/confirm#event", CLINICIANS, None),
    ("POST", "/candidates/{candidate_id}/dismiss", CLINICIANS, {"reason": "known fracture"}),
    ("GET", "/intake/messages", CLINICIANS, None),
    ("GET", "/ui/candidates/{candidate_id}/enroll", CLINICIANS, None),
    (
        "POST",
        "/ui/candidates/{candidate_id}/enroll",
        CLINICIANS,
        f"page:identified_on={TODAY}&fracture.levels=L2&pain_nrs=5&analgesics=nsaid",  # the ref is the candidate's
    ),
    ("POST", "/ui/candidates/{candidate_id}/{action}#dismiss", CLINICIANS, "page:reason=known"),
    ("POST", "/ui/candidates/{candidate_id}/{action}#event", CLINICIANS, "page:"),
    # Cohort measures and the forecast: counts for readers, who-did-not-meet-it for clinicians,
    # the Measure definitions (no patient data) for anyone.
    ("GET", "/measures", READERS, None),
    ("GET", "/measures.csv", READERS, None),
    ("GET", "/measures/fhir", READERS, None),
    ("GET", "/measures/fhir/Measure", EVERYONE, None),
    ("GET", "/measures/{measure_id}/not-met", CLINICIANS, None),
    ("GET", "/forecast", READERS, None),
    ("GET", "/ui/measures", READERS, None),
    ("GET", "/ui/measures.csv", READERS, None),
]
PAGES = {
    "/",
    "/ui/episodes/{episode_id}",
    "/ui/patients",
    "/ui/enroll",
    "/ui/evidence",
    "/ui/episodes/{episode_id}/fhir",
    "/ui/episodes/{episode_id}/audit/fhir",
    "/ui/candidates/{candidate_id}/enroll",
    "/ui/measures",
    "/ui/measures.csv",
}
SITE = "http://carepath.test"


def enrollment() -> dict:
    return {
        "identified_on": TODAY,
        "patient": {"ref": f"p-{uuid.uuid4().hex[:10]}", "age": 70, "sex": "male"},
        "fracture": {"levels": ["L2"]},
        "pain_nrs": 5,
        "analgesics": ["nsaid"],
    }


@pytest.fixture(scope="module")
async def live(tmp_path_factory):
    env = await start_dev_server()
    async with api_client(env, sqlite_url(tmp_path_factory.mktemp("access")), codec=CODEC) as api:
        api.service.pathway_version = 1  # enroll on v1 so that migrating to v2 is possible
        yield api
    await env.shutdown()


def _api_routes(routes) -> set[tuple[str, str]]:
    """Every (method, path) of the app, looking inside included routers too."""
    found: set[tuple[str, str]] = set()
    for route in routes:
        if isinstance(route, APIRoute):
            found |= {(method, route.path) for method in route.methods}
        elif hasattr(route, "original_router"):
            found |= _api_routes(route.original_router.routes)
    return found


def test_every_route_is_in_the_matrix():
    routes = _api_routes(create_app().routes)
    assert ("POST", "/codec/decode") in routes and ("GET", "/") in routes  # the walk sees included routers
    covered = {(method, template.split("#")[0]) for method, template, _, _ in MATRIX}
    assert routes - covered == set(), "routes without an access test"


async def _fresh(live, template: str) -> tuple[str, list[str]]:
    """The concrete path for ``template``, with a new episode / task / token where it needs one,
    and the patient data that must not reach anyone but a reader (ref, note text, task titles)."""
    client = live.client
    path, _, variant = template.partition("#")
    values: dict[str, object] = {
        "pathway_id": "ovcf-lumbar",
        "version": 1,
        "action": "complete",
        "token": uuid.uuid4().hex,
        "measure_id": "therapy_16w",
    }
    secrets: list[str] = []
    if "{episode_id}" in path or "{task_id}" in path:
        ref = f"p-{uuid.uuid4().hex[:10]}"
        created = await client.post(
            "/episodes", json=enrollment() | {"patient": {"ref": ref, "age": 70, "sex": "male"}}
        )
        assert created.status_code == 201, created.text
        values["episode_id"] = episode_id = created.json()["episode_id"]
        note = f"lives alone, daughter visits {uuid.uuid4().hex[:8]}"
        noted = await client.post(
            f"/episodes/{episode_id}/events", json={"type": "note", "occurred_on": TODAY, "text": note, "author": "x"}
        )
        assert noted.status_code == 200, noted.text
        detail = (await client.get(f"/episodes/{episode_id}")).json()
        tasks = {t["code"]: t["id"] for t in detail["open_tasks"]}
        values["task_id"] = tasks["START_OSTEOPOROSIS_THERAPY" if variant == "physician" else "CALCIUM_VITAMIN_D"]
        secrets = [ref, note, *(t["title"] for t in detail["open_tasks"])]
    if "{candidate_id}" in path:
        values["candidate_id"], ref = await _candidate(live, variant == "event")
        values["action"] = "confirm" if variant == "event" else variant or "complete"
        secrets.append(ref)
    if "{token_id}" in path:
        created = await client.post("/tokens", json={"name": "victim", "role": "viewer"}, headers=live.auth("admin"))
        values["token_id"] = created.json()["id"]
    return path.format(**values), secrets


async def _candidate(live, event: bool) -> tuple[int, str]:
    """A fresh open candidate: a reported fracture, or (``event``) an admission of an enrolled patient."""
    ref = f"c-{uuid.uuid4().hex[:10]}"
    if event:
        enrolled = await live.client.post(
            "/episodes", json=enrollment() | {"patient": {"ref": ref, "age": 70, "sex": "male"}}
        )
        assert enrolled.status_code == 201, enrolled.text
        received = hl7v2.parse(adt(uuid.uuid4().hex[:10], ref, admitted=TODAY.replace("-", "")).encode())
    else:
        report = oru(uuid.uuid4().hex[:10], ref, "Compression fracture of L2.", observed=TODAY.replace("-", ""))
        received = hl7v2.parse(report.encode())
    (stored,) = await asyncio.to_thread(store, live.service.engine, [received])
    return stored.candidate_ids[0], ref


# Keys that only patient data travels under (bodies of non-readers must have none of them).
PATIENT_KEYS = ('"patient_ref":', '"patient":{', '"age":', '"open_tasks":', '"timeline":')


def leaks(body: str, secrets: list[str]) -> list[str]:
    return [s for s in secrets if s in body] + [k for k in PATIENT_KEYS if k in body]


@pytest.mark.parametrize(("method", "template", "allowed", "body"), MATRIX, ids=[f"{m} {p}" for m, p, _, _ in MATRIX])
@pytest.mark.parametrize("role", ROLES, ids=lambda r: r or "no-token")
async def test_route_answers_each_role(live, method, template, allowed, body, role):
    path, secrets = await _fresh(live, template)
    if body == "form":  # a page's form (with its CSRF token), signing in with the person's own token
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=live.app), base_url=SITE) as browser:
            form = (await browser.get("/login")).text
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
            response = await browser.post(
                path,
                content=f"token={live.tokens.get(role or '', '')}&csrf_token={csrf}",
                headers={"content-type": "application/x-www-form-urlencoded", "origin": SITE},
            )
        assert response.status_code == (401 if path == "/login" and role is None else 303), response.text
        return
    if body == "link":  # no credentials asked or used: unknown link (404), refused form (403) or a burst (429)
        response = await live.client.request(method, path, headers=live.auth(role))
        assert response.status_code in (403, 404, 429) and leaks(response.text, secrets) == [], response.text
        return
    if isinstance(body, str) and body.startswith("page:"):
        response = await _page_form(live, role, path, body.removeprefix("page:"))
        if role not in READERS:
            assert leaks(response.text, secrets) == [], (role, response.status_code, response.text)
        if role in allowed:
            assert response.status_code == 303 and response.headers["location"] != "/login", response.text
        elif role is None:
            assert response.status_code == 303 and response.headers["location"] == "/login"
        else:
            assert response.status_code == 403, (role, response.status_code, response.text)
        return
    payload = enrollment() if body == "enrollment" else body
    response = await live.client.request(method, path, json=payload, headers=live.auth(role))
    if role not in READERS:  # admins and strangers see no patient data, whatever the answer
        assert leaks(response.text, secrets) == [], (role, response.status_code, response.text)
    if role in allowed:
        assert response.status_code < 400, (role, response.status_code, response.text)
    elif role is None and template in PAGES:
        assert response.status_code == 303 and response.headers["location"] == "/login"
    elif role is None:
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
    else:
        assert response.status_code == 403, (role, response.status_code, response.text)
        if template.startswith("/fhir"):  # FHIR answers FHIR: an OperationOutcome naming the field
            assert response.json()["issue"][0]["expression"] == ["Authorization"]
        elif template not in PAGES:
            assert response.json()["detail"][0]["field"] == "Authorization"


async def _page_form(live, role: str | None, path: str, fields: str) -> httpx.Response:
    """A page's form posted as a signed-in browser would (cookie, CSRF token, this origin)."""
    form = {"content-type": "application/x-www-form-urlencoded", "origin": SITE}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=live.app), base_url=SITE) as browser:
        if role is not None:
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', (await browser.get("/login")).text).group(1)
            signed = await browser.post("/login", content=f"token={live.tokens[role]}&csrf_token={csrf}", headers=form)
            assert signed.status_code == 303
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', (await browser.get("/login")).text).group(1)
        fields = fields.replace("{ref}", f"p-{uuid.uuid4().hex[:10]}")
        return await browser.post(path, content=f"{fields}&csrf_token={csrf}", headers=form)


API_ROUTES = [
    row
    for row in MATRIX
    if row[2] != PUBLIC and row[1] not in PAGES and not (isinstance(row[3], str) and row[3].startswith("page:"))
]


@pytest.mark.parametrize(
    ("method", "template", "allowed", "body"), API_ROUTES, ids=[f"{m} {p}" for m, p, _, _ in API_ROUTES]
)
async def test_the_api_refuses_the_sign_in_cookie(live, method, template, allowed, body):
    """The cookie is for the pages; a browser sends it with forged requests too."""
    path, secrets = await _fresh(live, template)
    role = "admin" if allowed == ADMIN else "physician"
    payload = enrollment() if body == "enrollment" else body
    cookie = {"Authorization": "", "cookie": f"{COOKIE}={live.tokens[role]}"}
    response = await live.client.request(method, path, json=payload, headers=cookie)
    assert response.status_code == 401, (role, response.text)
    assert leaks(response.text, secrets) == []


async def test_admin_cannot_tell_which_episodes_exist(live):
    """A migration that cannot happen answers alike whether the episode exists or not."""
    episode_id = (await live.client.post("/episodes", json=enrollment())).json()["episode_id"]
    answers = [
        await live.client.post(f"/episodes/{e}/migrate", json={"version": 9, "reason": "x"}, headers=live.auth("admin"))
        for e in (episode_id, "0" * 32)
    ]
    assert [a.status_code for a in answers] == [422, 422], [a.text for a in answers]
    assert answers[0].json() == answers[1].json()


async def test_revoked_and_unknown_tokens_are_refused(live):
    created = await live.client.post("/tokens", json={"name": "temp", "role": "viewer"}, headers=live.auth("admin"))
    token = created.json()["token"]
    listed = (await live.client.get("/tokens", headers=live.auth("admin"))).json()
    assert all("token" not in row for row in listed)  # never shown again, stored hashed
    assert (await live.client.get("/tasks", headers={"Authorization": f"Bearer {token}"})).status_code == 200
    await live.client.post(f"/tokens/{created.json()['id']}/revoke", headers=live.auth("admin"))
    assert (await live.client.get("/tasks", headers={"Authorization": f"Bearer {token}"})).status_code == 401
    assert (await live.client.get("/tasks", headers={"Authorization": "Bearer cpt_nope"})).status_code == 401


async def test_override_needs_a_reason(live):
    episode_id = (await live.client.post("/episodes", json=enrollment())).json()["episode_id"]
    missing = await live.client.post(
        f"/episodes/{episode_id}/events",
        json={"type": "override", "occurred_on": TODAY, "author": "Dr A", "close_task": "AVOID_BED_REST"},
    )
    assert missing.status_code == 422 and missing.json()["detail"][0]["field"] == "reason"


async def test_audit_trail_records_who_did_what_and_why(live):
    client = live.client
    episode_id = (await client.post("/episodes", json=enrollment(), headers=live.auth("coordinator"))).json()[
        "episode_id"
    ]
    await client.post(
        f"/episodes/{episode_id}/events",
        json={"type": "medication_started", "occurred_on": TODAY, "agent": "alendronate"},
        headers=live.auth("coordinator"),
    )
    mine = (await client.get(f"/episodes/{episode_id}")).json()["open_tasks"]
    task = next(t for t in mine if t["code"] == "AVOID_BED_REST")
    await client.post(f"/tasks/{task['id']}/cancel", json={"reason": "admitted to ward"})
    await client.post(f"/episodes/{episode_id}/withdraw", json={"reason": "transferred"})
    audit = (await client.get(f"/episodes/{episode_id}/audit", headers=live.auth("viewer"))).json()
    assert [(a["actor"], a["action"]) for a in audit] == [
        ("coordinator:test-coordinator", "enroll"),
        ("coordinator:test-coordinator", "event:medication_started"),
        ("physician:test-physician", "task:cancelled"),
        ("physician:test-physician", "event:withdraw"),
    ]
    assert "START_OSTEOPOROSIS_THERAPY@enrollment:completed" in audit[1]["detail"]["closed"]
    assert audit[2]["detail"]["reason"] == "admitted to ward"
    assert audit[3]["detail"]["reason"] == "transferred"
    assert all(a["at"] for a in audit)


async def test_codec_endpoint_round_trips_for_readers(live):
    encoded = (await live.client.post("/codec/encode", json=PAYLOADS)).json()
    assert encoded["payloads"][0]["data"] != PAYLOADS["payloads"][0]["data"]
    decoded = (await live.client.post("/codec/decode", json=encoded)).json()
    assert decoded == PAYLOADS


async def test_oversized_and_unknown_fields_are_refused(live):
    huge = enrollment() | {"pad": "x" * 100_000}
    assert (await live.client.post("/episodes", json=huge)).status_code == 413
    extra = await live.client.post("/episodes", json=enrollment() | {"ssn": "123"})
    assert extra.status_code == 422 and extra.json()["detail"][0]["field"] == "ssn"
    response = await live.client.get("/tasks")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in response.headers["content-security-policy"]
