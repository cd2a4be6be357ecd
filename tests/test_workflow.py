"""The episode workflow on the time-skipping server with the production worker and store."""

from __future__ import annotations

import uuid
from datetime import time

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from carepath.pathways.ovcf_lumbar.inputs import parse_event
from db.engine import make_engine
from db.migrate import upgrade
from db.models import EpisodeRow, EventRow, NotificationRow, TaskRow
from db.queries import timeline
from tests.support.story import Story
from tests.support.temporal import Clock, MemorySink, running_worker, start_episode, start_time_skipping, stop_episode
from workflows.contracts import EventRequest, TaskClosing
from workflows.episode import INVALID_INPUT, EpisodeWorkflow


@pytest.fixture(scope="module")
async def env():
    environment = await start_time_skipping()
    yield environment
    await environment.shutdown()


@pytest.fixture
async def engine(env, database_url):
    # database_url: every test here runs on SQLite and on a real PostgreSQL server.
    engine = make_engine(database_url)
    async with running_worker(env, engine):
        yield engine
    engine.dispose()


def _event(clock: Clock, day: int, **fields) -> EventRequest:
    event = parse_event({"occurred_on": clock.on(day), **fields})
    return EventRequest(event=event, event_id=uuid.uuid4().hex, actor="test")


def _count(engine, model, **where) -> int:
    with Session(engine) as session:
        query = select(func.count()).select_from(model)
        for key, value in where.items():
            query = query.where(getattr(model, key) == value)
        return session.scalar(query)


async def test_enrollment_opens_the_episode_with_tasks_and_notifications(env, engine):
    clock = await Clock.for_enrollment(env)
    episode_id, handle = await start_episode(env, clock, pain_nrs=6)
    with Session(engine) as session:
        episode = session.get(EpisodeRow, episode_id)
        assert (episode.patient_ref, episode.phase, episode.status) == ("p-1", "acute", "active")
        assert (episode.pathway_id, episode.pathway_version) == ("ovcf-lumbar", 1)
    assert _count(engine, TaskRow, episode_id=episode_id, code="START_OSTEOPOROSIS_THERAPY", status="open") == 1
    assert _count(engine, NotificationRow, episode_id=episode_id, code="START_OSTEOPOROSIS_THERAPY") == 1
    view = await handle.query(EpisodeWorkflow.view)
    assert view.phase == "acute" and view.pathway == "ovcf-lumbar.v1"
    assert view.next_due is not None and view.next_due.startswith(clock.on(7))
    await stop_episode(handle)


async def test_milestones_fire_on_durable_timers_and_events_close_tasks(env, engine):
    clock = await Clock.for_enrollment(env)
    episode_id, handle = await start_episode(env, clock, pain_nrs=6)
    await clock.to(3)
    await handle.execute_update(
        EpisodeWorkflow.record_event, _event(clock, 3, type="medication_started", agent="risedronate")
    )
    await clock.to(29)
    outcome = await handle.execute_update(
        EpisodeWorkflow.record_event, _event(clock, 29, type="pain_assessment", nrs=5, analgesics=["nsaid"])
    )
    assert outcome.closed == ["PAIN_REASSESSMENT@week4"]
    codes = [(i["day"], i["code"]) for i in timeline(engine, episode_id)]
    assert (28, "acute->conservative") in codes and (28, "PAIN_REASSESSMENT") in codes
    assert not any(code == "PHARMACOTHERAPY_OVERDUE" for _, code in codes)
    with Session(engine) as session:
        statuses = dict(
            session.execute(
                select(TaskRow.code, TaskRow.status).where(
                    TaskRow.episode_id == episode_id,
                    TaskRow.code.in_(["START_OSTEOPOROSIS_THERAPY", "PAIN_REASSESSMENT"]),
                )
            ).all()
        )
    assert statuses == {"START_OSTEOPOROSIS_THERAPY": "completed", "PAIN_REASSESSMENT": "completed"}
    await stop_episode(handle)


async def test_rejected_event_never_enters_history_and_changes_nothing(env, engine):
    clock = await Clock.for_enrollment(env)
    episode_id, handle = await start_episode(env, clock)
    before = timeline(engine, episode_id)
    future = _event(clock, 9, type="pain_assessment", nrs=3)  # today is day 0
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await handle.execute_update(EpisodeWorkflow.record_event, future)
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == INVALID_INPUT
    assert cause.details[0]["errors"][0]["field"] == "occurred_on"
    history = await handle.fetch_history()
    accepted = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED]
    assert len(accepted) == 1  # the catch_up at enrollment, not the rejected event
    assert timeline(engine, episode_id) == before
    assert _count(engine, EventRow, episode_id=episode_id) == 0
    await stop_episode(handle)


async def test_withdraw_cancels_open_tasks_and_completes_the_workflow(env, engine):
    clock = await Clock.for_enrollment(env)
    episode_id, handle = await start_episode(env, clock)
    await clock.to(30)
    await handle.execute_update(EpisodeWorkflow.record_event, _event(clock, 30, type="withdraw", reason="declined"))
    assert await handle.result() == "withdrawn"
    assert _count(engine, TaskRow, episode_id=episode_id, status="open") == 0
    assert _count(engine, TaskRow, episode_id=episode_id, status="cancelled") >= 3
    with Session(engine) as session:
        assert session.get(EpisodeRow, episode_id).status == "withdrawn"
    with pytest.raises(RPCError):
        await handle.execute_update(EpisodeWorkflow.record_event, _event(clock, 30, type="note", text="x", author="y"))


async def test_long_episode_continues_as_new_and_keeps_its_timeline(env, engine):
    clock = await Clock.for_enrollment(env)
    episode_id, handle = await start_episode(env, clock, history_limit=100, pain_nrs=2)
    story = Story(pain_nrs=2)
    doses = [(2, "medication_started"), (184, "dose_given"), (366, "dose_given"), (548, "dose_given")]
    for day, kind in doses:
        await clock.to(day)
        await handle.execute_update(EpisodeWorkflow.record_event, _event(clock, day, type=kind, agent="denosumab"))
        story.event(day, kind, agent="denosumab")
    await clock.to(700)
    latest = env.client.get_workflow_handle(handle.id)
    view = await latest.execute_update(EpisodeWorkflow.catch_up)
    story.until(700)
    assert view.phase == "maintenance"
    first_run = await env.client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id).fetch_history()
    assert first_run.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    recorded = [(i["day"], i["code"]) for i in timeline(engine, episode_id)]
    assert recorded == [(i.day, i.code) for i in sorted(story.items, key=lambda i: i.day)]
    assert [d for d, c in recorded if c == "DENOSUMAB_DOSE_DUE"] == [170, 352, 534]
    await stop_episode(latest)


async def test_back_dated_enrollment_records_skipped_milestones(env, engine):
    clock = await Clock.for_enrollment(env, enroll_day=70)
    episode_id, handle = await start_episode(env, clock, pain_nrs=5)
    await clock.to(91, time(10, 0))
    items = timeline(engine, episode_id)
    assert [(i["day"], i["code"]) for i in items if i["kind"] == "skipped"] == [
        (70, "week4"),
        (70, "week6"),
        (70, "week8"),
    ]
    assert (91, "PAIN_REASSESSMENT") in [(i["day"], i["code"]) for i in items]
    await stop_episode(handle)


async def test_person_completes_a_task_through_the_workflow(env, engine):
    clock = await Clock.for_enrollment(env)
    episode_id, handle = await start_episode(env, clock)
    await clock.to(2)
    closing = TaskClosing(
        code="CALCIUM_VITAMIN_D",
        milestone="enrollment",
        status="completed",
        reason="started 1000 mg / 800 IU",
        actor="coordinator-1",
    )
    outcome = await handle.execute_update(EpisodeWorkflow.close_task, closing)
    assert outcome.closed == ["CALCIUM_VITAMIN_D@enrollment"]
    with Session(engine) as session:
        task = session.scalars(
            select(TaskRow).where(TaskRow.episode_id == episode_id, TaskRow.code == "CALCIUM_VITAMIN_D")
        ).one()
    assert (task.status, task.close_reason) == ("completed", "started 1000 mg / 800 IU")
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await handle.execute_update(EpisodeWorkflow.close_task, closing)  # already closed
    assert caught.value.cause.details[0]["errors"][0]["field"] == "task"
    await stop_episode(handle)


async def test_notifications_are_delivered_once_even_after_a_sink_outage(env, tmp_path):
    url = f"sqlite:///{tmp_path / 'notify.db'}"
    upgrade(url)
    engine = make_engine(url)
    sink = MemorySink()
    sink.fail_next = 2  # the first two delivery attempts fail: the activity retries
    async with running_worker(env, engine, sink):
        clock = await Clock.for_enrollment(env)
        episode_id, handle = await start_episode(env, clock)
        await clock.to(29)
        await stop_episode(handle)
    engine.dispose()
    delivered = [m["code"] for m in sink.messages]
    assert delivered.count("START_OSTEOPOROSIS_THERAPY") == 1
    assert delivered.count("PHARMACOTHERAPY_OVERDUE") == 1
    assert delivered.count("PAIN_REASSESSMENT") == 1
    assert len({m["delivery_id"] for m in sink.messages}) == len(sink.messages)
    with Session(make_engine(url)) as session:
        rows = session.scalars(select(NotificationRow).where(NotificationRow.episode_id == episode_id)).all()
    assert rows and all(r.status == "delivered" and r.delivered_at is not None for r in rows)
    assert max(r.attempts for r in rows) >= 2  # the failed attempts were counted
