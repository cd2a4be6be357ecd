"""Where `carepath simulate` spends its time: one process, instrumented round trips, cProfile.

    .venv/bin/python bench/profile_simulate.py --n 60 [--lanes 1]
        [--cprofile profile.out]

Runs generated stories through ``_run_chunk`` of carepath's simulate runner in this
process and reports: wall time; count and total wall time of each client round trip to the
time-skipping server (``env.sleep``, ``get_current_time``, ``start_workflow``, updates,
``terminate``); time in the ``record_changes`` activity (database); the test server's and this
process's CPU seconds. With ``--cprofile FILE`` the event-loop thread is also profiled and the
top functions by cumulative and own time are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import importlib
import json
import os
import pstats
import resource
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from temporalio.client import WorkflowHandle  # noqa: E402
from temporalio.testing._workflow import _V1WorkflowEnvironment  # noqa: E402

from activities.recording import EpisodeRecorder  # noqa: E402
from bench.stories import generate  # noqa: E402
from db.migrate import upgrade  # noqa: E402

TIMES: dict[str, list[float]] = defaultdict(list)
_lock = threading.Lock()


def timed_async(name: str, fn):
    @functools.wraps(fn)
    async def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            TIMES[name].append(time.perf_counter() - started)

    return wrapper


def timed_sync(name: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            with _lock:
                TIMES[name].append(time.perf_counter() - started)

    return wrapper


def instrument(runner) -> None:
    env_cls = _V1WorkflowEnvironment
    for name in ("sleep", "get_current_time"):
        if not hasattr(getattr(env_cls, name), "__wrapped__"):
            setattr(env_cls, name, timed_async(f"env.{name}", getattr(env_cls, name)))
    for name in ("execute_update", "terminate", "query"):
        if not hasattr(getattr(WorkflowHandle, name), "__wrapped__"):
            setattr(WorkflowHandle, name, timed_async(f"handle.{name}", getattr(WorkflowHandle, name)))
    from temporalio.client import Client

    for name in ("start_workflow", "execute_update_with_start_workflow"):
        if not hasattr(getattr(Client, name), "__wrapped__"):
            setattr(Client, name, timed_async(f"client.{name}", getattr(Client, name)))
    # The activity body (one database transaction per recorded step); runs in worker threads.
    original = EpisodeRecorder.record_changes
    if not hasattr(original, "__wrapped__"):
        wrapped = timed_sync("activity record_changes (DB)", original)
        EpisodeRecorder.record_changes = wrapped
    for name in ("timeline", "episode_phase", "load_scenario", "simulate"):
        fn = getattr(runner, name, None)
        if fn is None or hasattr(fn, "__wrapped__"):
            continue
        timer = timed_async if asyncio.iscoroutinefunction(fn) else timed_sync
        setattr(runner, name, timer(f"runner.{name}", fn))


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--lanes", type=int, default=1)
    parser.add_argument("--cprofile", help="write cProfile stats of the event-loop thread here")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    runner = importlib.import_module("carepath.simulate.runner")
    instrument(runner)
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        for i, scenario in enumerate(generate(args.n, args.seed)):
            path = Path(tmp) / f"story-{i:05d}.json"
            path.write_text(json.dumps(scenario))
            jobs.append(runner.Job(i, str(path)))
        url = f"sqlite:///{tmp}/sim.db"
        upgrade(url)
        events = sum(len(s["events"]) for s in generate(args.n, args.seed))
        profiler = cProfile.Profile() if args.cprofile else None
        self_cpu = time.process_time()
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        results = asyncio.run(runner._run_chunk(jobs, url, 1, args.lanes))
        if profiler:
            profiler.disable()
        wall = time.perf_counter() - started
        self_cpu = time.process_time() - self_cpu
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = children.ru_utime + children.ru_stime
    assert len(results) == args.n
    print(f"{args.n} stories ({events} events), lanes={args.lanes}")
    print(f"wall {wall:.1f} s = {args.n / wall:.2f} patient-years/s; {1000 * wall / args.n:.0f} ms per story")
    print(f"CPU: this process {self_cpu:.1f} s, time-skipping server(s) {server_cpu:.1f} s")
    print(f"{'call':38s} {'count':>7s} {'per story':>9s} {'total s':>8s} {'mean ms':>8s} {'% wall':>7s}")
    for name, values in sorted(TIMES.items(), key=lambda kv: -sum(kv[1])):
        total = sum(values)
        print(
            f"{name:38s} {len(values):7d} {len(values) / args.n:9.1f} {total:8.2f} "
            f"{1000 * total / len(values):8.1f} {100 * total / wall / args.lanes:6.1f}%"
        )
    if profiler:
        profiler.dump_stats(args.cprofile)
        stats = pstats.Stats(args.cprofile)
        print("\n--- cProfile (event-loop thread), by own time ---")
        stats.sort_stats("tottime").print_stats(args.top)
        print("--- by cumulative time ---")
        stats.sort_stats("cumulative").print_stats(args.top)
    sleeps = TIMES.get("env.sleep", [])
    print(
        f"SUMMARY: {args.n / wall:.2f} patient-years/s in one process (lanes={args.lanes}); "
        f"env.sleep {sum(sleeps):.1f} s of {wall:.1f} s wall ({len(sleeps) / args.n:.1f} per story); "
        f"server CPU {server_cpu:.1f} s, Python CPU {self_cpu:.1f} s"
    )


if __name__ == "__main__":
    main()
