"""Benchmark: carepath on a live local Temporal dev server, against bare Temporal on the same server.

    .venv/bin/python bench/live.py --n 2000 [--concurrency 50]

1. Enrolls N episodes through ``CarepathService.enroll`` (the code behind POST /episodes: reserve
   the patient, start the workflow, wait until the baseline is recorded), encrypted payloads, with
   the production worker in a separate process on SQLite. Reports enrollments/s.
2. Leaves them sleeping and reports the worker process's RSS.
3. Starts a few episodes whose week-4 milestone falls due ~15 s from now (a definition variant
   moves the action time) and reports how long after the due time the task is recorded.
4. Starts N bare no-op workflows (bench/bare.py) on the same server: start-only rate, and start +
   a no-op update (which, like enrollment, waits for the worker) rate. Reports the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from bench.bare import BareWorkflow  # noqa: E402
from carepath.codec import KeyRing, encrypted_converter  # noqa: E402
from carepath.pathway.definition import PathwayDefinition, load_definition  # noqa: E402
from carepath.pathway.inputs import Enrollment  # noqa: E402
from carepath.service import CarepathService  # noqa: E402
from carepath.temporal import DATA_CONVERTER, bundled_binary, quiet_runtime  # noqa: E402
from db.engine import make_engine  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.models import TimelineItemRow  # noqa: E402
from workflows.contracts import EpisodeStart, workflow_id  # noqa: E402
from workflows.episode import EpisodeWorkflow  # noqa: E402

TASK_QUEUE = "carepath-bench"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def enrollment(i: int, identified_on: date) -> Enrollment:
    return Enrollment.model_validate(
        {
            "identified_on": identified_on.isoformat(),
            "patient": {"ref": f"live-{i}-{uuid.uuid4().hex[:6]}", "age": 60 + i % 35, "sex": "female"},
            "fracture": {"levels": ["L2"]},
            "pain_nrs": i % 11,
            "analgesics": ["nsaid"] if i % 2 else ["opioid"],
        }
    )


async def bounded(n: int, concurrency: int, make) -> float:
    """Run ``make(i)`` for i < n with at most ``concurrency`` in flight; returns seconds."""
    gate = asyncio.Semaphore(concurrency)
    done = 0

    async def one(i: int) -> None:
        nonlocal done
        async with gate:
            await make(i)
        done += 1
        if done % 500 == 0:
            print(f"  {done}/{n}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - started


async def main(n: int, concurrency: int) -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=bundled_binary("temporal"),
        data_converter=DATA_CONVERTER,
        runtime=quiet_runtime(),
        ui=False,
        dev_server_log_level="error",
    )
    address = env.client.service_client.config.target_host
    tmp = Path(tempfile.mkdtemp(prefix="carepath-live-"))
    ring = KeyRing.generate()
    ring.save(tmp / "keys.json")
    url = f"sqlite:///{tmp / 'carepath.db'}"
    upgrade(url)
    worker_env = {
        **os.environ,
        "CAREPATH_TEMPORAL_ADDRESS": address,
        "CAREPATH_DATABASE_URL": url,
        "CAREPATH_TASK_QUEUE": TASK_QUEUE,
        "CAREPATH_KEY_FILE": str(tmp / "keys.json"),
        "CAREPATH_NOTIFICATION_FILE": str(tmp / "notifications.jsonl"),
        "CAREPATH_MAX_CACHED_WORKFLOWS": str(n + 1000),
    }
    worker = subprocess.Popen(
        [sys.executable, str(ROOT / "worker.py")],
        env=worker_env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = Client(
        env.client.service_client, namespace="default", data_converter=encrypted_converter(DATA_CONVERTER, ring)
    )
    engine = make_engine(url)
    service = CarepathService(client, engine, TASK_QUEUE, pathway_version=1)
    try:
        await asyncio.sleep(2)
        baseline = rss_mib(worker.pid)
        print(f"worker RSS before enrolling: {baseline:.0f} MiB", flush=True)
        today = datetime.now(UTC).date()
        took = await bounded(n, concurrency, lambda i: service.enroll(enrollment(i, today), "bench"))
        carepath_rate = n / took
        print(
            f"carepath: {n} enrollments in {took:.1f} s = {carepath_rate:.0f}/s (concurrency {concurrency})", flush=True
        )
        await asyncio.sleep(5)
        rss = rss_mib(worker.pid)
        print(
            f"worker RSS with {n} sleeping episodes: {rss:.0f} MiB "
            f"({1024 * (rss - baseline) / n:.0f} KiB per episode above the idle worker)"
        )

        latency = await milestone_latency(client, engine, count=10)
        print(
            f"due milestone acted on: median {latency[len(latency) // 2]:.2f} s, max {latency[-1]:.2f} s "
            f"after its due time ({len(latency)} episodes)"
        )

        start_rate, update_rate = await bare_rates(env, n, concurrency)
        print(f"bare Temporal: starts {start_rate:.0f}/s; start + no-op update {update_rate:.0f}/s")
        print(
            f"SUMMARY: enrollments {carepath_rate:.0f}/s = {carepath_rate / start_rate:.2f} x bare starts "
            f"({carepath_rate / update_rate:.2f} x bare start+update; target >= 0.6); worker RSS {rss:.0f} MiB "
            f"for {n} sleeping episodes (target <= 500 MiB for 10,000); milestone latency median "
            f"{latency[len(latency) // 2]:.2f} s"
        )
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        engine.dispose()
        await env.shutdown()


async def milestone_latency(client: Client, engine, count: int) -> list[float]:
    """Episodes whose week-4 milestone is due ~15 s from now; seconds from due time to the task row."""
    due = datetime.now(UTC) + timedelta(seconds=15)
    if due.date() != datetime.now(UTC).date():
        return [float("nan")]
    base = json.loads(load_definition(version=1).model_dump_json())
    base["clock"]["action_time"] = due.time().replace(microsecond=0).isoformat()
    variant = PathwayDefinition.model_validate(base)
    due_at = datetime.combine(due.date(), variant.clock.action_time, UTC)
    ids = []
    for i in range(count):
        episode_id = uuid.uuid4().hex
        ids.append(episode_id)
        start = EpisodeStart(
            episode_id=episode_id,
            definition=variant,
            enrollment=enrollment(i, due.date() - timedelta(days=28)),
            actor="bench",
        )
        await client.start_workflow(EpisodeWorkflow.run, start, id=workflow_id(episode_id), task_queue=TASK_QUEUE)
    latencies: dict[str, float] = {}
    deadline = time.monotonic() + 120
    while len(latencies) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        with Session(engine) as session:
            rows = session.execute(
                select(TimelineItemRow.episode_id, func.min(TimelineItemRow.created_at))
                .where(TimelineItemRow.episode_id.in_(ids), TimelineItemRow.code == "PAIN_REASSESSMENT")
                .group_by(TimelineItemRow.episode_id)
            ).all()
        for episode_id, _ in rows:
            latencies.setdefault(episode_id, (datetime.now(UTC) - due_at).total_seconds())
    return sorted(latencies.values()) or [float("nan")]


async def bare_rates(env: WorkflowEnvironment, n: int, concurrency: int) -> tuple[float, float]:
    queue = "bare-bench"
    with ThreadPoolExecutor(4):
        async with Worker(env.client, task_queue=queue, workflows=[BareWorkflow], max_cached_workflows=n + 1000):
            started = await bounded(
                n,
                concurrency,
                lambda i: env.client.start_workflow(BareWorkflow.run, id=f"bare-{uuid.uuid4().hex}", task_queue=queue),
            )

            async def start_and_update(i: int) -> None:
                handle = await env.client.start_workflow(
                    BareWorkflow.run, id=f"bare-u-{uuid.uuid4().hex}", task_queue=queue
                )
                await handle.execute_update(BareWorkflow.ping)

            updated = await bounded(n, concurrency, start_and_update)
    return n / started, n / updated


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.concurrency))
