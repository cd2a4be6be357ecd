"""Temporal stops mid-run: every write answers 503 + Retry-After within the bound, nothing is half made,
and the same request after Temporal is back records once.

The server runs in a process of its own with its state in a file (tests/support/temporal_process.py):
it is killed with episodes running and started again on the same port.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session
from temporalio.service import RPCError

from carepath.app import create_app
from carepath.service import CarepathService
from db.engine import make_engine
from db.migrate import upgrade
from db.models import EpisodeRow, EventRow
from db.tokens import create_token
from tests.support.temporal import TASK_QUEUE, MemorySink
from tests.support.temporal_process import TemporalProcess
from worker import build_worker

WAIT = 3.0  # the service's bound: every answer must come within it (plus the test's own slack)
BASE = "http://carepath.test"


def _enrollment(ref: str) -> dict:
    today = datetime.now(UTC).date().isoformat()
    return {
        "identified_on": today,
        "patient": {"ref": ref, "age": 74, "sex": "female"},
        "fracture": {"levels": ["L2"]},
        "pain_nrs": 6,
        "analgesics": ["nsaid"],
    }


def _note(text: str) -> dict:
    today = datetime.now(UTC).date().isoformat()
    return {"type": "note", "occurred_on": today, "text": text, "author": "kim"}


async def _timed(call) -> tuple[httpx.Response, float]:
    began = time.monotonic()
    answer = await call
    return answer, time.monotonic() - began


def _assert_unavailable(answer: httpx.Response, waited: float, page: bool = False) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"].isdigit(), answer.headers
    assert waited < WAIT + 1.5, waited
    if page:
        assert answer.headers["content-type"].startswith("text/html"), answer.headers
        assert "Temporal is unreachable" in answer.text and "try again" in answer.text
    else:
        assert "Temporal is unreachable" in answer.json()["detail"][0]["message"], answer.text


async def test_writes_answer_503_while_temporal_is_down_and_record_once_after(tmp_path: Path, caplog):
    caplog.set_level(logging.WARNING)
    temporal = TemporalProcess(tmp_path)
    await temporal.start()
    url = f"sqlite:///{tmp_path / 'carepath.db'}"
    upgrade(url)
    engine = make_engine(url)
    client = await temporal.connect()
    service = CarepathService(client, engine, TASK_QUEUE, update_wait=WAIT)
    _, token = create_token(engine, "outage", "physician", "test")
    _, admin = create_token(engine, "outage-admin", "admin", "test")
    app = create_app(service=service)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    bearer = {"Authorization": f"Bearer {token}"}
    try:
        with ThreadPoolExecutor(max_workers=4) as threads:
            worker = build_worker(client, engine, TASK_QUEUE, threads, MemorySink(), 100, 4)
            async with (
                worker,
                httpx.AsyncClient(transport=transport, base_url=BASE, headers=bearer) as api,
                httpx.AsyncClient(transport=transport, base_url=BASE) as browser,
            ):
                enrolled = await api.post("/episodes", json=_enrollment(f"up-{uuid.uuid4().hex[:6]}"))
                assert enrolled.status_code == 201, enrolled.text
                episode_id = enrolled.json()["episode_id"]
                task_id = (await api.get("/tasks", params={"episode_id": episode_id})).json()[0]["id"]
                form = await _signed_in_form(browser, token)

                temporal.kill()
                await _every_write_refused(api, browser, engine, form, episode_id, task_id, admin)
                # An outage is expected: logged as one-line warnings, never an RPCError's traceback.
                tracebacks = [r for r in caplog.records if r.exc_info and issubclass(r.exc_info[0], RPCError)]
                assert tracebacks == [] and not [r for r in caplog.records if "RPCError" in r.getMessage()]

                await temporal.start()
                await _recorded_once_after(api, engine, episode_id)
    finally:
        temporal.kill()
        engine.dispose()


async def _signed_in_form(browser: httpx.AsyncClient, token: str) -> dict:
    login = (await browser.get("/login")).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
    signed = await browser.post(
        "/login",
        content=f"token={token}&csrf_token={csrf}",
        headers={"content-type": "application/x-www-form-urlencoded", "origin": BASE},
    )
    assert signed.status_code == 303, signed.text
    page = (await browser.get("/")).text
    return {"csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)}


async def _every_write_refused(api, browser, engine, form, episode_id: str, task_id: int, admin: str) -> None:
    patient = "down-1"
    _assert_unavailable(*await _timed(api.post("/episodes", json=_enrollment(patient))))
    with Session(engine) as session:  # nothing half made
        held = session.scalars(select(EpisodeRow.status).where(EpisodeRow.patient_ref == patient)).all()
    assert set(held) <= {"abandoned"}, held
    key = {"Idempotency-Key": "down-note"}
    note = await _timed(api.post(f"/episodes/{episode_id}/events", json=_note("while down"), headers=key))
    _assert_unavailable(*note)
    assert "same Idempotency-Key" in note[0].json()["detail"][0]["message"]
    _assert_unavailable(*await _timed(api.post(f"/tasks/{task_id}/complete", json={"reason": "done"})))
    withdraw = {"reason": "declined"}
    _assert_unavailable(*await _timed(api.post(f"/episodes/{episode_id}/withdraw", json=withdraw)))
    migrate = api.post(
        f"/episodes/{episode_id}/migrate",
        json={"version": 2, "reason": "newer"},
        headers={"Authorization": f"Bearer {admin}"},
    )
    _assert_unavailable(*await _timed(migrate))
    page_form = browser.post(
        f"/ui/tasks/{task_id}/complete",
        content=f"csrf_token={form['csrf_token']}&reason=done",
        headers={"content-type": "application/x-www-form-urlencoded", "origin": BASE},
    )
    _assert_unavailable(*await _timed(page_form), page=True)


async def _retried(send, done: int) -> httpx.Response:
    """Sent again as a client told Retry-After would (the worker reconnects after Temporal is back)."""
    for _ in range(120):
        answer = await send()
        if answer.status_code == done:
            return answer
        assert answer.status_code in (409, 503), answer.text
        await asyncio.sleep(0.5)
    raise AssertionError(f"never {done}: {answer.text}")


async def _recorded_once_after(api, engine, episode_id: str) -> None:
    patient = "down-1"
    key = {"Idempotency-Key": "down-note"}
    await _retried(lambda: api.post(f"/episodes/{episode_id}/events", json=_note("while down"), headers=key), 200)
    await _retried(lambda: api.post("/episodes", json=_enrollment(patient)), 201)
    with Session(engine) as session:
        notes = session.scalars(select(EventRow.payload).where(EventRow.episode_id == episode_id)).all()
        statuses = session.scalars(select(EpisodeRow.status).where(EpisodeRow.patient_ref == patient)).all()
    assert [n["text"] for n in notes].count("while down") == 1
    assert sorted(statuses) == ["abandoned", "active"] or statuses == ["active"], statuses
