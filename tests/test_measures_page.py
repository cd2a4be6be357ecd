"""The measures page: bars in their band colours with the numbers, the trend by month of
enrollment as SVG (no script), the drill-down for clinicians only, the CSV, the forecast; in a
real browser at 1366 and 390 px (screenshots in tests/screenshots/)."""

from __future__ import annotations

import random
import re
from datetime import date, timedelta

import httpx
import pytest
from sqlalchemy.orm import Session

from carepath.app import create_app
from carepath.measures import as_csv, report, weekly_load
from carepath.pathways.ovcf_lumbar import OVCF_LUMBAR
from carepath.service import CarepathService
from carepath.settings import Settings
from db.engine import make_engine
from db.measures import Period, not_met
from db.migrate import upgrade
from db.tokens import create_token
from tests.support.cohort import record, typical
from tests.support.live import served
from tests.test_web import BROWSER_ARGS, CHROMIUM, _need_chromium
from tests.test_workspace import SHOTS

TODAY = date.today()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('measures-page') / 'carepath.db'}"
    upgrade(url)
    engine = make_engine(url)
    rng = random.Random(21)
    with Session(engine) as session, session.begin():
        for n in range(60):  # eight months of enrollments, observed to today
            story = typical(f"MRN-{n:04d}", TODAY - timedelta(days=rng.randint(0, 240)), rng)
            record(session, f"{n:032x}", story, TODAY)
    app = create_app(settings=Settings(), service=CarepathService(None, engine, "unused"))  # type: ignore[arg-type]
    tokens = {role: create_token(engine, role, role, "test")[1] for role in ("viewer", "coordinator", "admin")}
    yield app, engine, tokens
    engine.dispose()


async def page(site, role: str, path: str) -> httpx.Response:
    app, _, tokens = site
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://carepath.test") as client:
        client.headers["Authorization"] = f"Bearer {tokens[role]}"  # the pages take a bearer token too
        return await client.get(path)


async def test_bars_trend_and_numbers_for_a_viewer_without_patients(site) -> None:
    _, engine, _ = site
    found = report(engine, OVCF_LUMBAR, Period(as_of=TODAY))
    answer = await page(site, "viewer", "/ui/measures")
    assert answer.status_code == 200
    html = answer.text
    assert "<script" not in html and "script-src 'none'" in answer.headers["content-security-policy"]
    for measure_id, values in found.totals().items():
        section = html.split(f'id="{measure_id}"', 1)[1].split("</section>", 1)[0]
        assert values["title"] in section
        if values["scoring"] == "proportion":
            assert f"{values['numerator']} of {values['denominator']} {values['unit']}" in section
            assert f'class="fill {values["band"]}"' in section and f"band-{values['band']}" in section
        assert f"{values['not_eligible']} not yet eligible" in section
        month_values = [m["measures"][measure_id] for m in found.months()]
        figures = [v.get("rate", v.get("median")) for v in month_values]
        if any(f is not None for f in figures):  # one column per month, a bar where there is a figure
            trend = section.split('<figure class="trend">', 1)[1]
            assert trend.count("<g>") == len(figures) > 1
            assert trend.count('<rect class="fill') == sum(f is not None for f in figures)
    assert "who did not meet it" not in html
    # Asking for the drill-down by hand shows a viewer no patient.
    drilled = await page(site, "viewer", "/ui/measures?measure=therapy_16w")
    assert drilled.status_code == 200 and "MRN-" not in drilled.text


async def test_clinicians_see_who_did_not_meet_a_measure(site) -> None:
    _, engine, _ = site
    html = (await page(site, "coordinator", "/ui/measures")).text
    assert html.count("who did not meet it") == 4  # the four banded measures
    missed = not_met(engine, OVCF_LUMBAR.measures(), Period(as_of=TODAY), "reassessment_on_time")
    drilled = (await page(site, "coordinator", "/ui/measures?measure=reassessment_on_time")).text
    table = drilled.split('id="missed"', 1)[1]
    assert missed and set(re.findall(r"MRN-\d{4}", table)) == {row["patient_ref"] for row in missed}


async def test_csv_download_and_forecast_section(site) -> None:
    _, engine, _ = site
    csv = await page(site, "viewer", "/ui/measures.csv")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.text == as_csv(report(engine, OVCF_LUMBAR, Period(as_of=TODAY)))
    html = (await page(site, "viewer", "/ui/measures")).text
    rows = weekly_load(engine, TODAY, 8)
    assert rows, "the cohort has running episodes with work coming"
    weeks = sorted({r["week_start"] for r in rows})
    forecast = html.split('id="forecast-title"', 1)[1]
    for assignee, code in {(r["assignee"], r["code"]) for r in rows}:
        line = re.search(rf'<span class="task-id">{code}</span></td>((?:<td class="num">\d*</td>)+)', forecast)
        assert line, code
        cells = [int(n or 0) for n in re.findall(r'<td class="num">(\d*)</td>', line.group(1))]
        by_week = {r["week_start"]: r["count"] for r in rows if (r["assignee"], r["code"]) == (assignee, code)}
        assert cells == [by_week.get(w, 0) for w in weeks], code


async def test_admin_and_strangers_get_no_measures(site) -> None:
    assert (await page(site, "admin", "/ui/measures")).status_code == 403
    app, _, _ = site
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://carepath.test") as client:
        answer = await client.get("/ui/measures")
    assert answer.status_code == 303 and answer.headers["location"] == "/login"


async def test_the_measures_page_in_a_real_browser(site) -> None:
    _need_chromium()
    from playwright.async_api import async_playwright

    app, _, tokens = site
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with served(app) as base, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            for width, who in ((1366, "coordinator"), (390, "viewer")):
                bearer = {"Authorization": f"Bearer {tokens[who]}"}
                view = await browser.new_page(viewport={"width": width, "height": 900}, extra_http_headers=bearer)
                await view.goto(f"{base}/ui/measures" + ("?measure=therapy_16w" if who == "coordinator" else ""))
                assert await view.locator("section.measure").count() == len(OVCF_LUMBAR.measures().measures)
                assert await view.evaluate("document.documentElement.scrollWidth") <= width
                await view.screenshot(path=str(SHOTS / f"measures-{width}.png"), full_page=True)
        finally:
            await browser.close()
