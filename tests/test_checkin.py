"""Patient check-ins end to end on the time-skipping server: the production worker, store and app.

The link arrives through the patient channel when week4 raises PAIN_REASSESSMENT; answering it
on the page records a pain assessment through the workflow and closes the reassessment; reuse,
expiry, a forged token and a burst change nothing; the reminder is a durable timer.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from carepath.app import create_app
from carepath.service import CarepathService
from db import checkins as checkin
from db.engine import make_engine
from db.models import AuditRow, CheckInRow, EventRow, NotificationRow, TaskRow
from db.tokens import create_token
from tests.support.live import served
from tests.support.temporal import (
    TASK_QUEUE,
    Clock,
    MemorySink,
    running_worker,
    start_episode,
    start_time_skipping,
    stop_episode,
)

SITE = "http://carepath.test"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LINK = re.compile(r"/checkin/([A-Za-z0-9_-]{20,})")


@pytest.fixture
async def env():
    # One time-skipping server per test: its clock is global, and a story's reminder timers must
    # not run on the next test's clock (run together, the PostgreSQL story missed its reminder).
    environment = await start_time_skipping()
    yield environment
    await environment.shutdown()


@dataclass
class World:
    env: Any
    engine: Any
    sink: MemorySink
    service: CarepathService
    app: FastAPI
    now: list[datetime] = field(default_factory=list)

    async def sync_clock(self) -> None:
        """The service's 'today' is the test server's (the page dates the answer with it)."""
        self.now[:] = [await self.env.get_current_time()]

    def messages(self, episode_id: str, code: str) -> list[dict[str, Any]]:
        return [m for m in self.sink.messages if m["episode_id"] == episode_id and m["code"] == code]

    async def token(self, episode_id: str, code: str = checkin.CHECKIN_CODE) -> str:
        for _ in range(200):  # delivery runs beside the episode
            if found := self.messages(episode_id, code):
                return LINK.search(found[0]["body"]).group(1)
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {code} message for {episode_id}")


@pytest.fixture
async def world(env, database_url):
    # database_url: on SQLite and on a real PostgreSQL server (migrated, 0009 included).
    engine = make_engine(database_url)
    sink = MemorySink()
    now: list[datetime] = [datetime.now(UTC)]
    service = CarepathService(env.client, engine, TASK_QUEUE, clock=lambda: now[0])
    app = create_app(service=service)
    async with running_worker(env, engine, sink):
        yield World(env, engine, sink, service, app, now)
    engine.dispose()


def count(engine, model, *where) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def reassessment(engine, episode_id: str) -> str:
    with Session(engine) as session:
        return session.scalar(
            select(TaskRow.status).where(
                TaskRow.episode_id == episode_id, TaskRow.code == "PAIN_REASSESSMENT", TaskRow.occasion == "week4"
            )
        )


def snapshot(engine, episode_id: str) -> tuple[int, int, str, list[Any]]:
    with Session(engine) as session:
        rows = session.execute(
            select(CheckInRow.answered_at, CheckInRow.event_id).where(CheckInRow.episode_id == episode_id)
        )
        return (
            count(engine, EventRow, EventRow.episode_id == episode_id),
            count(engine, AuditRow, AuditRow.episode_id == episode_id),
            reassessment(engine, episode_id),
            [tuple(r) for r in rows],
        )


ANSWER = {"nrs": "3", "analgesics": "nsaid", "adequate": "yes", "mobility": "ambulatory", "symptoms_changed": "no"}


async def post_answer(
    client: httpx.AsyncClient, token: str, answer: dict[str, str], csrf: str | None = None
) -> httpx.Response:
    if csrf is None:
        page = await client.get(f"/checkin/{token}")
        assert page.status_code == 200, page.text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    return await client.post(f"/checkin/{token}", data={**answer, "csrf_token": csrf}, headers={"origin": SITE})


async def test_answered_link_closes_the_reassessment_and_misuse_changes_nothing(world):
    env, engine = world.env, world.engine
    clock = await Clock.for_enrollment(env)
    answered_id, answered = await start_episode(env, clock, ref="ci-answers")
    silent_id, silent = await start_episode(env, clock, ref="ci-silent")
    await clock.to(28)  # week4: PAIN_REASSESSMENT, and with it a check-in link to each patient
    await world.sync_clock()
    token, silent_token = await world.token(answered_id), await world.token(silent_id)
    # The patient task raised at enrollment reached the patient too, in plain words.
    [bed_rest] = world.messages(answered_id, "AVOID_BED_REST")
    assert bed_rest["recipient_role"] == "patient" and bed_rest["subject"] == "Keep moving, even if it hurts a little"
    message = world.messages(answered_id, checkin.CHECKIN_CODE)[0]
    assert message["recipient_role"] == "patient" and "link" not in message  # no clinician page in it
    assert "ci-answers" not in message["body"] and answered_id not in message["body"]  # nothing about whom
    with Session(engine) as session:
        row = session.scalar(select(CheckInRow).where(CheckInRow.episode_id == answered_id))
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest() and row.occasion == "week4"
        assert row.expires_on.isoformat() == clock.on(35)  # the reassessment's overdue day
        stored = " ".join(n.body for n in session.scalars(select(NotificationRow)))
    assert token not in stored and silent_token not in stored  # only hashes are kept once delivered

    transport = httpx.ASGITransport(app=world.app)
    async with httpx.AsyncClient(transport=transport, base_url=SITE) as patient:
        # A bad answer: 422 naming the field, nothing recorded, the link still usable.
        before = snapshot(engine, answered_id)
        bad = await post_answer(patient, token, {**ANSWER, "mobility": "flying"})
        assert bad.status_code == 422 and "mobility" in bad.text
        assert snapshot(engine, answered_id) == before

        # The answer: recorded through the workflow, closing PAIN_REASSESSMENT@week4.
        done = await post_answer(patient, token, ANSWER)
        assert done.status_code == 200 and "Thank you" in done.text, done.text
        assert reassessment(engine, answered_id) == "completed"
        with Session(engine) as session:
            event = session.scalar(
                select(EventRow).where(EventRow.episode_id == answered_id, EventRow.type == "pain_assessment")
            )
            audit = session.scalars(
                select(AuditRow).where(AuditRow.episode_id == answered_id).order_by(AuditRow.id)
            ).all()
            row = session.scalar(select(CheckInRow).where(CheckInRow.episode_id == answered_id))
        assert event.payload["nrs"] == 3 and event.payload["analgesics"] == ["nsaid"]
        assert event.recorded_by == f"patient:checkin:{row.id}"
        assert audit[-1].actor == f"patient:checkin:{row.id}" and audit[-1].action == "event:pain_assessment"
        assert "PAIN_REASSESSMENT@week4:completed" in audit[-1].detail["closed"]
        assert row.opened_at is not None and row.event_id == event.id
        assert [c["answered_at"] is not None for c in checkin.summary(engine, answered_id)] == [True]

        # Reuse, and a forged token: a plain page, nothing changed.
        world.app.state.checkin_limiter = None
        after = snapshot(engine, answered_id)
        page = await patient.get(f"/checkin/{silent_token}")  # a real form's CSRF token for the posts below
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        again = await patient.post(f"/checkin/{token}", data={**ANSWER, "csrf_token": csrf}, headers={"origin": SITE})
        assert again.status_code == 404 and "Nothing was changed" in again.text
        assert (await patient.get(f"/checkin/{token}")).status_code == 404
        forged = "A" * 43
        assert (await patient.get(f"/checkin/{forged}")).status_code == 404
        refused = await patient.post(
            f"/checkin/{forged}", data={**ANSWER, "csrf_token": csrf}, headers={"origin": SITE}
        )
        assert refused.status_code == 404 and "cannot be used" in refused.text
        assert snapshot(engine, answered_id) == after

        # A form posted from another site (no CSRF token of this page) is refused.
        world.app.state.checkin_limiter = None
        before_silent = snapshot(engine, silent_id)
        cross = await patient.post(f"/checkin/{silent_token}", data=ANSWER, headers={"origin": "http://evil.test"})
        assert cross.status_code == 403 and snapshot(engine, silent_id) == before_silent

        # An over-limit burst on a live link: the sixth try in a minute is 429 and records nothing.
        world.app.state.checkin_limiter = None
        for _ in range(4):
            assert (await patient.get(f"/checkin/{silent_token}")).status_code == 200
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', (await patient.get(f"/checkin/{silent_token}")).text)
        burst = await post_answer(patient, silent_token, ANSWER, csrf.group(1))
        assert burst.status_code == 429 and snapshot(engine, silent_id) == before_silent
        world.app.state.checkin_limiter = None

        # The reminder: a durable timer of 2 days (pathway data), only for the unanswered link.
        await clock.to(29)
        assert world.messages(silent_id, checkin.REMINDER_CODE) == []
        await clock.to(31)
        reminder_token = await world.token(silent_id, checkin.REMINDER_CODE)
        assert len(world.messages(silent_id, checkin.REMINDER_CODE)) == 1
        assert world.messages(answered_id, checkin.REMINDER_CODE) == []  # answered: no reminder
        with Session(engine) as session:
            row = session.scalar(select(CheckInRow).where(CheckInRow.episode_id == silent_id))
        assert row.reminder_token_hash == hashlib.sha256(reminder_token.encode()).hexdigest()
        await world.sync_clock()
        assert (await patient.get(f"/checkin/{reminder_token}")).status_code == 200  # the same check-in

        # Expiry: on the overdue day the links are dead; the coordinator's escalation is unchanged.
        await clock.to(35)
        await world.sync_clock()
        world.app.state.checkin_limiter = None
        before_silent = snapshot(engine, silent_id)
        for dead in (silent_token, reminder_token):
            assert (await patient.get(f"/checkin/{dead}")).status_code == 404
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        late = await patient.post(
            f"/checkin/{silent_token}", data={**ANSWER, "csrf_token": csrf}, headers={"origin": SITE}
        )
        assert late.status_code in (403, 404)
        assert snapshot(engine, silent_id) == before_silent
        overdue = TaskRow.code == "PAIN_REASSESSMENT_OVERDUE"
        assert count(engine, TaskRow, TaskRow.episode_id == silent_id, overdue) == 1
        assert count(engine, TaskRow, TaskRow.episode_id == answered_id, overdue) == 0
    await stop_episode(answered)
    await stop_episode(silent)


def _need_chromium() -> None:
    if not shutil.which("chromium") and not shutil.which("/usr/bin/chromium"):
        pytest.skip("Chromium is missing: apt-get install -y chromium")


BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"]


async def test_a_patient_answers_the_check_in_in_a_real_browser(world, tmp_path):
    _need_chromium()
    from playwright.async_api import async_playwright

    env, engine = world.env, world.engine
    clock = await Clock.for_enrollment(env)
    ref = f"ci-{uuid.uuid4().hex[:6]}"
    episode_id, handle = await start_episode(env, clock, ref=ref)
    await clock.to(28)
    await world.sync_clock()
    token = await world.token(episode_id)
    coordinator = create_token(engine, "carol", "coordinator", "test")[1]
    async with served(world.app) as base, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            phone = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
            page = await phone.new_page()
            await page.goto(f"{base}/checkin/{token}")
            assert "How is your back pain?" in await page.locator("h1").inner_text()
            await page.locator("label.nrs", has_text="4").first.click()
            await page.get_by_label("Ibuprofen, naproxen or similar").check()
            await page.get_by_label("I can move, but only a little or with help").check()
            await page.screenshot(path=str(tmp_path / "checkin.png"), full_page=True)
            await page.get_by_role("button", name="Send my answers").click()
            await page.wait_for_load_state()
            assert "Thank you" in await page.locator("h1").inner_text()
            assert reassessment(engine, episode_id) == "completed"
            # The same link again: a plain page, nothing changed.
            await page.goto(f"{base}/checkin/{token}")
            assert "cannot be used" in await page.locator("h1").inner_text()

            # The coordinator sees it on the episode page: sent, opened, answered.
            clinic = await browser.new_page()
            await clinic.goto(f"{base}/login")
            await clinic.fill("#token", coordinator)
            await clinic.click("button[type=submit]")
            await clinic.wait_for_url(f"{base}/")
            await clinic.goto(f"{base}/ui/episodes/{episode_id}")
            row = clinic.locator("table.checkins tbody tr")
            assert await row.count() == 1
            cells = await row.locator("td").all_inner_texts()
            assert cells[0] == "week4" and all(c != "—" for c in (cells[1], cells[2], cells[4]))
            assert cells[3] == "—"  # answered before any reminder
        finally:
            await browser.close()
    with Session(engine) as session:
        event = session.scalar(
            select(EventRow).where(EventRow.episode_id == episode_id, EventRow.type == "pain_assessment")
        )
    assert (
        event.payload["nrs"] == 4
        and event.payload["mobility"] == "limited"
        and event.recorded_by.startswith("patient:checkin:")
    )
    await stop_episode(handle)
