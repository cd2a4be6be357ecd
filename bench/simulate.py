"""Benchmark: N generated patient-years through `carepath simulate --json` (the production path).

.venv/bin/python bench/simulate.py --n 1000 [--seed 1] [--processes P] [--lanes L]
.venv/bin/python bench/simulate.py --sweep            # N = 100, 250, 500, 1000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.stories import generate


def run(n: int, seed: int, processes: int | None, lanes: int | None) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, scenario in enumerate(generate(n, seed)):
            path = Path(tmp) / f"story-{i:05d}.json"
            path.write_text(json.dumps(scenario))
            paths.append(str(path))
        command = [str(Path(sys.executable).parent / "carepath"), "simulate", "--json"]
        if processes:
            command += ["--processes", str(processes)]
        if lanes:
            command += ["--lanes", str(lanes)]
        started = time.perf_counter()
        result = subprocess.run([*command, *paths], capture_output=True, text=True)
        took = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"simulate failed ({result.returncode}): {result.stderr[-2000:]}")
    outputs = json.loads(result.stdout)
    assert len(outputs) == n, f"{len(outputs)} results for {n} stories"
    items = sum(len(o["timeline"]) for o in outputs)
    rejected = sum(len(o["rejected"]) for o in outputs)
    phases: dict[str, int] = {}
    for o in outputs:
        phases[o["final_phase"]] = phases.get(o["final_phase"], 0) + 1
    print(
        f"N={n:5d}: {took:7.1f} s  {n / took:6.1f} patient-years/s  {items} timeline items, "
        f"{rejected} events rejected, final phases {dict(sorted(phases.items()))}",
        flush=True,
    )
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--processes", type=int)
    parser.add_argument("--lanes", type=int)
    parser.add_argument("--sweep", action="store_true", help="N = 100, 250, 500, 1000")
    args = parser.parse_args()
    sizes = [100, 250, 500, 1000] if args.sweep else [args.n]
    times = {n: run(n, args.seed, args.processes, args.lanes) for n in sizes}
    last = sizes[-1]
    growth = ", ".join(f"{n}: {t:.1f}s" for n, t in times.items())
    print(
        f"SUMMARY: {last} patient-years in {times[last]:.1f} s = {last / times[last]:.1f}/s (target 1000 in <= 60 s); "
        f"growth {growth}"
    )


if __name__ == "__main__":
    main()
