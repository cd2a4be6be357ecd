"""The worklist and episode pages: over HTTP, and in a real browser (Debian's Chromium)."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from carepath.web.pages import render
from tests.support.live import api_client, served, sqlite_url, start_dev_server

TODAY = date.today().isoformat()
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def enrollment(ref: str, **overrides) -> dict:
    return {
        "identified_on": TODAY,
        "patient": {"ref": ref, "age": 79, "sex": "female"},
        "fracture": {"levels": ["L3"]},
        "pain_nrs": 6,
        "analgesics": ["nsaid"],
        **overrides,
    }


@pytest.fixture(scope="module")
async def live(tmp_path_factory):
    env = await start_dev_server()
    async with api_client(env, sqlite_url(tmp_path_factory.mktemp("web"))) as api:
        yield api
    await env.shutdown()


BASE = "http://carepath.test"


@asynccontextmanager
async def browser_like(live) -> AsyncIterator[httpx.AsyncClient]:
    """A client with no bearer token and its own cookie jar, as a browser signs in."""
    transport = httpx.ASGITransport(app=live.app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield client


def csrf_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page's form carries no CSRF token"
    return found.group(1)


async def browser_page(browser: Any, base: str, token: str, width: int = 1280) -> Any:
    """A new browser page signed in with ``token`` through the sign-in form, on the worklist."""
    page = await browser.new_page(viewport={"width": width, "height": 900})
    await page.goto(f"{base}/login")
    await page.fill("#token", token)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/")
    return page


async def sign_in(client: httpx.AsyncClient, token: str) -> httpx.Response:
    """Sign in through the form, as the page does (its CSRF token, this origin)."""
    form = csrf_token((await client.get("/login")).text)
    return await client.post(
        "/login",
        content=f"token={token}&csrf_token={form}",
        headers={"content-type": "application/x-www-form-urlencoded", "origin": BASE},
    )


async def _enroll(live, ref: str, **overrides) -> str:
    response = await live.client.post("/episodes", json=enrollment(ref, **overrides))
    assert response.status_code == 201, response.text
    return response.json()["episode_id"]


async def test_worklist_groups_tasks_by_urgency_with_their_facts(live):
    await _enroll(live, f"red-{uuid.uuid4().hex[:6]}", red_flags=["cord_compression"])
    page = await live.client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    urgent, high, routine = html.index(">Urgent"), html.index(">High"), html.index(">Routine")
    assert urgent < high < routine
    assert "SURGICAL_CONSULTATION" in html[urgent:high]
    assert "START_OSTEOPOROSIS_THERAPY" in html[high:routine] and "[1][3][4][5]" in html
    assert "Red flag: surgical consultation now" in html[urgent:high]
    assert "Start osteoporosis pharmacotherapy now" in html[high:routine]
    assert "Decision support: carepath suggests; clinicians decide." in html
    assert "script-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["referrer-policy"] == "same-origin"
    coordinators = (await live.client.get("/", params={"assignee": "coordinator"})).text
    assert "CALCIUM_VITAMIN_D" in coordinators and "START_OSTEOPOROSIS_THERAPY" not in coordinators


async def test_worklist_shows_due_dates_and_how_overdue(live):
    episode_id = await _enroll(live, f"late-{uuid.uuid4().hex[:6]}")
    tasks = [t for t in (await live.client.get("/tasks")).json() if t["episode_id"] == episode_id]
    calcitonin = next(t for t in tasks if t["code"] == "CALCITONIN_ACUTE_PAIN")
    real_clock = live.service.clock
    live.service.clock = lambda: real_clock() + timedelta(days=10)  # read the worklist ten days on
    try:
        html = (await live.client.get("/")).text
    finally:
        live.service.clock = real_clock
    rows = [r for r in html.split("<tr") if f"/ui/episodes/{episode_id}" in r and "CALCITONIN_ACUTE_PAIN" in r]
    assert len(rows) == 1
    row = rows[0]
    assert calcitonin["due_on"] in row and "Consider calcitonin for acute fracture pain" in row
    overdue = (date.today() + timedelta(days=10) - date.fromisoformat(calcitonin["due_on"])).days
    assert f"overdue {overdue} days" in row


def test_empty_worklist_says_so():
    html = render("worklist.html", who=None, assignee=None, groups=[]).body.decode()
    assert "No open tasks" in html


async def test_episode_page_shows_the_timeline(live):
    ref = f"tl-{uuid.uuid4().hex[:6]}"
    episode_id = await _enroll(live, ref)
    page = await live.client.get(f"/ui/episodes/{episode_id}")
    assert page.status_code == 200
    assert f"Patient {ref}" in page.text and "AVOID_BED_REST" in page.text and "ovcf-lumbar.v2" in page.text
    assert "Prolonged bed rest costs about 1% of bone per week" in page.text  # an item's detail text
    assert "<th>Day</th><th>Date</th><th>Kind</th><th>Code</th>" in page.text and f"<dd>{TODAY}</dd>" in page.text
    missing = await live.client.get("/ui/episodes/nope")
    assert missing.status_code == 404 and "No such episode" in missing.text
    assert (
        missing.headers["content-type"].startswith("text/html")
        and "frame-ancestors 'none'" in (missing.headers["content-security-policy"])
    )


async def test_sign_in_sets_a_strict_http_only_cookie(live):
    async with browser_like(live) as client:
        assert (await client.get("/")).headers["location"] == "/login"
        bad = await sign_in(client, "nope")
        assert bad.status_code == 401 and "unknown or revoked" in bad.text
        good = await sign_in(client, live.tokens["viewer"])
        cookie = good.headers["set-cookie"]
        assert good.status_code == 303 and "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert (await client.get("/")).status_code == 200  # the pages take the cookie
        # The JSON API does not: a browser would send the cookie with a forged request too.
        refused = await client.get("/tasks")
        assert refused.status_code == 401 and refused.json()["detail"][0]["field"] == "Authorization"


async def test_page_forms_need_their_csrf_token_and_this_origin(live):
    async with browser_like(live) as client:
        assert (await sign_in(client, live.tokens["viewer"])).status_code == 303
        token = csrf_token((await client.get("/")).text)
        form = {"content-type": "application/x-www-form-urlencoded"}
        refusals = [
            await client.post("/logout", content="", headers=form),  # no token
            await client.post("/logout", content="csrf_token=forged", headers=form),
            await client.post("/logout", content=f"csrf_token={token}", headers=form | {"origin": "http://evil.test"}),
            await client.post("/logout", content=f"csrf_token={token}", headers=form | {"sec-fetch-site": "same-site"}),
            await client.post("/login", content=f"token={live.tokens['admin']}", headers=form),
        ]
        assert [r.status_code for r in refusals] == [403] * 5
        page = await client.get("/")
        assert page.status_code == 200 and "test-viewer" in page.text  # still signed in, as the viewer
        token = csrf_token(page.text)  # each page sets a fresh token
        assert (await client.get("/logout")).status_code == 405  # signing out is a POST
        out = await client.post("/logout", content=f"csrf_token={token}", headers=form | {"origin": BASE})
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert (await client.get("/")).headers["location"] == "/login"


def test_output_is_escaped():
    html = render("message.html", heading="<script>alert(1)</script>", message="<b>x</b>", who=None).body.decode()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html and "&lt;b&gt;" in html


BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _need_chromium() -> None:
    if not os.path.exists(CHROMIUM):
        message = "Chromium is missing: apt-get update && apt-get install -y chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def attacker(forms: dict[str, tuple[str, dict[str, str]]]) -> FastAPI:
    """Another site on another loopback port: each page auto-submits one form to carepath."""
    app = FastAPI()
    for name, (action, fields) in forms.items():
        inputs = "".join(f'<input type="hidden" name="{k}" value="{v}">' for k, v in fields.items())
        html = f'<form method="post" action="{action}">{inputs}</form><script>document.forms[0].submit()</script>'
        app.add_api_route(f"/{name}", lambda html=html: HTMLResponse(html), methods=["GET"])
    return app


async def test_forms_from_another_origin_change_nothing_in_a_real_browser(live):
    """Cross-site request forgery: a page on another port of the same host (same site, so even a
    SameSite=Strict cookie goes along) auto-submits forms to the API and to the pages' actions."""
    _need_chromium()
    from playwright.async_api import Page, async_playwright

    episode_id = await _enroll(live, f"csrf-{uuid.uuid4().hex[:6]}")
    tasks = (await live.client.get("/tasks", params={"assignee": "coordinator"})).json()
    task = next(t for t in tasks if t["episode_id"] == episode_id)
    async with served(live.app) as base:
        evil = attacker(
            {
                "complete": (f"{base}/tasks/{task['id']}/complete", {}),
                "revoke": (f"{base}/tokens/1/revoke", {}),
                "logout": (f"{base}/logout", {}),
                "login": (f"{base}/login", {"token": live.tokens["viewer"]}),
            }
        )
        async with served(evil) as other, async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            try:

                async def signed_in(role: str) -> Page:
                    page = await (await browser.new_context()).new_page()
                    await page.goto(f"{base}/login")
                    await page.fill("#token", live.tokens[role])
                    await page.click("button[type=submit]")
                    await page.wait_for_url(f"{base}/")
                    return page

                async def forged(page: Page, name: str) -> None:
                    async with page.expect_response(lambda r: r.url.startswith(base)) as answer:
                        await page.goto(f"{other}/{name}")
                    response = await answer.value
                    assert response.status in (401, 403), (name, response.status, await response.text())

                admin = await signed_in("admin")  # an admin's cookie: pages refuse it, the API must too
                await forged(admin, "revoke")
                page = await signed_in("coordinator")
                for name in ("complete", "logout", "login"):
                    await forged(page, name)
                await page.goto(f"{base}/")
                assert page.url == f"{base}/"  # still signed in: the forged sign-out did nothing
                assert "test-coordinator" in await page.locator("header .who").inner_text()  # not the viewer
                # The page's own sign-out works (a POST carrying its CSRF token).
                await page.click("header button[type=submit]")
                await page.wait_for_url(f"{base}/login")
                await page.goto(f"{base}/")
                assert page.url.endswith("/login")
            finally:
                await browser.close()
    after = (await live.client.get(f"/episodes/{episode_id}")).json()
    assert task["id"] in [t["id"] for t in after["open_tasks"]]  # the forged completion did nothing
    tokens = (await live.client.get("/tokens", headers=live.auth("admin"))).json()
    assert all(t["revoked_at"] is None for t in tokens)


async def test_a_coordinator_works_the_worklist_in_a_real_browser(live, tmp_path):
    _need_chromium()
    from playwright.async_api import async_playwright

    ref = f"brw-{uuid.uuid4().hex[:6]}"
    await _enroll(live, ref, red_flags=["instability"])
    async with served(live.app) as base, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(f"{base}/")
            assert page.url.endswith("/login")
            await page.fill("#token", live.tokens["coordinator"])
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{base}/")
            urgent = page.locator("section.urgent")
            row = urgent.locator("tr", has_text=ref)
            assert "SURGICAL_CONSULTATION" in await row.inner_text()
            await page.screenshot(path=str(tmp_path / "worklist.png"), full_page=True)
            await row.get_by_role("link", name=ref).click()
            await page.wait_for_url(f"{base}/ui/episodes/*")
            assert ref in await page.locator("h1").inner_text()
            assert await page.locator("table.timeline tr", has_text="AVOID_BED_REST").count() == 1
            await page.screenshot(path=str(tmp_path / "episode.png"), full_page=True)
        finally:
            await browser.close()
    assert (tmp_path / "worklist.png").stat().st_size > 10_000
