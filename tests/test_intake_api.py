"""FHIR in, the candidates queue, and a coordinator confirming a candidate: over the API against a
real Temporal dev server and worker, and in a real browser from the worklist to a running episode."""

from __future__ import annotations

import os
import re
import uuid
from datetime import date
from pathlib import Path

import pytest

from carepath.intake.mllp import MllpServer
from tests.support.hl7_messages import ack_code, adt, mllp, oru
from tests.support.live import api_client, served, sqlite_url, start_dev_server
from tests.test_web import BROWSER_ARGS, CHROMIUM, _need_chromium

SHOTS = Path(os.environ.get("CAREPATH_SCREENSHOTS", Path(__file__).parent / "screenshots"))
TODAY = date.today().isoformat()
FHIR = {"content-type": "application/fhir+json"}


@pytest.fixture(scope="module")
async def live(tmp_path_factory):
    env = await start_dev_server()
    async with api_client(env, sqlite_url(tmp_path_factory.mktemp("intake"))) as api:
        yield api
    await env.shutdown()


def _bundle(mrn: str, text: str, report_id: str | None = None) -> dict:
    patient_url = f"urn:uuid:{uuid.uuid4()}"
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": patient_url,
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": mrn}],
                    "gender": "male",
                    "birthDate": "1950-06-01",
                },
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "DiagnosticReport",
                    "identifier": [{"system": "urn:ris:report", "value": report_id or uuid.uuid4().hex}],
                    "status": "final",
                    "category": [
                        {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "CT"}]}
                    ],
                    "code": {"text": "CT lumbar spine without contrast"},
                    "subject": {"reference": patient_url},
                    "effectiveDateTime": f"{TODAY}T09:30:00Z",
                    "conclusion": text,
                },
                "request": {"method": "POST", "url": "DiagnosticReport"},
            },
        ],
    }


def _one(items: list[dict], mrn: str) -> dict:
    (found,) = [c for c in items if c["patient_ref"] == mrn]
    return found


async def test_a_fhir_bundle_raises_a_candidate_once(live):
    mrn = f"F{uuid.uuid4().hex[:8]}"
    bundle = _bundle(mrn, "Acute burst fracture of L2 with 3 mm retropulsion.", report_id=f"r-{mrn}")
    first = await live.client.post("/fhir", json=bundle, headers=FHIR)
    assert first.status_code == 201, first.text
    assert first.json()["resourceType"] == "OperationOutcome" and "candidate" in first.text
    again = await live.client.post("/fhir", json=bundle | {"entry": bundle["entry"]}, headers=FHIR)
    assert again.status_code == 200 and "nothing changed" in again.text
    found = _one((await live.client.get("/candidates")).json(), mrn)
    assert (found["source"], found["levels"], found["sex"], found["modality"]) == ("fhir", ["L2"], "male", "CT")
    detail = (await live.client.get(f"/candidates/{found['id']}")).json()
    assert detail["draft"]["patient"] == {"ref": mrn, "age": found["age"], "sex": "male"}
    assert detail["draft"]["imaging"] == [{"performed_on": TODAY, "modality": "ct"}]
    assert "pain_nrs" not in detail["draft"]  # never a clinical answer the message did not give
    assert [a["action"] for a in detail["audit"]] == ["raised"]


async def test_fhir_refusals_are_operation_outcomes_and_store_nothing(live):
    before = len((await live.client.get("/candidates")).json())
    wrong = await live.client.post("/fhir/DiagnosticReport", json={"resourceType": "Observation"}, headers=FHIR)
    assert wrong.status_code == 422 and wrong.headers["content-type"].startswith("application/fhir+json")
    issue = wrong.json()["issue"][0]
    assert wrong.json()["resourceType"] == "OperationOutcome" and issue["expression"] == ["resourceType"]
    bundle = _bundle("MRN-X", "Compression fracture of L1.")
    bundle["entry"][1]["resource"]["subject"] = {"display": "somebody"}
    no_patient = await live.client.post("/fhir", json=bundle, headers=FHIR)
    assert no_patient.status_code == 422 and no_patient.json()["issue"][0]["expression"] == [
        "entry[1].resource.subject"
    ]
    bundle = _bundle("MRN-Y", "Compression fracture of L1.")
    bundle["entry"].append({"resource": {"resourceType": "MedicationRequest"}})
    mixed = await live.client.post("/fhir", json=bundle, headers=FHIR)
    assert mixed.status_code == 422 and "MedicationRequest" in mixed.text  # and the report before it not stored
    broken = await live.client.post("/fhir/Condition", content=b"{not json", headers=FHIR)
    assert broken.status_code == 422 and broken.json()["resourceType"] == "OperationOutcome"
    stranger = await live.client.post("/fhir/Condition", json={}, headers=FHIR | live.auth(None))
    assert stranger.status_code == 401 and stranger.json()["issue"][0]["code"] == "security"
    assert len((await live.client.get("/candidates")).json()) == before
    assert not [c for c in (await live.client.get("/candidates")).json() if c["patient_ref"] in ("MRN-X", "MRN-Y")]


async def test_coded_conditions_and_a_refuted_one(live):
    def condition(mrn: str, status: str) -> dict:
        return {
            "resourceType": "Condition",
            "id": f"c-{mrn}",
            "verificationStatus": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": status}]
            },
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "S32.030A"}]},
            "subject": {"identifier": {"system": "urn:mrn", "value": mrn}},
            "recordedDate": TODAY,
        }

    mrn = f"C{uuid.uuid4().hex[:8]}"
    assert (
        await live.client.post("/fhir/Condition", json=condition(mrn, "confirmed"), headers=FHIR)
    ).status_code == 201
    refuted = f"R{uuid.uuid4().hex[:8]}"
    assert (
        await live.client.post("/fhir/Condition", json=condition(refuted, "refuted"), headers=FHIR)
    ).status_code == 201
    listed = (await live.client.get("/candidates")).json()
    assert _one(listed, mrn)["levels"] == ["L3"]
    assert not [c for c in listed if c["patient_ref"] == refuted]


async def test_confirm_enrolls_dismiss_needs_a_reason_and_an_admission_is_recorded_once(live):
    mrn = f"E{uuid.uuid4().hex[:8]}"
    assert (await live.client.post("/fhir", json=_bundle(mrn, "Compression fracture of L4."), headers=FHIR)).is_success
    candidate = _one((await live.client.get("/candidates")).json(), mrn)
    missing = await live.client.post(f"/candidates/{candidate['id']}/enroll", json={"analgesics": ["nsaid"]})
    assert missing.status_code == 422 and missing.json()["detail"][0]["field"] == "pain_nrs"  # asked, not guessed
    other = await live.client.post(
        f"/candidates/{candidate['id']}/enroll", json={"pain_nrs": 6, "patient": {"ref": "someone-else"}}
    )
    assert other.status_code == 422 and other.json()["detail"][0]["field"] == "patient.ref"
    enrolled = await live.client.post(
        f"/candidates/{candidate['id']}/enroll", json={"pain_nrs": 6, "analgesics": ["acetaminophen"]}
    )
    assert enrolled.status_code == 201, enrolled.text
    episode_id = enrolled.json()["episode_id"]
    episode = (await live.client.get(f"/episodes/{episode_id}")).json()
    assert (episode["patient_ref"], episode["status"], episode["identified_on"]) == (mrn, "active", TODAY)
    twice = await live.client.post(f"/candidates/{candidate['id']}/enroll", json={"pain_nrs": 6})
    assert twice.status_code == 409
    audit = (await live.client.get(f"/episodes/{episode_id}/audit")).json()
    assert [a["action"] for a in audit][:2] == ["enroll", "intake:enrolled"]
    # A new fracture of the enrolled patient: offered, linked to the episode, not a second enrollment.
    assert (
        await live.client.post("/fhir", json=_bundle(mrn, "New compression fracture of L1."), headers=FHIR)
    ).is_success
    newer = _one((await live.client.get("/candidates")).json(), mrn)
    assert newer["active_episode_id"] == episode_id
    refused = await live.client.post(f"/candidates/{newer['id']}/enroll", json={"pain_nrs": 5})
    assert refused.status_code == 409 and episode_id in refused.text
    blank = await live.client.post(f"/candidates/{newer['id']}/dismiss", json={"reason": " "})
    assert blank.status_code == 422 and blank.json()["detail"][0]["field"] == "reason"
    gone = await live.client.post(f"/candidates/{newer['id']}/dismiss", json={"reason": "recorded as imaging"})
    assert gone.status_code == 200 and gone.json()["status"] == "dismissed"
    actions = [(a["action"], a["actor"]) for a in (await live.client.get(f"/candidates/{newer['id']}")).json()["audit"]]
    assert actions == [("raised", "carepath:intake"), ("dismissed", "physician:test-physician")]

    # An admission over HL7: offered; confirming records hospital_admission once.
    async with MllpServer(live.service.engine, "127.0.0.1", 0) as server, mllp(server.bound_port) as client:
        assert ack_code(await client.send(adt(uuid.uuid4().hex[:10], mrn, admitted=TODAY.replace("-", "")))) == "AA"
    offer = next(c for c in (await live.client.get("/candidates")).json() if c["patient_ref"] == mrn)
    assert offer["kind"] == "event" and offer["episode_id"] == episode_id
    assert not [e for e in (await live.client.get(f"/episodes/{episode_id}/events")).json() if e["type"] != "note"]
    confirmed = await live.client.post(f"/candidates/{offer['id']}/confirm")
    assert confirmed.status_code == 200, confirmed.text
    assert (await live.client.post(f"/candidates/{offer['id']}/confirm")).status_code == 409
    recorded = [e["type"] for e in (await live.client.get(f"/episodes/{episode_id}/events")).json()]
    assert recorded.count("hospital_admission") == 1


async def test_a_coordinator_confirms_a_candidate_from_the_worklist_in_a_real_browser(live):
    """HL7 report -> the worklist's "Found in reports" -> the enroll form filled from the message ->
    the rest answered -> a running episode."""
    _need_chromium()
    from playwright.async_api import async_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    mrn = f"B{uuid.uuid4().hex[:7]}"
    report = oru(
        uuid.uuid4().hex[:10],
        mrn,
        "FINDINGS: Acute wedge compression fracture of L1 with 25% anterior height loss. No retropulsion.",
        born="19440207",
        observed=TODAY.replace("-", "") + "0815",
    )
    async with MllpServer(live.service.engine, "127.0.0.1", 0) as server, mllp(server.bound_port) as client:
        assert ack_code(await client.send(report)) == "AA"
    async with served(live.app) as base, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1366, "height": 900})
            await page.goto(f"{base}/login")
            await page.fill("#token", live.tokens["coordinator"])
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{base}/")
            card = page.locator("li.candidate", has_text=mrn)
            assert "compression fracture" in await card.locator("mark").first.inner_text()
            await card.scroll_into_view_if_needed()
            await page.screenshot(path=str(SHOTS / "candidates-1366.png"), full_page=True)
            await card.get_by_role("link", name=f"Enroll {mrn}…").click()
            await page.wait_for_url(re.compile(r".*/ui/candidates/\d+/enroll"))
            assert await page.input_value("#f-patient-ref") == mrn
            assert await page.input_value("#f-patient-age") != ""
            assert await page.input_value("#f-patient-sex") == "female"
            assert await page.input_value("#f-identified_on") == TODAY
            assert await page.is_checked("#f-fracture-levels-L1")
            assert not await page.is_checked("#f-fracture-levels-L2")
            assert await page.input_value("#f-imaging-0-modality") == "xray"
            assert await page.input_value("#f-pain_nrs") == ""  # the message gave no pain score: not chosen
            assert await page.input_value("#f-fracture-acute_injury") == ""  # "not recorded": the message did not say
            await page.screenshot(path=str(SHOTS / "candidate-enroll-1366.png"), full_page=True)
            small = await browser.new_page(viewport={"width": 390, "height": 844})
            await small.context.add_cookies(await page.context.cookies())
            for name, path in (("candidates", "/"), ("candidate-enroll", page.url.removeprefix(base))):
                await small.goto(f"{base}{path}")
                width = await small.evaluate("document.documentElement.scrollWidth")
                assert width <= 390, (name, width)
                await small.screenshot(path=str(SHOTS / f"{name}-390.png"), full_page=True)
            await page.select_option("#f-pain_nrs", "7")
            await page.check("#f-analgesics-acetaminophen")
            await page.click("form.enroll button[type=submit]")
            await page.wait_for_url(f"{base}/ui/episodes/*")
            assert mrn in await page.locator("h1").inner_text()
            episode_id = page.url.split("/ui/episodes/")[1].split("?")[0]
            await page.goto(f"{base}/")
            assert await page.locator("li.candidate", has_text=mrn).count() == 0  # it left the queue
        finally:
            await browser.close()
    episode = (await live.client.get(f"/episodes/{episode_id}")).json()
    assert episode["status"] == "active" and episode["phase"] == "acute"
    assert {t["code"] for t in episode["open_tasks"]} >= {"START_OSTEOPOROSIS_THERAPY"}
