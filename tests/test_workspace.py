"""The coordinator's and physician's workspace in a real browser (Debian's Chromium), and its forms'
safety over HTTP: CSRF, a double submit recorded once, viewers seeing no actions."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import httpx
import pytest

from tests.support.live import api_client, served, sqlite_url, start_dev_server
from tests.test_web import (
    BASE,
    BROWSER_ARGS,
    CHROMIUM,
    _need_chromium,
    attacker,
    browser_page,
    csrf_token,
    enrollment,
    sign_in,
)

# Screenshots go here (or CAREPATH_SCREENSHOTS) so that a person can look at them after a run.
SHOTS = Path(os.environ.get("CAREPATH_SCREENSHOTS", Path(__file__).parent / "screenshots"))
FORM = {"content-type": "application/x-www-form-urlencoded", "origin": BASE}


@pytest.fixture(scope="module")
async def live(tmp_path_factory):
    env = await start_dev_server()
    async with api_client(env, sqlite_url(tmp_path_factory.mktemp("workspace"))) as api:
        api.service.pathway_version = 1  # so that a physician can migrate to v2
        yield api
    await env.shutdown()


async def _enroll(live, ref: str, **overrides) -> str:
    response = await live.client.post("/episodes", json=enrollment(ref, **overrides))
    assert response.status_code == 201, response.text
    return response.json()["episode_id"]


async def test_a_coordinators_morning_in_a_real_browser(live):
    """Sign in, enroll with one mistake and fix it, record a pain assessment, complete a task and
    see it leave the worklist, find a withdrawn patient by search."""
    _need_chromium()
    from playwright.async_api import async_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    ref = f"morning-{uuid.uuid4().hex[:6]}"
    gone = f"gone-{uuid.uuid4().hex[:6]}"
    withdrawn = await _enroll(live, gone)
    assert (await live.client.post(f"/episodes/{withdrawn}/withdraw", json={"reason": "transferred"})).is_success
    async with served(live.app) as base, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.goto(f"{base}/login")
            await page.fill("#token", live.tokens["coordinator"])
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{base}/")
            # Enroll, forgetting the age.
            await page.click("header >> text=Enroll")
            await page.fill("#f-patient-ref", ref)
            await page.check("#f-fracture-levels-L2")
            await page.check("#f-fracture-levels-L3")
            await page.select_option("#f-pain_nrs", "7")
            await page.check("#f-analgesics-nsaid")
            await page.select_option("#f-imaging-0-modality", "xray")
            await page.fill("#f-imaging-0-performed_on", (await page.input_value("#f-identified_on")))
            await page.click("form.enroll button[type=submit]")
            error = page.locator("#err-patient-age")
            assert "required" in (await error.inner_text())
            assert await page.input_value("#f-patient-ref") == ref  # refilled
            assert await page.is_checked("#f-analgesics-nsaid")
            await page.screenshot(path=str(SHOTS / "enroll-error.png"), full_page=True)
            listed = (await live.client.get("/episodes", params={"patient_ref": ref})).json()
            assert listed == []  # nothing was created
            await page.fill("#f-patient-age", "81")
            await page.select_option("#f-patient-sex", "female")  # nothing is pre-selected for the person
            await page.click("form.enroll button[type=submit]")
            await page.wait_for_url(f"{base}/ui/episodes/*")
            assert ref in await page.locator("h1").inner_text()
            episode_id = page.url.split("/ui/episodes/")[1].split("?")[0]
            # A pain assessment.
            await page.select_option("#f-pain_assessment-nrs", "5")
            await page.click("#form-pain_assessment button[type=submit]")
            await page.wait_for_url("**notice=recorded")
            assert "nrs: 5" in await page.locator("table.events").inner_text()
            await page.screenshot(path=str(SHOTS / "episode-desktop.png"), full_page=True)
            # Complete the coordinator's calcium task from the worklist, filtered to this patient.
            await page.goto(f"{base}/?patient={ref}&assignee=coordinator")
            row = page.locator("tr", has_text="CALCIUM_VITAMIN_D")
            task_id = (await row.get_attribute("id")).removeprefix("task-")
            await page.screenshot(path=str(SHOTS / "worklist-desktop.png"), full_page=True)
            await row.locator("input[name=reason]").first.fill("advised at the phone call")
            await row.get_by_role("button", name=f"Complete #{task_id}").click()
            await page.wait_for_url("**notice=completed")
            assert await page.locator(f"#task-{task_id}").count() == 0  # it left the list
            # Find the withdrawn patient by search.
            await page.click("header >> text=Patients")
            await page.fill("input[name=patient]", gone)
            await page.click("form.filters button[type=submit]")
            found = page.locator("table.episodes tr", has_text=gone)
            assert "withdrawn" in await found.inner_text()
            # The same pages at 360 px: no sideways scrolling of the page itself.
            small = await browser.new_page(viewport={"width": 360, "height": 780})
            await small.context.add_cookies(await page.context.cookies())
            for name, path in (("worklist", "/"), ("episode", f"/ui/episodes/{episode_id}"), ("enroll", "/ui/enroll")):
                await small.goto(f"{base}{path}")
                width = await small.evaluate("document.documentElement.scrollWidth")
                assert width <= 360, (name, width)
                await small.screenshot(path=str(SHOTS / f"{name}-360.png"), full_page=True)
        finally:
            await browser.close()
    task = (await live.client.get(f"/episodes/{episode_id}")).json()
    assert all(t["code"] != "CALCIUM_VITAMIN_D" for t in task["open_tasks"])
    audit = (await live.client.get(f"/episodes/{episode_id}/audit")).json()
    assert [a["action"] for a in audit][:3] == ["enroll", "event:pain_assessment", "task:completed"]


async def test_a_physician_closes_a_physician_task_in_a_real_browser(live):
    _need_chromium()
    from playwright.async_api import async_playwright

    ref = f"phys-{uuid.uuid4().hex[:6]}"
    episode_id = await _enroll(live, ref)
    async with served(live.app) as base, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:

            async def as_role(role: str):
                page = await browser.new_page()
                await page.goto(f"{base}/login")
                await page.fill("#token", live.tokens[role])
                await page.click("button[type=submit]")
                await page.wait_for_url(f"{base}/")
                await page.goto(f"{base}/?patient={ref}&assignee=physician")
                return page, page.locator("tr", has_text="START_OSTEOPOROSIS_THERAPY")

            coordinator, row = await as_role("coordinator")
            assert await row.get_by_role("button").count() == 0 and "physicians only" in await row.inner_text()
            physician, row = await as_role("physician")
            task_id = (await row.get_attribute("id")).removeprefix("task-")
            await row.locator("input[name=reason]").last.fill("started elsewhere")
            await row.get_by_role("button", name=f"Cancel #{task_id}").click()
            await physician.wait_for_url("**notice=cancelled")
            assert await physician.locator(f"#task-{task_id}").count() == 0
            await physician.goto(f"{base}/ui/episodes/{episode_id}")
            assert await physician.locator("#form-override").count() == 1  # physicians only
            assert await physician.locator("#form-migrate").count() == 1
            await physician.screenshot(path=str(SHOTS / "episode-physician.png"), full_page=True)
            await coordinator.goto(f"{base}/ui/episodes/{episode_id}")
            assert await coordinator.locator("#form-override").count() == 0
        finally:
            await browser.close()
    task = next(
        t for t in (await live.client.get("/tasks", params={"status": "cancelled"})).json() if t["id"] == int(task_id)
    )
    assert task["close_reason"] == "started elsewhere"


async def test_a_viewer_sees_no_actions(live):
    ref = f"view-{uuid.uuid4().hex[:6]}"
    episode_id = await _enroll(live, ref)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=live.app), base_url=BASE) as client:
        await sign_in(client, live.tokens["viewer"])
        for path in ("/", f"/ui/episodes/{episode_id}", "/ui/patients"):
            html = (await client.get(path)).text
            assert ref in html
            assert not re.search(r'<form method="post" action="/(ui|tasks)', html), path
        assert (await client.get("/ui/enroll")).status_code == 403
        token = csrf_token((await client.get("/")).text)
        refused = await client.post(
            f"/ui/episodes/{episode_id}/events",
            content=f"csrf_token={token}&type=note&occurred_on=2026-01-01&author=v&text=hi",
            headers=FORM,
        )
        assert refused.status_code == 403
    assert (await live.client.get(f"/episodes/{episode_id}/events")).json() == []


async def test_a_double_submitted_form_records_once(live):
    episode_id = await _enroll(live, f"twice-{uuid.uuid4().hex[:6]}")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=live.app), base_url=BASE) as client:
        await sign_in(client, live.tokens["coordinator"])
        html = (await client.get(f"/ui/episodes/{episode_id}")).text
        token = csrf_token(html)
        key = re.search(r'name="form_key" value="([^"]+)"', html).group(1)
        today = (await live.client.get(f"/episodes/{episode_id}")).json()["identified_on"]
        body = f"csrf_token={token}&form_key={key}&type=note&occurred_on={today}&author=c&text=<b>called</b>"
        answers = [await client.post(f"/ui/episodes/{episode_id}/events", content=body, headers=FORM) for _ in range(2)]
        assert [a.status_code for a in answers] == [303, 303]
        page = (await client.get(f"/ui/episodes/{episode_id}")).text
        assert "&lt;b&gt;called&lt;/b&gt;" in page and "<b>called</b>" not in page  # escaped
    notes = [e for e in (await live.client.get(f"/episodes/{episode_id}/events")).json() if e["type"] == "note"]
    assert len(notes) == 1 and notes[0]["payload"]["text"] == "<b>called</b>"


async def test_withdrawing_on_the_page_names_a_missing_reason_then_withdraws(live):
    """The withdrawal form is the pathway's (its reasons in words); no reason is refused, named."""
    episode_id = await _enroll(live, f"leave-{uuid.uuid4().hex[:6]}")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=live.app), base_url=BASE) as client:
        await sign_in(client, live.tokens["coordinator"])
        html = (await client.get(f"/ui/episodes/{episode_id}")).text
        assert '<option value="transferred">Transferred</option>' in html
        body = f"csrf_token={csrf_token(html)}&reason=&text=moved"
        refused = await client.post(f"/ui/episodes/{episode_id}/withdraw", content=body, headers=FORM)
        assert refused.status_code == 422 and 'id="err-reason"' in refused.text
        body = f"csrf_token={csrf_token(refused.text)}&reason=transferred&text=moved"
        done = await client.post(f"/ui/episodes/{episode_id}/withdraw", content=body, headers=FORM)
        assert done.status_code == 303
    assert (await live.client.get(f"/episodes/{episode_id}")).json()["status"] == "withdrawn"


async def test_a_forged_cross_site_post_is_refused_in_a_real_browser(live):
    _need_chromium()
    from playwright.async_api import async_playwright

    episode_id = await _enroll(live, f"forge-{uuid.uuid4().hex[:6]}")
    tasks = (await live.client.get(f"/episodes/{episode_id}")).json()["open_tasks"]
    task = next(t for t in tasks if t["assignee"] == "coordinator")
    async with served(live.app) as base:
        evil = attacker(
            {
                "note": (
                    f"{base}/ui/episodes/{episode_id}/events",
                    {"type": "note", "occurred_on": "2026-01-01", "author": "x", "text": "forged"},
                ),
                "complete": (f"{base}/ui/tasks/{task['id']}/complete", {"reason": "forged"}),
            }
        )
        async with served(evil) as other, async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            try:
                page = await browser.new_page()
                await page.goto(f"{base}/login")
                await page.fill("#token", live.tokens["coordinator"])
                await page.click("button[type=submit]")
                await page.wait_for_url(f"{base}/")
                for name in ("note", "complete"):
                    async with page.expect_response(lambda r: r.url.startswith(base)) as answer:
                        await page.goto(f"{other}/{name}")
                    assert (await answer.value).status == 403, name
            finally:
                await browser.close()
    assert (await live.client.get(f"/episodes/{episode_id}/events")).json() == []
    assert task["id"] in [t["id"] for t in (await live.client.get(f"/episodes/{episode_id}")).json()["open_tasks"]]


async def test_enrolling_a_patient_twice_links_the_active_episode(live):
    ref = f"dup-{uuid.uuid4().hex[:6]}"
    episode_id = await _enroll(live, ref, pain_nrs=3)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=live.app), base_url=BASE) as client:
        await sign_in(client, live.tokens["coordinator"])
        token = csrf_token((await client.get("/ui/enroll")).text)
        today = (await live.client.get(f"/episodes/{episode_id}")).json()["identified_on"]
        body = (
            f"csrf_token={token}&identified_on={today}&patient.ref={ref}&patient.age=70&patient.sex=male"
            "&fracture.levels=L1&pain_nrs=4"
        )
        answer = await client.post("/ui/enroll", content=body, headers=FORM)
        assert answer.status_code == 409 and f'href="/ui/episodes/{episode_id}" class="existing"' in answer.text
        listed = (await live.client.get("/episodes", params={"patient_ref": ref})).json()
        assert [e["episode_id"] for e in listed] == [episode_id]


async def test_paging_walks_every_task_once(live):
    for n in range(3):
        await _enroll(live, f"page-{n}-{uuid.uuid4().hex[:4]}")
    seen, cursor = [], None
    while True:
        params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        answer = await live.client.get("/tasks", params=params)
        seen += [t["id"] for t in answer.json()]
        cursor = answer.headers.get("x-next-cursor")
        if not cursor:
            break
    everything = [t["id"] for t in (await live.client.get("/tasks", params={"limit": 1000})).json()]
    assert seen == everything and len(set(seen)) == len(seen)
    bad = await live.client.get("/tasks", params={"cursor": "nope"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "cursor"
    episode_id = await _enroll(live, f"up-{uuid.uuid4().hex[:6]}")
    detail = (await live.client.get(f"/episodes/{episode_id}")).json()
    assert [p["ref"] for p in detail["upcoming"] if p["what"] == "milestone"][:2] == ["week4", "week6"]
    assert detail["next_due"] is not None


async def test_fhir_export_carries_pain_scores_and_notes(live):
    from fhir.resources.R4B.bundle import Bundle

    episode_id = await _enroll(live, f"fhir-{uuid.uuid4().hex[:6]}")
    today = (await live.client.get(f"/episodes/{episode_id}")).json()["identified_on"]
    for event in (
        {"type": "pain_assessment", "occurred_on": today, "nrs": 4, "analgesics": ["nsaid"]},
        {"type": "note", "occurred_on": today, "author": "Dr A", "text": "daughter visits on Fridays"},
    ):
        assert (await live.client.post(f"/episodes/{episode_id}/events", json=event)).is_success
    bundle = (await live.client.get(f"/episodes/{episode_id}/fhir")).json()
    Bundle.model_validate(bundle)
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds[0] == "CarePlan" and kinds.count("Observation") == 1 and kinds.count("Communication") == 1
    pain = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation")
    assert pain["valueInteger"] == 4 and pain["code"]["coding"][0]["code"] == "72514-3"
    note = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Communication")
    assert note["payload"] == [{"contentString": "daughter visits on Fridays"}]
    events = (await live.client.get(f"/episodes/{episode_id}/events")).json()
    assert [e["type"] for e in events] == ["pain_assessment", "note"]
    assert events[1]["payload"]["text"] == "daughter visits on Fridays" and events[1]["recorded_by"]


async def test_docs_work_under_the_csp_with_no_script(live):
    page = await live.client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'none'" in page.headers["content-security-policy"]
    assert "<script" not in page.text and "cdn" not in page.text.lower()
    assert "/episodes/{episode_id}/events" in page.text and 'href="/openapi.json"' in page.text
    assert (await live.client.get("/openapi.json")).status_code == 200


async def test_the_year_picture_of_a_back_dated_episode_in_a_real_browser(live):
    """Enrolled 120 days after day 0 while on denosumab: milestones behind and ahead, the next dose."""
    _need_chromium()
    from datetime import date, timedelta

    from playwright.async_api import async_playwright

    day0 = date.today() - timedelta(days=120)
    therapy = {"agent": "denosumab", "last_dose_on": (day0 + timedelta(days=10)).isoformat()}
    episode_id = await _enroll(
        live, f"year-{uuid.uuid4().hex[:6]}", identified_on=day0.isoformat(), osteoporosis_therapy=therapy
    )
    event = {"type": "pain_assessment", "occurred_on": (day0 + timedelta(days=100)).isoformat(), "nrs": 3}
    assert (await live.client.post(f"/episodes/{episode_id}/events", json=event)).is_success
    detail = (await live.client.get(f"/episodes/{episode_id}")).json()
    dose = next(p for p in detail["upcoming"] if p["what"] == "denosumab_dose")
    assert dose["on"] == (day0 + timedelta(days=192)).isoformat()
    html = (await live.client.get(f"/ui/episodes/{episode_id}")).text
    svg = html[html.index("<svg") : html.index("</svg>")]
    assert 'class="milestone upcoming"' in svg and "next denosumab dose" in svg and 'class="event"' in svg
    async with served(live.app) as base, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = await browser_page(browser, base, live.tokens["viewer"])
            await page.goto(f"{base}/ui/episodes/{episode_id}")
            await page.locator("svg.year").screenshot(path=str(SHOTS / "year.png"))
            await page.emulate_media(media="print")
            await page.screenshot(path=str(SHOTS / "episode-print.png"), full_page=True)
            assert await page.locator("form[method=post][action^='/ui']").count() == 0  # a viewer
        finally:
            await browser.close()
