"""Faults during enrollment: a crash at any point leaves every patient either with a working
episode or free to be enrolled, never with a ghost that blocks them.

The API process (``tests/support/enroll_process.py``, which runs ``CarepathService.enroll``) is
SIGKILLed at each point of an enrollment, and the worker (``tests/support/worker_process.py``)
at its first recording, before and after the commit, or kept down. For every crash point three
patients are enrolled at once; afterwards one is re-enrolled with the same enrollment (a client's
retry), one with a changed enrollment, and one is left to the reconciliation sweep and then
enrolled if it has no episode. A working episode is: its workflow running, its baseline on the
timeline, an ``enroll`` audit entry first; and nothing else of that patient is running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from carepath.app import create_app
from carepath.service import CarepathService
from db.engine import make_engine
from db.models import AuditRow, EpisodeRow, TimelineItemRow
from db.tokens import create_token
from tests.support.live import start_dev_server
from tests.support.worker_process import ROOT, WorkerProcess
from workflows.contracts import workflow_id

TODAY = date.today()

# (crash point of the API process, what the worker does meanwhile)
SCENARIOS = [
    ("reserve-before-commit", "up"),
    ("reserved", "up"),
    ("start-before-send", "up"),
    ("start-sent", "down"),  # the workflow exists, its baseline cannot be recorded yet
    ("start-sent", "before-commit"),  # ... and the worker dies recording it
    ("answered", "up"),
    ("none", "before-commit"),  # only the worker dies, mid-recording
    ("none", "after-commit"),  # ... after its transaction committed, before reporting back
]
ROLES = ("retry", "changed", "sweep")


def _enrollment(ref: str, pain: int = 6) -> dict[str, Any]:
    return {
        "identified_on": (TODAY - timedelta(days=3)).isoformat(),
        "patient": {"ref": ref, "age": 77, "sex": "female"},
        "fracture": {"levels": ["L2"], "acute_injury": False, "correlating_symptoms": False},
        "pain_nrs": pain,
        "analgesics": ["acetaminophen"],
        "contraindications": [],
        "osteoporosis_therapy": None,
        "calcium_vitamin_d": False,
        "imaging": [{"performed_on": TODAY.isoformat(), "modality": "xray"}],
        "red_flags": [],
    }


# These runs wait for killed workers to come back; the API's bound (503 + Retry-After, tested in
# tests/test_faults.py) would only turn those waits into retries.
KILLS_OUTLAST_THE_BOUND = 600.0


@dataclass
class Patient:
    ref: str
    role: str
    scenario: str
    body: dict[str, Any]
    crash_output: str = ""
    recovery: str = ""


class Rig:
    """A dev server, the worker in its own process, the database, and the API in this process."""

    def __init__(self, tmp_path: Path, client: Client, database_url: str) -> None:
        self.tmp = tmp_path
        self.client = client
        self.address = client.service_client.config.target_host
        self.url = database_url
        self.queue = f"enroll-faults-{uuid.uuid4().hex[:8]}"
        self.engine: Engine = make_engine(database_url)
        self.service = CarepathService(
            client, self.engine, self.queue, pathway_version=1, update_wait=KILLS_OUTLAST_THE_BOUND
        )
        self.worker: WorkerProcess | None = None
        self.worker_kills = 0
        self.keeper: asyncio.Task[None] | None = None

    async def start_worker(self, crash: str | None = None) -> None:
        await self.stop_worker()
        extra: tuple[str, ...] = ()
        if crash:
            marker = self.tmp / f"crash-{uuid.uuid4().hex[:6]}"
            extra = ("--crash-once-at", crash, "--crash-marker", str(marker))
        self.worker = WorkerProcess(
            address=self.address,
            task_queue=self.queue,
            database_url=self.url,
            sink_file=self.tmp / "notifications.jsonl",
            log_file=self.tmp / "worker.log",
            extra_args=extra,
        )
        await self.worker.start()

    async def stop_worker(self) -> None:
        if self.worker is not None:
            await self.worker.kill()
            self.worker = None

    def keep_worker_alive(self) -> None:
        """From now until ``stop_keeping``, restart the worker whenever it has died (a crash point hit it)."""
        if self.keeper is None:
            self.keeper = asyncio.create_task(self._restart_when_dead())

    async def stop_keeping(self) -> None:
        if self.keeper is not None:
            self.keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.keeper
            self.keeper = None

    async def _restart_when_dead(self) -> None:
        while True:
            if self.worker is not None and not self.worker.running:
                self.worker_kills += 1
                await self.start_worker()
            await asyncio.sleep(0.05)

    async def enroll_in_process(self, patient: Patient, crash_at: str) -> str:
        path = self.tmp / f"{patient.ref}.json"
        path.write_text(json.dumps(patient.body))
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.support.enroll_process",
            "--address",
            self.address,
            "--task-queue",
            self.queue,
            "--database-url",
            self.url,
            "--enrollment",
            str(path),
            "--crash-at",
            crash_at,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 120)
        if process.returncode == -9:
            return "killed"
        assert process.returncode == 0, err.decode()[-2000:]
        return out.decode().strip()

    async def status(self, episode_id: str) -> WorkflowExecutionStatus | None:
        try:
            return (await self.client.get_workflow_handle(workflow_id(episode_id)).describe()).status
        except RPCError:
            return None

    def rows(self, ref: str) -> list[EpisodeRow]:
        with Session(self.engine) as session:
            return list(session.scalars(select(EpisodeRow).where(EpisodeRow.patient_ref == ref)))

    def audit(self, episode_id: str) -> list[AuditRow]:
        with Session(self.engine) as session:
            return list(
                session.scalars(select(AuditRow).where(AuditRow.episode_id == episode_id).order_by(AuditRow.id))
            )

    def timeline(self, episode_id: str) -> list[str]:
        with Session(self.engine) as session:
            return list(session.scalars(select(TimelineItemRow.code).where(TimelineItemRow.episode_id == episode_id)))


async def _until(check: Any, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def _assert_working(rig: Rig, patient: Patient) -> str:
    """The patient has exactly one working episode; anything else of theirs was released."""

    async def settled() -> bool:  # a backed reservation becomes active once its baseline lands
        return not any(row.status == "reserving" for row in rig.rows(patient.ref))

    await _until(settled, what=f"{patient.ref}'s reservation to settle")
    rows = rig.rows(patient.ref)
    active = [row for row in rows if row.status == "active"]
    assert len(active) == 1, (patient, [(r.id, r.status) for r in rows])
    episode = active[0]
    assert await rig.status(episode.id) == WorkflowExecutionStatus.RUNNING, patient
    assert rig.timeline(episode.id), patient  # the baseline is recorded
    audit = rig.audit(episode.id)
    assert audit and audit[0].action == "enroll", (patient, [a.action for a in audit])
    for row in rows:
        if row.id == episode.id:
            continue
        assert row.status == "abandoned", (patient, row.id, row.status)
        assert await rig.status(row.id) != WorkflowExecutionStatus.RUNNING, (patient, row.id)
        assert not rig.timeline(row.id), (patient, row.id)  # an abandoned reservation recorded nothing
        assert [a.action for a in rig.audit(row.id)] == ["enroll:released"], (patient, row.id)
    return episode.id


async def _recover(rig: Rig, api: httpx.AsyncClient, patient: Patient) -> None:
    """What a user (or the sweep) does next; the patient ends with one working episode."""
    if patient.role == "sweep":
        await rig.service.reconcile_enrollments(older_than=timedelta(0))
        rows = rig.rows(patient.ref)
        for row in rows:  # what is still reserving is backed by a running workflow
            if row.status == "reserving":
                assert await rig.status(row.id) == WorkflowExecutionStatus.RUNNING, (patient, row.id)
        if any(row.status in ("active", "reserving") for row in rows):
            patient.recovery = "kept"
            return
        body = patient.body
    else:
        body = patient.body if patient.role == "retry" else {**patient.body, "pain_nrs": 8}
    answer = await api.post("/episodes", json=body)
    if answer.status_code == 409:  # only ever because a working episode exists: checked next
        assert answer.json()["detail"][0]["field"] == "patient.ref", answer.text
        patient.recovery = "409"
        episode_id = await _assert_working(rig, patient)
        assert episode_id in answer.text, answer.text
        return
    assert answer.status_code == 201, answer.text
    patient.recovery = "201"
    assert await _assert_working(rig, patient) == answer.json()["episode_id"]


async def _crash_round(rig: Rig, crash_at: str, worker: str, patients: list[Patient]) -> None:
    if worker == "down":
        await rig.stop_worker()
    elif worker in ("before-commit", "after-commit"):
        await rig.start_worker(crash=worker)
    elif rig.worker is None or not rig.worker.running:
        await rig.start_worker()
    if worker != "down":
        rig.keep_worker_alive()
    outputs = await asyncio.gather(*(rig.enroll_in_process(p, crash_at) for p in patients))
    for patient, output in zip(patients, outputs, strict=True):
        patient.crash_output = output
        if crash_at == "none":  # the API process lived: the enrollment went through in the end
            assert output.startswith("enrolled "), (patient, output)
        else:
            assert output == "killed", (patient, output)
    if rig.worker is None or not rig.worker.running:
        await rig.start_worker()
    rig.keep_worker_alive()  # through the recovery too: an armed crash may strike only now


async def test_a_crash_at_any_point_of_enrollment_leaves_no_ghost(tmp_path, database_url):
    env = await start_dev_server()
    rig = Rig(tmp_path, env.client, database_url)
    _, token = create_token(rig.engine, "faults", "coordinator", "test")
    app = create_app(service=rig.service)
    timings: dict[str, float] = {}
    everyone: list[Patient] = []
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://carepath.test",
            headers={"Authorization": f"Bearer {token}"},
        ) as api:
            for crash_at, worker in SCENARIOS:
                began = time.monotonic()
                name = f"{crash_at}/{worker}"
                refs = [f"ef-{uuid.uuid4().hex[:10]}" for _ in ROLES]
                patients = [Patient(ref, role, name, _enrollment(ref)) for ref, role in zip(refs, ROLES, strict=True)]
                await _crash_round(rig, crash_at, worker, patients)
                for patient in patients:
                    await _recover(rig, api, patient)
                    await _assert_working(rig, patient)
                await rig.stop_keeping()
                everyone += patients
                timings[name] = round(time.monotonic() - began, 1)
            # Nothing is left half-enrolled anywhere, and a last sweep has nothing to do.
            report = await rig.service.reconcile_enrollments(older_than=timedelta(0))
            assert report.released == [] and report.in_progress == [], report
            with Session(rig.engine) as session:
                assert session.scalars(select(EpisodeRow).where(EpisodeRow.status == "reserving")).all() == []
    finally:
        await rig.stop_keeping()
        await rig.stop_worker()
        rig.engine.dispose()
        await env.shutdown()
    outcomes = {f"{p.scenario} {p.role}": f"{p.crash_output.split(' ')[0]} -> {p.recovery}" for p in everyone}
    summary = {"seconds": timings, "outcomes": outcomes, "worker kills": rig.worker_kills}
    print("enrollment faults:", json.dumps(summary))
    assert len(everyone) == len(SCENARIOS) * len(ROLES)
