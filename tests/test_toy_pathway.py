"""A second, deliberately tiny pathway (tests/toy_pathway: two milestones, one event) runs through
the production workflow, recording, API and worklist: the engine knows only the protocol."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from carepath.engine.registry import pathway_for, register
from db.engine import make_engine
from db.migrate import upgrade
from db.models import EpisodeRow, TaskRow
from db.queries import timeline
from tests.support.live import api_client, served, start_dev_server
from tests.support.temporal import TASK_QUEUE, Clock, running_worker, start_time_skipping, stop_episode
from tests.test_web import BROWSER_ARGS, CHROMIUM, _need_chromium, browser_page
from tests.test_workspace import SHOTS
from tests.toy_pathway import TOY_KNEE
from workflows.client import EpisodeClient

register(TOY_KNEE)


def test_the_toy_pathway_is_found_by_its_definition_id():
    assert pathway_for("toy-knee") is TOY_KNEE
    assert TOY_KNEE.definition().key == "toy-knee.v1"


async def test_both_milestones_fire_on_durable_timers_and_the_episode_completes(tmp_path):
    env = await start_time_skipping()
    url = f"sqlite:///{tmp_path / 'toy.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        async with running_worker(env, engine):
            clock = await Clock.for_enrollment(env)
            episodes = EpisodeClient(env.client, TASK_QUEUE)
            episode_id = uuid.uuid4().hex
            enrollment = TOY_KNEE.parse_enrollment({"identified_on": clock.on(0), "patient": {"ref": "knee-1"}})
            view, handle = await episodes.start(episode_id, enrollment, TOY_KNEE.definition(), "test")
            assert (view.pathway, view.phase) == ("toy-knee.v1", "recovering")
            await clock.to(8)
            outcome = await episodes.record_event(
                episode_id, {"type": "flare", "occurred_on": clock.on(8), "severity": 7}, "f1", "test"
            )
            assert outcome.raised == ["FLARE_ALERT@flare-day8"]
            again = await episodes.record_event(
                episode_id, {"type": "flare", "occurred_on": clock.on(8), "severity": 9}, "f2", "test"
            )
            assert again.raised == []  # the open alert stays the one to act on (repeat: unless_open)
            await clock.to(15)
            assert await handle.result() == "completed"
        codes = [(i["day"], i["code"]) for i in timeline(engine, episode_id)]
        assert codes == [(7, "CHECK_IN"), (8, "FLARE_ALERT"), (14, "REVIEW"), (14, "recovering->completed")]
        with Session(engine) as session:
            assert session.get(EpisodeRow, episode_id).status == "completed"
    finally:
        engine.dispose()
        await env.shutdown()


@pytest.fixture(scope="module")
async def dev_env():
    env = await start_dev_server()
    yield env
    await env.shutdown()


async def test_enroll_record_and_work_the_worklist_through_the_api(dev_env, tmp_path):
    async with api_client(dev_env, f"sqlite:///{tmp_path / 'api.db'}") as live:
        client = live.client
        day0 = (date.today() - timedelta(days=8)).isoformat()  # week1 (day 7) has come
        bad = await client.post(
            "/episodes", params={"pathway": "toy-knee"}, json={"identified_on": day0, "patient": {}}
        )
        assert bad.status_code == 422 and [e["field"] for e in bad.json()["detail"]] == ["patient.ref"]
        unknown = await client.post("/episodes", params={"pathway": "no-such"}, json={})
        assert unknown.status_code == 422 and unknown.json()["detail"][0]["field"] == "pathway"
        enrolled = await client.post(
            "/episodes", params={"pathway": "toy-knee"}, json={"identified_on": day0, "patient": {"ref": "knee-2"}}
        )
        assert enrolled.status_code == 201, enrolled.text
        episode_id = enrolled.json()["episode_id"]
        assert enrolled.json()["pathway"] == "toy-knee.v1"

        today = date.today().isoformat()
        flare = await client.post(
            f"/episodes/{episode_id}/events", json={"type": "flare", "occurred_on": today, "severity": 11}
        )
        assert flare.status_code == 422 and flare.json()["detail"][0]["field"] == "severity"
        flare = await client.post(
            f"/episodes/{episode_id}/events", json={"type": "flare", "occurred_on": today, "severity": 6}
        )
        assert flare.status_code == 200 and flare.json()["raised"] == ["FLARE_ALERT@flare-day8"]

        worklist = (await client.get("/tasks")).json()
        mine = {t["code"]: t for t in worklist if t["episode_id"] == episode_id}
        assert set(mine) == {"CHECK_IN", "FLARE_ALERT"}
        assert mine["CHECK_IN"]["patient_ref"] == "knee-2" and mine["CHECK_IN"]["occasion"] == "week1"
        done = await client.post(f"/tasks/{mine['CHECK_IN']['id']}/complete", json={"reason": "called"})
        assert done.status_code == 200 and done.json()["status"] == "completed"
        assert "CHECK_IN" not in {
            t["code"] for t in (await client.get("/tasks")).json() if t["episode_id"] == episode_id
        }

        detail = (await client.get(f"/episodes/{episode_id}")).json()
        assert detail["pathway"] == "toy-knee.v1" and detail["phase"] == "recovering"
        with Session(live.service.engine) as session:
            statuses = dict(
                session.execute(select(TaskRow.code, TaskRow.status).where(TaskRow.episode_id == episode_id)).all()
            )
        assert statuses == {"CHECK_IN": "completed", "FLARE_ALERT": "open"}
        await stop_episode(live.service.episodes.handle(episode_id))


async def test_the_toy_pathway_in_a_real_browser_enroll_page_event_and_fhir(dev_env, tmp_path):
    """The toy pathway through the pages a person uses: enrolled on the enroll form, its episode
    page (year picture, its event form, what comes next) takes a flare, and its FHIR export of
    that flare validates. Nothing of the page knows the toy pathway: it declares it all."""
    _need_chromium()
    from fhir.resources.R4B.bundle import Bundle
    from playwright.async_api import async_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    ref = f"knee-{uuid.uuid4().hex[:6]}"
    day0 = (date.today() - timedelta(days=8)).isoformat()  # week1 (day 7) has come, week2 is ahead
    async with api_client(dev_env, f"sqlite:///{tmp_path / 'pages.db'}") as live:
        async with served(live.app) as base, async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            try:
                page = await browser_page(browser, base, live.tokens["coordinator"], 1366)
                await page.goto(f"{base}/ui/enroll?pathway=toy-knee")
                assert "Toy knee sprain follow-up" in await page.locator("p.hint").inner_text()
                await page.fill("#f-identified_on", day0)
                await page.click("form.enroll button[type=submit]")  # no patient ref: refused, named
                assert "required" in await page.locator("#err-patient-ref").inner_text()
                await page.fill("#f-patient-ref", ref)
                await page.click("form.enroll button[type=submit]")
                await page.wait_for_url(f"{base}/ui/episodes/*")
                episode_id = page.url.split("/ui/episodes/")[1].split("?")[0]
                assert ref in await page.locator("h1").inner_text()
                picture = await page.locator("div.picture").inner_html()
                assert "week1" in picture and "week2" in picture and 'class="milestone upcoming"' in picture
                assert "week2 check" in await page.locator("ul.upcoming").inner_text()
                assert "Checks done" in await page.locator("dl.facts").inner_text()
                forms = await page.locator("details.event-form summary").all_inner_texts()
                assert forms == ["Knee flare-up"]  # the toy takes no withdrawal
                await page.select_option("#f-flare-severity", "7")
                await page.screenshot(path=str(SHOTS / "toy-episode-1366.png"), full_page=True)
                await page.click("#form-flare button[type=submit]")
                await page.wait_for_url("**notice=recorded")
                assert "severity: 7" in await page.locator("table.events").inner_text()
                assert "FLARE_ALERT" in await page.locator("ul.open").inner_text()
                small = await browser.new_page(viewport={"width": 390, "height": 844})
                await small.context.add_cookies(await page.context.cookies())
                await small.goto(f"{base}/ui/episodes/{episode_id}")
                assert await small.evaluate("document.documentElement.scrollWidth") <= 390
                await small.screenshot(path=str(SHOTS / "toy-episode-390.png"), full_page=True)
            finally:
                await browser.close()
        bundle = (await live.client.get(f"/episodes/{episode_id}/fhir")).json()
        Bundle.model_validate(bundle)
        flares = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"]
        assert [(o["valueInteger"], o["effectiveDateTime"]) for o in flares] == [(7, date.today().isoformat())]
        assert flares[0]["code"]["text"] == "knee flare-up severity (0-10)"
        await stop_episode(live.service.episodes.handle(episode_id))
