"""A workspace a clinic can trust (issue 20), in a real browser (Debian's Chromium) at 1366 and
390 px: answers never guessed, urgent work that goes overdue, tasks of a named person, errors in
words with nothing typed lost, a demo that shows every flow, clinical facts in words."""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import EventRow
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
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], name
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
        await page.screenshot(path=str(SHOTS / "clinic-checkin-390.png"), full_page=True)
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
        await page.screenshot(path=str(SHOTS / "clinic-checkin-refused-390.png"), full_page=True)
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
        assert await form.locator("input:checked").count() == 0  # "adequate" is not ticked for you
        assert await form.locator("#pa-mobility").input_value() == ""
        await form.locator("#pa-an-nsaid").check()
        await form.locator("#pa-an-opioid").check()
        await form.locator("#pain_assessment-oral_analgesia_adequate-no").check()
        await form.locator("#pa-oe-nausea").check()
        await form.get_by_role("button").click()  # no NRS
        await page.wait_for_load_state()
        assert page.url.startswith(f"{base}/ui/episodes/{episode_id}")  # not …/events
        assert await page.locator("#form-pain_assessment .field-error").count() >= 1
        for box in ("#pa-an-nsaid", "#pa-an-opioid", "#pain_assessment-oral_analgesia_adequate-no", "#pa-oe-nausea"):
            assert await page.locator(box).is_checked(), box
        await both_widths(page, "episode-refused")
        again = await page.reload()
        assert again.status == 200 and "This form expired" not in await page.content()
        await page.select_option("#pa-nrs", "5")
        await page.click("#form-pain_assessment button[type=submit]")
        await page.wait_for_url("**notice=recorded")
    [recorded] = pain_events(clinic, episode_id)
    assert recorded["nrs"] == 5 and recorded["oral_analgesia_adequate"] is None and recorded["mobility"] is None
