"""Benchmark: the write path through the HTTP API against bare Temporal on the same dev server.

    .venv/bin/python bench/write_path.py [--notes 200] [--per-client 30] [--clients 20] [--imports 600]

One run, one ``temporal server start-dev`` (in memory, free ports), and in processes of their own:
the production worker (worker.py), the production API (``carepath api`` under uvicorn on a free
port) and a bare worker (bench/bare.py: a no-op workflow with a no-op update). SQLite, encrypted
payloads. Timed from this client:

1. One client: ``--notes`` notes by ``POST /episodes/{id}/events`` one after the other (a note is
   the cheapest clinical event: it raises nothing), against as many bare ``execute_update`` of
   the no-op workflow. p50 and p99 of each, and the ratios.
2. ``--clients`` clients at once, each on its own episode (its own bare workflow), ``--per-client``
   requests each: writes per second, and the ratio to bare; any error is counted and printed.
3. Enrollment end to end: ``--imports`` enrollments sent through ``POST /imports`` (one body,
   else in bodies of at most ``--chunk`` lines when the API refuses the size) and timed until every
   episode is active (its baseline recorded), against as many bare ``start_workflow`` (64 in
   flight, as the import). The worker's CPU seconds per baseline over that phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from bench.bare import BareWorkflow  # noqa: E402
from bench.live import (  # noqa: E402
    BARE_QUEUE,
    bounded,
    carepath_env,
    connect_when_ready,
    cpu_seconds,
    enrollment,
    free_port,
    log,
    pct,
    start_dev_server,
    start_worker,
)
from carepath.codec import KeyRing  # noqa: E402
from db.engine import make_engine  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.models import EpisodeRow  # noqa: E402
from db.tokens import create_token  # noqa: E402


def start_api(address: str, database_url: str, tmp: Path, port: int, out: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "carepath.cli", "api", "--host", "127.0.0.1", "--port", str(port)],
        env=carepath_env(address, database_url, tmp),
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
    )


async def wait_ready(http: httpx.AsyncClient, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if (await http.get("/ready")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.3)
    raise RuntimeError("the API never became ready")


def profile(folder: str, pids: dict[str, int]) -> list[subprocess.Popen[bytes]]:
    """py-spy on each process (raw collapsed stacks in ``folder``/<name>.txt) while a phase runs
    (the one-client notes: api, worker; the import until all are active: api-import,
    worker-import); summarise them with bench/pyspy_top.py."""
    if not folder:
        return []
    Path(folder).mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    return [
        subprocess.Popen(
            [str(spy), "record", "--gil", "-f", "raw", "-r", "200", "-o", f"{folder}/{name}.txt", "--pid", str(pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]


def stop_profile(spies: list[subprocess.Popen[bytes]]) -> None:
    for spy in spies:
        spy.send_signal(2)  # SIGINT: py-spy writes its profile and exits
        spy.wait(timeout=30)


def cpu_per(pids: dict[str, int], before: dict[str, float], n: int) -> str:
    return ", ".join(f"{name} {1000 * (cpu_seconds(pid) - before[name]) / n:.1f}" for name, pid in pids.items())


def ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f} ms"


def summary(what: str, latencies: list[float]) -> str:
    return (
        f"{what}: p50 {ms(pct(latencies, 0.5))}, p99 {ms(pct(latencies, 0.99))}, mean {ms(statistics.mean(latencies))}"
    )


async def enroll_one(http: httpx.AsyncClient, i: int, today: Any) -> str:
    body = enrollment(10_000 + i, today).model_dump(mode="json", exclude_none=True)
    answer = await http.post("/episodes", json=body)
    if answer.status_code != 201:
        raise RuntimeError(f"enrollment refused: {answer.status_code} {answer.text[:300]}")
    return answer.json()["episode_id"]


def note(today: Any, i: int) -> dict[str, Any]:
    return {"type": "note", "occurred_on": today.isoformat(), "author": "bench", "text": f"called the patient ({i})"}


async def one_client(
    http: httpx.AsyncClient, bare: Any, episode: str, today: Any, n: int, pids: dict[str, int]
) -> tuple[list[float], list[float]]:
    errors = 0
    cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
    api: list[float] = []
    for i in range(n + 10):  # the first 10 of each: warm-up, not counted
        started = time.perf_counter()
        answer = await http.post(f"/episodes/{episode}/events", json=note(today, i))
        if answer.status_code != 200:
            errors += 1
        if i >= 10:
            api.append(time.perf_counter() - started)
    print(f"  CPU ms per note: {cpu_per(pids, cpu, n + 10)}", flush=True)
    cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
    floor: list[float] = []
    for i in range(n + 10):
        started = time.perf_counter()
        await bare.execute_update(BareWorkflow.ping)
        if i >= 10:
            floor.append(time.perf_counter() - started)
    print(f"  CPU ms per bare update: {cpu_per(pids, cpu, n + 10)}", flush=True)
    if errors:
        print(f"  one client: {errors} notes refused", flush=True)
    return api, floor


async def many_clients(
    http: httpx.AsyncClient, bares: list[Any], episodes: list[str], today: Any, per_client: int
) -> tuple[float, float, int]:
    errors = 0

    async def api_client(episode: str) -> None:
        nonlocal errors
        for i in range(per_client):
            answer = await http.post(f"/episodes/{episode}/events", json=note(today, i))
            if answer.status_code != 200:
                errors += 1
                if errors <= 3:
                    print(f"  refused: {answer.status_code} {answer.text[:200]}", flush=True)

    async def bare_client(handle: Any) -> None:
        for _ in range(per_client):
            await handle.execute_update(BareWorkflow.ping)

    started = time.perf_counter()
    await asyncio.gather(*(api_client(e) for e in episodes))
    api_rate = len(episodes) * per_client / (time.perf_counter() - started)
    started = time.perf_counter()
    await asyncio.gather(*(bare_client(h) for h in bares))
    bare_rate = len(bares) * per_client / (time.perf_counter() - started)
    return api_rate, bare_rate, errors


async def post_imports(http: httpx.AsyncClient, lines: list[str], chunk: int) -> tuple[int, int]:
    """Send the lines as one body if the API takes it, else in bodies of ``chunk`` lines; (calls, enrolled)."""
    bodies = ["\n".join(lines)]
    calls, enrolled = 0, 0
    while bodies:
        body = bodies.pop(0)
        answer = await http.post(
            "/imports", content=body, headers={"content-type": "application/x-ndjson"}, timeout=600
        )
        calls += 1
        if answer.status_code == 413 and calls == 1:
            parts = body.split("\n")
            bodies = ["\n".join(parts[i : i + chunk]) for i in range(0, len(parts), chunk)]
            continue
        if answer.status_code != 200:
            raise RuntimeError(f"import refused: {answer.status_code} {answer.text[:300]}")
        report = answer.json()
        enrolled += len(report.get("enrolled", []))
    return calls, enrolled


async def until_active(engine: Any, refs: list[str], timeout: float = 600) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        with Session(engine) as session:
            active = session.scalar(
                select(func.count())
                .select_from(EpisodeRow)
                .where(EpisodeRow.patient_ref.in_(refs), EpisodeRow.status == "active")
            )
        if active == len(refs):
            return time.perf_counter() - started
        await asyncio.sleep(0.2)
    raise RuntimeError(f"only {active} of {len(refs)} active after {timeout} s")


async def run(args: argparse.Namespace, tmp: Path) -> None:
    database_url = f"sqlite:///{tmp / 'bench.db'}"
    logs = {name: (tmp / f"{name}.log").open("wb") for name in ("temporal", "worker", "bare", "api")}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        server, address = start_dev_server(logs["temporal"])
        procs.append(server)
        bare_client = await connect_when_ready(address)
        KeyRing.generate().save(tmp / "keys.json")
        upgrade(database_url)
        engine = make_engine(database_url)
        worker = start_worker(address, database_url, tmp, logs["worker"])
        bare = subprocess.Popen(
            [sys.executable, "-m", "bench.bare", "--address", address, "--task-queue", BARE_QUEUE],
            cwd=ROOT,
            stdout=logs["bare"],
            stderr=subprocess.STDOUT,
        )
        port = free_port()
        api = start_api(address, database_url, tmp, port, logs["api"])
        procs += [worker, bare, api]
        token = create_token(engine, "bench", "coordinator", "bench")[1]
        http = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        await wait_ready(http)
        await asyncio.sleep(2)  # both workers polling
        today = datetime.now(UTC).date()
        print(f"setup: dev server {address}, worker.py, carepath api on :{port}, bare worker; SQLite", flush=True)

        episodes = [await enroll_one(http, i, today) for i in range(args.clients)]
        bares = []
        for _ in range(args.clients):
            handle = await bare_client.start_workflow(
                BareWorkflow.run, id=f"bare-{uuid.uuid4().hex}", task_queue=BARE_QUEUE
            )
            bares.append(handle)
        spies = profile(args.profile, {"api": api.pid, "worker": worker.pid})
        pids = {"api": api.pid, "worker": worker.pid, "server": server.pid, "bare worker": bare.pid}
        api_lat, bare_lat = await one_client(http, bares[0], episodes[0], today, args.notes, pids)
        stop_profile(spies)
        print(summary(f"1 client, {args.notes} notes POST /episodes/{{id}}/events", api_lat), flush=True)
        print(summary(f"1 client, {args.notes} bare execute_update (no-op)", bare_lat), flush=True)
        p50 = pct(api_lat, 0.5) / pct(bare_lat, 0.5)
        p99 = pct(api_lat, 0.99) / pct(bare_lat, 0.99)
        print(f"RATIO 1 client: p50 {p50:.2f}x bare (target <= 3), p99 {p99:.2f}x bare (target <= 2.5)", flush=True)

        api_rate, bare_rate, errors = await many_clients(http, bares, episodes, today, args.per_client)
        print(
            f"RATIO {args.clients} clients: notes {api_rate:.0f}/s vs bare updates {bare_rate:.0f}/s = "
            f"{api_rate / bare_rate:.2f}x (target >= 0.5), {errors} errors",
            flush=True,
        )

        if args.skip_imports:
            return
        # ---- enrollment end to end --------------------------------------------------------
        stamp = uuid.uuid4().hex[:6]
        rows = []
        for i in range(args.imports):
            body = enrollment(i, today).model_dump(mode="json", exclude_none=True)
            body["patient"]["ref"] = f"imp-{stamp}-{i}"
            rows.append(body)
        lines = [json.dumps(row) for row in rows]
        refs = [row["patient"]["ref"] for row in rows]
        spies = profile(args.profile, {"api-import": api.pid, "worker-import": worker.pid})
        before = cpu_seconds(worker.pid)
        started = time.perf_counter()
        calls, enrolled = await post_imports(http, lines, args.chunk)
        accepted = time.perf_counter() - started
        active = await until_active(engine, refs)
        stop_profile(spies)
        end_to_end = time.perf_counter() - started
        worker_cpu = cpu_seconds(worker.pid) - before
        took, _ = await bounded(
            args.imports,
            64,
            lambda i: bare_client.start_workflow(
                BareWorkflow.run, id=f"bare-i-{uuid.uuid4().hex}", task_queue=BARE_QUEUE
            ),
            "bare start",
        )
        bare_rate = args.imports / took
        rate = args.imports / end_to_end
        print(
            f"imports: {args.imports} lines in {calls} POST /imports call(s), {enrolled} enrolled, accepted in "
            f"{accepted:.1f} s, all active after {end_to_end:.1f} s (+{active:.1f} s after the answer) = {rate:.0f}/s",
            flush=True,
        )
        print(f"bare: {args.imports} start_workflow in {took:.1f} s = {bare_rate:.0f}/s", flush=True)
        print(
            f"RATIO enrollment end to end: {rate / bare_rate:.2f}x bare start_workflow (target >= 0.4); "
            f"worker CPU {worker_cpu:.1f} s = {1000 * worker_cpu / args.imports:.1f} ms per baseline",
            flush=True,
        )
        await http.aclose()
        engine.dispose()
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for handle in logs.values():
            handle.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notes", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--per-client", type=int, default=30)
    parser.add_argument("--imports", type=int, default=600)
    parser.add_argument("--chunk", type=int, default=120, help="lines per body when one body is refused")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    parser.add_argument("--profile", default="", help="py-spy the API and worker (notes, import) into DIR")
    parser.add_argument("--skip-imports", action="store_true", help="only the event phases")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="carepath-write-"))
    try:
        asyncio.run(run(args, tmp))
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"logs in {tmp}")


if __name__ == "__main__":
    main()
