"""A workspace a clinic can trust (issue 20), in a real browser (Debian's Chromium) at 1366 and
390 px: answers never guessed, urgent work that goes overdue, tasks of a named person, errors in
words with nothing typed lost, a demo that shows every flow, clinical facts in words."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from carepath.service import CarepathService
from db.models import EventRow, TaskRow
from tests.support.live import api_client, served, sqlite_url, start_dev_server
from tests.support.temporal import MemorySink
from tests.test_web import BROWSER_ARGS, CHROMIUM, _need_chromium, enrollment

SHOTS = Path(os.environ.get("CAREPATH_SCREENSHOTS", Path(__file__).parent / "screenshots"))
WIDE = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
LINK = re.compile(r"/checkin/([A-Za-z0-9_-]{20,})")


@pytest.fixture(scope="module")
async def clinic(tmp_path_factory):
    env = await start_dev_server()
    sink = MemorySink()
    async with api_client(env, sqlite_url(tmp_path_factory.mktemp("clinic")), sink) as api:
        api.sink = sink
        yield api
    await env.shutdown()


async def enroll(clinic, ref: str, **overrides: Any) -> str:
    answer = await clinic.client.post("/episodes", json=enrollment(ref, **overrides))
    assert answer.status_code == 201, answer.text
    return answer.json()["episode_id"]


async def checkin_token(clinic, episode_id: str, seen: int = 0) -> str:
    """The link in the newest check-in message to this episode's patient (delivery runs beside)."""
    for _ in range(200):
        found = [m for m in clinic.sink.messages if m["episode_id"] == episode_id and m["code"] == "CHECKIN"]
        if len(found) > seen:
            return LINK.search(found[-1]["body"]).group(1)
        await asyncio.sleep(0.05)
    raise AssertionError(f"no check-in message for {episode_id}")


@asynccontextmanager
async def browser_at(clinic) -> AsyncIterator[tuple[Any, str]]:
    _need_chromium()
    from playwright.async_api import async_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    async with served(clinic.app) as base, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            yield browser, base
        finally:
            await browser.close()


async def signed_in(browser, base: str, token: str, viewport: dict[str, int] = WIDE):
    page = await browser.new_page(viewport=viewport)
    await page.goto(f"{base}/login")
    await page.fill("#token", token)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/")
    return page


async def both_widths(page, name: str) -> None:
    """Screenshots at 1366 and 390 px (looked at by a person), and no sideways scroll at 390."""
    await page.set_viewport_size(WIDE)
    await page.screenshot(path=str(SHOTS / f"clinic-{name}-1366.png"), full_page=True)
    await page.set_viewport_size(PHONE)
    await page.screenshot(path=str(SHOTS / f"clinic-{name}-390.png"), full_page=True)
    wide = await page.evaluate(
        """() => [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > 390.5 && !e.closest('.scroll, .picture'))
            .slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' + e.getBoundingClientRect().right)"""
    )
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], (name, wide)
    await page.set_viewport_size(WIDE)


def pain_events(clinic, episode_id: str) -> list[dict[str, Any]]:
    with Session(clinic.service.engine) as session:
        rows = session.scalars(
            select(EventRow).where(EventRow.episode_id == episode_id, EventRow.type == "pain_assessment")
        )
        return [row.payload for row in rows]


# ---- 1. answers never guessed ------------------------------------------------------------------


async def test_a_check_in_sent_now_preselects_nothing_refuses_none_with_a_painkiller_and_keeps_answers(clinic):
    ref = f"ask-{uuid.uuid4().hex[:6]}"
    episode_id = await enroll(clinic, ref)
    sent = await clinic.client.post(f"/episodes/{episode_id}/checkins", headers=clinic.auth("coordinator"), json=None)
    assert sent.status_code == 201, sent.text
    token = await checkin_token(clinic, episode_id)
    audit = (await clinic.client.get(f"/episodes/{episode_id}/audit")).json()
    assert any(a["action"] == "checkin:sent" and a["actor"] == "coordinator:test-coordinator" for a in audit)
    async with browser_at(clinic) as (browser, base):
        phone = await browser.new_context(viewport=PHONE, is_mobile=True)
        page = await phone.new_page()
        await page.goto(f"{base}/checkin/{token}")
        assert await page.locator("input:checked").count() == 0  # nothing answered for the patient
        await both_widths(page, "checkin")
        await page.locator("label.nrs", has_text="6").first.click()
        await page.get_by_label("None").check()
        await page.get_by_label("Paracetamol (acetaminophen)").check()
        await page.get_by_label("I get around on my own").check()
        await page.locator("#q-symptoms_changed").get_by_label("No").check()
        await page.get_by_role("button", name="Send my answers").click()
        await page.wait_for_load_state()
        # Refused in plain words beside the question, every answer kept, the link still usable.
        assert "tick only None, or only your painkillers" in await page.locator("#err-analgesics").inner_text()
        assert page.url == f"{base}/checkin/{token}#form-checkin"
        assert await page.locator("input[name=nrs][value='6']").is_checked()
        assert await page.get_by_label("I get around on my own").is_checked()
        assert await page.get_by_label("None").is_checked()
        await both_widths(page, "checkin-refused")
        assert pain_events(clinic, episode_id) == []
        # A painkiller taken: whether it helps must be answered, not assumed.
        await page.get_by_label("None").uncheck()
        await page.get_by_role("button", name="Send my answers").click()
        await page.wait_for_load_state()
        assert "help enough" in await page.locator("#err-adequate").inner_text()
        await page.reload()  # a reload is a plain page again, never "this form expired"
        assert "How is your back pain?" in await page.locator("h1").inner_text()
        await page.locator("label.nrs", has_text="6").first.click()
        await page.get_by_label("Paracetamol (acetaminophen)").check()
        await page.get_by_label("No, the pain is still too strong").check()
        await page.get_by_label("I get around on my own").check()
        await page.locator("#q-symptoms_changed").get_by_label("No").check()
        await page.get_by_role("button", name="Send my answers").click()
        await page.wait_for_load_state()
        assert "Thank you" in await page.locator("h1").inner_text()
    [answer] = pain_events(clinic, episode_id)
    assert answer["analgesics"] == ["acetaminophen"] and answer["oral_analgesia_adequate"] is False
    assert answer["nrs"] == 6 and answer["symptoms_changed"] is False


async def test_the_clinicians_pain_form_guesses_nothing_and_keeps_ticks_after_an_error(clinic):
    ref = f"form-{uuid.uuid4().hex[:6]}"
    episode_id = await enroll(clinic, ref)
    async with browser_at(clinic) as (browser, base):
        page = await signed_in(browser, base, clinic.tokens["coordinator"])
        await page.goto(f"{base}/ui/episodes/{episode_id}")
        form = page.locator("#form-pain_assessment")
        assert await form.locator("input:checked").count() == 0  # no box ticked for you
        for name in ("oral_analgesia_adequate", "mobility", "symptoms_changed"):
            assert await form.locator(f"#f-pain_assessment-{name}").input_value() == "", name  # not recorded
        await form.locator("#f-pain_assessment-analgesics-nsaid").check()
        await form.locator("#f-pain_assessment-analgesics-opioid").check()
        await form.locator("#f-pain_assessment-oral_analgesia_adequate").select_option("no")
        await form.locator("#f-pain_assessment-opioid_effects-nausea").check()
        # Without NRS the browser asks for it (the field is required) and nothing is lost.
        assert await form.locator("#f-pain_assessment-nrs[required]").count() == 1
        await form.get_by_role("button").click()
        assert await page.locator("#f-pain_assessment-analgesics-nsaid").is_checked()
        # The server refuses a date after today: asked again beside the field, every tick kept.
        await form.locator("#f-pain_assessment-nrs").select_option("5")
        tomorrow = (clinic.service.today() + timedelta(days=1)).isoformat()
        await form.locator("#f-pain_assessment-occurred_on").fill(tomorrow)
        await form.get_by_role("button").click()
        await page.wait_for_url("**/ui/episodes/*#form-pain_assessment")
        assert page.url.startswith(f"{base}/ui/episodes/{episode_id}")  # not …/events
        assert "future" in await page.locator("#form-pain_assessment .field-error").inner_text()
        for box in ("analgesics-nsaid", "analgesics-opioid", "opioid_effects-nausea"):
            assert await page.locator(f"#f-pain_assessment-{box}").is_checked(), box
        assert await page.locator("#f-pain_assessment-oral_analgesia_adequate").input_value() == "no"
        await both_widths(page, "episode-refused")
        again = await page.reload()
        assert again.status == 200 and "This form expired" not in await page.content()
        assert await page.locator("#f-pain_assessment-nrs").input_value() == "5"
        await page.locator("#f-pain_assessment-occurred_on").fill(clinic.service.today().isoformat())
        await page.click("#form-pain_assessment button[type=submit]")
        await page.wait_for_url("**notice=recorded")
    [recorded] = pain_events(clinic, episode_id)
    assert recorded["nrs"] == 5 and recorded["oral_analgesia_adequate"] is False
    assert recorded["mobility"] is None and recorded["symptoms_changed"] is None  # not asked: absent


# ---- 2. urgent work goes overdue and is followed up --------------------------------------------


async def test_urgent_items_are_due_the_day_raised_and_go_overdue_on_the_worklist(clinic):
    ref = f"urgent-{uuid.uuid4().hex[:6]}"
    episode_id = await enroll(clinic, ref, red_flags=["cord_compression"])
    tasks = (await clinic.client.get("/tasks", params={"patient_ref": ref, "priority": "urgent"})).json()
    [consultation] = [t for t in tasks if t["code"] == "SURGICAL_CONSULTATION"]
    today = clinic.service.today()
    assert consultation["due_on"] == today.isoformat() and consultation["overdue_days"] == 0
    async with browser_at(clinic) as (browser, base):
        page = await signed_in(browser, base, clinic.tokens["physician"])
        await page.goto(f"{base}/?patient={ref}&priority=urgent")
        row = page.locator(f"#task-{consultation['id']}")
        assert today.isoformat() in await row.inner_text()
        # Nobody acted: the next day it is overdue, counted with the others.
        real_clock = clinic.service.clock
        clinic.service.clock = lambda: real_clock() + timedelta(days=1)
        try:  # a day later the sign-in session has idled out: sign in again, as the physician would
            page = await signed_in(browser, base, clinic.tokens["physician"])
            await page.goto(f"{base}/?patient={ref}&priority=urgent&status=open")
            assert "overdue 1 day" in await page.locator(f"#task-{consultation['id']}").inner_text()
            counts = await page.locator(".counts").inner_text()
            assert re.search(r"urgent: \d+ \(1 overdue\)", counts, re.IGNORECASE), counts
            await both_widths(page, "worklist-urgent-overdue")
        finally:
            clinic.service.clock = real_clock
    assert episode_id


async def test_an_urgent_item_still_open_after_4_hours_notifies_again_and_heads_the_digest(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from activities.followup import DigestRequest, FollowUp
    from activities.notifications import NotificationDispatcher
    from db.engine import make_engine
    from db.migrate import upgrade
    from tests.support.temporal import (
        TASK_QUEUE,
        Clock,
        running_worker,
        start_episode,
        start_time_skipping,
        stop_episode,
    )

    env = await start_time_skipping()
    url = sqlite_url(tmp_path)
    upgrade(url)
    engine = make_engine(url)
    sink = MemorySink()
    try:
        async with running_worker(env, engine, sink):
            clock = await Clock.for_enrollment(env)
            waiting, waiting_handle = await start_episode(env, clock, ref="MRN-WAIT", red_flags=["cord_compression"])
            seen, seen_handle = await start_episode(env, clock, ref="MRN-SEEN", red_flags=["cord_compression"])
            await clock.to(0, time(9, 0))
            # One physician closes the consultation within the hour; nobody acts on the other.
            [task] = [
                t for t in (await _tasks(engine, seen)) if t.code == "SURGICAL_CONSULTATION" and t.status == "open"
            ]
            await CarepathService(env.client, engine, TASK_QUEUE).close_task(
                task.id, "completed", "seen", "physician:a"
            )
            await clock.to(0, time(13, 0))  # 08:00 + 4 h passed
            for _ in range(200):
                again = [m for m in sink.messages if m["occasion"].endswith(":still-open")]
                if again:
                    break
                await asyncio.sleep(0.05)
            assert [(m["episode_id"], m["recipient_role"]) for m in again] == [(waiting, "physician")]
            assert again[0]["subject"].startswith("[urgent] Still open after 4 h: ")
            with ThreadPoolExecutor(1) as threads:
                followup = FollowUp(engine, NotificationDispatcher(engine, sink, "http://clinic", threads))
                now = datetime.fromisoformat(clock.on(1)).replace(hour=8, tzinfo=UTC)
                followup.send_digests(DigestRequest(now=now))
            digest = next(m for m in sink.messages if m["code"] == "DIGEST" and m["recipient_role"] == "physician")
            assert "1 URGENT STILL OPEN" in digest["subject"]
            assert digest["body"].startswith("URGENT AND STILL OPEN: act now (1)\n- MRN-WAIT: ")
            await stop_episode(waiting_handle)
            await stop_episode(seen_handle)
    finally:
        engine.dispose()
        await env.shutdown()


async def _tasks(engine, episode_id: str) -> list[Any]:
    with Session(engine) as session:
        return list(session.scalars(select(TaskRow).where(TaskRow.episode_id == episode_id)))


# ---- 3. tasks of a named person -----------------------------------------------------------------


async def test_a_task_given_to_a_person_is_on_their_list_and_on_the_audit_trail(clinic):
    ref = f"mine-{uuid.uuid4().hex[:6]}"
    episode_id = await enroll(clinic, ref)
    tasks = (await clinic.client.get("/tasks", params={"patient_ref": ref})).json()
    calcium = next(t for t in tasks if t["code"] == "CALCIUM_VITAMIN_D")
    given = await clinic.client.post(
        f"/tasks/{calcium['id']}/assign", json={"owner": "Dana"}, headers=clinic.auth("coordinator")
    )
    assert given.status_code == 200 and given.json()["owner"] == "Dana"
    assert [t["id"] for t in (await clinic.client.get("/tasks", params={"owner": "Dana"})).json()] == [calcium["id"]]
    refused = await clinic.client.post(
        f"/tasks/{calcium['id']}/assign", json={"owner": "Dana"}, headers=clinic.auth("viewer")
    )
    assert refused.status_code == 403
    bad = await clinic.client.post(f"/tasks/{calcium['id']}/assign", json={"owner": ""})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "owner"
    async with browser_at(clinic) as (browser, base):
        # test-coordinator takes another task from the worklist and finds it under "My tasks".
        page = await signed_in(browser, base, clinic.tokens["coordinator"])
        await page.goto(f"{base}/?patient={ref}")
        therapy = next(t for t in tasks if t["code"] == "START_OSTEOPOROSIS_THERAPY")
        row = page.locator(f"#task-{therapy['id']}")
        assert "taken by" not in await row.inner_text()
        await row.get_by_role("button", name=f"Take #{therapy['id']}").click()
        await page.wait_for_url("**notice=assigned")
        assert "taken by test-coordinator" in await page.locator(f"#task-{therapy['id']}").inner_text()
        assert "taken by Dana" in await page.locator(f"#task-{calcium['id']}").inner_text()
        await page.get_by_role("link", name="My tasks").click()
        await page.wait_for_url("**mine=1")
        assert await page.locator("table.tasks tbody tr").count() == 1
        assert await page.locator(f"#task-{therapy['id']}").count() == 1
        await both_widths(page, "worklist-mine")
        await page.locator(f"#task-{therapy['id']}").get_by_role("button", name=f"Hand back #{therapy['id']}").click()
        await page.wait_for_url("**notice=unassigned")
        assert await page.locator("table.tasks tbody tr").count() == 0
    audit = (await clinic.client.get(f"/episodes/{episode_id}/audit")).json()
    actions = [(a["action"], a["actor"]) for a in audit if a["action"].startswith("task:")]
    assert actions == [
        ("task:assigned", "coordinator:test-coordinator"),
        ("task:assigned", "coordinator:test-coordinator"),
        ("task:unassigned", "coordinator:test-coordinator"),
    ]
    assert any("given to Dana" in (a["detail"].get("reason") or "") for a in audit)


# ---- 5. a demo that shows every flow ------------------------------------------------------------


async def test_the_demo_from_start_to_an_answered_check_in_on_its_own_port(tmp_path):
    """`carepath dev --demo` on free ports: demo patients with their stories, a check-in link on
    this server's port, terminal commands that find it, and nothing on stderr; then the README's
    quick start: the patient answers the link and the coordinator sees the answer."""
    import subprocess
    import sys

    from tests.test_dev import ROOT, Dev

    dev = Dev(tmp_path / ".carepath")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREPATH_")}
    errors = (tmp_path / "stderr.txt").open("w")
    args = ["--home", str(dev.home), "--port", str(dev.port), "--temporal-port", str(dev.temporal_port)]
    args += ["--ui-port", str(dev.ui_port), "--mllp-port", str(dev.mllp_port), "--demo"]
    dev.process = subprocess.Popen(
        [sys.executable, "-m", "carepath.cli", "dev", *args],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
    )
    try:
        while "Press Ctrl-C" not in dev.output:
            line = dev.process.stdout.readline()
            assert line or dev.process.poll() is None, dev.output
            dev.output += line
        for ref in ("DEMO-URGENT", "DEMO-OVERDUE", "DEMO-CHECKIN", "DEMO-NEW", "DEMO-LATE"):
            assert ref in dev.output
        link = re.search(r"check-in link \(open it as the patient would\): (\S+)", dev.output).group(1)
        assert link.startswith(f"{dev.base}/checkin/")  # this server's port, not 8000
        token = re.search(r"as demo-coordinator \(coordinator\) with: (\S+)", dev.output).group(1)
        # A terminal command in the same folder finds the running server by itself.
        listed = subprocess.run(
            [sys.executable, "-m", "carepath.cli", "worklist"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**env, "CAREPATH_TOKEN": token, "PYTHONPATH": str(ROOT)},
            timeout=60,
        )
        assert listed.returncode == 0 and "DEMO-URGENT" in listed.stdout, listed.stderr
        lost = subprocess.run(
            [sys.executable, "-m", "carepath.cli", "worklist"],
            capture_output=True,
            text=True,
            cwd=tmp_path.parent,
            env={**env, "CAREPATH_TOKEN": token, "CAREPATH_API_URL": "http://127.0.0.1:9", "PYTHONPATH": str(ROOT)},
            timeout=60,
        )
        assert lost.returncode == 1 and "CAREPATH_API_URL" in lost.stderr
        _need_chromium()
        from playwright.async_api import async_playwright

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            try:
                phone = await browser.new_page(viewport=PHONE)
                await phone.goto(link)
                await phone.locator("label.nrs", has_text="3").first.click()
                await phone.get_by_label("Ibuprofen, naproxen or similar").check()
                await phone.get_by_label("Yes, mostly").check()
                await phone.get_by_label("I get around on my own").check()
                await phone.locator("#q-symptoms_changed").get_by_label("No").check()
                await phone.get_by_role("button", name="Send my answers").click()
                await phone.wait_for_load_state()
                assert "Thank you" in await phone.locator("h1").inner_text()
                page = await signed_in(browser, dev.base, token)
                for ref in ("DEMO-URGENT", "DEMO-OVERDUE"):
                    assert await page.locator("a.ref", has_text=ref).count() >= 1
                assert "overdue 18 days" in await page.locator("tr", has_text="DEMO-OVERDUE").first.inner_text()
                await both_widths(page, "demo-worklist")
                await page.goto(f"{dev.base}/ui/patients?patient=DEMO-CHECKIN")
                await page.locator("a", has_text="DEMO-CHECKIN").first.click()
                events = await page.locator("table.events").inner_text()
                assert "patient:checkin:" in events
                await both_widths(page, "demo-episode")
            finally:
                await browser.close()
    finally:
        dev.process.send_signal(signal.SIGINT)
        dev.process.wait(timeout=60)
        errors.close()
    assert (tmp_path / "stderr.txt").read_text() == ""  # no SAWarning, no other warning


# ---- 7. a compact worklist with the clinical facts, every action reachable on a phone -------------


async def test_worklist_rows_and_the_episode_header_carry_the_clinical_facts_in_words(clinic):
    ref = f"facts-{uuid.uuid4().hex[:6]}"
    episode_id = await enroll(
        clinic,
        ref,
        patient={"ref": ref, "age": 81, "sex": "female"},
        fracture={"levels": ["L2", "L3"]},
        pain_nrs=7,
        analgesics=["opioid"],
        red_flags=["cord_compression"],
    )
    async with browser_at(clinic) as (browser, base):
        page = await signed_in(browser, base, clinic.tokens["physician"])
        await page.goto(f"{base}/?patient={ref}")
        row = page.locator("tr", has_text="SURGICAL_CONSULTATION")
        facts = await row.locator(".facts-line").inner_text()
        for words in ("day 0", "81 y", "female", "L2 L3", "pain 7/10", "red flag: "):
            assert words in facts, (words, facts)
        assert "Red flag: surgical consultation now" in await row.locator("td.what strong").inner_text()
        why = row.locator("details.why")  # the evidence paragraph is behind a disclosure
        assert (
            not await why.get_attribute("open") and not await why.locator(".evidence, :not(summary)").first.is_visible()
        )
        for code in await page.locator("table.tasks .code").all():  # codes never break mid-word
            assert await code.evaluate("e => getComputedStyle(e).whiteSpace") == "nowrap"
        await both_widths(page, "worklist-facts")
        await page.set_viewport_size(PHONE)
        for button in await page.locator("table.tasks button").all():
            box = await button.bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], await button.inner_text()
        await page.set_viewport_size(WIDE)
        await page.goto(f"{base}/ui/episodes/{episode_id}")
        header = await page.locator("dl.facts").inner_text()
        for words in ("81", "L2, L3", "7 of 10", "Opioid", "cord"):
            assert words.lower() in header.lower(), (words, header)
        await page.goto(f"{base}/ui/patients?patient={ref}")
        assert "81 y" in await page.locator("table.episodes").inner_text()
        await both_widths(page, "patients-facts")


# ---- 4. errors in words beside the field, nothing typed lost ------------------------------------


async def test_errors_are_in_words_beside_their_field_and_an_override_keeps_both_targets(clinic):
    ref = f"words-{uuid.uuid4().hex[:6]}"
    episode_id = await enroll(clinic, ref)
    async with browser_at(clinic) as (browser, base):
        page = await signed_in(browser, base, clinic.tokens["physician"])
        # Enroll with no level ticked: said in words beside the field, everything typed kept.
        await page.goto(f"{base}/ui/enroll")
        await page.fill("#f-patient-ref", f"{ref}-2")
        await page.fill("#f-patient-age", "77")
        await page.select_option("#f-pain_nrs", "6")
        await page.click("form.enroll button[type=submit]")
        await page.wait_for_url("**/ui/enroll#form-enroll")
        said = await page.locator("#err-fracture-levels").inner_text()
        assert said == "choose at least one", said
        summary = await page.locator("div.error").inner_text()
        assert "Levels: choose at least one" in summary and "fracture.levels" not in summary
        assert await page.input_value("#f-patient-ref") == f"{ref}-2" and await page.input_value("#f-pain_nrs") == "6"
        await both_widths(page, "enroll-refused")
        # An override naming a milestone and a task: refused in words, both choices kept.
        await page.goto(f"{base}/ui/episodes/{episode_id}")
        form = page.locator("#form-override")
        await page.locator("details.event-form", has=form).locator("summary").click()
        await form.locator("#f-override-reason").fill("seen in clinic")
        skip = form.locator("#f-override-skip_milestone")
        milestone = await skip.locator("option").nth(1).get_attribute("value")
        await skip.select_option(milestone)
        close = form.locator("#f-override-close_task")
        await close.select_option("CALCIUM_VITAMIN_D")
        await form.get_by_role("button").click()
        await page.wait_for_url("**#form-override")
        error = await page.locator("#form-override .field-error").inner_text()
        assert "skip or a task to close" in error and "skip_milestone" not in error, error
        assert await page.locator("#f-override-skip_milestone").input_value() == milestone
        assert await page.locator("#f-override-close_task").input_value() == "CALCIUM_VITAMIN_D"
        await both_widths(page, "episode-override-refused")
        # A viewer is told in words what they may not do.
        viewer = await signed_in(browser, base, clinic.tokens["viewer"])
        refused = await viewer.goto(f"{base}/ui/enroll")
        assert refused.status == 403
        text = await viewer.locator("main").inner_text()
        assert "you cannot enroll patients: that needs a coordinator or a physician" in text, text
        # The audit trail in words, the code a secondary label.
        task = next(
            t
            for t in (await clinic.client.get("/tasks", params={"patient_ref": ref})).json()
            if t["code"] == "CALCIUM_VITAMIN_D"
        )
        await clinic.client.post(f"/tasks/{task['id']}/complete", json={"reason": "advised"})
        await page.goto(f"{base}/ui/episodes/{episode_id}")
        audit = await page.locator("table.audit").inner_text()
        assert "Completed a task" in audit and "Calcium and vitamin D supplementation" in audit
        assert "@enrollment:completed" not in audit
        events = await page.locator("table.timeline").inner_text()
        assert "Start osteoporosis pharmacotherapy now" in events


# ---- 6. FHIR downloads, pages agree on dates, a repeated enrollment, the year picture ------------


async def test_fhir_downloads_dates_that_agree_a_repeated_enrollment_and_a_truthful_year_picture(clinic):
    ref = f"year-{uuid.uuid4().hex[:6]}"
    today = clinic.service.today()
    day0 = (today - timedelta(days=40)).isoformat()
    episode_id = await enroll(clinic, ref, identified_on=day0)
    for text in ("first", "second"):  # two events on one day: two marks side by side
        noted = await clinic.client.post(
            f"/episodes/{episode_id}/events",
            json={"type": "note", "occurred_on": today.isoformat(), "text": text, "author": "x"},
        )
        assert noted.status_code == 200, noted.text
    sent = await clinic.client.post(f"/episodes/{episode_id}/checkins", headers=clinic.auth("coordinator"))
    await checkin_token(clinic, episode_id)
    message = next(m for m in clinic.sink.messages if m["episode_id"] == episode_id and m["code"] == "CHECKIN")
    async with browser_at(clinic) as (browser, base):
        page = await signed_in(browser, base, clinic.tokens["coordinator"])
        await page.goto(f"{base}/ui/episodes/{episode_id}")
        # FHIR for the signed-in person, as a file.
        async with page.expect_download() as download:
            await page.get_by_role("link", name="FHIR Bundle").click()
        bundle = json.loads(Path(await (await download.value).path()).read_text())
        assert bundle["resourceType"] == "Bundle" and bundle["entry"]
        # The check-in's last day as the message says it.
        until = sent.json()["valid_until"]
        assert f"until {until}" in message["body"]
        assert until in await page.locator("table.checkins").inner_text()
        # What comes next: the episode page's first entry is the patients page's next due.
        first = (await page.locator("ul.upcoming li .date").first.inner_text()).strip()
        # The year picture: a key drawn like the marks, monthly labels, marks on one day apart.
        picture = page.locator(".picture svg.year")
        notes = await picture.locator("path.event").all()
        xs = {await n.get_attribute("d") for n in notes}
        assert len(notes) >= 2 and len(xs) == len(notes)
        months = await picture.locator("text.month-label").evaluate_all("els => els.map(e => e.textContent)")
        assert len(months) >= 12 and months[1] != months[0]
        shown = {(date.fromisoformat(day0).replace(day=1) + timedelta(days=32 * i)).strftime("%b") for i in range(1, 4)}
        assert shown <= {m.split()[0] for m in months}, months
        # Each key is drawn as its mark is: same fill and stroke as that mark in the picture.
        mismatched = await page.evaluate(
            r"""() => {
              const bad = [];
              for (const key of document.querySelectorAll('.legend svg.key')) {
                const shape = key.querySelector('rect, circle, path, line');
                const holder = shape.closest('g') || shape;
                const selector = shape.tagName + '.' + (shape.getAttribute('class') || '').split(' ').join('.');
                const group = holder === shape ? '' : 'g.' + holder.getAttribute('class').split(' ').join('.');
                const scoped = group ? group + ' ' + shape.tagName : selector;
                const mark = document.querySelector('.picture svg.year ' + scoped.replace(/\.$/, ''));
                if (!mark) continue;
                const a = getComputedStyle(shape), b = getComputedStyle(mark);
                if (a.fill !== b.fill || a.stroke !== b.stroke) bad.push(scoped);
              }
              return bad;
            }"""
        )
        assert mismatched == []
        assert await page.locator(".legend svg.key").count() >= 7
        today_line = picture.locator("line.today").first
        assert float(await today_line.get_attribute("y1")) >= 42  # below the phase names
        await both_widths(page, "episode-year")
        await page.goto(f"{base}/ui/patients?patient={ref}")
        assert first in await page.locator("table.episodes").inner_text()
        # The same enrollment sent again: not "Patient enrolled.", but the existing episode.
        await page.goto(f"{base}/ui/enroll")
        await page.fill("#f-patient-ref", ref)
        await page.fill("#f-patient-age", "79")
        await page.select_option("#f-patient-sex", "female")
        await page.fill("#f-identified_on", day0)
        await page.check("#f-fracture-levels-L3")
        await page.select_option("#f-pain_nrs", "6")
        await page.check("#f-analgesics-nsaid")
        await page.click("form.enroll button[type=submit]")
        await page.wait_for_url(f"**/ui/episodes/{episode_id}?notice=already")
        notice = await page.locator(".notice").inner_text()
        assert "already enrolled" in notice and "Patient enrolled." not in notice


# ---- 8. the API documents every body and error answer; the pathway is documented here ----------


async def test_the_api_reference_documents_event_and_enrollment_bodies_and_the_error_answers(clinic):
    spec = (await clinic.client.get("/openapi.json")).json()
    event = spec["paths"]["/episodes/{episode_id}/events"]["post"]
    body = event["requestBody"]["content"]["application/json"]["schema"]
    assert body["discriminator"]["propertyName"] == "type"
    mapping = body["discriminator"]["mapping"]
    assert {"pain_assessment", "medication_started", "imaging", "red_flag", "note", "override"} <= set(mapping)
    pain = spec["components"]["schemas"]["PainAssessment"]
    assert pain["properties"]["nrs"]["minimum"] == 0 and pain["properties"]["nrs"]["maximum"] == 10
    assert {"type", "occurred_on", "nrs"} <= set(pain["required"])
    enrollment = spec["paths"]["/episodes"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    refs = [enrollment["$ref"]] if "$ref" in enrollment else [o["$ref"] for o in enrollment["oneOf"]]  # per pathway
    models = [spec["components"]["schemas"][ref.rsplit("/", 1)[1]] for ref in refs]
    assert any({"patient", "fracture", "identified_on"} <= set(m["properties"]) for m in models)
    for code in ("401", "403", "409", "422", "503"):
        answer = event["responses"][code]
        assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorAnswer"}
    async with browser_at(clinic) as (browser, base):
        page = await browser.new_page(viewport=WIDE)
        await page.goto(f"{base}/docs")
        section = page.locator("section.op", has_text="/episodes/{episode_id}/events").filter(has_text="POST")
        await section.locator("summary", has_text="PainAssessment").click()
        text = await section.inner_text()
        assert "told apart by type" in text and "integer 0 to 10" in text and "503" in text
        await both_widths(page, "docs")
        for width in (WIDE, PHONE):  # the events operation alone, to look at
            await page.set_viewport_size(width)
            await section.screenshot(path=str(SHOTS / f"clinic-docs-events-{width['width']}.png"))
        # The evidence list, reached from a citation on the worklist and from every page's footer.
        ref = f"cite-{uuid.uuid4().hex[:6]}"
        await enroll(clinic, ref)
        signed = await signed_in(browser, base, clinic.tokens["coordinator"])
        await signed.goto(f"{base}/?patient={ref}")
        row = signed.locator("tr", has_text="CALCIUM_VITAMIN_D")
        await row.locator("details.why summary").click()
        await row.locator("a", has_text="[2]").click()
        await signed.wait_for_url("**/ui/evidence#ref-2")
        assert "Calcitonin" in await signed.locator("#ref-2 + dd").inner_text()
        assert await signed.locator("footer a[href='/ui/evidence']").count() == 1
        await both_widths(signed, "evidence")
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert "../shared" not in readme and "docs/pathway.md" in readme
    pathway = (Path(__file__).parent.parent / "docs" / "pathway.md").read_text()
    assert all(f"[{n}]" in pathway for n in range(1, 7))
