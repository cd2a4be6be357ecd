"""Faults: the worker is SIGKILLed at random moments; nothing is lost and nothing is written twice.

The production worker runs as a separate process against a real Temporal dev server and a SQLite
file; the test enrolls episodes and records events through the service (client retries reuse the
idempotency key) while a chaos task kills and restarts the worker. The pure rules, fed the same
inputs, are the oracle for every timeline.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from temporalio.client import Client

from carepath.codec import KeyRing, encrypted_converter
from carepath.pathway import rules
from carepath.pathway.definition import load_definition
from carepath.pathway.inputs import Enrollment, parse_event
from carepath.service import CarepathService
from carepath.temporal import DATA_CONVERTER
from db.engine import make_engine
from db.migrate import upgrade
from db.models import EventRow, NotificationRow, TaskRow, TimelineItemRow
from tests.support.live import start_dev_server
from workflows.contracts import EventRequest
from workflows.episode import EpisodeWorkflow

ROOT = Path(__file__).resolve().parent.parent
TASK_QUEUE = "carepath-faults"
EPISODES = int(os.environ.get("CAREPATH_FAULT_EPISODES", "12"))
KILLS = int(os.environ.get("CAREPATH_FAULT_KILLS", "4"))


class WorkerProcess:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "worker.py")],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.kills += 1

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _enrollment(i: int) -> dict:
    rng = random.Random(i)
    return {
        "identified_on": date.today().isoformat(),
        "patient": {"ref": f"fault-{i}-{uuid.uuid4().hex[:6]}", "age": rng.randint(55, 95), "sex": "female"},
        "fracture": {
            "levels": [rng.choice(["L1", "L3", "L4"])],
            "acute_injury": rng.random() < 0.5,
            "correlating_symptoms": rng.random() < 0.5,
        },
        "pain_nrs": rng.randint(0, 10),
        "analgesics": rng.sample(["acetaminophen", "nsaid", "opioid"], rng.randint(0, 2)),
        "calcium_vitamin_d": rng.random() < 0.5,
        "red_flags": ["instability"] if rng.random() < 0.2 else [],
    }


def _events(i: int) -> list[dict]:
    rng = random.Random(1000 + i)
    today = date.today().isoformat()
    choices = [
        {"type": "medication_started", "agent": rng.choice(["alendronate", "denosumab", "opioid", "calcitonin"])},
        {
            "type": "pain_assessment",
            "nrs": rng.randint(0, 10),
            "analgesics": ["opioid"],
            "mobility": "bed_rest",
            "opioid_effects": ["fall"],
            "symptoms_changed": True,
        },
        {"type": "imaging", "modality": "ct", "new_fracture": True},
        {"type": "red_flag", "flag": "cord_compression"},
        {"type": "hospital_admission"},
        {"type": "note", "text": "phoned the patient", "author": "kim"},
    ]
    return [{"occurred_on": today, **rng.choice(choices)} for _ in range(rng.randint(2, 5))]


async def _until_accepted(operation, attempts: int = 30):
    """A client that retries on timeouts, as an API client would (the same idempotency key)."""
    for attempt in range(attempts):
        try:
            return await asyncio.wait_for(operation(), timeout=30)
        except (TimeoutError, RuntimeError):
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.5)
    return None


async def test_sigkilled_worker_loses_nothing_and_duplicates_nothing(tmp_path):
    env = await start_dev_server()
    ring = KeyRing.generate()
    ring.save(tmp_path / "keys.json")
    url = f"sqlite:///{tmp_path / 'faults.db'}"
    upgrade(url)
    engine = make_engine(url)
    address = env.client.service_client.config.target_host
    worker = WorkerProcess(
        {
            **os.environ,
            "CAREPATH_TEMPORAL_ADDRESS": address,
            "CAREPATH_DATABASE_URL": url,
            "CAREPATH_TASK_QUEUE": TASK_QUEUE,
            "CAREPATH_KEY_FILE": str(tmp_path / "keys.json"),
            "CAREPATH_NOTIFICATION_FILE": str(tmp_path / "notifications.jsonl"),
        }
    )
    client = Client(
        env.client.service_client, namespace="default", data_converter=encrypted_converter(DATA_CONVERTER, ring)
    )
    service = CarepathService(client, engine, TASK_QUEUE, pathway_version=1)
    worker.start()
    done = asyncio.Event()

    async def chaos() -> None:
        rng = random.Random(7)
        while worker.kills < KILLS and not done.is_set():
            await asyncio.sleep(rng.uniform(0.3, 1.5))
            worker.kill()
            await asyncio.sleep(rng.uniform(0.1, 0.5))
            worker.start()

    async def patient(i: int) -> tuple[str, datetime, list[dict]]:
        model = Enrollment.model_validate(_enrollment(i))
        enrolled = await _until_accepted(lambda: service.enroll(model, "coordinator:fault"))
        events = _events(i)
        for n, body in enumerate(events):
            key = f"{enrolled.episode_id[:40]}-{n}"
            await _until_accepted(
                lambda b=body, k=key: service.record_event(enrolled.episode_id, parse_event(b), "coordinator:fault", k)
            )
        started = (await client.get_workflow_handle(f"episode-{enrolled.episode_id}").describe()).start_time
        return enrolled.episode_id, started, events

    try:
        chaos_task = asyncio.create_task(chaos())
        stories = await asyncio.gather(*(patient(i) for i in range(EPISODES)))
        done.set()
        await chaos_task
        await asyncio.sleep(3)  # let notification deliveries settle after the last restart
        assert worker.kills >= min(KILLS, 1)
        definition = load_definition(version=1)
        with Session(engine) as session:
            for i, (episode_id, started, events) in enumerate(stories):
                state, changes = rules.enroll(
                    definition, Enrollment.model_validate(_enrollment(i)), episode_id, started
                )
                expected = list(changes.items)
                for body in events:
                    state, more = rules.apply_event(state, parse_event(body), datetime.now(UTC))
                    expected += more.items
                got = session.execute(
                    select(TimelineItemRow.code, TimelineItemRow.milestone)
                    .where(TimelineItemRow.episode_id == episode_id)
                    .order_by(TimelineItemRow.id)
                ).all()
                assert sorted(got) == sorted((e.code, e.milestone) for e in expected), episode_id
                assert session.scalar(
                    select(func.count()).select_from(EventRow).where(EventRow.episode_id == episode_id)
                ) == len(events)
                assert session.scalar(
                    select(func.count()).select_from(TaskRow).where(TaskRow.episode_id == episode_id)
                ) == len({(e.code, e.milestone) for e in expected if e.kind in ("task", "flag", "escalation")})
            notified = session.scalars(select(NotificationRow)).all()
        sunk = (tmp_path / "notifications.jsonl").read_text().splitlines()
        assert len({n.dedupe_key for n in notified}) == len(notified)
        delivered_ids = {line.split('"delivery_id": "')[1].split('"')[0] for line in sunk}
        assert {n.dedupe_key for n in notified if n.status == "delivered"} <= delivered_ids
        assert sum(n.status == "delivered" for n in notified) >= len(notified) * 0.9  # settling stragglers
    finally:
        done.set()
        worker.stop()
        engine.dispose()
        await env.shutdown()


@pytest.mark.postgres
async def test_database_outage_delays_but_loses_and_duplicates_nothing(tmp_path):
    from tests.support.postgres import controllable_postgres
    from tests.support.temporal import MemorySink, running_worker

    env = await start_dev_server()
    folder = tempfile.mkdtemp(prefix="carepath-pg-")
    try:
        # Under /tmp itself: the postgres user cannot enter root's pytest folders.
        with (
            tempfile.TemporaryDirectory(prefix="carepath-pg-") as folder,
            controllable_postgres(Path(folder)) as server,
        ):
            upgrade(server.url)
            engine = make_engine(server.url)
            service = CarepathService(env.client, engine, "carepath-tests", pathway_version=1)
            async with running_worker(env, engine, MemorySink()):
                model = Enrollment.model_validate(_enrollment(1) | {"red_flags": []})
                enrolled = await service.enroll(model, "coordinator:outage")
                server.stop()
                with pytest.raises(OperationalError):  # reads fail fast (the API answers 503)
                    service.episode(enrolled.episode_id)
                flag = parse_event(
                    {"type": "red_flag", "occurred_on": date.today().isoformat(), "flag": "cord_compression"}
                )
                # An event the workflow accepted as the database went away: its recording retries.
                handle = env.client.get_workflow_handle(f"episode-{enrolled.episode_id}")
                request = EventRequest(event=flag, event_id="outage-1", actor="coordinator:outage")
                pending = asyncio.create_task(handle.execute_update(EpisodeWorkflow.record_event, request))
                await asyncio.sleep(4)
                assert not pending.done()  # the activity is retrying; the update waits for it
                server.start()
                outcome = await asyncio.wait_for(pending, 90)
                assert "SURGICAL_CONSULTATION@enrollment" in outcome.raised
                with Session(engine) as session:
                    count = session.scalar(
                        select(func.count())
                        .select_from(TaskRow)
                        .where(TaskRow.episode_id == enrolled.episode_id, TaskRow.code == "SURGICAL_CONSULTATION")
                    )
                    events = session.scalar(select(func.count()).select_from(EventRow))
                assert (count, events) == (1, 1)
            engine.dispose()
    finally:
        await env.shutdown()
        shutil.rmtree(folder, ignore_errors=True)
