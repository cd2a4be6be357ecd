"""Benchmark: one large JSON-lines file through ``POST /imports`` (one streamed request to a
``carepath api`` process) against ``carepath import`` on a file of the same shape, same run.

    .venv/bin/python bench/import_stream.py [--n 10000]

Starts ``temporal server start-dev`` (in memory) and ``carepath api`` (SQLite, encrypted payloads)
on free ports; no worker polls the queue, since neither path waits for a baseline: both measure
how fast an import reserves patients and starts their workflows. Prints for each path the time,
lines/s and peak RSS (the CLI process's, and the API process's growth during its import), and
the ratio of the two rates. Every line must come back enrolled.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.live import carepath_env, connect_when_ready, enrollment, free_port, proc_status, start_dev_server  # noqa: E402
from bench.write_path import wait_ready  # noqa: E402
from carepath.codec import KeyRing  # noqa: E402
from db.engine import make_engine  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.tokens import create_token  # noqa: E402


def write_file(path: Path, n: int) -> int:
    """``n`` enrollments, one a line, each a new patient; the file's size in bytes."""
    today = date.today()
    with path.open("w") as out:
        for i in range(n):
            out.write(enrollment(i, today).model_dump_json() + "\n")
    return path.stat().st_size


def cli_import(path: Path, env: dict[str, str]) -> tuple[float, dict[str, list], float]:
    """``carepath import --json`` on ``path``: seconds, its report, its peak RSS in MiB."""
    started = time.monotonic()
    done = subprocess.run(
        [str(ROOT / ".venv/bin/carepath"), "import", str(path), "--json", "--no-progress"],
        env=env,
        capture_output=True,
        check=False,
    )
    took = time.monotonic() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the only child waited for
    return took, json.loads(done.stdout), peak


async def http_import(path: Path, url: str, token: str) -> tuple[float, dict[str, list]]:
    """The file as one chunked ``POST /imports``: seconds and the report."""

    async def chunks():
        with path.open("rb") as source:
            while chunk := source.read(1 << 16):
                yield chunk

    headers = {"Authorization": f"Bearer {token}", "content-type": "application/x-ndjson"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=3600) as client:
        started = time.monotonic()
        answer = await client.post("/imports", content=chunks())
        took = time.monotonic() - started
    answer.raise_for_status()
    return took, answer.json()


def line(what: str, n: int, took: float, report: dict[str, list], rss: str) -> str:
    counts = ", ".join(f"{len(report[k])} {k}" for k in ("enrolled", "already_active", "rejected", "failed"))
    return f"{what}: {n} lines in {took:.1f} s = {n / took:.0f} lines/s ({counts}); {rss}"


async def run(args: argparse.Namespace, tmp: Path) -> None:
    database_url = f"sqlite:///{tmp / 'carepath.db'}"
    KeyRing.generate().save(tmp / "keys.json")
    upgrade(database_url)
    engine = make_engine(database_url)
    _, token = create_token(engine, "bench", "coordinator", "bench")
    engine.dispose()
    sizes = [write_file(tmp / f"{name}.jsonl", args.n) for name in ("http", "cli")]
    server, address = start_dev_server(subprocess.DEVNULL)
    port = free_port()
    env = {**carepath_env(address, database_url, tmp), "CAREPATH_TASK_QUEUE": f"nobody-{uuid.uuid4().hex[:6]}"}
    api = subprocess.Popen(
        [str(ROOT / ".venv/bin/carepath"), "api", "--port", str(port)],
        env=env,
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await connect_when_ready(address)
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url) as probe:
            await wait_ready(probe)  # /ready: the database and Temporal answer
        before = proc_status(api.pid, "VmRSS")
        took_http, report_http = await http_import(tmp / "http.jsonl", url, token)
        grown = proc_status(api.pid, "VmHWM") - before
        took_cli, report_cli, peak_cli = cli_import(tmp / "cli.jsonl", env)
    finally:
        api.terminate()
        api.wait()
        server.terminate()
        server.wait()
    print(f"files: {args.n} lines, {sizes[0] / 1e6:.1f} MB each")
    print(line("POST /imports", args.n, took_http, report_http, f"API RSS {before:.0f} MiB, peak +{grown:.0f} MiB"))
    print(line("carepath import", args.n, took_cli, report_cli, f"CLI peak RSS {peak_cli:.0f} MiB"))
    print(f"HTTP / CLI rate: {took_cli / took_http:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="lines in each file (default 10,000)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    main()
