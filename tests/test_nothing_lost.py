"""Nothing answered "it will be recorded" is lost, under load, across continue-as-new and a dead API.

1. Clients post notes on one episode, each with its own Idempotency-Key, while the workflow
   continues as new every few notes and Temporal's limit of updates in flight is passed: every
   note answered 200 or 503 is recorded, once (bench/load.py, shortened).
2. An event claimed by a process that died before sending it is sent by the outbox sweep.
3. An event sent again after a continue-as-new applies once (the workflow remembers its id).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bench.load import enrollment, run_load
from db import idempotency
from db.models import AuditRow, EventRow, IdempotencyKeyRow
from tests.support.live import api_client, sqlite_url, start_dev_server
from workflows.contracts import workflow_id


@pytest.fixture(scope="module")
async def dev_env():
    env = await start_dev_server()
    yield env
    await env.shutdown()


async def test_notes_under_load_across_continue_as_new_are_all_recorded_once(dev_env, tmp_path: Path):
    figures = await run_load(
        dev_env, sqlite_url(tmp_path), clients=14, seconds=15, history_limit=100, wait=0.3, bare_seconds=0
    )
    print(f"load: {figures}")
    assert figures.requests > 50 and figures.other == {}, figures
    assert figures.continued_as_new >= 2, figures  # the runs changed under the clients
    assert figures.promised > 0, figures  # some answers were 503 "it will be recorded"
    assert figures.lost == 0 and figures.doubled == 0, figures


async def _enroll(api) -> str:
    answer = await api.post("/episodes", json=enrollment(datetime.now(UTC).date().isoformat()))
    assert answer.status_code == 201, answer.text
    return answer.json()["episode_id"]


def _note(text: str) -> dict[str, str]:
    return {"type": "note", "occurred_on": datetime.now(UTC).date().isoformat(), "text": text, "author": "kim"}


def _applied(engine, episode_id: str, event_id: str) -> int:
    with Session(engine) as session:
        audits = session.scalars(select(AuditRow.detail).where(AuditRow.episode_id == episode_id)).all()
    return sum(1 for detail in audits if detail.get("event_id") == event_id)


async def test_an_event_left_in_the_outbox_by_a_dead_process_is_sent_by_the_sweep(dev_env, tmp_path: Path):
    async with api_client(dev_env, sqlite_url(tmp_path)) as live:
        episode_id = await _enroll(live.client)
        body = _note("phoned the patient")
        event = live.service.pathway().parse_event(body).model_dump(mode="json")
        old = datetime.now(UTC) - timedelta(minutes=5)
        # What a request leaves behind when its process dies after the claim, before sending.
        claim = idempotency.claim(
            live.service.engine, episode_id, "dead-1", idempotency.fingerprint(event), old, event, "physician:kim"
        )
        assert await live.service.drain_outbox() == 1
        assert await live.service.drain_outbox() == 0  # answered: out of the outbox
        assert _applied(live.service.engine, episode_id, claim.event_id) == 1
        replay = await live.client.post(
            f"/episodes/{episode_id}/events", json=body, headers={"Idempotency-Key": "dead-1"}
        )
        assert replay.status_code == 200 and replay.json()["event_id"] == claim.event_id, replay.text
        assert _applied(live.service.engine, episode_id, claim.event_id) == 1
        with Session(live.service.engine) as session:
            row = session.get(IdempotencyKeyRow, (episode_id, "dead-1"))
            assert row.status == idempotency.DONE and row.request is None


async def test_an_event_sent_again_after_continue_as_new_applies_once(dev_env, tmp_path: Path):
    async with api_client(dev_env, sqlite_url(tmp_path)) as live:
        live.service.history_limit = 100
        episode_id = await _enroll(live.client)
        first = await live.service.record_event(episode_id, _note("first"), "physician:kim")
        handle = live.service.client.get_workflow_handle(workflow_id(episode_id))
        run = (await handle.describe()).run_id
        for n in range(30):  # enough history for the run to continue as new
            await live.service.record_event(episode_id, _note(f"note {n}"), "physician:kim")
        assert (await handle.describe()).run_id != run
        again = await live.service.episodes.record_event(episode_id, _note("first"), first.event_id, "physician:kim")
        assert again == first
        assert _applied(live.service.engine, episode_id, first.event_id) == 1
        with Session(live.service.engine) as session:
            count = session.scalar(select(func.count()).select_from(EventRow).where(EventRow.episode_id == episode_id))
        assert count == 31


async def test_an_unkeyed_event_is_kept_in_the_outbox_under_a_key_no_client_can_send(dev_env, tmp_path: Path):
    async with api_client(dev_env, sqlite_url(tmp_path)) as live:
        episode_id = await _enroll(live.client)
        refused = await live.client.post(
            f"/episodes/{episode_id}/events", json=_note("x"), headers={"Idempotency-Key": "server " + uuid.uuid4().hex}
        )
        assert refused.status_code == 422 and refused.json()["detail"][0]["field"] == "Idempotency-Key"
        posted = await live.client.post(f"/episodes/{episode_id}/events", json=_note("no key"))
        assert posted.status_code == 200, posted.text
        with Session(live.service.engine) as session:
            rows = session.scalars(select(IdempotencyKeyRow).where(IdempotencyKeyRow.episode_id == episode_id)).all()
        assert [(r.status, r.request) for r in rows] == [(idempotency.DONE, None)]
