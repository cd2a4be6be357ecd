"""Benchmark: N generated patient-years (bench/stories.py) through `carepath simulate --json`.

    .venv/bin/python bench/simulate.py --n 100 [--seed 1] [--processes P] [--lanes L]
    .venv/bin/python bench/simulate.py --sweep                 # N = 100, 250, 500, 1000

The production path: the stories are written to a temporary directory and run as
``.venv/bin/carepath simulate --json FILES...`` in a subprocess (process start, imports, servers
and all), recording into a temporary SQLite file whose episode count gives progress on stderr.
Checks: N results in the order given, every rejection one the generator intended (invalid
events, events before enroll_day or after the episode ended), every final phase a known phase.
Target (the issue): 1,000 patient-years in <= 60 s on this machine.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, get_args

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stories import expected_rejection, generate  # noqa: E402
from carepath.pathways.ovcf_lumbar.vocabulary import Phase  # noqa: E402

PHASES = set(get_args(Phase))


def _progress(db: Path, n: int, stop: threading.Event, started: float) -> None:
    while not stop.wait(10):
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
                done = conn.execute("SELECT count(*) FROM episodes").fetchone()[0]
        except sqlite3.Error:
            continue
        print(f"  [{time.perf_counter() - started:5.0f} s] ~{done}/{n} stories enrolled", file=sys.stderr, flush=True)


def run_once(
    stories: list[dict[str, Any]], processes: int | None, lanes: int | None
) -> tuple[float, list[dict[str, Any]]]:
    """Run the stories through ``carepath simulate --json`` in a subprocess; (wall seconds, results)."""
    n = len(stories)
    with tempfile.TemporaryDirectory(prefix="carepath-bench-") as tmp:
        paths = []
        for i, scenario in enumerate(stories):
            path = Path(tmp) / f"story-{i:05d}.json"
            path.write_text(json.dumps(scenario))
            paths.append(str(path))
        db = Path(tmp) / "simulate.db"
        command = [str(Path(sys.executable).parent / "carepath"), "simulate", "--json"]
        command += ["--database-url", f"sqlite:///{db}"]
        if processes:
            command += ["--processes", str(processes)]
        if lanes:
            command += ["--lanes", str(lanes)]
        stop = threading.Event()
        started = time.perf_counter()
        watcher = threading.Thread(target=_progress, args=(db, n, stop, started), daemon=True)
        watcher.start()
        try:
            result = subprocess.run([*command, *paths], capture_output=True, text=True, cwd=ROOT)
        finally:
            stop.set()
        took = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"simulate failed ({result.returncode}): {result.stderr[-3000:]}")
    return took, json.loads(result.stdout)


def check(stories: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> list[str]:
    problems = []
    if len(outputs) != len(stories):
        return [f"{len(outputs)} results for {len(stories)} stories"]
    for story, out in zip(stories, outputs, strict=True):
        if out["scenario"] != story["name"]:
            problems.append(f"result for {out['scenario']!r} where {story['name']!r} was expected (order)")
        if out["final_phase"] not in PHASES:
            problems.append(f"{story['name']}: unknown final phase {out['final_phase']!r}")
        for rejection in out["rejected"]:
            if not expected_rejection(story, rejection):
                problems.append(f"{story['name']}: unexpected rejection {rejection}")
    return problems


def report(n: int, took: float, outputs: list[dict[str, Any]], problems: list[str], label: str) -> None:
    items = sum(len(o["timeline"]) for o in outputs)
    rejected = sum(len(o["rejected"]) for o in outputs)
    phases: dict[str, int] = {}
    for o in outputs:
        phases[o["final_phase"]] = phases.get(o["final_phase"], 0) + 1
    print(
        f"{label} N={n:5d}: {took:7.1f} s  {n / took:6.2f} patient-years/s  {1000 * took / n:5.0f} ms/story  "
        f"{items} timeline items, {rejected} rejected ({len(problems)} unexpected), "
        f"final phases {dict(sorted(phases.items()))}",
        flush=True,
    )
    for problem in problems[:10]:
        print(f"  PROBLEM: {problem}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--processes", type=int, help="simulate --processes (default: the CLI's, CPUs)")
    parser.add_argument("--lanes", type=int, help="simulate --lanes (default: the CLI's)")
    parser.add_argument("--sweep", action="store_true", help="N = 100, 250, 500, 1000")
    args = parser.parse_args()

    sizes = [100, 250, 500, 1000] if args.sweep else [args.n]
    times: dict[int, float] = {}
    failed = False
    for n in sizes:
        print(f"running N={n}...", file=sys.stderr, flush=True)
        stories = generate(n, args.seed)
        took, outputs = run_once(stories, args.processes, args.lanes)
        problems = check(stories, outputs)
        failed |= bool(problems)
        report(n, took, outputs, problems, "simulate")
        times[n] = took
    last = sizes[-1]
    growth = ""
    if len(sizes) > 1:
        # Least squares t = fixed + per_story * n: process start and servers vs the stories themselves.
        mean_n, mean_t = sum(sizes) / len(sizes), sum(times.values()) / len(sizes)
        slope = sum((n - mean_n) * (times[n] - mean_t) for n in sizes) / sum((n - mean_n) ** 2 for n in sizes)
        fixed = mean_t - slope * mean_n
        print(f"growth: t ~ {fixed:.1f} s + {1000 * slope:.0f} ms x N (linear fit over {sizes})")
        growth = f"; fit {fixed:.1f} s + {1000 * slope:.0f} ms/story; " + ", ".join(
            f"{n}: {t:.1f}s" for n, t in times.items()
        )
    config = f"processes={args.processes or 'default'} lanes={args.lanes or 'default'}"
    projected = 1000 * times[last] / last
    print(
        f"SUMMARY: {last} patient-years in {times[last]:.1f} s = {last / times[last]:.2f}/s ({config}); "
        f"~{projected:.0f} s per 1,000 (target <= 60 s: {'met' if projected <= 60 else 'NOT met'})"
        f"{growth}{'; CHECK FAILED' if failed else ''}"
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
