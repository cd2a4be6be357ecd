"""carepath reconcile: the database re-recorded from the workflows after lost rows or an older backup.

Episodes run on a real dev server with the production worker; the database is then damaged (rows
deleted, or the SQLite file restored from an older copy) and reconciled. The reference is the
database as it stood before the damage, and each episode's timeline must be what the pure rules
raised (the workflow's ``state.raised``); a second reconciliation restores nothing.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from carepath import cli
from carepath.reconcile import RUNNING, reconcile_episodes
from db.models import AuditRow, EpisodeRow, EventRow, NotificationRow, TaskRow, TimelineItemRow
from tests.support.live import api_client, sqlite_url, start_dev_server
from tests.support.temporal import MemorySink
from tests.test_api import TODAY, enrollment


@pytest.fixture
async def env():
    # Its own server: reconcile re-records every episode Temporal has, and other tests' would come too.
    server = await start_dev_server()
    yield server
    await server.shutdown()


def dump(engine: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every row an episode owns, by natural key (row ids are not kept across a restore)."""
    queries = {
        "episodes": select(
            EpisodeRow.id, EpisodeRow.patient_ref, EpisodeRow.phase, EpisodeRow.status, EpisodeRow.enrolled_on
        ),
        "events": select(EventRow.id, EventRow.episode_id, EventRow.type, EventRow.occurred_on),
        "timeline": select(TimelineItemRow.episode_id, TimelineItemRow.code, TimelineItemRow.occasion),
        "tasks": select(TaskRow.episode_id, TaskRow.code, TaskRow.occasion, TaskRow.status, TaskRow.close_reason),
        "notifications": select(NotificationRow.dedupe_key, NotificationRow.status),
        "audit": select(AuditRow.change_id, AuditRow.action, AuditRow.actor),
    }
    with Session(engine) as session:
        return {name: sorted(tuple(row) for row in session.execute(query)) for name, query in queries.items()}


def copy_sqlite(source: Path, target: Path) -> None:
    """SQLite's online backup: a consistent copy of a live WAL database, or a restore into one."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


async def settled(engine: Any) -> None:
    """Until every notification is delivered (the workflows' deliveries run beside them)."""
    for _ in range(300):
        with Session(engine) as session:
            pending = session.scalar(
                select(func.count()).select_from(NotificationRow).where(NotificationRow.status == "pending")
            )
        if not pending:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("notifications still pending")


async def listed(service: Any, count: int) -> None:
    """Until Temporal's visibility lists ``count`` running episodes (it lags a start slightly)."""
    for _ in range(100):
        if len([w async for w in service.client.list_workflows(RUNNING)]) == count:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("visibility never listed the episodes")


async def timelines_follow_the_rules(service: Any, episode_ids: list[str]) -> None:
    with Session(service.engine) as session:
        for episode_id in episode_ids:
            state = await service.episodes.state(episode_id)
            keys = session.execute(
                select(TimelineItemRow.code, TimelineItemRow.occasion)
                .where(TimelineItemRow.episode_id == episode_id)
                .order_by(TimelineItemRow.id)
            ).all()
            assert [f"{code}@{occasion}" for code, occasion in keys] == state.raised, episode_id
            assert session.get(EpisodeRow, episode_id).phase == state.phase


async def test_reconcile_restores_an_older_backup_and_deleted_rows(env, tmp_path, monkeypatch, capsys):
    url = sqlite_url(tmp_path)
    live_file, older_file = tmp_path / "carepath.db", tmp_path / "older.db"
    sink = MemorySink()
    async with api_client(env, url, sink) as live:
        api, service = live.client, live.service
        ids = []
        for ref in ("rec-a", "rec-b"):
            answer = await api.post("/episodes", json=enrollment(ref, analgesics=["opioid"]))
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["episode_id"])
        await settled(service.engine)
        copy_sqlite(live_file, older_file)  # the backup, taken here

        # After the backup: an event raising a consultation, a task completed, a third patient.
        event = {"type": "red_flag", "occurred_on": TODAY.isoformat(), "flag": "cord_compression"}
        answer = await api.post(f"/episodes/{ids[0]}/events", json=event, headers={"Idempotency-Key": "rf-1"})
        assert answer.status_code == 200 and answer.json()["raised"], answer.text
        task = service.worklist(episode_id=ids[1], assignee="coordinator")[0]
        assert (await api.post(f"/tasks/{task.id}/complete", json={"reason": "called"})).status_code == 200
        answer = await api.post("/episodes", json=enrollment("rec-c"))
        ids.append(answer.json()["episode_id"])
        await settled(service.engine)
        truth = dump(service.engine)
        await timelines_follow_the_rules(service, ids)
        await listed(service, 3)

        # 1. The database restored from the older backup: the event, the closure and rec-c are gone.
        copy_sqlite(older_file, live_file)
        restored = dump(service.engine)
        assert restored != truth and ids[2] not in {row[0] for row in restored["episodes"]}
        sent_before = len(sink.messages)
        report = await reconcile_episodes(service, sink=sink)
        assert report.episodes == 3 and not report.skipped, report
        assert sorted(report.changed) == sorted(ids), report
        assert report.restored["episodes"] == 1 and report.restored["events"] == 1, report
        assert dump(service.engine) == truth
        await timelines_follow_the_rules(service, ids)
        # Restored notifications go out again, with their original delivery ids (receivers dedupe).
        assert report.delivered == report.restored["notifications"] == len(sink.messages) - sent_before
        assert {m["delivery_id"] for m in sink.messages[sent_before:]} <= {
            m["delivery_id"] for m in sink.messages[:sent_before]
        } | {key for key, _ in truth["notifications"]}

        # 2. Nothing doubles: a second run restores nothing.
        again = await reconcile_episodes(service, sink=sink)
        assert again.episodes == 3 and again.changed == [] and again.restored == {}, again
        assert dump(service.engine) == truth

        # 3. Rows deleted by hand (one episode's tasks, timeline and audit; every notification),
        # repaired by the command.
        with Session(service.engine) as session, session.begin():
            for model in (TaskRow, TimelineItemRow, AuditRow):
                session.execute(delete(model).where(model.episode_id == ids[0]))
            session.execute(delete(NotificationRow))
        monkeypatch.setenv("CAREPATH_TEMPORAL_ADDRESS", env.client.service_client.config.target_host)
        monkeypatch.setenv("CAREPATH_DATABASE_URL", url)
        monkeypatch.setenv("CAREPATH_TASK_QUEUE", service.task_queue)
        monkeypatch.setenv("CAREPATH_ALLOW_UNENCRYPTED", "true")
        monkeypatch.setenv("CAREPATH_NOTIFICATION_FILE", str(tmp_path / "reconcile-notifications.jsonl"))
        assert await asyncio.to_thread(cli.main, ["reconcile"]) == 0
        out = capsys.readouterr().out
        assert "3 episodes re-recorded, 3 had rows missing" in out and out.strip().endswith("in progress"), out
        assert dump(service.engine) == truth
        await timelines_follow_the_rules(service, ids)


async def test_reconcile_fills_what_recordings_before_migration_0013_did_not_write(env, tmp_path, monkeypatch):
    """An episode recorded before 0013 has no stored enrollment and no coming items, and its
    history's records carry neither: reconcile takes the enrollment from the workflow's first
    input and the coming items from its state, so its measures and the forecast are right."""
    from pydantic import model_validator
    from sqlalchemy import update

    from activities.recording import ChangeRecord
    from carepath import measures as measures_module
    from carepath import reconcile as reconcile_module
    from db.models import ComingItemRow

    class RecordedBefore0013(ChangeRecord):
        """A record as the workflow wrote it before 0013: no parsed enrollment, no coming items."""

        @model_validator(mode="before")
        @classmethod
        def _old(cls, data: Any) -> Any:
            data = {**data, "coming": None}
            if data.get("opened"):
                data["opened"] = {**data["opened"], "enrollment": None}
            return data

    def stored(engine: Any) -> tuple[Any, list[tuple[Any, ...]]]:
        with Session(engine) as session:
            episode = session.scalar(select(EpisodeRow.enrollment))
            coming = session.execute(select(ComingItemRow.due_on, ComingItemRow.code, ComingItemRow.assignee))
            return episode, sorted(tuple(row) for row in coming)

    async with api_client(env, sqlite_url(tmp_path), MemorySink()) as live:
        api, service = live.client, live.service
        answer = await api.post("/episodes", json=enrollment("old-a", days_ago=98, pain_nrs=8))
        assert answer.status_code == 201, answer.text
        await settled(service.engine)
        await listed(service, 1)
        truth, measures = stored(service.engine), (await api.get("/measures")).json()
        forecast = (await api.get("/forecast?weeks=12")).json()
        assert truth[0]["pain_nrs"] == 8 and truth[1] and forecast, truth
        assert measures["pain_month3_median"]["median"] == 8.0, measures  # the enrollment's score, day 98
        with Session(service.engine) as session, session.begin():  # as written before migration 0013
            session.execute(update(EpisodeRow).values(enrollment=None))
            session.execute(delete(ComingItemRow))
        measures_module._reports.clear()
        assert (await api.get("/forecast?weeks=12")).json() == []
        assert (await api.get("/measures")).json() != measures  # the enrollment's pain score is missing

        monkeypatch.setattr(reconcile_module, "ChangeRecord", RecordedBefore0013)  # the history's decoding
        report = await reconcile_episodes(service)
        assert report.episodes == 1 and not report.skipped, report
        assert stored(service.engine) == truth
        measures_module._reports.clear()
        assert (await api.get("/measures")).json() == measures
        assert (await api.get("/forecast?weeks=12")).json() == forecast
