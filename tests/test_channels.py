"""Channels and follow-up deliveries: e-mail through a real local SMTP server (aiosmtpd), a channel
outage made visible and healed without loss or duplicates, and the daily digest run by a Temporal
Schedule on a dev server."""

from __future__ import annotations

import asyncio
import email
import socket
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from sqlalchemy.orm import Session

from activities.notifications import Channels, NotificationDispatcher, SmtpSink
from carepath.access import COOKIE
from carepath.app import create_app
from carepath.schedules import DIGEST_SCHEDULE, ensure_schedules
from carepath.service import CarepathService
from db.engine import make_engine
from db.migrate import upgrade
from db.models import EpisodeRow, NotificationRow, TaskRow, TimelineItemRow
from db.sessions import open_session
from db.tokens import create_token
from tests.support.live import start_dev_server
from tests.support.temporal import TASK_QUEUE, MemorySink, running_worker

PUBLIC = "https://clinic.example"
NOW = datetime.now(UTC)
TODAY = NOW.date()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def engine(tmp_path):
    url = f"sqlite:///{tmp_path / 'channels.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def seed(engine, ref: str, *, simulated: bool = False) -> str:
    episode_id = uuid.uuid4().hex
    with Session(engine) as session, session.begin():
        session.add(
            EpisodeRow(
                id=episode_id,
                patient_ref=ref,
                pathway_id="ovcf-lumbar",
                pathway_version=1,
                identified_on=TODAY - timedelta(days=30),
                enrolled_on=TODAY - timedelta(days=30),
                phase="conservative",
                status="active",
                simulated=simulated,
                created_at=NOW,
                updated_at=NOW,
            )
        )
    return episode_id


def add_task(
    engine, episode_id: str, code: str, assignee: str, due_on: date | None, priority: str = "routine", **item: Any
) -> None:
    with Session(engine) as session, session.begin():
        row = TimelineItemRow(
            episode_id=episode_id,
            code=code,
            kind="task",
            priority=priority,
            assignee=assignee,
            title=f"{code} title",
            detail=f"{code} detail",
            evidence=[],
            day=30,
            on_date=TODAY,
            occasion="week4",
            created_at=item.get("created_at", NOW),
        )
        session.add(row)
        session.flush()
        session.add(
            TaskRow(
                episode_id=episode_id,
                timeline_item_id=row.id,
                code=code,
                occasion="week4",
                kind="task",
                priority=priority,
                assignee=assignee,
                title=f"{code} title",
                raised_on=TODAY,
                due_on=due_on,
                status="open",
            )
        )


def add_notification(engine, episode_id: str, code: str, role: str, created_at: datetime = NOW) -> None:
    with Session(engine) as session, session.begin():
        session.add(
            NotificationRow(
                dedupe_key=f"{episode_id}:{code}@week4",
                episode_id=episode_id,
                code=code,
                occasion="week4",
                recipient_role=role,
                subject=f"[routine] {code} title",
                body=f"{code} detail",
                created_at=created_at,
                status="pending",
                attempts=0,
            )
        )


def statuses(engine) -> dict[str, tuple[str, int, str | None]]:
    with Session(engine) as session:
        return {n.code: (n.status, n.attempts, n.last_error) for n in session.scalars(select(NotificationRow))}


async def test_email_lands_in_the_smtp_server_with_the_episode_link_and_an_outage_heals(engine):
    mailbox, port = Mailbox(), free_port()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=port)
    smtp.start()
    patients = MemorySink()
    recipients = {"coordinator": ["carol@clinic.example"], "physician": ["pat@clinic.example"]}
    sink = SmtpSink(
        host="127.0.0.1", port=port, sender="carepath@clinic.example", recipients=recipients, starttls=False
    )
    dispatcher = NotificationDispatcher(engine, Channels(clinician=sink, patient=patients), PUBLIC)
    episode_id = seed(engine, "MRN-0042")
    add_task(engine, episode_id, "PAIN_REASSESSMENT", "coordinator", TODAY + timedelta(days=3))
    add_notification(engine, episode_id, "PAIN_REASSESSMENT", "coordinator")
    add_notification(engine, episode_id, "AVOID_BED_REST", "patient")
    try:
        assert dispatcher.deliver_episode(episode_id) == 2
        [mail] = mailbox.messages
        text = mail.get_payload(decode=True).decode()
        assert mail["To"] == "carol@clinic.example" and mail["Subject"] == "[routine] PAIN_REASSESSMENT title"
        assert "Patient: MRN-0042" in text and f"Due: {(TODAY + timedelta(days=3)).isoformat()}" in text
        assert f"{PUBLIC}/ui/episodes/{episode_id}" in text
        assert mail["X-Carepath-Delivery"] == f"{episode_id}:PAIN_REASSESSMENT@week4"
        # Patient messages never go by e-mail: their own channel, without a clinician link.
        assert [m["code"] for m in patients.messages] == ["AVOID_BED_REST"] and "link" not in patients.messages[0]

        # The mail server goes away: the delivery fails, visibly, and nothing is lost.
        smtp.stop()
        add_task(engine, episode_id, "CALCIUM_VITAMIN_D", "physician", TODAY)
        add_notification(engine, episode_id, "CALCIUM_VITAMIN_D", "physician")
        for _ in range(2):
            with pytest.raises(RuntimeError, match="e-mail delivery failed"):
                dispatcher.deliver_episode(episode_id)
        status, attempts, error = statuses(engine)["CALCIUM_VITAMIN_D"]
        assert status == "failed" and attempts == 2 and "e-mail delivery failed" in error
        service = CarepathService(None, engine, TASK_QUEUE)  # type: ignore[arg-type]  (no workflow needed)
        app = create_app(service=service)
        token_id, coordinator = create_token(engine, "carol", "coordinator", "test")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://carepath.test") as api:
            failed = await api.get("/notifications?status=failed", headers={"Authorization": f"Bearer {coordinator}"})
            assert [(n["code"], n["attempts"]) for n in failed.json()] == [("CALCIUM_VITAMIN_D", 2)]
            assert "e-mail delivery failed" in failed.json()[0]["last_error"]
            bad = await api.get("/notifications?status=lost", headers={"Authorization": f"Bearer {coordinator}"})
            assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "status"
            # Signed in as the sign-in form does it: the cookie carries a session, never the token.
            api.cookies.set(COOKIE, open_session(engine, token_id, datetime.now(UTC)))
            worklist = await api.get("/")
            assert "<strong>1</strong> notification failed to deliver" in worklist.text

        # Back again: the failed one is delivered once; nothing already sent is sent again.
        smtp = Controller(mailbox, hostname="127.0.0.1", port=port)
        smtp.start()
        assert dispatcher.deliver_episode(episode_id) == 1
        assert dispatcher.deliver_episode(episode_id) == 0
        assert [m["Subject"] for m in mailbox.messages] == [
            "[routine] PAIN_REASSESSMENT title",
            "[routine] CALCIUM_VITAMIN_D title",
        ]
        assert mailbox.messages[1]["To"] == "pat@clinic.example"
        assert len(patients.messages) == 1
        assert all(s == "delivered" and e is None for s, _, e in statuses(engine).values())
    finally:
        smtp.stop()


async def test_the_digest_schedule_delivers_one_digest_per_role_with_the_right_counts(engine):
    env = await start_dev_server()
    sink = MemorySink()
    try:
        mine = seed(engine, "MRN-1")
        other = seed(engine, "MRN-2")
        story = seed(engine, "SIM-1", simulated=True)
        add_task(engine, mine, "PAIN_REASSESSMENT", "coordinator", TODAY - timedelta(days=2))  # overdue
        add_task(engine, mine, "CALCIUM_VITAMIN_D", "coordinator", TODAY)  # due today
        add_task(engine, other, "PAIN_REASSESSMENT", "coordinator", TODAY + timedelta(days=3))  # later
        add_task(engine, other, "START_OSTEOPOROSIS_THERAPY", "physician", TODAY - timedelta(days=1))  # overdue
        add_task(engine, other, "SURGICAL_CONSULTATION", "physician", None, priority="urgent")  # new urgent
        old = NOW - timedelta(days=2)
        add_task(engine, mine, "OBTAIN_MRI", "physician", None, priority="urgent", created_at=old)  # not new
        add_task(engine, story, "PAIN_REASSESSMENT", "coordinator", TODAY - timedelta(days=9))  # a story: never
        # Left pending by a recording that notified nobody else: the digest run sends it (not a story's).
        add_notification(engine, mine, "AVOID_BED_REST", "patient", created_at=old)
        add_notification(engine, story, "AVOID_BED_REST", "patient", created_at=old)
        async with running_worker(env, engine, sink):
            await ensure_schedules(env.client, TASK_QUEUE, "UTC")
            await ensure_schedules(env.client, TASK_QUEUE, "UTC")  # again: updated, not duplicated
            handle = env.client.get_schedule_handle(DIGEST_SCHEDULE)
            described = await handle.describe()
            [calendar] = described.schedule.spec.calendars
            assert [r.start for r in calendar.hour] == [8] and described.schedule.spec.time_zone_name == "UTC"
            for runs in (1, 2):  # triggered twice on one day: still one digest per role
                await handle.trigger()
                await until_runs(handle, env.client, runs)
        digests = {m["recipient_role"]: m for m in sink.messages if m["code"] == "DIGEST"}
        assert len([m for m in sink.messages if m["code"] == "DIGEST"]) == 2
        day = TODAY.isoformat()
        assert digests["coordinator"]["subject"] == f"[digest] coordinator {day}: 0 new urgent, 1 overdue, 1 due today"
        assert digests["physician"]["subject"] == f"[digest] physician {day}: 1 new urgent, 1 overdue, 0 due today"
        body = digests["coordinator"]["body"]
        assert "Open tasks per assignee: coordinator 3, physician 3" in body
        assert "MRN-1: PAIN_REASSESSMENT title" in body and "SIM-1" not in body
        assert f"/ui/episodes/{mine}" in body
        assert "MRN-2: SURGICAL_CONSULTATION title" in digests["physician"]["body"]
        assert [(m["episode_id"], m["code"]) for m in sink.messages if m["code"] != "DIGEST"] == [
            (mine, "AVOID_BED_REST")
        ]
    finally:
        await env.client.get_schedule_handle(DIGEST_SCHEDULE).delete()
        await env.shutdown()


async def until_runs(handle: Any, client: Any, runs: int) -> None:
    """Wait until the schedule has started ``runs`` digests and the last one has finished."""
    for _ in range(200):
        actions = (await handle.describe()).info.recent_actions
        if len(actions) >= runs:
            started = actions[-1].action
            await client.get_workflow_handle(started.workflow_id, run_id=started.first_execution_run_id).result()
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the schedule did not start {runs} digests")


def test_settings_route_clinicians_to_email_and_patients_to_their_own_channel(tmp_path):
    from activities.channels import sink
    from carepath.settings import Settings

    settings = Settings(
        notification_sink="email",
        smtp_host="smtp.clinic.example",
        smtp_to_coordinator="a@clinic.example, b@clinic.example",
        patient_file=str(tmp_path / "patients.jsonl"),
    )
    channels = sink(settings)
    assert isinstance(channels, Channels) and isinstance(channels.clinician, SmtpSink)
    assert channels.clinician.recipients == {"coordinator": ["a@clinic.example", "b@clinic.example"], "physician": []}
    channels.deliver({"recipient_role": "patient", "delivery_id": "x", "subject": "s", "body": "b"})
    assert (tmp_path / "patients.jsonl").read_text().count("\n") == 1  # not e-mailed
    with pytest.raises(ValueError, match="CAREPATH_SMTP_HOST"):
        sink(Settings(notification_sink="email"))
