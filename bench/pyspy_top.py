"""Summarise a py-spy raw (collapsed-stack) profile: top frames by inclusive and own samples.

.venv/bin/py-spy record -f raw -o prof.txt -r 200 -- .venv/bin/python bench/profile_simulate.py --n 40
.venv/bin/python bench/pyspy_top.py prof.txt [--top 40] [--match carepath]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# Buckets of interest for the simulator: first matching pattern (in order) in a stack wins.
BUCKETS = [
    ("sandbox: per-payload serialization-context exec", r"get_serialization_context"),
    ("sandbox: new instance (re-import workflow module)", r"_Instance\._create_instance|_Instance\.__init__"),
    ("activity record_changes (SQLAlchemy/sqlite)", r"record_changes"),
    ("rules (pure pathway logic)", r"carepath/(engine|pathways)/"),
    ("workflow code in sandbox (activate)", r"_Instance\.activate"),
    ("pydantic (de)serialisation via payload converter", r"temporalio/converter\.py|contrib/pydantic"),
    ("SQLAlchemy / sqlite (activities, queries)", r"sqlalchemy|sqlite3"),
    ("workflow sandbox (import/restrictions)", r"worker/workflow_sandbox"),
    ("workflow activation (SDK instance)", r"temporalio/worker/_workflow_instance\.py"),
    ("temporal worker/bridge (SDK poll/complete)", r"temporalio/(worker|bridge)/"),
    ("temporal client (RPC)", r"temporalio/(client|service)\.py"),
    ("asyncio loop", r"asyncio/"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--match", default="", help="only frames whose text contains this")
    parser.add_argument(
        "--run-only",
        action="store_true",
        help="drop the main thread's start-up (module imports outside the event loop)",
    )
    args = parser.parse_args()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    total = 0
    for line in Path(args.file).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        if args.run_only and frames[0].startswith("<module>") and "run_until_complete" not in stack:
            continue
        total += n
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
        for name, pattern in BUCKETS:
            if re.search(pattern, stack):
                buckets[name] += n
                break
        else:
            buckets["other"] += n
    print(f"{total} samples (all threads, GIL-holding or running)")
    print("\n--- buckets (first match in stack) ---")
    for name, n in buckets.most_common():
        print(f"{100 * n / total:6.1f}%  {name}")
    print("\n--- inclusive ---")
    for frame, n in [(f, n) for f, n in inclusive.most_common() if args.match in f][: args.top]:
        print(f"{100 * n / total:6.1f}%  {frame[:160]}")
    print("\n--- own ---")
    for frame, n in [(f, n) for f, n in own.most_common() if args.match in f][: args.top]:
        print(f"{100 * n / total:6.1f}%  {frame[:160]}")


if __name__ == "__main__":
    main()
