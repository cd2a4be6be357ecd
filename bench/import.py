# ruff: noqa: N999  (the brief names it bench/import.py; it runs as a script, never imported)
"""Benchmark: bulk import against bare ``start_workflow`` on the same dev server in the same run,
then interactive latency of one enrollment and one event with 1 and 20 clients.

    .venv/bin/python bench/import.py --n 3000 [--concurrency 32] [--interactive 100]

Starts ``temporal server start-dev`` (in memory), the production worker (``worker.py``, encrypted
payloads, SQLite) and the bare worker (bench/bare.py), as bench/live.py does.

1. Bare: N ``start_workflow`` of a no-op workflow, ``--concurrency`` in flight (the reference rate).
2. Import: the same N as JSON lines through ``carepath.importer.import_enrollments`` (what
   ``carepath import`` and ``POST /imports`` run: validate, reserve the patient row, durable
   ``start_workflow``; no wait for the baseline), ``--concurrency`` in flight, the worker recording
   baselines meanwhile. Reports the rate and its ratio to bare (target >= 0.6).
3. Once the worker is idle (every baseline recorded): interactive ``POST /episodes`` (waits for the
   baseline) and ``POST /episodes/{id}/events`` (a note, with an Idempotency-Key) through the API
   app, from 1 client and then from 20 at once; p50/p99 of each (target p99 <= 300 ms, 1 client).
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
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402
from temporalio.client import Client  # noqa: E402

from bench.live import (  # noqa: E402
    BARE_QUEUE,
    TASK_QUEUE,
    Cpu,
    bare_starts,
    connect_when_ready,
    enrollment,
    pct,
    proc_status,
    start_dev_server,
    start_worker,
    wait_idle,
)
from carepath.app import create_app  # noqa: E402
from carepath.codec import KeyRing, encrypted_converter  # noqa: E402
from carepath.importer import import_enrollments  # noqa: E402
from carepath.service import CarepathService  # noqa: E402
from carepath.temporal import DATA_CONVERTER  # noqa: E402
from db.engine import make_engine  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.models import EpisodeRow  # noqa: E402
from db.tokens import create_token  # noqa: E402


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def latency_line(what: str, latencies: list[float]) -> str:
    return f"{what}: p50 {1000 * pct(latencies, 0.5):.0f} ms, p99 {1000 * pct(latencies, 0.99):.0f} ms"


async def interactive(http: httpx.AsyncClient, clients: int, per_client: int) -> tuple[list[float], list[float]]:
    """Each client enrolls a patient and records one event on it, ``per_client`` times."""
    today = datetime.now(UTC).date()
    enrolls: list[float] = []
    events: list[float] = []

    async def client(lane: int) -> None:
        for i in range(per_client):
            body = enrollment(lane * 100_000 + i, today).model_dump(mode="json")
            began = time.perf_counter()
            answer = await http.post("/episodes", json=body)
            enrolls.append(time.perf_counter() - began)
            if answer.status_code != 201:
                raise RuntimeError(f"POST /episodes: {answer.status_code} {answer.text[:300]}")
            note = {"type": "note", "occurred_on": today.isoformat(), "text": "phoned", "author": "bench"}
            began = time.perf_counter()
            answer = await http.post(
                f"/episodes/{answer.json()['episode_id']}/events",
                json=note,
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
            events.append(time.perf_counter() - began)
            if answer.status_code != 200:
                raise RuntimeError(f"POST events: {answer.status_code} {answer.text[:300]}")

    await asyncio.gather(*(client(lane) for lane in range(clients)))
    return enrolls, events


async def run(args: argparse.Namespace, tmp: Path) -> None:
    n, concurrency = args.n, args.concurrency
    database_url = f"sqlite:///{tmp / 'carepath.db'}"
    logs = {name: (tmp / f"{name}.log").open("wb") for name in ("temporal", "worker", "bare")}
    procs: list[subprocess.Popen[bytes]] = []
    engine = None
    try:
        server, address = start_dev_server(logs["temporal"])
        procs.append(server)
        bare_client = await connect_when_ready(address)
        ring = KeyRing.generate()
        ring.save(tmp / "keys.json")
        upgrade(database_url)
        worker = None if args.worker_after else start_worker(address, database_url, tmp, logs["worker"], args.cache)
        bare = subprocess.Popen(
            [sys.executable, "-m", "bench.bare", "--address", address, "--task-queue", BARE_QUEUE],
            cwd=ROOT,
            stdout=logs["bare"],
            stderr=subprocess.STDOUT,
        )
        procs += [bare] if worker is None else [worker, bare]
        client = Client(
            bare_client.service_client, namespace="default", data_converter=encrypted_converter(DATA_CONVERTER, ring)
        )
        engine = make_engine(database_url)
        service = CarepathService(client, engine, TASK_QUEUE, pathway_version=1)
        await asyncio.sleep(3)
        cpu = Cpu({"server": server.pid, "bench": os.getpid(), **({"worker": worker.pid} if worker else {})})
        idle_rss = proc_status(worker.pid, "VmRSS") if worker else 0.0
        print(f"setup: dev server {address} (in memory), SQLite, concurrency {concurrency}", flush=True)

        took = await bare_starts(bare_client, n, concurrency)
        bare_rate = n / took
        print(f"bare: {n} start_workflow in {took:.1f} s = {bare_rate:.0f}/s  [CPU s: {cpu.lap()}]", flush=True)

        today = datetime.now(UTC).date()
        lines = [json.dumps(enrollment(i, today).model_dump(mode="json")) for i in range(n)]
        began = time.perf_counter()
        report = await import_enrollments(service, lines, "bench", concurrency)
        took = time.perf_counter() - began
        import_rate = len(report.enrolled) / took
        print(
            f"import: {report.summary()} in {took:.1f} s = {import_rate:.0f}/s = {import_rate / bare_rate:.2f}x bare "
            f"start_workflow  [CPU s: {cpu.lap()}]",
            flush=True,
        )
        if worker is None:  # --worker-after: the import ran alone against the server; now the baselines
            worker = start_worker(address, database_url, tmp, logs["worker"], args.cache)
            procs.append(worker)
            await asyncio.sleep(3)
            idle_rss = proc_status(worker.pid, "VmRSS")
            cpu = Cpu({"server": server.pid, "bench": os.getpid(), "worker": worker.pid})
        # The import returned before the baselines: wait for every one (the server's backlog), then
        # for the worker to go quiet, so the interactive figures are not measured behind a backlog.
        began = time.perf_counter()
        active = 0
        while active < n and time.perf_counter() - began < 1800:
            await asyncio.sleep(1)
            with Session(engine) as session:
                active = session.scalar(select(func.count()).where(EpisodeRow.status == "active")) or 0
        drained = time.perf_counter() - began + await wait_idle(worker.pid)
        print(
            f"baselines: {active}/{n} active {drained:.0f} s after the import returned "
            f"({n / (took + drained):.0f}/s end to end)  [CPU s: {cpu.lap()}]",
            flush=True,
        )
        # Every episode sleeps now; the worker caches min(n, cache) of them.
        cached = min(n, args.cache)
        rss = proc_status(worker.pid, "VmRSS")
        per_thousand = (rss - idle_rss) / cached * 1000
        print(
            f"worker RSS: {idle_rss:.0f} MiB idle, {rss:.0f} MiB with {cached} cached sleeping episodes = "
            f"{per_thousand:.0f} MiB per 1,000 cached",
            flush=True,
        )

        _, token = create_token(engine, "bench", "coordinator", "bench")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(service=service)),
            base_url="http://carepath.bench",
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
        ) as http:
            figures: dict[int, tuple[list[float], list[float]]] = {}
            for clients in (1, 20):
                per_client = args.interactive if clients == 1 else max(5, args.interactive // 4)
                enrolls, events = await interactive(http, clients, per_client)
                figures[clients] = (enrolls, events)
                print(
                    f"interactive, {clients} client(s), {len(enrolls)} in all: "
                    f"{latency_line('enrollment', enrolls)}; {latency_line('event', events)}",
                    flush=True,
                )

        def p50_p99(values: list[float]) -> str:
            return f"{1000 * pct(values, 0.5):.0f}/{1000 * pct(values, 0.99):.0f} ms"

        one, twenty = figures[1], figures[20]
        print(
            f"SUMMARY: import {import_rate:.0f}/s = {import_rate / bare_rate:.2f}x bare start_workflow "
            f"({bare_rate:.0f}/s, N={n}); p50/p99 1 client: enroll {p50_p99(one[0])}, event {p50_p99(one[1])}; "
            f"20 clients: enroll {p50_p99(twenty[0])}, event {p50_p99(twenty[1])}; "
            f"worker RSS {per_thousand:.0f} MiB per 1,000 cached episodes",
            flush=True,
        )
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if engine is not None:
            engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--interactive", type=int, default=100, help="enrollments + events by the single client")
    parser.add_argument(
        "--worker-after",
        action="store_true",
        help="start the worker once the import returned (isolates the import's own cost from the baselines')",
    )
    parser.add_argument("--cache", type=int, default=1000, help="the worker's max_cached_workflows (production: 1000)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="carepath-import-", dir="/tmp") as name:
        asyncio.run(run(args, Path(name)))
    sys.stdout.flush()
    os._exit(0)  # the SDK sometimes hangs at interpreter exit (ENGINEERING.md)


if __name__ == "__main__":
    main()
