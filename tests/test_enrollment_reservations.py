"""Enrollment reservations: how a reservation that no workflow backs is completed or released.

The crash-by-crash proof is tests/test_enrollment_faults.py; these are the rules it relies on,
each on SQLite and PostgreSQL: the sweep's age bound, the late workflow start that must record
nothing, two identical enrollments at once, the migration of old ghosts, the command.
"""

from __future__ import annotations

import asyncio
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from temporalio.client import WorkflowFailureError
from temporalio.workflow import UnfinishedUpdateHandlersWarning

from activities.recording import RESERVATION_RELEASED
from carepath import cli
from carepath.pathways.ovcf_lumbar.definition import load_definition
from carepath.pathways.ovcf_lumbar.inputs import Enrollment
from carepath.service import Conflict, enrollment_digest
from db.engine import make_engine
from db.migrate import upgrade
from db.models import AuditRow, EpisodeRow, TimelineItemRow
from tests.support.live import api_client, start_dev_server
from tests.support.temporal import MemorySink
from tests.test_api import enrollment
from worker import build_worker
from workflows.contracts import EpisodeStart, workflow_id
from workflows.episode import EpisodeWorkflow


@pytest.fixture(scope="module")
async def dev_env():
    env = await start_dev_server()
    yield env
    await env.shutdown()


@pytest.fixture
async def live(dev_env, database_url):
    async with api_client(dev_env, database_url) as live:
        yield live


def ghost(engine, ref: str, age: timedelta = timedelta(minutes=5), status: str = "reserving") -> str:
    """A reservation its enrolling process never followed with a workflow start (it died)."""
    episode_id = uuid.uuid4().hex
    at = datetime.now(UTC) - age
    with Session(engine) as session, session.begin():
        session.add(
            EpisodeRow(
                id=episode_id,
                patient_ref=ref,
                pathway_id="ovcf-lumbar",
                pathway_version=2,
                identified_on=date.today(),
                enrolled_on=date.today(),
                phase="acute",
                status=status,
                simulated=False,
                created_at=at,
                updated_at=at,
            )
        )
    return episode_id


def statuses(engine, ref: str) -> dict[str, str]:
    with Session(engine) as session:
        rows = session.execute(select(EpisodeRow.id, EpisodeRow.status).where(EpisodeRow.patient_ref == ref))
        return dict(rows.all())


def audit_actions(engine, episode_id: str) -> list[str]:
    with Session(engine) as session:
        return list(session.scalars(select(AuditRow.action).where(AuditRow.episode_id == episode_id)))


async def test_a_ghost_reservation_is_replaced_when_the_patient_is_enrolled_again(live):
    old = ghost(live.service.engine, "gina")
    answer = await live.client.post("/episodes", json=enrollment(ref="gina"))
    assert answer.status_code == 201, answer.text
    new = answer.json()["episode_id"]
    assert statuses(live.service.engine, "gina") == {old: "abandoned", new: "active"}
    trail = (await live.client.get(f"/episodes/{old}/audit")).json()
    assert [(e["action"], e["detail"]["replaced_by"]) for e in trail] == [("enroll:released", new)]
    assert "no workflow was started" in trail[0]["detail"]["reason"]
    assert (await live.client.get(f"/episodes/{old}")).json()["status"] == "abandoned"
    assert (await live.client.get(f"/episodes/{new}")).json()["timeline"]


async def test_the_sweep_releases_old_unbacked_reservations_only(live):
    service = live.service
    old, fresh = ghost(service.engine, "olga"), ghost(service.engine, "fred", age=timedelta(seconds=5))
    enrolled = (await live.client.post("/episodes", json=enrollment(ref="anna"))).json()["episode_id"]

    report = await service.reconcile_enrollments(older_than=timedelta(minutes=2))
    assert old in report.released and fresh not in report.released and enrolled not in report.released
    assert statuses(service.engine, "olga") == {old: "abandoned"}
    assert statuses(service.engine, "fred") == {fresh: "reserving"}  # its request may still start it
    assert audit_actions(service.engine, old) == ["enroll:released"]
    again = await service.reconcile_enrollments(older_than=timedelta(minutes=2))
    assert old not in again.released  # idempotent: released once, audited once
    assert audit_actions(service.engine, old) == ["enroll:released"]
    assert (await live.client.post("/episodes", json=enrollment(ref="olga"))).status_code == 201


async def test_a_workflow_started_after_its_reservation_was_released_records_nothing(live):
    """The request that reserved was only slow, not dead: its start lands after the release."""
    service = live.service
    episode_id = ghost(service.engine, "lena")
    assert (await service.reconcile_enrollments(older_than=timedelta(0))).released == [episode_id]
    late = Enrollment.model_validate(enrollment(ref="lena"))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(Conflict, match="replaced"):
            await service.enrollment._start(episode_id, late, load_definition(), "coordinator:slow")
        handle = service.client.get_workflow_handle(workflow_id(episode_id))
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    assert RESERVATION_RELEASED in repr(failed.value.cause.cause)
    # The run failed, but only once its in-flight update (the start's catch_up) was answered.
    assert not [w for w in seen if issubclass(w.category, UnfinishedUpdateHandlersWarning)]
    with Session(service.engine) as session:
        assert session.scalars(select(TimelineItemRow).where(TimelineItemRow.episode_id == episode_id)).all() == []
    assert statuses(service.engine, "lena") == {episode_id: "abandoned"}
    assert audit_actions(service.engine, episode_id) == ["enroll:released"]


async def test_a_retry_while_the_workflow_runs_gets_the_same_episode(live):
    """A client retrying (or double-clicking) while its first request is still in flight."""
    body = enrollment(ref="rita")
    first, second = await asyncio.gather(
        live.client.post("/episodes", json=body), live.client.post("/episodes", json=body)
    )
    answers = sorted([first.status_code, second.status_code])
    assert answers in ([201, 201], [201, 409]), (first.text, second.text)
    rows = statuses(live.service.engine, "rita")
    [active] = [episode_id for episode_id, status in rows.items() if status == "active"]
    assert all(status == "abandoned" for episode_id, status in rows.items() if episode_id != active)
    for answer in (first, second):
        if answer.status_code == 201:
            assert answer.json()["episode_id"] == active
        else:
            assert answer.json()["detail"][0]["field"] == "patient.ref"
    # A different enrollment for the patient while the episode runs is still a conflict.
    changed = await live.client.post("/episodes", json={**body, "pain_nrs": 9})
    assert changed.status_code == 409 and active in changed.text


async def test_a_reservation_whose_workflow_runs_is_waited_for_not_released(live, dev_env):
    """Started but not yet recorded (no worker has picked it up yet): the sweep leaves it, a
    retry waits for the baseline and gets that episode."""
    service = live.service
    body = enrollment(ref="nora")
    parsed = Enrollment.model_validate(body)
    episode_id = ghost(service.engine, "nora")
    with Session(service.engine) as session, session.begin():
        session.get(EpisodeRow, episode_id).enrollment_digest = enrollment_digest(parsed)
    parked = f"parked-{uuid.uuid4().hex[:8]}"  # no worker polls it until the retry is waiting
    await dev_env.client.start_workflow(
        EpisodeWorkflow.run,
        EpisodeStart(episode_id=episode_id, enrollment=parsed, definition=load_definition(), actor="coordinator:x"),
        id=workflow_id(episode_id),
        task_queue=parked,
    )
    report = await service.reconcile_enrollments(older_than=timedelta(0))
    assert episode_id in report.in_progress and episode_id not in report.released
    retry = asyncio.create_task(live.client.post("/episodes", json=body))
    await asyncio.sleep(1)
    assert not retry.done() and statuses(service.engine, "nora") == {episode_id: "reserving"}
    with ThreadPoolExecutor(max_workers=2) as threads:
        async with build_worker(dev_env.client, service.engine, parked, threads, MemorySink(), 10, 2):
            answer = await asyncio.wait_for(retry, 30)
    assert answer.status_code == 201 and answer.json()["episode_id"] == episode_id
    assert statuses(service.engine, "nora") == {episode_id: "active"}
    assert audit_actions(service.engine, episode_id) == ["enroll"]


def test_migration_turns_old_ghosts_into_reservations(tmp_path) -> None:
    """Before 0005 a reservation was 'active' from the start: the reported stuck patients."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0003")
    engine = make_engine(url)
    try:
        with engine.begin() as db:
            for episode_id, ref in (("ghost", "p-ghost"), ("real", "p-real")):
                db.exec_driver_sql(
                    "INSERT INTO episodes (id, patient_ref, pathway_id, pathway_version, identified_on, enrolled_on,"
                    " phase, status, simulated, created_at, updated_at) VALUES (?, ?, 'ovcf-lumbar', 1,"
                    " '2026-01-05', '2026-01-05', 'acute', 'active', 0, '2026-01-05 08:00', '2026-01-05 08:00')",
                    (episode_id, ref),
                )
            db.exec_driver_sql(
                "INSERT INTO audit_log (change_id, episode_id, at, actor, action, detail) VALUES"
                " ('real/1', 'real', '2026-01-05 08:00', 'x', 'enroll', '{}')"
            )
        upgrade(url)
        assert statuses(engine, "p-ghost") == {"ghost": "reserving"}
        assert statuses(engine, "p-real") == {"real": "active"}
    finally:
        engine.dispose()


async def test_reconcile_enrollments_command_releases_and_reports(live, dev_env, database_url, monkeypatch, capsys):
    old = ghost(live.service.engine, "cora")
    monkeypatch.setenv("CAREPATH_TEMPORAL_ADDRESS", dev_env.client.service_client.config.target_host)
    monkeypatch.setenv("CAREPATH_DATABASE_URL", database_url)
    monkeypatch.setenv("CAREPATH_TASK_QUEUE", live.service.task_queue)
    monkeypatch.setenv("CAREPATH_ALLOW_UNENCRYPTED", "true")
    assert await asyncio.to_thread(cli.main, ["reconcile-enrollments", "--older-than", "60"]) == 0
    out = capsys.readouterr().out
    assert f"released {old}" in out and out.strip().endswith("in progress")
    assert statuses(live.service.engine, "cora") == {old: "abandoned"}
    with pytest.raises(SystemExit) as exited:
        cli.main(["reconcile-enrollments", "--older-than", "-1"])
    assert exited.value.code == 2
    assert "--older-than" in capsys.readouterr().err
