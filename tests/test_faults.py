"""Faults: nothing is lost and nothing is written twice.

1. The production worker runs as a separate process and is SIGKILLed at random (seeded) moments
   while episodes run through their year on the dev server with per-workflow time skipping. The
   pure rules are the oracle for every timeline, task, notification and audit entry.
2. PostgreSQL goes away while an event is being recorded: the recording waits and retries, the
   event lands once when the database is back; reads during the outage fail cleanly (API: 503).

Sizes: ``CAREPATH_FAULT_EPISODES`` / ``CAREPATH_FAULT_KILLS`` override the default (CI-sized)
run; the full-size run (100 episodes, 10 kills) is marked ``slow`` and runs only when asked for
(``-m slow`` or ``CAREPATH_SLOW_TESTS=1``).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from temporalio import client as temporal_client
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import TimeSkippingConfig, WorkflowEnvironment

from carepath.app import create_app
from carepath.engine.items import Changes
from carepath.pathways.ovcf_lumbar import OVCF_LUMBAR
from carepath.pathways.ovcf_lumbar.definition import PathwayDefinition, load_definition
from carepath.pathways.ovcf_lumbar.inputs import Enrollment, parse_event
from carepath.pathways.ovcf_lumbar.state import EpisodeState
from carepath.service import CarepathService
from carepath.temporal import DATA_CONVERTER, bundled_binary, quiet_runtime
from db.engine import make_engine
from db.migrate import upgrade
from db.models import AuditRow, EpisodeRow, EventRow, NotificationRow, TaskRow, TimelineItemRow
from db.tokens import create_token
from tests.support.live import start_dev_server
from tests.support.postgres import PostgresServer, controllable_postgres, postgres_available
from tests.support.temporal import TASK_QUEUE, MemorySink, running_worker
from tests.support.worker_process import WorkerProcess
from workflows.contracts import EpisodeStart, EventOutcome, workflow_id
from workflows.episode import EpisodeWorkflow

CI_EPISODES = int(os.environ.get("CAREPATH_FAULT_EPISODES", "20"))
CI_KILLS = int(os.environ.get("CAREPATH_FAULT_KILLS", "3"))
# Seconds for every episode to finish its year once the chaos is over.
SETTLE_TIMEOUT = float(os.environ.get("CAREPATH_FAULT_SETTLE_SECONDS", "240"))
HORIZON = timedelta(days=3650)  # the oracle runs the clock this far: past anything the year can raise


def _slow_requested(config: pytest.Config) -> bool:
    return "slow" in (config.option.markexpr or "") or os.environ.get("CAREPATH_SLOW_TESTS", "") not in ("", "0")


# ---- 1. SIGKILLed worker ------------------------------------------------------------------------


def _enrollment(rng: random.Random, today: date) -> Enrollment:
    """A varied enrollment that needs no later event: every path runs on the clock alone."""
    identified_on = today - timedelta(days=rng.randint(0, 364))
    therapy_roll = rng.random()
    if therapy_roll < 0.4:
        therapy = None
    elif therapy_roll < 0.65:
        therapy = {"agent": "alendronate"}
    else:  # denosumab: reminders at due-14 days, forever in maintenance if no dose is recorded
        therapy = {"agent": "denosumab", "last_dose_on": (today - timedelta(days=rng.randint(0, 200))).isoformat()}
    analgesics = rng.sample(["acetaminophen", "nsaid", "opioid", "calcitonin"], rng.randint(0, 3))
    red_flags = rng.sample(["neurological_deficit", "cord_compression", "instability"], rng.choice([0, 0, 0, 1, 2]))
    return Enrollment.model_validate(
        {
            "identified_on": identified_on.isoformat(),
            "patient": {"ref": f"fault-{uuid.uuid4().hex[:12]}", "age": rng.randint(50, 98), "sex": "female"},
            "fracture": {
                "levels": sorted(rng.sample(["L1", "L2", "L3", "L4", "L5"], rng.randint(1, 2))),
                "acute_injury": rng.random() < 0.5,
                "correlating_symptoms": rng.random() < 0.5,
            },
            "pain_nrs": rng.randint(0, 10),
            "analgesics": analgesics,
            "contraindications": rng.choice([[], [], ["nsaid"], ["nsaid", "opioid"]]),
            "calcium_vitamin_d": rng.random() < 0.5,
            "osteoporosis_therapy": therapy,
            "imaging": (
                [{"performed_on": identified_on.isoformat(), "modality": rng.choice(["xray", "ct", "mri"])}]
                if rng.random() < 0.7
                else []
            ),
            "red_flags": red_flags,
        }
    )


def _oracle(
    definition: PathwayDefinition, enrollment: Enrollment, episode_id: str, enrolled_at: datetime
) -> tuple[EpisodeState, Changes]:
    """The fault-free timeline: enrollment, then every timed action up to the horizon."""
    state, changes = OVCF_LUMBAR.enroll(definition, enrollment, episode_id, enrolled_at)
    state, more = OVCF_LUMBAR.advance(state, enrolled_at + HORIZON)
    changes.extend(more)
    return state, changes


async def _enrolled_at(handle: WorkflowHandle[Any, Any]) -> datetime:
    """``workflow.now()`` when the episode was enrolled (the workflow's ``__init__``).

    It is the start time of the first workflow task that completed: usually a few ms after the
    workflow's start time, but seconds later when that task's first attempt died with the worker.
    """
    events = [event async for event in handle.fetch_history_events()]
    completed = next(
        e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    ).workflow_task_completed_event_attributes
    started = next(e for e in events if e.event_id == completed.started_event_id)
    return started.event_time.ToDatetime().replace(tzinfo=UTC)


@dataclass
class Episode:
    episode_id: str
    enrollment: Enrollment
    handle: WorkflowHandle[Any, Any]
    settled: str = ""  # "completed" or "waiting" (nothing more due, ever) once it is


async def _settle(episode: Episode) -> None:
    """Mark the episode settled if it completed, or if it waits for nothing and runs nothing."""
    description = await episode.handle.describe()
    if description.status == WorkflowExecutionStatus.COMPLETED:
        episode.settled = "completed"
        return
    assert description.status == WorkflowExecutionStatus.RUNNING, (episode.episode_id, description.status)
    if _busy(description):
        return
    view = await episode.handle.query(EpisodeWorkflow.view)
    # The view is only a snapshot of the same moment if nothing happened in between.
    again = await episode.handle.describe()
    if _busy(again) or again.history_length != description.history_length:
        return
    # A finished episode must complete: one that stays RUNNING with nothing left to do is stuck.
    if view.next_due is None and not view.delivering and view.phase not in ("completed", "withdrawn"):
        episode.settled = "waiting"


def _busy(description: Any) -> bool:
    raw = description.raw_description
    return bool(raw.pending_activities) or raw.HasField("pending_workflow_task")


async def _describe_stuck(episode: Episode) -> str:
    description = await episode.handle.describe()
    view = await episode.handle.query(EpisodeWorkflow.view)
    events = [event async for event in episode.handle.fetch_history_events()]
    tail = [(e.event_id, EventType.Name(e.event_type).removeprefix("EVENT_TYPE_")) for e in events[-12:]]
    return f"{episode.episode_id} {description.status.name} {view} history tail {tail}"


async def _chaos(worker: WorkerProcess, kills: int, rng: random.Random, log: list[str]) -> None:
    """Kill the worker at random moments and start it again, ``kills`` times."""
    began = time.monotonic()
    for _ in range(kills):
        await asyncio.sleep(rng.uniform(0.2, 2.5))
        await worker.kill()
        log.append(f"kill at {time.monotonic() - began:.1f}s")
        await asyncio.sleep(rng.uniform(0.0, 1.0))
        await worker.start()


def _history_counts(events: list[Any]) -> Counter[str]:
    """What the kills cost, from one history: retried activities (by cause) and lost workflow tasks.

    A retried activity attempt leaves no failure event of its own: its ``ActivityTaskStarted``
    carries the attempt number and the previous attempt's failure.
    """
    counts = Counter[str]()
    scheduled = {}
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            if started.attempt > 1:
                name = scheduled[started.scheduled_event_id]
                counts[f"{name} retried after: {started.last_failure.message}"] += 1
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
            counts["workflow task timed out"] += 1
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            counts["workflow task failed"] += 1
    return counts


def _check_episode(session: Session, episode: Episode, state: EpisodeState, expected: Changes) -> None:
    """The database holds exactly what the oracle raised: nothing lost, nothing twice."""
    eid = episode.episode_id
    timeline = session.execute(
        select(TimelineItemRow.day, TimelineItemRow.code, TimelineItemRow.occasion)
        .where(TimelineItemRow.episode_id == eid)
        .order_by(TimelineItemRow.id)
    ).all()
    assert [tuple(row) for row in timeline] == [(i.day, i.code, i.milestone) for i in expected.items], eid

    # Tasks: one per actionable item, with the status its closures left it in.
    status = {(i.code, i.milestone): "open" for i in expected.items if i.kind in ("task", "flag", "escalation")}
    for closure in expected.closures:
        if status.get((closure.code, closure.milestone)) == "open":
            status[(closure.code, closure.milestone)] = closure.status
    tasks = session.execute(
        select(TaskRow.code, TaskRow.occasion, TaskRow.status).where(TaskRow.episode_id == eid)
    ).all()
    assert len(tasks) == len({(code, milestone) for code, milestone, _ in tasks}), eid
    assert {(code, milestone): st for code, milestone, st in tasks} == status, eid

    # Notifications: one per notifying item, each recorded delivered exactly once (patient
    # messages, i.e. check-in links and patient tasks, are follow-up beside the rules).
    notes = session.scalars(select(NotificationRow).where(NotificationRow.episode_id == eid)).all()
    clinical = [n for n in notes if n.recipient_role != "patient"]
    assert sorted((n.code, n.occasion) for n in clinical) == sorted(
        (i.code, i.milestone) for i in expected.items if i.notify and i.assignee is not None
    ), eid
    assert all(n.status == "delivered" and n.delivered_at is not None for n in clinical), eid

    # Audit: every raised item appears exactly once across the episode's audit entries, in order.
    audit = session.scalars(select(AuditRow).where(AuditRow.episode_id == eid).order_by(AuditRow.id)).all()
    assert [key for row in audit for key in row.detail["raised"]] == [str(i.key) for i in expected.items], eid
    assert audit[0].action == "enroll", eid

    row = session.get(EpisodeRow, eid)
    assert row is not None and row.phase == state.phase, eid
    assert episode.settled == ("completed" if state.finished else "waiting"), eid


async def _sigkill_run(tmp_path: Path, episodes: int, kills: int, seed: int, workers: int = 1) -> dict[str, Any]:
    """``workers`` == 1: kill and restart it ``kills`` times. 2: kill the first once for good (failover)."""
    began = time.monotonic()
    rng = random.Random(seed)
    definition = load_definition(version=1)
    url = f"sqlite:///{tmp_path / 'faults.db'}"
    upgrade(url)
    engine = make_engine(url)
    sink = tmp_path / "notifications.jsonl"
    task_queue = f"faults-{uuid.uuid4().hex[:8]}"
    env = await WorkflowEnvironment.start_time_skipping_v2(
        dev_server_existing_path=bundled_binary("temporal"),
        data_converter=DATA_CONVERTER,
        runtime=quiet_runtime(),
        ui=False,
        dev_server_extra_args=["--dynamic-config-value", "frontend.WorkflowTimeSkippingEnabled=true"],
        ts_config=TimeSkippingConfig(max_session_skip_count=10_000),
    )
    pool = [
        WorkerProcess(
            address=env.client.service_client.config.target_host,
            task_queue=task_queue,
            database_url=url,
            sink_file=sink,
            log_file=tmp_path / f"worker{n}.log",
        )
        for n in range(workers)
    ]
    worker = pool[0]
    chaos_log: list[str] = []
    failover: dict[str, Any] = {}
    try:
        for each in pool:
            await each.start()
        started_at = time.monotonic()
        today = datetime.now(UTC).date()
        population: list[Episode] = []
        for _ in range(episodes):
            episode_id = uuid.uuid4().hex
            enrollment = _enrollment(rng, today)
            handle = await env.client.start_workflow(
                EpisodeWorkflow.run,
                EpisodeStart(episode_id=episode_id, enrollment=enrollment, definition=definition, actor="faults"),
                id=workflow_id(episode_id),
                task_queue=task_queue,
            )
            population.append(Episode(episode_id, enrollment, handle))
        if workers == 1:
            await _chaos(worker, kills, rng, chaos_log)
        else:
            failover = await _failover(pool, population, rng, chaos_log)
        chaos_over = time.monotonic()

        deadline = time.monotonic() + SETTLE_TIMEOUT
        while unsettled := [e for e in population if not e.settled]:
            if time.monotonic() > deadline:
                details = "\n".join([await _describe_stuck(e) for e in unsettled[:3]])
                pytest.fail(f"{len(unsettled)} episodes never settled (chaos: {chaos_log}); first:\n{details}")
            for batch in range(0, len(unsettled), 50):
                await asyncio.gather(*(_settle(e) for e in unsettled[batch : batch + 50]))
            await asyncio.sleep(0.5)
        settled_at = time.monotonic()

        histories = Counter[str]()
        oracles = []
        for episode in population:
            events = [event async for event in episode.handle.fetch_history_events()]
            histories += _history_counts(events)
            enrolled_at = await _enrolled_at(episode.handle)
            oracles.append(_oracle(definition, episode.enrollment, episode.episode_id, enrolled_at))
        with Session(engine) as session:
            for episode, (state, expected) in zip(population, oracles, strict=True):
                _check_episode(session, episode, state, expected)
            outbox = session.scalars(select(NotificationRow.dedupe_key)).all()
            assert session.scalar(select(func.count()).select_from(EventRow)) == 0
        sent = Counter(json.loads(line)["delivery_id"] for line in sink.read_text().splitlines())
        assert set(outbox) <= set(sent), set(outbox) - set(sent)
        assert set(sent) <= set(outbox)
        return {
            "episodes": episodes,
            "kills": worker.kills,
            "completed": sum(e.settled == "completed" for e in population),
            "waiting": sum(e.settled == "waiting" for e in population),
            "timeline items": sum(len(expected.items) for _, expected in oracles),
            "notifications": len(outbox),
            "re-sent notifications": sum(n - 1 for n in sent.values()),
            "history": dict(histories),
            "worker start seconds": [round(s, 1) for s in worker.start_seconds],
            **failover,
            "chaos": chaos_log,
            "seconds: chaos": round(chaos_over - started_at, 1),
            "seconds: settle after chaos": round(settled_at - chaos_over, 1),
            "seconds: total": round(time.monotonic() - began, 1),
        }
    finally:
        for each in pool:
            await each.kill()
        engine.dispose()
        await env.shutdown()


def _identity(worker: WorkerProcess) -> str:
    assert worker.process is not None
    return f"{worker.process.pid}@{socket.gethostname()}"  # the SDK's default worker identity


async def _failover(
    pool: list[WorkerProcess], population: list[Episode], rng: random.Random, log: list[str]
) -> dict[str, Any]:
    """SIGKILL the first of two workers under load, for good; time how long the survivor takes to pick
    up each orphan (an episode with a workflow task or activity pending when it died)."""
    await asyncio.sleep(rng.uniform(1.0, 2.5))
    victim, survivor = _identity(pool[0]), _identity(pool[1])
    await _until_busy(population)  # on a loaded machine the episodes can all be asleep at that moment
    await pool[0].kill()
    killed = time.monotonic()
    log.append(f"killed {victim}, survivor {survivor}")
    descriptions = await asyncio.gather(*(e.handle.describe() for e in population))
    orphans = {e.episode_id: (e, d.history_length) for e, d in zip(population, descriptions, strict=True) if _busy(d)}
    picked: dict[str, float] = {}
    while len(picked) < len(orphans) and time.monotonic() - killed < 90:
        for episode_id, (episode, length) in orphans.items():
            if episode_id not in picked and await _survivor_took_it(episode, length, survivor):
                picked[episode_id] = time.monotonic() - killed
        await asyncio.sleep(0.25)
    assert len(picked) == len(orphans), f"orphans never picked up: {set(orphans) - set(picked)}"
    seconds = sorted(picked.values())
    return {
        "orphans": len(orphans),
        "pick-up seconds: median": round(seconds[len(seconds) // 2], 1) if seconds else None,
        "pick-up seconds: max": round(seconds[-1], 1) if seconds else None,
    }


async def _until_busy(population: list[Episode], within: float = 30.0) -> None:
    """Return as soon as some episode has work pending (a workflow task or an activity), so a kill
    then hits work in flight; give up quietly after ``within`` seconds (the caller's count says so)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        descriptions = await asyncio.gather(*(e.handle.describe() for e in population))
        if any(_busy(d) for d in descriptions):
            return
        await asyncio.sleep(0.02)


async def _survivor_took_it(episode: Episode, length_at_kill: int, survivor: str) -> bool:
    """The survivor runs an activity of it, or wrote an event of it, or it finished."""
    description = await episode.handle.describe()
    if description.status != WorkflowExecutionStatus.RUNNING:
        return True
    if any(a.last_worker_identity == survivor for a in description.raw_description.pending_activities):
        return True
    events = [e async for e in episode.handle.fetch_history_events()][length_at_kill:]
    return any(survivor in str(e) for e in events)


async def test_two_workers_one_sigkilled_the_survivor_takes_over(tmp_path):
    """Two worker processes on one task queue under load; one SIGKILLed for good: every episode still
    ends with the rules' timeline (nothing lost or doubled), and the survivor picks up the orphans."""
    report = await _sigkill_run(tmp_path, CI_EPISODES, 0, seed=515, workers=2)
    print("failover run:", json.dumps(report))
    assert report["orphans"] >= 1, report  # the kill hit episodes mid-work


async def test_sigkilled_worker_loses_and_duplicates_nothing(tmp_path):
    report = await _sigkill_run(tmp_path, CI_EPISODES, CI_KILLS, seed=20260)
    print("sigkill run:", json.dumps(report))
    assert report["kills"] == CI_KILLS


@pytest.mark.slow
async def test_sigkilled_worker_full_size(tmp_path, request):
    if not _slow_requested(request.config):
        pytest.skip("full-size fault run: select it with -m slow (or CAREPATH_SLOW_TESTS=1)")
    report = await _sigkill_run(tmp_path, 100, 10, seed=7)
    print("sigkill run:", json.dumps(report))
    assert report["kills"] == 10


# ---- 2. PostgreSQL outage -----------------------------------------------------------------------


class _OutageOnUpdate(temporal_client.Interceptor):
    """Takes the database down just as the next update is sent to a workflow (after the service's
    own reads), so the recording activity is the one that meets the outage."""

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.armed = False
        self.fired = asyncio.Event()

    def intercept_client(self, next: temporal_client.OutboundInterceptor) -> temporal_client.OutboundInterceptor:
        interceptor = self

        class Outbound(temporal_client.OutboundInterceptor):
            async def start_workflow_update(self, input: Any) -> Any:
                if interceptor.armed:
                    interceptor.armed = False
                    await asyncio.to_thread(interceptor.server.stop)
                    interceptor.fired.set()
                return await super().start_workflow_update(input)

        return Outbound(next)


def _count(session: Session, model: Any, **where: Any) -> int:
    query = select(func.count()).select_from(model)
    for key, value in where.items():
        query = query.where(getattr(model, key) == value)
    return session.scalar(query) or 0


@pytest.mark.postgres
async def test_database_outage_delays_but_loses_and_duplicates_nothing():
    if not postgres_available():
        pytest.skip("PostgreSQL is not installed: apt-get install -y postgresql")
    env = await start_dev_server()
    try:
        # Under /tmp itself: the postgres user cannot enter root's pytest folders.
        with (
            tempfile.TemporaryDirectory(prefix="carepath-pg-") as folder,
            controllable_postgres(Path(folder)) as server,
        ):
            upgrade(server.url)
            engine = make_engine(server.url)
            outage = _OutageOnUpdate(server)
            client = temporal_client.Client(**{**env.client.config(), "interceptors": [outage]})
            service = CarepathService(client, engine, TASK_QUEUE, pathway_version=1, update_wait=3)
            sink = MemorySink()
            _, token = create_token(engine, "outage", "physician", "test")
            app = create_app(service=service)
            try:
                async with (
                    running_worker(env, engine, sink),
                    httpx.AsyncClient(
                        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                        base_url="http://carepath.test",
                        headers={"Authorization": f"Bearer {token}"},
                    ) as api,
                ):
                    await _outage_story(server, service, outage, engine, sink, api)
            finally:
                engine.dispose()
    finally:
        await env.shutdown()


async def _outage_story(
    server: PostgresServer,
    service: CarepathService,
    outage: _OutageOnUpdate,
    engine: Any,
    sink: MemorySink,
    api: httpx.AsyncClient,
) -> None:
    today = datetime.now(UTC).date()
    enrollment = Enrollment.model_validate(
        {
            "identified_on": today.isoformat(),
            "patient": {"ref": "outage-1", "age": 74, "sex": "female"},
            "fracture": {"levels": ["L2"]},
            "pain_nrs": 6,
            "analgesics": ["nsaid"],
        }
    )
    enrolled = await service.enroll(enrollment, "coordinator:outage")
    episode_id = enrolled.episode_id
    handle = service.client.get_workflow_handle(workflow_id(episode_id))
    await _until(lambda: _delivered(handle))
    state = await service.episodes.state(episode_id)
    with Session(engine) as session:
        before = {
            "timeline": _count(session, TimelineItemRow, episode_id=episode_id),
            "tasks": _count(session, TaskRow, episode_id=episode_id),
            "notifications": _count(session, NotificationRow, episode_id=episode_id),
            "audit": _count(session, AuditRow, episode_id=episode_id),
        }
    assert before["audit"] == 1  # the enrollment; catch_up at enrollment had nothing to record
    red_flag = parse_event({"type": "red_flag", "occurred_on": today.isoformat(), "flag": "cord_compression"})
    _, expected = OVCF_LUMBAR.apply_event(state, red_flag, datetime.now(UTC))
    assert "SURGICAL_CONSULTATION@red_flag-day0" in [str(i.key) for i in expected.items]  # raised by this event

    # The database goes down as the update is sent: recording retries, and the request answers
    # 503 + Retry-After after the service's bound while the update goes on.
    outage.armed = True
    body = red_flag.model_dump(mode="json")
    key = {"Idempotency-Key": "outage-red-flag"}
    began = time.monotonic()
    first = await api.post(f"/episodes/{episode_id}/events", json=body, headers=key)
    waited = time.monotonic() - began
    assert first.status_code == 503, first.text
    assert first.headers.get("retry-after") == "5"
    assert "Idempotency-Key" in first.json()["detail"][0]["message"]
    assert service.update_wait <= waited < service.update_wait + 5, waited
    print(f"database outage: 503 after {waited:.1f}s (bound {service.update_wait}s)")
    await _during_outage(server, service, outage, api, handle, episode_id, today)
    outcome = await _retried_until_recorded(api, f"/episodes/{episode_id}/events", body, key)
    assert outcome.raised == [str(i.key) for i in expected.items]
    # A client that gave up during the outage retries with the same key: applied once only.
    again = await service.record_event(episode_id, red_flag, "physician:outage", idempotency_key="outage-red-flag")
    assert again == outcome  # the first answer, replayed from the key's claim
    await _until(lambda: _delivered(handle))

    actionable = [i for i in expected.items if i.kind in ("task", "flag", "escalation") and i.assignee]
    notifying = [i for i in expected.items if i.notify and i.assignee]
    with Session(engine) as session:
        assert session.scalars(select(EventRow.id).where(EventRow.episode_id == episode_id)).all() == [outcome.event_id]
        for model in (TimelineItemRow, TaskRow, NotificationRow):
            assert _count(session, model, episode_id=episode_id, code="SURGICAL_CONSULTATION") == 1, model
        assert _count(session, TimelineItemRow, episode_id=episode_id) == before["timeline"] + len(expected.items)
        assert _count(session, TaskRow, episode_id=episode_id) == before["tasks"] + len(actionable)
        assert _count(session, NotificationRow, episode_id=episode_id) == before["notifications"] + len(notifying)
        assert _count(session, AuditRow, episode_id=episode_id) == before["audit"] + 1
        audit = session.scalars(select(AuditRow).where(AuditRow.episode_id == episode_id).order_by(AuditRow.id)).all()
        assert audit[-1].action == "event:red_flag" and audit[-1].detail["event_id"] == outcome.event_id
        assert audit[-1].detail["raised"] == [str(i.key) for i in expected.items]
        notes = session.scalars(select(NotificationRow).where(NotificationRow.episode_id == episode_id)).all()
    assert all(n.status == "delivered" and n.delivered_at is not None for n in notes)
    assert sorted(m["delivery_id"] for m in sink.messages) == sorted(n.dedupe_key for n in notes)  # none re-sent


async def _during_outage(
    server: PostgresServer,
    service: CarepathService,
    outage: _OutageOnUpdate,
    api: httpx.AsyncClient,
    handle: WorkflowHandle[Any, Any],
    episode_id: str,
    today: date,
) -> None:
    await asyncio.wait_for(outage.fired.wait(), 30)
    await asyncio.sleep(2)
    activity = await _pending_activity(handle)
    assert activity.activity_type.name == "record_changes"
    assert activity.attempt >= 2, activity  # attempts at +0 s, +1 s, +3 s: the database refused them
    failure, messages = activity.last_failure, []
    while failure.message:
        messages.append(failure.message)
        failure = failure.cause
    # The cause comes first and alone, short: no "Failure exceeds size limit.", no nested SQL.
    assert len(messages) == 1 and messages[0].startswith("database unavailable (OperationalError)"), messages
    assert "refused" in messages[0] and len(messages[0]) < 400, messages
    print(f"database outage: recording attempt {activity.attempt}, last failure {messages}")

    # Meanwhile reads fail cleanly: the service raises OperationalError, the API answers 503.
    with pytest.raises(OperationalError):
        service.episode(episode_id)
    answer = await api.get(f"/episodes/{episode_id}")
    assert answer.status_code == 503, answer.text
    assert answer.headers.get("retry-after") == "5"
    assert "Traceback" not in answer.text and "psycopg" not in answer.text
    # A new event submitted now fails fast, before reaching the workflow: nothing is changed.
    note = parse_event({"type": "note", "occurred_on": today.isoformat(), "text": "phoned", "author": "kim"})
    with pytest.raises(OperationalError):
        await service.record_event(episode_id, note, "physician:outage", idempotency_key="outage-note")
    posted = await api.post(
        f"/episodes/{episode_id}/events",
        json={"type": "note", "occurred_on": today.isoformat(), "text": "phoned", "author": "kim"},
        headers={"Idempotency-Key": "outage-note-api"},
    )
    assert posted.status_code == 503, posted.text

    await asyncio.to_thread(server.start)


async def _retried_until_recorded(
    api: httpx.AsyncClient, path: str, body: dict[str, Any], key: dict[str, str]
) -> EventOutcome:
    """Retry as a client told Retry-After would: 409 (in progress) or 503 until the real outcome."""
    began = time.monotonic()
    while time.monotonic() - began < 120:
        answer = await api.post(path, json=body, headers=key)
        if answer.status_code == 200:
            print(
                f"database outage: the retry got the outcome {time.monotonic() - began:.1f}s after PostgreSQL came back"
            )
            return EventOutcome.model_validate(answer.json())
        assert answer.status_code in (409, 503), answer.text
        assert "retry-after" in answer.headers, answer.headers
        await asyncio.sleep(0.5)
    raise TimeoutError("the event was never recorded")


async def _delivered(handle: WorkflowHandle[Any, Any]) -> bool:
    description = await handle.describe()
    view = await handle.query(EpisodeWorkflow.view)
    return not view.delivering and not description.raw_description.pending_activities


async def _pending_activity(handle: WorkflowHandle[Any, Any]) -> Any:
    description = await handle.describe()
    activities = list(description.raw_description.pending_activities)
    assert len(activities) == 1, activities
    assert activities[0].state != PendingActivityState.PENDING_ACTIVITY_STATE_UNSPECIFIED
    return activities[0]


async def _until(check: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.1)
