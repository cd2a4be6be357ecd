"""Load test: many clients post notes on one episode; nothing answered "it will be recorded" is lost.

    .venv/bin/python bench/load.py [--clients 30] [--seconds 60] [--history-limit 100] [--wait 2]

Starts a Temporal dev server (in memory, real time), the production worker and the API app in
this process on a temporary SQLite file, enrolls one patient with continue-as-new forced small
(``history_limit`` history events per run), then ``--clients`` clients post ``note`` events on
that one episode for ``--seconds`` seconds, each with its own Idempotency-Key (written into the
note's text). Every answer is counted: 200 (recorded), 503 (promised: "it will be recorded"),
anything else. After the clients stop it waits up to ``--settle`` seconds for promised writes
to land, then counts each acknowledged or promised note in the recorded events and audit trail:
``lost`` (never recorded) and ``doubled`` (recorded or applied more than once) must both be 0.

The baseline beside it is bare Temporal on the same server: the same clients sending no-op
updates to one bench/bare.py workflow for a few seconds (what one workflow takes at all).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from bench.bare import BareWorkflow  # noqa: E402
from carepath.app import create_app  # noqa: E402
from carepath.service import CarepathService  # noqa: E402
from carepath.temporal import DATA_CONVERTER, bundled_binary, quiet_runtime  # noqa: E402
from db.engine import make_engine  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.models import AuditRow, EventRow, IdempotencyKeyRow  # noqa: E402
from db.tokens import create_token  # noqa: E402
from worker import build_worker  # noqa: E402

TASK_QUEUE = "carepath-load"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Figures:
    requests: int = 0
    recorded: int = 0  # answered 200
    promised: int = 0  # answered 503 (or 202): "it will be recorded"
    other: dict[str, int] = field(default_factory=dict)  # any other answer, by status
    lost: int = 0
    doubled: int = 0
    continued_as_new: int = 0
    bare_updates_per_s: float = 0.0
    notes_per_s: float = 0.0
    settle_seconds: float = 0.0


def enrollment(identified_on: str) -> dict[str, Any]:
    """The fewest fields an enrollment needs (the rest are absent, not defaults)."""
    patient = {"ref": f"load-{uuid.uuid4().hex[:8]}", "age": 70, "sex": "female"}
    return {"identified_on": identified_on, "patient": patient, "fracture": {"levels": ["L2"]}, "pain_nrs": 5}


async def post_notes(
    http: httpx.AsyncClient, episode_id: str, today: str, client_no: int, until: float, answers: dict[str, int]
) -> None:
    """One client: a note after another until ``until``, each with its own key; ``answers`` key -> status."""
    n = 0
    while time.monotonic() < until:
        key = f"c{client_no}-{n}-{uuid.uuid4().hex[:6]}"
        n += 1
        body = {"type": "note", "occurred_on": today, "text": f"load note {key}", "author": "load"}
        try:
            response = await http.post(f"/episodes/{episode_id}/events", json=body, headers={"Idempotency-Key": key})
            answers[key] = response.status_code
        except httpx.HTTPError as exc:
            answers[key] = -1
            log(f"client {client_no}: {type(exc).__name__}")


def count_recorded(engine: Any, episode_id: str) -> tuple[Counter[str], Counter[str]]:
    """Per key: how many event rows carry it, and how many audit entries applied one of them."""
    with Session(engine) as session:
        events = session.execute(select(EventRow.id, EventRow.payload).where(EventRow.episode_id == episode_id)).all()
        audits = session.scalars(
            select(AuditRow.detail).where(AuditRow.episode_id == episode_id, AuditRow.action == "event:note")
        ).all()
    key_of = {event_id: str(payload.get("text", "")).removeprefix("load note ") for event_id, payload in events}
    rows = Counter(key_of.values())
    applied = Counter(key_of.get(detail.get("event_id"), "?") for detail in audits)
    return rows, applied


async def settle(engine: Any, episode_id: str, expected: set[str], timeout: float) -> float:
    """Seconds until every expected key is recorded and nothing is left unanswered, or ``timeout``."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        rows, _ = await asyncio.to_thread(count_recorded, engine, episode_id)
        if expected <= set(rows) and not await asyncio.to_thread(unanswered, engine, episode_id):
            break
        await asyncio.sleep(0.5)
    return time.monotonic() - began


def unanswered(engine: Any, episode_id: str) -> int:
    """Claims still in the outbox (sent, not yet answered by the workflow)."""
    with Session(engine) as session:
        return len(
            session.scalars(
                select(IdempotencyKeyRow.key).where(
                    IdempotencyKeyRow.episode_id == episode_id, IdempotencyKeyRow.status != "done"
                )
            ).all()
        )


async def bare_baseline(env: WorkflowEnvironment, clients: int, seconds: float) -> float:
    """Updates/s one bare workflow takes from ``clients`` clients."""
    queue = f"bare-{uuid.uuid4().hex[:6]}"
    async with Worker(env.client, task_queue=queue, workflows=[BareWorkflow]):
        handle = await env.client.start_workflow(BareWorkflow.run, id=f"bare-{uuid.uuid4().hex}", task_queue=queue)
        done = 0
        until = time.monotonic() + seconds

        async def lane() -> None:
            nonlocal done
            while time.monotonic() < until:
                with contextlib.suppress(Exception):
                    await handle.execute_update(BareWorkflow.ping)
                    done += 1

        await asyncio.gather(*(lane() for _ in range(clients)))
        await handle.terminate()
    return done / seconds


async def continued(env: WorkflowEnvironment, episode_id: str) -> int:
    runs = 0
    async for _ in env.client.list_workflows(f"WorkflowId = 'episode-{episode_id}'"):
        runs += 1
    return max(runs - 1, 0)


async def run_load(
    env: WorkflowEnvironment,
    database_url: str,
    clients: int,
    seconds: float,
    history_limit: int = 100,
    wait: float = 2.0,
    settle_seconds: float = 60.0,
    bare_seconds: float = 5.0,
) -> Figures:
    """The load run on ``env``'s server; the API app is served in-process over ASGI."""
    upgrade(database_url)
    engine = make_engine(database_url)
    service = CarepathService(env.client, engine, TASK_QUEUE, update_wait=wait, history_limit=history_limit)
    _, token = create_token(engine, "load", "physician", "bench")
    figures = Figures()
    if bare_seconds:
        figures.bare_updates_per_s = await bare_baseline(env, clients, bare_seconds)
    app = create_app(service=service)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with ThreadPoolExecutor(max_workers=8) as threads:
            worker = build_worker(env.client, engine, TASK_QUEUE, threads, _NoSink(), 100, 8)
            async with (
                worker,
                httpx.AsyncClient(transport=transport, base_url="http://load", headers=headers, timeout=120) as http,
            ):
                today = service.today().isoformat()
                enrolled = await http.post("/episodes", json=enrollment(today))
                enrolled.raise_for_status()
                episode_id = enrolled.json()["episode_id"]
                answers: dict[str, int] = {}
                began = time.monotonic()
                until = began + seconds
                await asyncio.gather(*(post_notes(http, episode_id, today, i, until, answers) for i in range(clients)))
                took = time.monotonic() - began
                promised = {key for key, status in answers.items() if status in (202, 503)}
                recorded = {key for key, status in answers.items() if status in (200, 201)}
                figures.settle_seconds = await settle(engine, episode_id, promised | recorded, settle_seconds)
                rows, applied = await asyncio.to_thread(count_recorded, engine, episode_id)
                figures.requests = len(answers)
                figures.recorded, figures.promised = len(recorded), len(promised)
                other = Counter(str(s) for s in answers.values() if s not in (200, 201, 202, 503))
                figures.other = dict(other)
                figures.lost = len((promised | recorded) - set(rows))
                figures.doubled = sum(1 for k in set(rows) | set(applied) if rows[k] > 1 or applied[k] > 1)
                figures.notes_per_s = len(rows) / took
                figures.continued_as_new = await continued(env, episode_id)
    finally:
        engine.dispose()
    return figures


class _NoSink:
    """Notifications are not what this measures: accepted and dropped."""

    def deliver(self, message: dict[str, Any]) -> None:
        return None


async def main(args: argparse.Namespace) -> Figures:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=bundled_binary("temporal"),
        data_converter=DATA_CONVERTER,
        runtime=quiet_runtime(),
        ui=False,
        dev_server_log_level="never",
    )
    try:
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{Path(folder) / 'load.db'}"
            return await run_load(
                env, url, args.clients, args.seconds, args.history_limit, args.wait, args.settle, args.bare_seconds
            )
    finally:
        await env.shutdown()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--history-limit", type=int, default=100, help="continue-as-new past this many events")
    parser.add_argument("--wait", type=float, default=2.0, help="CAREPATH_UPDATE_WAIT_SECONDS for the run")
    parser.add_argument("--settle", type=float, default=300.0, help="seconds to wait for promised writes")
    parser.add_argument("--bare-seconds", type=float, default=5.0)
    figures = asyncio.run(main(parser.parse_args()))
    print(json.dumps(asdict(figures)))
    print(
        f"SUMMARY: {figures.requests} requests, {figures.recorded} recorded at once, {figures.promised} answered 503, "
        f"other {figures.other or 'none'}; lost {figures.lost}, doubled {figures.doubled}; "
        f"{figures.continued_as_new} continue-as-new; {figures.notes_per_s:.1f} notes/s "
        f"(bare Temporal: {figures.bare_updates_per_s:.1f} updates/s on one workflow)"
    )


if __name__ == "__main__":
    cli()
